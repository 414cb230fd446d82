"""Together fine-tuning through the official ``together`` client (3.x), pointed at any base URL.

The client works against a loopback server as well as Together's own, so no REST is written
here: files pass Together's own file check (``together.lib.check_file``) after ours, then go up
through its upload flow (upload URL, PUT, preprocess); ``fine_tuning.create`` validates the
request against the model's limits (``/fine-tunes/models/limits``) before it is sent. A finished
job's output model is served by the ``together:`` provider; its LoRA adapter can be downloaded
(``/finetune/download``). Together's job has no error field: a failed job's reason is its last
error event.
"""

from __future__ import annotations

import hashlib
import tarfile
from pathlib import Path
from typing import Any

from tuneloop.config import TogetherTrainConfig
from tuneloop.errors import InputError, TrainingError
from tuneloop.store import JobStatus
from tuneloop.train.hosted.base import (
    RemoteCheckpoint,
    RemoteEvent,
    RemoteJob,
    SdkClient,
    UploadPlan,
    check_with_validator,
    one_line,
)

STATUSES = {
    "pending": JobStatus.QUEUED,
    "queued": JobStatus.QUEUED,
    "running": JobStatus.RUNNING,
    "compressing": JobStatus.RUNNING,
    "uploading": JobStatus.RUNNING,
    "cancel_requested": JobStatus.RUNNING,
    "completed": JobStatus.SUCCEEDED,
    "error": JobStatus.FAILED,
    "user_error": JobStatus.FAILED,
    "cancelled": JobStatus.CANCELLED,
}
ERROR_EVENTS = ("job_error", "billing_limit")


class TogetherBackend(SdkClient):
    """Together's fine-tuning API (see the module docstring)."""

    provider = "together"
    settings: TogetherTrainConfig

    def make_client(self, sdk: Any, key: str) -> Any:
        return sdk.Together(
            api_key=key,
            base_url=self.base_url.removesuffix("/v1"),  # its paths carry /v1
            max_retries=self.CLIENT_RETRIES,
            timeout=self.settings.request_timeout_s,
        )

    def _call(self, what: str, function: Any, *args: Any, **kwargs: Any) -> Any:
        import together

        try:
            return function(*args, **kwargs)
        except together.APIStatusError as exc:
            body = exc.body
            message = None
            if isinstance(body, dict):
                error = body.get("error", body)
                message = error.get("message") if isinstance(error, dict) else error
            raise TrainingError(
                f"together {what} failed ({exc.status_code}): {one_line(message or exc.message)}"
            ) from None
        except together.APIConnectionError as exc:
            raise TrainingError(
                f"together {what} failed: cannot reach {self.base_url} ({exc})"
            ) from None
        except together.TogetherError as exc:
            raise TrainingError(f"together {what} failed: {one_line(exc)}") from None

    # -- the protocol -----------------------------------------------------------------------

    def plan(self) -> UploadPlan:
        validation = self.settings.validation and self.settings.n_evals > 0
        if self.settings.training_method == "dpo":
            return UploadPlan("dpo", "dpo", preference=True, validation=validation)
        return UploadPlan("together", "together", preference=False, validation=validation)

    def check_file(self, path: Path) -> None:
        check_with_validator(path, self.plan().check_format)
        from together.lib import check_file

        report = check_file(path, purpose="fine-tune")
        if not report.get("is_check_passed"):
            raise InputError(
                f"cannot upload {path}: Together's file check failed: "
                f"{one_line(report.get('message') or 'no reason given')}"
            )

    def upload(self, path: Path) -> str:
        uploaded = self._call(
            f"upload of {path.name}",
            self.client().files.upload,
            path,
            purpose="fine-tune",
            check=False,  # check_file ran Together's check already, before anything was sent
        )
        return str(uploaded.id)

    def create(
        self, training_file: str, validation_file: str | None, *, train_examples: int
    ) -> tuple[RemoteJob, dict[str, Any]]:
        settings = self.settings
        request: dict[str, Any] = {
            "training_file": training_file,
            "n_epochs": settings.n_epochs,
            "n_checkpoints": settings.n_checkpoints,
            "n_evals": settings.n_evals if validation_file else 0,
            "batch_size": settings.batch_size if settings.batch_size is not None else "max",
            "learning_rate": settings.learning_rate,
            "warmup_ratio": settings.warmup_ratio,
            "lora": settings.lora,
            "training_method": settings.training_method,
        }
        if settings.from_checkpoint:
            request["from_checkpoint"] = settings.from_checkpoint
        else:
            request["model"] = settings.model
        if settings.lora:
            request.update(
                lora_r=settings.lora_r,
                lora_alpha=settings.lora_alpha,
                lora_dropout=settings.lora_dropout,
                lora_trainable_modules=settings.lora_trainable_modules,
            )
        if validation_file:
            request["validation_file"] = validation_file
        if settings.training_method == "sft":
            request["train_on_inputs"] = (
                settings.train_on_inputs if settings.train_on_inputs is not None else "auto"
            )
        elif settings.dpo_beta is not None:
            request["dpo_beta"] = settings.dpo_beta
        if settings.suffix:
            request["suffix"] = settings.suffix
        if settings.seed is not None:
            request["random_seed"] = settings.seed
        try:
            job = self._call("job creation", self.client().fine_tuning.create, **request)
        except ValueError as exc:  # the client's own check against the model's limits
            raise InputError(f"together job settings refused: {one_line(exc)}") from None
        return self._job(job), request

    def retrieve(self, remote_id: str) -> RemoteJob:
        return self._job(
            self._call(f"look-up of job {remote_id}", self.client().fine_tuning.retrieve, remote_id)
        )

    def _job(self, job: Any) -> RemoteJob:
        """A job object (the create response or a retrieve) in our terms."""
        status = _status_text(job.status)
        error = None
        if STATUSES.get(status) is JobStatus.FAILED:
            error = self._error_of(job.id) or f"together reports the job as {status}"
        details: dict[str, Any] = {}
        for key in ("token_count", "epochs_completed", "n_epochs", "total_price"):
            value = getattr(job, key, None)
            if value is not None:
                details[key] = value
        progress = getattr(job, "progress", None)
        if progress is not None and progress.estimate_available:
            details["seconds_remaining"] = progress.seconds_remaining
        return RemoteJob(
            id=job.id,
            provider_status=status,
            status=STATUSES.get(status, JobStatus.RUNNING),
            model_id=getattr(job, "x_model_output_name", None) or getattr(job, "output_name", None),
            error=error,
            details=details,
        )

    def _error_of(self, remote_id: str) -> str | None:
        events = self._call(
            f"events of job {remote_id}", self.client().fine_tuning.list_events, remote_id
        ).data
        for event in reversed(events):
            if event.type in ERROR_EVENTS or event.level in ("error", "legacy_ierror"):
                return one_line(event.message)
        return None

    def events(self, remote_id: str, known: frozenset[str]) -> list[RemoteEvent]:
        events = self._call(
            f"events of job {remote_id}", self.client().fine_tuning.list_events, remote_id
        ).data
        fresh = []
        for event in events:  # oldest first
            key = hashlib.sha256(
                f"{event.created_at}|{event.type}|{event.step}|{event.message}".encode()
            ).hexdigest()[:24]
            if key in known:
                continue
            metrics: dict[str, Any] = {}
            if event.step is not None:
                metrics["step"] = event.step
                if event.total_steps:
                    metrics["total_steps"] = event.total_steps
            fresh.append(
                RemoteEvent(
                    id=key,
                    message=event.message,
                    level=str(event.level or "info").removeprefix("legacy_"),
                    created_at=event.created_at,
                    metrics=metrics,
                )
            )
        return fresh

    def checkpoints(self, remote_id: str) -> list[RemoteCheckpoint]:
        listed = self._call(
            f"checkpoints of job {remote_id}",
            self.client().fine_tuning.list_checkpoints,
            remote_id,
        )
        return [
            RemoteCheckpoint(
                id=item.path, step=item.step, model=item.object_name or item.path, metrics={}
            )
            for item in listed.data
        ]

    def cancel(self, remote_id: str) -> RemoteJob:
        return self._job(
            self._call(f"cancel of job {remote_id}", self.client().fine_tuning.cancel, remote_id)
        )

    def download(self, job: RemoteJob, folder: Path) -> Path | None:
        """The LoRA adapter as Together packs it; a tar archive Python reads is unpacked."""
        if not (self.settings.download_adapter and self.settings.lora):
            return None
        response = self._call(
            f"adapter download of job {job.id}",
            self.client().fine_tuning.content,
            ft_id=job.id,
            checkpoint="adapter",
        )
        folder.mkdir(parents=True, exist_ok=True)
        archive = folder / _archive_name(response.headers.get("content-disposition", ""))
        response.write_to_file(archive)
        if tarfile.is_tarfile(archive):
            target = folder / "adapter"
            with tarfile.open(archive) as packed:
                packed.extractall(target, filter="data")
            archive.unlink()
            return target
        return archive  # e.g. .tar.zst, which this Python cannot unpack: kept as it came

    def serving(self) -> dict[str, str]:
        return {"base_url": self.base_url, "api_key_env": self.key_env}


def _status_text(status: Any) -> str:
    value = getattr(status, "value", status)
    return str(value) if value is not None else "unknown"


def _archive_name(disposition: str) -> str:
    """The file name a download announces, reduced to a safe base name."""
    for part in disposition.split(";"):
        key, _, value = part.strip().partition("=")
        if key.lower() == "filename" and value:
            name = Path(value.strip().strip('"')).name
            if name and not name.startswith("."):
                return name
    return "adapter.tar.zst"
