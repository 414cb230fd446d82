"""Fake fine-tuning APIs of OpenAI and Together, on the fake LLM server's loopback port.

They follow the documented wire formats closely enough for the official clients:

- OpenAI (``/openai/v1``): ``POST /files`` (multipart, purpose ``fine-tune``), ``GET
  /files/{id}``, ``POST /fine_tuning/jobs``, ``GET /fine_tuning/jobs/{id}``, ``GET
  .../events`` (newest first, ``after``/``limit`` cursor), ``GET .../checkpoints``, ``POST
  .../cancel``; errors as ``{"error": {"message", "type", "param", "code"}}``.
- Together (``/together/v1``): ``POST /files`` answers 302 with ``Location`` (a PUT target on
  this server) and ``X-Together-File-Id``, then ``POST /files/{id}/preprocess``;
  ``GET /fine-tunes/models/limits``, ``POST /fine-tunes/estimate-price``, ``POST /fine-tunes``,
  ``GET /fine-tunes/{id}``, ``.../events``, ``.../checkpoints``, ``POST .../cancel``,
  ``GET /finetune/download`` (a tar.gz adapter).

Every ``GET`` of a job moves it one step along its script (``FakeFineTuning.script``), adding
the events and checkpoints a real job would, so a test sees queued → running → succeeded (or
``fail_with`` a message, or cancelled) by polling.
"""

from __future__ import annotations

import io
import json
import tarfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.parser import BytesParser
from email.policy import HTTP
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

OPENAI_SCRIPT = ("validating_files", "queued", "running", "running", "succeeded")
TOGETHER_SCRIPT = ("pending", "queued", "running", "running", "completed")
TOTAL_STEPS = 4
TOGETHER_LIMITS = {
    "model_name": "meta-llama/Meta-Llama-3.1-8B-Instruct-Reference",
    "default_gradient_accumulation_steps": 1,
    "lora_training": {
        "default_rank": 64,
        "max_batch_size": 32,
        "max_batch_size_dpo": 16,
        "max_rank": 64,
        "min_batch_size": 8,
        "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj"],
    },
    "full_training": {"max_batch_size": 16, "max_batch_size_dpo": 8, "min_batch_size": 8},
    "max_learning_rate": 1.0,
    "min_learning_rate": 1e-8,
    "max_num_checkpoints": 10,
    "max_num_epochs": 20,
    "max_num_evals": 10,
    "max_seq_length_sft": 8192,
    "max_seq_length_dpo": 4096,
    "min_max_seq_length": 512,
    "merge_output_lora": True,
    "supports_full_training": True,
    "supports_reasoning": False,
    "supports_tools": True,
    "supports_vision": False,
}


@dataclass
class FakeJob:
    id: str
    request: dict[str, Any]
    script: tuple[str, ...]
    fail_with: str | None
    created_at: int = field(default_factory=lambda: int(time.time()))
    position: int = 0
    cancelled: bool = False
    events: list[dict[str, Any]] = field(default_factory=list)
    checkpoints: list[dict[str, Any]] = field(default_factory=list)
    model: str | None = None
    error: dict[str, Any] | None = None
    polls: int = 0
    cancelled_at_poll: int = 0  # Together: cancel_requested until the next poll

    @property
    def status(self) -> str:
        return self.script[min(self.position, len(self.script) - 1)]


class FakeFineTuning:
    """Files and jobs of one fake provider, and what the next job does (``script``)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        self.files: dict[str, dict[str, Any]] = {}
        self.jobs: dict[str, FakeJob] = {}
        self.script: tuple[str, ...] = OPENAI_SCRIPT if self.kind == "openai" else TOGETHER_SCRIPT
        self.fail_with: str | None = None  # the next jobs fail at the end with this message
        self.calls: list[tuple[str, str]] = []  # (method, path) of every fine-tuning request
        self._counter = 0

    def next_id(self, prefix: str) -> str:
        self._counter += 1
        return f"{prefix}{self._counter:06d}"

    def calls_to(self, method: str, fragment: str) -> int:
        return sum(1 for m, path in self.calls if m == method and fragment in path)

    @contextmanager
    def job_call(
        self, request: Request, job_id: str, missing: Callable[[str], Response]
    ) -> Iterator[FakeJob | Response]:
        """Record a request about one job and hold the lock while it is handled; the job, or
        the provider's 404 when there is none."""
        self.calls.append((request.method, request.url.path))
        with self.lock:
            job = self.jobs.get(job_id)
            yield job if job is not None else missing(job_id)


# -- shared helpers -----------------------------------------------------------------------------


def _multipart(request: Request, body: bytes) -> dict[str, tuple[str | None, bytes]]:
    """Form fields of a multipart body: name → (file name, bytes)."""
    content_type = request.headers.get("content-type", "")
    message = BytesParser(policy=HTTP).parsebytes(
        f"Content-Type: {content_type}\r\n\r\n".encode() + body
    )
    fields: dict[str, tuple[str | None, bytes]] = {}
    if not message.is_multipart():
        return fields
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True)
        if isinstance(name, str):
            fields[name] = (part.get_filename(), payload if isinstance(payload, bytes) else b"")
    return fields


def _jsonl_ok(content: bytes) -> bool:
    try:
        lines = [json.loads(line) for line in content.decode("utf-8").splitlines() if line.strip()]
    except (UnicodeDecodeError, json.JSONDecodeError):
        return False
    return bool(lines) and all(
        isinstance(line, dict) and ("messages" in line or "input" in line) for line in lines
    )


def _advance(job: FakeJob, kind: str) -> None:
    """One poll: the job moves one step along its script and logs what happened."""
    job.polls += 1
    if job.cancelled or job.status in ("succeeded", "failed", "cancelled", "completed", "error"):
        return
    job.position += 1
    status = job.status
    last = job.position >= len(job.script) - 1
    if last and job.fail_with is not None:
        job.script = (*job.script[: job.position], "failed" if kind == "openai" else "error")
        job.error = {"code": "training_failed", "message": job.fail_with, "param": None}
        _log(job, kind, job.fail_with, level="error", type_="job_error")
        return
    if status == "running":
        step = sum(1 for event in job.events if event.get("step") is not None) + 1
        _log(job, kind, f"Step {step}/{TOTAL_STEPS}: training loss={2.0 / step:.3f}", step=step)
    elif status in ("succeeded", "completed"):
        suffix = job.request.get("suffix") or "tuneloop"
        if kind == "openai":
            job.model = f"ft:{job.request['model']}:fake-org:{suffix}:{job.id[-6:]}"
        else:
            job.model = (
                f"fake-org/{job.request.get('model', 'ckpt').split('/')[-1]}-{suffix}-{job.id[-6:]}"
            )
        job.checkpoints.append(
            {
                "step": TOTAL_STEPS,
                "model": job.model,
                "metrics": {"step": TOTAL_STEPS, "train_loss": 0.5, "valid_loss": 0.6},
            }
        )
        _log(job, kind, f"New fine-tuned model created: {job.model}")
        _log(job, kind, "The job has successfully completed", type_="job_complete")
    else:
        _log(job, kind, f"Job is {status}", type_="job_pending")


def _log(
    job: FakeJob,
    kind: str,
    message: str,
    *,
    level: str = "info",
    step: int | None = None,
    type_: str = "message",
) -> None:
    job.events.append(
        {
            "id": f"ftevent-{job.id[-6:]}-{len(job.events) + 1:03d}",
            "created_at": int(time.time()),
            "message": message,
            "level": level,
            "step": step,
            "type": type_,
        }
    )


# -- OpenAI ------------------------------------------------------------------------------------


def _openai_error(status: int, message: str, param: str | None = None) -> JSONResponse:
    kind = {400: "invalid_request_error", 404: "invalid_request_error"}.get(status, "server_error")
    code = {404: "not_found"}.get(status)
    return JSONResponse(
        {"error": {"message": message, "type": kind, "param": param, "code": code}},
        status_code=status,
    )


def _openai_file(file_id: str, record: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": file_id,
        "object": "file",
        "bytes": len(record["content"]),
        "created_at": record["created_at"],
        "filename": record["filename"],
        "purpose": record["purpose"],
        "status": "processed",
    }


def _openai_job(job: FakeJob) -> dict[str, Any]:
    method = job.request.get("method") or {"type": "supervised"}
    hyper = (method.get(method["type"]) or {}).get("hyperparameters") or {}
    status = "cancelled" if job.cancelled else job.status
    done = status in ("succeeded", "failed", "cancelled")
    return {
        "id": job.id,
        "object": "fine_tuning.job",
        "created_at": job.created_at,
        "finished_at": int(time.time()) if done else None,
        "model": job.request["model"],
        "fine_tuned_model": job.model if status == "succeeded" else None,
        "organization_id": "org-fake",
        "status": status,
        "hyperparameters": {
            "n_epochs": hyper.get("n_epochs", 3),
            "batch_size": hyper.get("batch_size", 1),
            "learning_rate_multiplier": hyper.get("learning_rate_multiplier", 1.8),
        },
        "training_file": job.request["training_file"],
        "validation_file": job.request.get("validation_file"),
        "result_files": ["file-result"] if status == "succeeded" else [],
        "trained_tokens": 1234 if status == "succeeded" else None,
        "error": job.error,
        "seed": job.request.get("seed", 42),
        "estimated_finish": None,
        "method": method,
        "metadata": None,
    }


def _openai_event(job: FakeJob, event: dict[str, Any]) -> dict[str, Any]:
    data = None
    kind = "message"
    if event["step"] is not None:
        kind = "metrics"
        data = {
            "step": event["step"],
            "total_steps": TOTAL_STEPS,
            "train_loss": round(2.0 / event["step"], 3),
            "train_mean_token_accuracy": 0.5,
        }
    return {
        "id": event["id"],
        "object": "fine_tuning.job.event",
        "created_at": event["created_at"],
        "level": "warn" if event["level"] == "warning" else event["level"],
        "message": event["message"],
        "data": data,
        "type": kind,
    }


def add_openai_routes(app: FastAPI, prefix: str, state: FakeFineTuning) -> None:
    base = f"{prefix}/v1"

    @app.post(f"{base}/files")
    async def upload(request: Request) -> Response:
        state.calls.append(("POST", request.url.path))
        fields = _multipart(request, await request.body())
        purpose = fields.get("purpose", (None, b""))[1].decode()
        name, content = fields.get("file", (None, b""))
        if purpose != "fine-tune":
            return _openai_error(400, f"'{purpose}' is not one of the purposes", "purpose")
        if not _jsonl_ok(content):
            return _openai_error(
                400, "Invalid file format for Fine-Tuning API. Must be .jsonl", "file"
            )
        with state.lock:
            file_id = state.next_id("file-")
            state.files[file_id] = {
                "content": content,
                "filename": name or "upload.jsonl",
                "purpose": purpose,
                "created_at": int(time.time()),
            }
            return JSONResponse(_openai_file(file_id, state.files[file_id]))

    @app.get(f"{base}/files/{{file_id}}")
    async def file(file_id: str) -> Response:
        record = state.files.get(file_id)
        if record is None:
            return _openai_error(404, f"No such File object: {file_id}", "id")
        return JSONResponse(_openai_file(file_id, record))

    @app.post(f"{base}/fine_tuning/jobs")
    async def create(request: Request) -> Response:
        state.calls.append(("POST", request.url.path))
        body = await request.json()
        if body.get("training_file") not in state.files:
            return _openai_error(
                400, f"invalid training_file: {body.get('training_file')}", "training_file"
            )
        validation = body.get("validation_file")
        if validation and validation not in state.files:
            return _openai_error(400, f"invalid validation_file: {validation}", "validation_file")
        if not str(body.get("model", "")).startswith(("gpt-", "ft:")):
            return _openai_error(
                400,
                f"Model {body.get('model')} is not available for fine-tuning or does not exist.",
                "model",
            )
        with state.lock:
            job = FakeJob(state.next_id("ftjob-"), body, state.script, state.fail_with)
            _log(job, "openai", f"Validating training file: {body['training_file']}")
            state.jobs[job.id] = job
            return JSONResponse(_openai_job(job))

    def missing(job_id: str) -> Response:
        return _openai_error(404, f"Could not find fine-tune: {job_id}", "fine_tune_id")

    @app.get(f"{base}/fine_tuning/jobs/{{job_id}}")
    async def retrieve(job_id: str, request: Request) -> Response:
        with state.job_call(request, job_id, missing) as job:
            if isinstance(job, Response):
                return job
            _advance(job, "openai")
            return JSONResponse(_openai_job(job))

    @app.get(f"{base}/fine_tuning/jobs/{{job_id}}/events")
    async def events(job_id: str, request: Request) -> Response:
        with state.job_call(request, job_id, missing) as job:
            if isinstance(job, Response):
                return job
            newest_first = [_openai_event(job, event) for event in reversed(job.events)]
        after = request.query_params.get("after")
        limit = int(request.query_params.get("limit", 20))
        if after is not None:
            ids = [event["id"] for event in newest_first]
            newest_first = newest_first[ids.index(after) + 1 :] if after in ids else []
        page = newest_first[:limit]
        return JSONResponse({"object": "list", "data": page, "has_more": len(newest_first) > limit})

    @app.get(f"{base}/fine_tuning/jobs/{{job_id}}/checkpoints")
    async def checkpoints(job_id: str, request: Request) -> Response:
        with state.job_call(request, job_id, missing) as job:
            if isinstance(job, Response):
                return job
            data = [
                {
                    "id": f"ftckpt-{job.id[-6:]}-{c['step']}",
                    "object": "fine_tuning.job.checkpoint",
                    "created_at": job.created_at,
                    "fine_tuned_model_checkpoint": f"{c['model']}:ckpt-step-{c['step']}",
                    "fine_tuning_job_id": job.id,
                    "metrics": c["metrics"],
                    "step_number": c["step"],
                }
                for c in job.checkpoints
            ]
        return JSONResponse({"object": "list", "data": data, "has_more": False})

    @app.post(f"{base}/fine_tuning/jobs/{{job_id}}/cancel")
    async def cancel(job_id: str, request: Request) -> Response:
        with state.job_call(request, job_id, missing) as job:
            if isinstance(job, Response):
                return job
            if job.status in ("succeeded", "failed", "cancelled"):
                return _openai_error(400, f"Job {job_id} has already {job.status}.", None)
            job.cancelled = True
            _log(job, "openai", "Fine-tuning job cancelled")
            return JSONResponse(_openai_job(job))


# -- Together ------------------------------------------------------------------------------------


def _together_error(status: int, message: str) -> JSONResponse:
    return JSONResponse(
        {"error": {"message": message, "type": "invalid_request_error", "code": None}},
        status_code=status,
    )


def _together_file(file_id: str, record: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": file_id,
        "object": "file",
        "bytes": len(record["content"]),
        "created_at": record["created_at"],
        "filename": record["filename"],
        "FileType": "jsonl",
        "purpose": "fine-tune",
        "processing_status": "COMPLETED" if record["content"] else "PENDING",
    }


def _together_job(job: FakeJob) -> dict[str, Any]:
    status = job.status
    if job.cancelled:
        status = "cancelled" if job.polls > job.cancelled_at_poll else "cancel_requested"
    request = job.request
    lora = request.get("training_type") or {}
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return {
        "id": job.id,
        "object": "finetune",
        "status": status,
        "user_id": "user-fake",
        "created_at": now,
        "updated_at": now,
        "model": request.get("model"),
        "model_output_name": job.model if status == "completed" else None,
        "adapter_output_name": f"{job.model}-adapter"
        if job.model and status == "completed"
        else None,
        "training_file": request.get("training_file"),
        "validation_file": request.get("validation_file"),
        "n_epochs": request.get("n_epochs"),
        "n_checkpoints": request.get("n_checkpoints"),
        "n_evals": request.get("n_evals"),
        "batch_size": request.get("batch_size"),
        "learning_rate": request.get("learning_rate"),
        "training_type": lora or None,
        "training_method": request.get("training_method"),
        "from_checkpoint": request.get("from_checkpoint"),
        "suffix": request.get("suffix"),
        "token_count": 4321 if status == "completed" else None,
        "epochs_completed": request.get("n_epochs") if status == "completed" else 0,
        "events": [],
    }


def _together_event(event: dict[str, Any]) -> dict[str, Any]:
    kinds = {"message": "training_start", "metrics": "checkpoint_save"}
    return {
        "object": "fine-tune-event",
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(event["created_at"])),
        "message": event["message"],
        "type": kinds.get(event["type"], event["type"])
        if event["step"] is None
        else "epoch_complete",
        "level": "error" if event["level"] == "error" else "info",
        "step": event["step"],
        "total_steps": TOTAL_STEPS if event["step"] is not None else None,
    }


def _adapter_archive() -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, content in (
            ("adapter_config.json", b'{"r": 8, "lora_alpha": 16}'),
            ("adapter_model.safetensors", b"fake weights"),
        ):
            info = tarfile.TarInfo(name)
            info.size = len(content)
            archive.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


def add_together_routes(app: FastAPI, prefix: str, state: FakeFineTuning) -> None:
    base = f"{prefix}/v1"

    @app.post(f"{base}/files")
    async def start_upload(request: Request) -> Response:
        state.calls.append(("POST", request.url.path))
        fields = _multipart(request, await request.body())
        purpose = fields.get("purpose", (None, b"fine-tune"))[1].decode()
        if purpose != "fine-tune":
            return _together_error(400, f"unknown purpose {purpose}")
        with state.lock:
            file_id = state.next_id("file-")
            state.files[file_id] = {
                "content": b"",
                "filename": fields.get("file_name", (None, b"upload.jsonl"))[1].decode(),
                "created_at": int(time.time()),
            }
        root = str(request.base_url).rstrip("/")
        return Response(
            status_code=302,
            headers={
                "Location": f"{root}{prefix}/_storage/{file_id}",
                "X-Together-File-Id": file_id,
            },
        )

    @app.put(f"{prefix}/_storage/{{file_id}}")
    async def store_upload(file_id: str, request: Request) -> Response:
        state.calls.append(("PUT", request.url.path))
        content = await request.body()
        with state.lock:
            if file_id not in state.files:
                return Response(status_code=404)
            state.files[file_id]["content"] = content
        return Response(status_code=200)

    @app.post(f"{base}/files/{{file_id}}/preprocess")
    async def preprocess(file_id: str, request: Request) -> Response:
        state.calls.append(("POST", request.url.path))
        record = state.files.get(file_id)
        if record is None:
            return _together_error(404, f"file {file_id} not found")
        if not _jsonl_ok(record["content"]):
            return _together_error(400, "Invalid file: could not parse the JSONL lines")
        return JSONResponse(_together_file(file_id, record))

    @app.get(f"{base}/files/{{file_id}}")
    async def file(file_id: str) -> Response:
        record = state.files.get(file_id)
        if record is None:
            return _together_error(404, f"file {file_id} not found")
        return JSONResponse(_together_file(file_id, record))

    @app.get(f"{base}/fine-tunes/models/limits")
    async def limits(request: Request) -> Response:
        name = request.query_params.get("model_name", "")
        if not name.startswith(("meta-llama/", "fake-org/", "ft-")):
            return _together_error(404, f"model {name} is not available for fine-tuning")
        return JSONResponse({**TOGETHER_LIMITS, "model_name": name})

    @app.post(f"{base}/fine-tunes/estimate-price")
    async def estimate(request: Request) -> Response:
        return JSONResponse(
            {
                "estimation_available": True,
                "allowed_to_proceed": True,
                "estimated_total_price": 1.5,
                "estimated_train_token_count": 1000,
                "estimated_eval_token_count": 0,
                "user_limit": 100.0,
            }
        )

    @app.post(f"{base}/fine-tunes")
    async def create(request: Request) -> Response:
        state.calls.append(("POST", request.url.path))
        body = await request.json()
        if body.get("training_file") not in state.files:
            return _together_error(400, f"training file {body.get('training_file')} not found")
        validation = body.get("validation_file")
        if validation and validation not in state.files:
            return _together_error(400, f"validation file {validation} not found")
        if int(body.get("n_epochs", 1)) > TOGETHER_LIMITS["max_num_epochs"]:
            return _together_error(400, "n_epochs is above the model's maximum of 20")
        with state.lock:
            job = FakeJob(state.next_id("ft-"), body, state.script, state.fail_with)
            _log(job, "together", "Fine tune request created", type_="job_pending")
            state.jobs[job.id] = job
            return JSONResponse(_together_job(job))

    def missing(job_id: str) -> Response:
        return _together_error(404, f"fine-tune job {job_id} not found")

    @app.get(f"{base}/fine-tunes/{{job_id}}")
    async def retrieve(job_id: str, request: Request) -> Response:
        with state.job_call(request, job_id, missing) as job:
            if isinstance(job, Response):
                return job
            _advance(job, "together")
            return JSONResponse(_together_job(job))

    @app.get(f"{base}/fine-tunes/{{job_id}}/events")
    async def events(job_id: str, request: Request) -> Response:
        with state.job_call(request, job_id, missing) as job:
            if isinstance(job, Response):
                return job
            return JSONResponse({"data": [_together_event(event) for event in job.events]})

    @app.get(f"{base}/fine-tunes/{{job_id}}/checkpoints")
    async def checkpoints(job_id: str, request: Request) -> Response:
        with state.job_call(request, job_id, missing) as job:
            if isinstance(job, Response):
                return job
            now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            data = [
                {
                    "checkpoint_type": "Final",
                    "created_at": now,
                    "path": f"{job.id}:{c['step']}",
                    "step": c["step"],
                    "checkpoint": "adapter",
                    "object_name": c["model"],
                }
                for c in job.checkpoints
            ]
        return JSONResponse({"data": data})

    @app.post(f"{base}/fine-tunes/{{job_id}}/cancel")
    async def cancel(job_id: str, request: Request) -> Response:
        with state.job_call(request, job_id, missing) as job:
            if isinstance(job, Response):
                return job
            if job.status in ("completed", "error", "cancelled"):
                return _together_error(400, f"job {job_id} already ended ({job.status})")
            job.cancelled = True
            job.cancelled_at_poll = job.polls
            _log(job, "together", "Cancel requested", type_="cancel_requested")
            return JSONResponse(_together_job(job))

    @app.get(f"{base}/finetune/download")
    async def download(request: Request) -> Response:
        state.calls.append(("GET", request.url.path))
        job = state.jobs.get(request.query_params.get("ft_id", ""))
        if job is None or job.status != "completed":
            return _together_error(404, "no finished job to download")
        return Response(
            _adapter_archive(),
            media_type="application/octet-stream",
            headers={"content-disposition": 'attachment; filename="adapter.tar.gz"'},
        )
