"""Evaluate: run any provider over a dataset split, score the outputs, compare the runs.

LLM judges, trait scoring and Elo comparisons plug in as more per-example scores next to
``metrics.score_output`` and more aggregates in ``runner.aggregate``.
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
from tuneloop.evaluate.plots import save_comparison_plot
from tuneloop.evaluate.report import comparison_dict, comparison_table
from tuneloop.evaluate.runner import aggregate, evaluate_provider, split_reference

__all__ = [
    "aggregate",
    "comparison_dict",
    "comparison_table",
    "evaluate_provider",
    "exact_match",
    "parse_json_output",
    "save_comparison_plot",
    "score_output",
    "split_reference",
    "structural_similarity",
    "text_similarity",
    "tree_similarity",
    "valid_json",
]
