"""Evaluate: run any provider over a dataset split, score the outputs, compare the runs.

Built-in scores (``metrics.score_output``) sit beside user metrics (``MetricFn`` callables or
``module:function`` specs); every run-level mean carries a bootstrap 95 % interval and can be
broken down by a metadata key (``stats``).
"""

from tuneloop.evaluate.metrics import (
    exact_match,
    parse_json_output,
    score_output,
    structural_similarity,
    text_similarity,
    tree_similarity,
    valid_json,
)
from tuneloop.evaluate.report import (
    breakdown_table,
    comparison_dict,
    comparison_table,
    run_errors,
)
from tuneloop.evaluate.runner import (
    MetricFn,
    aggregate,
    attach_metadata,
    evaluate_provider,
    percentile,
    resolve_metrics,
    split_reference,
)
from tuneloop.evaluate.stats import Estimate, bootstrap_mean, breakdown, group_value

__all__ = [
    "Estimate",
    "MetricFn",
    "aggregate",
    "attach_metadata",
    "bootstrap_mean",
    "breakdown",
    "breakdown_table",
    "comparison_dict",
    "comparison_table",
    "evaluate_provider",
    "exact_match",
    "group_value",
    "parse_json_output",
    "percentile",
    "resolve_metrics",
    "run_errors",
    "score_output",
    "split_reference",
    "structural_similarity",
    "text_similarity",
    "tree_similarity",
    "valid_json",
]
