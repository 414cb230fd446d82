"""tuneloop: turn an LLM app's traffic and feedback into a smaller model of your own."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tuneloop.capture.client import Tuneloop
    from tuneloop.config import Config

__version__ = "0.1.0"
__all__ = ["Tuneloop", "__version__", "connect"]


def connect(config: Config | str | Path | None = None) -> Tuneloop:
    """A capture client: ``tl = tuneloop.connect(); tl.log(messages, response)``.

    Imported on call, so ``import tuneloop`` stays light (no SQLAlchemy until it is needed).
    """
    from tuneloop.capture.client import connect as _connect

    return _connect(config)


def __getattr__(name: str) -> Any:
    if name == "Tuneloop":
        from tuneloop.capture.client import Tuneloop

        return Tuneloop
    raise AttributeError(f"module 'tuneloop' has no attribute {name!r}")
