"""OpenAI fine-tuning through the official ``openai`` client, pointed at any ``base_url``.

Files go up with purpose ``fine-tune``; a job is created with ``method`` supervised or dpo and
its hyperparameters (left out = ``auto``, OpenAI's choice); events come newest first, so a poll
pages back only to the first event it already knows. The result is a model id ``ft:...`` that
the ``openai:`` provider serves. The client retries transient failures itself (twice): job
management is not on a request path, so no shared deadline applies.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tuneloop.config import OpenAITrainConfig
from tuneloop.curate import openai_default_epochs
from tuneloop.errors import TrainingError
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

# OpenAI's job statuses in ours; its own word is kept beside.
STATUSES = {
    "validating_files": JobStatus.QUEUED,
    "queued": JobStatus.QUEUED,
    "running": JobStatus.RUNNING,
    "paused": JobStatus.RUNNING,
    "succeeded": JobStatus.SUCCEEDED,
    "failed": JobStatus.FAILED,
    "cancelled": JobStatus.CANCELLED,
}
EVENT_PAGE = 100


class OpenAIBackend(SdkClient):
    """OpenAI's fine-tuning API (see the module docstring)."""

    provider = "openai"
    settings: OpenAITrainConfig

    def make_client(self, sdk: Any, key: str) -> Any:
        return sdk.OpenAI(
            api_key=key,
            base_url=self.base_url,
            max_retries=self.CLIENT_RETRIES,
            timeout=self.settings.request_timeout_s,
        )

    def _failed(self, what: str, exc: Exception) -> TrainingError:
        """An SDK error as one line: what we tried, the HTTP status, the provider's words."""
        import openai

        if isinstance(exc, openai.APIStatusError):
            body = exc.body if isinstance(exc.body, dict) else {}
            error = body.get("error", body) if isinstance(body, dict) else {}
            message = error.get("message") if isinstance(error, dict) else None
            return TrainingError(
                f"openai {what} failed ({exc.status_code}): {one_line(message or exc.message)}"
            )
        if isinstance(exc, openai.APIConnectionError):
            return TrainingError(f"openai {what} failed: cannot reach {self.base_url} ({exc})")
        return TrainingError(f"openai {what} failed: {one_line(exc)}")

    def _call(self, what: str, function: Any, *args: Any, **kwargs: Any) -> Any:
        import openai

        try:
            return function(*args, **kwargs)
        except openai.OpenAIError as exc:
            raise self._failed(what, exc) from None

    # -- the protocol -----------------------------------------------------------------------

    def plan(self) -> UploadPlan:
        if self.settings.method == "dpo":
            return UploadPlan("dpo", "dpo", preference=True)
        return UploadPlan("openai", "openai", preference=False)

    def check_file(self, path: Path) -> None:
        check_with_validator(path, self.plan().check_format, self.settings.model)

    def upload(self, path: Path) -> str:
        with path.open("rb") as handle:
            uploaded = self._call(
                f"upload of {path.name}",
                self.client().files.create,
                file=(path.name, handle),
                purpose="fine-tune",
            )
        return str(uploaded.id)

    def create(
        self, training_file: str, validation_file: str | None, *, train_examples: int
    ) -> tuple[RemoteJob, dict[str, Any]]:
        settings = self.settings
        hyper: dict[str, Any] = {
            key: value
            for key, value in (
                ("n_epochs", settings.n_epochs),
                ("batch_size", settings.batch_size),
                ("learning_rate_multiplier", settings.learning_rate_multiplier),
            )
            if value is not None
        }
        if settings.method == "dpo" and settings.beta is not None:
            hyper["beta"] = settings.beta
        method: dict[str, Any] = {"type": settings.method}
        if hyper:
            method[settings.method] = {"hyperparameters": hyper}
        request: dict[str, Any] = {
            "model": settings.model,
            "training_file": training_file,
            "method": method,
        }
        if validation_file:
            request["validation_file"] = validation_file
        if settings.suffix:
            request["suffix"] = settings.suffix
        if settings.seed is not None:
            request["seed"] = settings.seed
        job = self._call("job creation", self.client().fine_tuning.jobs.create, **request)
        sent = dict(request)
        if settings.n_epochs is None:
            # "auto": OpenAI applies its rule on the examples it counts; ours is the estimate
            sent["estimated_n_epochs"] = openai_default_epochs(train_examples)
        return self._job(job), sent

    def retrieve(self, remote_id: str) -> RemoteJob:
        return self._job(
            self._call(
                f"look-up of job {remote_id}", self.client().fine_tuning.jobs.retrieve, remote_id
            )
        )

    def events(self, remote_id: str, known: frozenset[str]) -> list[RemoteEvent]:
        fresh: list[RemoteEvent] = []
        page = self._call(
            f"events of job {remote_id}",
            self.client().fine_tuning.jobs.list_events,
            remote_id,
            limit=EVENT_PAGE,
        )
        while True:
            for event in page.data:
                if event.id in known:
                    return list(reversed(fresh))
                metrics = (
                    event.data if event.type == "metrics" and isinstance(event.data, dict) else {}
                )
                fresh.append(
                    RemoteEvent(
                        id=event.id,
                        message=event.message,
                        level=event.level,
                        created_at=_iso(event.created_at),
                        metrics=metrics,
                    )
                )
            if not page.has_next_page():
                return list(reversed(fresh))
            page = self._call(f"events of job {remote_id}", page.get_next_page)

    def checkpoints(self, remote_id: str) -> list[RemoteCheckpoint]:
        page = self._call(
            f"checkpoints of job {remote_id}",
            self.client().fine_tuning.jobs.checkpoints.list,
            remote_id,
        )
        return [
            RemoteCheckpoint(
                id=item.id,
                step=item.step_number,
                model=item.fine_tuned_model_checkpoint,
                metrics=item.metrics.model_dump(exclude_none=True),
            )
            for item in page.data
        ]

    def cancel(self, remote_id: str) -> RemoteJob:
        return self._job(
            self._call(
                f"cancel of job {remote_id}", self.client().fine_tuning.jobs.cancel, remote_id
            )
        )

    def download(self, job: RemoteJob, folder: Path) -> Path | None:
        return None  # OpenAI keeps the weights; the model is served by its id

    def serving(self) -> dict[str, str]:
        return {"base_url": self.base_url, "api_key_env": self.key_env}

    # -- reading OpenAI's objects ---------------------------------------------------------

    def _job(self, job: Any) -> RemoteJob:
        error = None
        if job.error is not None and (job.error.message or job.error.code):
            code = f" [{job.error.code}]" if job.error.code else ""
            error = one_line(f"{job.error.message or 'failed'}{code}")
        details: dict[str, Any] = {}
        if job.trained_tokens is not None:
            details["trained_tokens"] = job.trained_tokens
        if job.estimated_finish:
            details["estimated_finish"] = _iso(job.estimated_finish)
        epochs = getattr(job.hyperparameters, "n_epochs", None)
        if epochs is not None:
            details["n_epochs"] = epochs
        if job.result_files:
            details["result_files"] = list(job.result_files)
        return RemoteJob(
            id=job.id,
            provider_status=job.status,
            status=STATUSES.get(job.status, JobStatus.RUNNING),
            model_id=job.fine_tuned_model,
            error=error,
            details=details,
        )


def _iso(seconds: int | float | None) -> str | None:
    if seconds is None:
        return None
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="seconds")
