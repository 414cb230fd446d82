"""Errors a user can cause, each with a message that names what and where."""

from __future__ import annotations


class TuneloopError(Exception):
    """Base of every error reported to a user; the CLI prints these without a traceback."""


class ConfigError(TuneloopError):
    """The configuration file or an environment override is invalid."""


class StoreError(TuneloopError):
    """The store cannot be opened, migrated or written."""


class InputError(TuneloopError):
    """A file or value given by the user cannot be used (bad JSONL line, unknown id, ...)."""


class ProviderError(TuneloopError):
    """A model provider failed to answer (unreachable, bad credentials, bad spec)."""


class TrainingError(TuneloopError):
    """A training job cannot start or failed."""


class Interrupted(BaseException):
    """The process was asked to stop (SIGTERM, SIGINT) or its job was cancelled.

    A BaseException, like Ctrl-C's KeyboardInterrupt, so no ``except Exception`` in a training
    loop or a provider swallows it; the CLI prints its message on one line and exits with
    128 + the signal number (1 for a cancel request).
    """

    def __init__(self, message: str, *, signal_number: int | None = None) -> None:
        super().__init__(message)
        self.signal_number = signal_number
