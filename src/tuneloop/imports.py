"""Importing a user's ``module:attribute`` (reward functions, validators, callable providers)."""

from __future__ import annotations

import importlib
from typing import Any

from tuneloop.errors import InputError, TuneloopError


def import_object(spec: str, *, error: type[TuneloopError] = InputError) -> Any:
    """Import ``module:attribute``; failures raise ``error`` with a message naming the part
    that is missing."""
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise error(f"{spec!r} is not of the form module:function")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise error(f"cannot import module {module_name!r} of {spec!r}: {exc}") from exc
    try:
        return getattr(module, attribute)
    except AttributeError:
        raise error(f"module {module_name!r} has no attribute {attribute!r}") from None
