"""Evaluate: run any provider over a dataset split, score the outputs, compare the runs.

Built-in scores (``metrics.score_output``) sit beside user metrics (``MetricFn`` callables or
``module:function`` specs); every run-level mean carries a bootstrap 95 % interval and can be
broken down by a metadata key (``stats``).
"""

from tuneloop.evaluate.gates import check_gate
from tuneloop.evaluate.judges import (
    JudgeCache,
    JudgeError,
    PairwiseJudge,
    RubricJudge,
    Trait,
    Verdict,
    reference_judge,
)
from tuneloop.evaluate.metrics import (
    exact_match,
    parse_json_output,
    score_output,
    structural_similarity,
    text_similarity,
    tree_similarity,
    valid_json,
)
from tuneloop.evaluate.plots import save_comparison_plot
from tuneloop.evaluate.probes import (
    PROBE_KINDS,
    PROBE_THRESHOLDS,
    ProbeReport,
    ReadingTask,
    probe_tasks,
    pseudo_word,
    reading_task,
    run_probes,
)
from tuneloop.evaluate.ratings import (
    Battle,
    Rating,
    battle,
    bootstrap_bradley_terry,
    bradley_terry,
    interval_ranks,
    leaderboard,
    online_elo,
    read_battles,
    score_battles,
    write_battles,
)
from tuneloop.evaluate.report import (
    breakdown_table,
    comparison_dict,
    comparison_table,
    leaderboard_markdown,
    leaderboard_table,
    run_errors,
)
from tuneloop.evaluate.runner import (
    MetricFn,
    Score,
    aggregate,
    attach_metadata,
    evaluate_provider,
    percentile,
    resolve_metrics,
    split_reference,
)
from tuneloop.evaluate.stats import Estimate, bootstrap_mean, breakdown, group_value
from tuneloop.evaluate.suite import latest_result, load_suite, run_suite

__all__ = [
    "PROBE_KINDS",
    "PROBE_THRESHOLDS",
    "Battle",
    "Estimate",
    "JudgeCache",
    "JudgeError",
    "MetricFn",
    "PairwiseJudge",
    "ProbeReport",
    "Rating",
    "ReadingTask",
    "RubricJudge",
    "Score",
    "Trait",
    "Verdict",
    "aggregate",
    "attach_metadata",
    "battle",
    "bootstrap_bradley_terry",
    "bootstrap_mean",
    "bradley_terry",
    "breakdown",
    "breakdown_table",
    "check_gate",
    "comparison_dict",
    "comparison_table",
    "evaluate_provider",
    "exact_match",
    "group_value",
    "interval_ranks",
    "latest_result",
    "leaderboard",
    "leaderboard_markdown",
    "leaderboard_table",
    "load_suite",
    "online_elo",
    "parse_json_output",
    "percentile",
    "probe_tasks",
    "pseudo_word",
    "read_battles",
    "reading_task",
    "reference_judge",
    "resolve_metrics",
    "run_errors",
    "run_probes",
    "run_suite",
    "save_comparison_plot",
    "score_battles",
    "score_output",
    "split_reference",
    "structural_similarity",
    "text_similarity",
    "tree_similarity",
    "valid_json",
    "write_battles",
]
