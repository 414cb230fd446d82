"""Synth stage: teacher-made examples from prompt templates, stored as synthetic interactions."""

from tuneloop.synth.generate import SynthReport, expand_templates, generate_examples

__all__ = ["SynthReport", "expand_templates", "generate_examples"]
