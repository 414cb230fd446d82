"""Synth stage: teacher-made examples, from simple templates or multi-step TOML pipelines.

``generate_examples`` asks one provider per template prompt. ``synthesize`` runs a pipeline file
(steps feeding each other, fallback chains, bounded concurrency, rate limits, an answer cache
so no call is paid twice) and writes synthetic interactions plus the run's three files.
"""

from tuneloop.synth.api import cache_path, run_statuses, synthesize, vary_and_store
from tuneloop.synth.generate import SynthReport, expand_templates, generate_examples
from tuneloop.synth.pipeline import Pipeline, Step, load_pipeline
from tuneloop.synth.runner import RunResult, run_pipeline
from tuneloop.synth.vary import (
    VARIATION_PROMPT,
    Variation,
    VariationReport,
    load_examples,
    vary_prompts,
)

__all__ = [
    "VARIATION_PROMPT",
    "Pipeline",
    "RunResult",
    "Step",
    "SynthReport",
    "Variation",
    "VariationReport",
    "cache_path",
    "expand_templates",
    "generate_examples",
    "load_examples",
    "load_pipeline",
    "run_pipeline",
    "run_statuses",
    "synthesize",
    "vary_and_store",
    "vary_prompts",
]
