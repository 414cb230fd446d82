"""Files shipped in the package: the tiny base model of our own making."""

from __future__ import annotations

from pathlib import Path

from tuneloop.config import BUILTIN_BASE_MODEL

ASSETS_DIR = Path(__file__).parent
BUILTIN_MODELS = {BUILTIN_BASE_MODEL: ASSETS_DIR / "base_model"}


def resolve_model_path(spec: str) -> str:
    """Map ``builtin:tiny`` to the shipped folder; any other value is a path or a hub id."""
    if spec in BUILTIN_MODELS:
        return str(BUILTIN_MODELS[spec])
    return spec
