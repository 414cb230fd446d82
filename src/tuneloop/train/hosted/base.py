"""What a hosted fine-tuning backend does, whatever its provider: the protocol and its values.

A backend is a thin adapter over one provider's official client. It knows the provider's
file format and checks, its job request, how to read a job's status, events and checkpoints,
and how to cancel; it never touches the store. ``tuneloop.train.jobs`` drives it (submit,
poll, register) and owns the job row.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from tuneloop.config import HostedSettings
from tuneloop.errors import TrainingError
from tuneloop.providers import KINDS
from tuneloop.store import JobStatus

MAX_MESSAGE_CHARS = 300


@dataclass(frozen=True)
class RemoteEvent:
    """One event of a provider's job log; ``id`` is stable across polls (dedup key)."""

    id: str
    message: str
    level: str = "info"
    created_at: str | None = None
    metrics: Mapping[str, Any] = field(default_factory=dict)  # step, loss… for metric events


@dataclass(frozen=True)
class RemoteCheckpoint:
    """A checkpoint the provider kept (usable as a model or to continue from)."""

    id: str
    step: int
    model: str | None = None
    metrics: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RemoteJob:
    """A provider's job as one poll saw it, in the provider's words and in ours."""

    id: str
    provider_status: str
    status: JobStatus
    model_id: str | None = None  # the fine-tuned model, once there is one
    error: str | None = None  # one line, for a failed job
    details: Mapping[str, Any] = field(default_factory=dict)  # tokens, epochs, ETA…


@dataclass(frozen=True)
class UploadPlan:
    """Which dataset export a backend uploads: the export format and the validate format."""

    export_format: str
    check_format: str
    preference: bool  # DPO pairs rather than chat examples
    validation: bool = True  # upload the eval split as the validation file (when it has any)


class HostedBackend(Protocol):
    """One provider's fine-tuning API (see the module docstring)."""

    provider: str

    def plan(self) -> UploadPlan: ...

    def check_file(self, path: Path) -> None:
        """Raise :class:`tuneloop.errors.InputError` naming the file and line of a problem."""

    def upload(self, path: Path) -> str:
        """Upload a training or validation file; return the provider's file id."""

    def create(
        self, training_file: str, validation_file: str | None, *, train_examples: int
    ) -> tuple[RemoteJob, dict[str, Any]]:
        """Start the job; return it and the request as sent (kept in the job's config)."""

    def retrieve(self, remote_id: str) -> RemoteJob: ...

    def events(self, remote_id: str, known: frozenset[str]) -> list[RemoteEvent]:
        """Events not in ``known``, oldest first."""

    def checkpoints(self, remote_id: str) -> list[RemoteCheckpoint]: ...

    def cancel(self, remote_id: str) -> RemoteJob: ...

    def download(self, job: RemoteJob, folder: Path) -> Path | None:
        """Fetch the trained weights into ``folder`` when the backend can and is asked to."""

    def serving(self) -> dict[str, str]:
        """What a provider needs to serve the model as trained here (base URL, key variable)."""


class SdkClient:
    """The provider's official client, made on first use: its package is optional (the
    ``providers`` extra) and a key is needed only once a job is really sent or read."""

    provider: str
    CLIENT_RETRIES = 2  # job management is not on a request path: the client retries itself

    def __init__(self, settings: HostedSettings) -> None:
        self.settings = settings
        self.base_url, self.key_env = resolve_endpoint(self.provider, settings)
        self._client: Any = None

    def client(self) -> Any:
        if self._client is None:
            try:
                sdk = importlib.import_module(self.provider)
            except ImportError:
                raise TrainingError(
                    f"the {self.provider} backend needs the {self.provider} package "
                    "(pip install 'tuneloop[providers]')"
                ) from None
            self._client = self.make_client(sdk, api_key(self.provider, self.key_env))
        return self._client

    def make_client(self, sdk: Any, key: str) -> Any:
        """The client object of the imported ``sdk`` module."""
        raise NotImplementedError


def one_line(text: object, limit: int = MAX_MESSAGE_CHARS) -> str:
    """A provider's message on one line, bounded (their messages can be pages long)."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def resolve_endpoint(kind: str, settings: HostedSettings) -> tuple[str, str]:
    """(base URL with /v1, key variable) from the section, the environment, then defaults."""
    defaults = KINDS[kind]
    base_url = (
        settings.base_url
        or (os.environ.get(defaults.base_url_env) if defaults.base_url_env else None)
        or defaults.base_url
        or ""
    )
    return base_url.rstrip("/"), settings.api_key_env or defaults.key_env or ""


def api_key(kind: str, variable: str) -> str:
    """The key from its environment variable; a missing one names the variable."""
    value = os.environ.get(variable, "")
    if not value:
        raise TrainingError(
            f"environment variable {variable} is not set (it holds the {kind} API key)"
        )
    return value


def check_with_validator(path: Path, fmt: str, model: str | None = None) -> int:
    """Run ``tuneloop dataset validate``'s checks on an upload file; return its example count.

    The first problem is the error (file, line, rule; never the example's text), with the
    count of the rest, so nothing invalid is uploaded and billed.
    """
    import re

    from tuneloop.curate import ValidateOptions, validate_path
    from tuneloop.errors import InputError

    options = ValidateOptions(fmt=fmt)
    if model:
        options.model = re.sub(r"-\d{4}-\d{2}-\d{2}$", "", model.removeprefix("ft:").split(":")[0])
    report = validate_path(path, options)
    errors = [finding for finding in report.findings if finding.severity == "error"]
    if errors:
        more = f" ({len(errors)} problems in all: `tuneloop dataset validate {path}`)"
        raise InputError(f"cannot upload {errors[0]}{more if len(errors) > 1 else ''}")
    if report.entries == 0:
        raise InputError(f"cannot upload {path}: it has no examples")
    return report.entries
