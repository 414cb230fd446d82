"""Local models shared by many routes: one base in memory, each version's LoRA adapter beside the
others, and concurrent requests answered together in one ``generate`` call.

A gateway serving v3 in production, v4 as canary and v5 in shadow over one base would otherwise
hold three merged copies and answer one request at a time on each. Here every request for any
of them joins its base's queue; one worker thread per base takes what is waiting (up to
``max_batch``, after waiting at most ``max_wait_ms`` for company) and answers it in one
left-padded ``generate`` call, each row through its own adapter (PEFT's ``adapter_names``).
Only requests with the same sampling settings share a batch; a batch decodes until its longest
request is done and each answer is cut at its own ``max_tokens``. A streamed request runs alone,
in the same worker, so nothing else touches the model while it does.

Adapters that train whole modules (``modules_to_save``) cannot be switched per row; they get a
base of their own with the adapter merged in. Async callers wait on the job's future without
holding a thread, and a request that gives up (its deadline passed) before its batch starts is
skipped.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tuneloop.providers.base import (
    BaseProvider,
    Completion,
    Message,
    RequestOptions,
    StreamChunk,
)
from tuneloop.providers.decode import LeanDecoder
from tuneloop.providers.errors import ProviderError, ProviderTimeout
from tuneloop.providers.local import (
    chat_inputs,
    generate_batch,
    generate_into,
    read_stream,
    token_streamer,
)

BASE_ROW = "__base__"  # PEFT's name for "no adapter" in a mixed batch


@dataclass
class _Job:
    messages: list[Message]
    options: RequestOptions
    adapter: str | None  # adapter folder, or None for the base model itself
    name: str  # the model name its answer carries
    stream: bool = False  # a streamed request: its future gets (streamer, inputs) at start
    future: Future[Any] = field(default_factory=Future)

    def batch_key(self) -> tuple[Any, ...]:
        """Requests batch together only when ``generate`` would treat them alike."""
        temperature = self.options.temperature or 0.0
        return (temperature, self.options.top_p if temperature > 0 else None)


class SharedBase:
    """One loaded base model, its adapters and the worker thread that batches its requests."""

    def __init__(
        self, base_model: str, device: str, *, merged: str | None, max_batch: int, max_wait_s: float
    ) -> None:
        self.base_model = base_model
        self.device_preference = device
        self.merged = merged  # an adapter merged into this copy (modules_to_save adapters)
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self.batches = 0  # generate calls made, for tests and metrics
        self._adapters: dict[str, str] = {}  # folder → PEFT adapter name
        self._released: set[str] = set()
        self._jobs: deque[_Job] = deque()
        self._wake = threading.Condition()
        self._closed = False
        self._model: Any = None
        self._tokenizer: Any = None
        self._decoder: LeanDecoder | None = None  # the plain base's fast path (greedy rows)
        self._thread = threading.Thread(target=self._work, name=f"batch {base_model}", daemon=True)
        self._thread.start()

    def submit(self, job: _Job) -> Future[Any]:
        with self._wake:
            if self._closed:
                raise ProviderError(f"{job.name}: the local model pool is closed")
            self._jobs.append(job)
            self._wake.notify()
        return job.future

    def release(self, adapter: str) -> None:
        """Unload an adapter no route serves any more (between batches, in the worker)."""
        with self._wake:
            self._released.add(adapter)
            self._wake.notify()

    def close(self) -> None:
        with self._wake:
            self._closed = True
            self._wake.notify()
        self._thread.join(timeout=10)

    # -- the worker ---------------------------------------------------------------------------

    def _work(self) -> None:
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            try:
                self._run(batch)
            except BaseException as exc:  # every waiting caller hears of it
                error = ProviderError(
                    f"{batch[0].name} failed while generating: {type(exc).__name__}: {exc}"
                )
                for job in batch:
                    if not job.future.done():
                        job.future.set_exception(error)

    def _next_batch(self) -> list[_Job] | None:
        """The first waiting job and those that may join it, once the batch is full or
        ``max_wait_s`` has passed; None once closed."""
        with self._wake:
            while not self._jobs and not self._closed:
                self._wake.wait()
            if self._closed:
                for job in self._jobs:
                    if job.future.set_running_or_notify_cancel():
                        job.future.set_exception(ProviderError(f"{job.name}: the pool closed"))
                return None
            first = self._jobs[0]
            if not first.stream:
                deadline = time.monotonic() + self.max_wait_s
                while len(self._jobs) < self.max_batch and not self._closed:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self._wake.wait(left)
            self._unload_released()
            batch = [self._jobs.popleft()]
            if first.stream:
                return [job for job in batch if job.future.set_running_or_notify_cancel()]
            key, kept = first.batch_key(), deque[_Job]()
            while self._jobs:
                job = self._jobs.popleft()
                fits = len(batch) < self.max_batch and not job.stream
                (batch if fits and job.batch_key() == key else kept).append(job)
            self._jobs.extendleft(reversed(kept))
        # Callers that gave up (a deadline passed) before their batch began are left out.
        return [job for job in batch if job.future.set_running_or_notify_cancel()]

    def _run(self, batch: list[_Job]) -> None:
        if not batch:
            return
        self._load()
        extra = self._adapter_names(batch)
        self.batches += 1
        first = batch[0]
        # the lean decoder runs the base's own weights: for batches with no adapter row
        decoder = self._decoder if all(job.adapter is None for job in batch) else None
        if first.stream:
            streamer = token_streamer(self._tokenizer)
            inputs = chat_inputs(self._tokenizer, [first.messages], self.device)
            first.future.set_result((streamer, inputs))  # the caller reads while it decodes
            generate_into(
                self._model, self._tokenizer, inputs, first.options, streamer, extra, decoder
            )
            return
        completions = generate_batch(
            self._model,
            self._tokenizer,
            [job.messages for job in batch],
            [job.options for job in batch],
            device=self.device,
            name=[job.name for job in batch],
            extra=extra,
            decoder=decoder,
        )
        for job, completion in zip(batch, completions, strict=True):
            job.future.set_result(completion)

    @property
    def tokenizer(self) -> Any:
        return self._tokenizer

    def _load(self) -> None:
        if self._model is not None:
            return
        from tuneloop.hfmodels import load_with_adapter, pick_device

        self.device = pick_device(self.device_preference, ProviderError)
        self._tokenizer, model = load_with_adapter(self.base_model, self.merged, ProviderError)
        self._model = model.to(self.device).eval()
        self._decoder = LeanDecoder.from_model(self._model)

    def _adapter_names(self, batch: list[_Job]) -> dict[str, Any]:
        """``generate``'s ``adapter_names`` for the batch, loading adapters seen for the first
        time; nothing when the base has none."""
        for job in batch:
            if job.adapter is not None and job.adapter not in self._adapters:
                self._load_adapter(job.adapter)
        if not self._adapters:
            return {}
        return {
            "adapter_names": [
                self._adapters[job.adapter] if job.adapter else BASE_ROW for job in batch
            ]
        }

    def _load_adapter(self, folder: str) -> None:
        from peft import PeftModel

        name = f"adapter{len(self._adapters) + len(self._released)}"
        if not self._adapters and not isinstance(self._model, PeftModel):
            self._model = PeftModel.from_pretrained(self._model, folder, adapter_name=name)
        else:
            self._model.load_adapter(folder, adapter_name=name)
        self._model.to(self.device).eval()
        self._adapters[folder] = name

    def _unload_released(self) -> None:
        gone = self._released & set(self._adapters)
        self._released.clear()
        if gone and gone == set(self._adapters):  # the last ones: back to the plain base
            self._model = self._model.unload()
            self._adapters.clear()
            return
        for folder in gone:
            self._model.delete_adapter(self._adapters.pop(folder))


class SharedLocalProvider(BaseProvider):
    """A local model (with or without an adapter) answered by its base's batching worker."""

    def __init__(self, base: SharedBase, adapter: str | None, name: str, timeout_s: float) -> None:
        self.base = base
        self.adapter = adapter
        self.name = name
        self.timeout_s = timeout_s  # for sync callers without a deadline of their own

    def _job(self, messages: list[Message], options: RequestOptions, stream: bool = False) -> _Job:
        return _Job(messages, options, self.adapter, self.name, stream)

    def _complete(self, messages: list[Message], options: RequestOptions) -> Completion:
        future = self.base.submit(self._job(messages, options))
        seconds = options.timeout_s or self.timeout_s
        try:
            completion: Completion = future.result(timeout=seconds)
        except TimeoutError:
            future.cancel()
            raise ProviderTimeout(f"{self.name}: no answer within {seconds:g} s") from None
        return completion

    async def _acomplete(self, messages: list[Message], options: RequestOptions) -> Completion:
        completion: Completion = await asyncio.wrap_future(
            self.base.submit(self._job(messages, options))
        )
        return completion

    def _stream(self, messages: list[Message], options: RequestOptions) -> Iterator[StreamChunk]:
        future = self.base.submit(self._job(messages, options, stream=True))
        seconds = options.timeout_s or self.timeout_s
        try:
            streamer, inputs = future.result(timeout=seconds)
        except TimeoutError:
            future.cancel()
            raise ProviderTimeout(f"{self.name}: no answer began within {seconds:g} s") from None
        yield from read_stream(streamer, self.base.tokenizer, inputs, options, self.name)

    def release(self) -> None:
        if self.adapter is not None:
            self.base.release(self.adapter)


class LocalModels:
    """The shared bases of one process (a gateway): ``provider()`` hands out providers whose
    requests batch with every other request for the same base."""

    def __init__(self, *, max_batch: int = 8, max_wait_ms: float = 2.0, timeout_s: float = 60.0):
        self.max_batch = max_batch
        self.max_wait_s = max_wait_ms / 1000
        self.timeout_s = timeout_s
        self._bases: dict[tuple[str, str, str | None], SharedBase] = {}
        self._lock = threading.Lock()

    def provider(
        self, base_model: str, adapter: str | None, *, device: str, name: str
    ) -> SharedLocalProvider:
        merged = adapter if adapter is not None and _trains_whole_modules(adapter) else None
        key = (base_model, device, merged)
        with self._lock:
            base = self._bases.get(key)
            if base is None:
                base = self._bases[key] = SharedBase(
                    base_model,
                    device,
                    merged=merged,
                    max_batch=self.max_batch,
                    max_wait_s=self.max_wait_s,
                )
        return SharedLocalProvider(base, None if merged else adapter, name, self.timeout_s)

    def close(self) -> None:
        with self._lock:
            bases, self._bases = list(self._bases.values()), {}
        for base in bases:
            base.close()


def _trains_whole_modules(adapter: str) -> bool:
    """Whether an adapter carries whole modules (``modules_to_save``), which PEFT cannot switch
    per row of a batch. An unreadable config is left for the loader to report."""
    try:
        config = json.loads((Path(adapter) / "adapter_config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return bool(config.get("modules_to_save"))
