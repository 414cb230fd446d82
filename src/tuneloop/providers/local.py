"""A local causal LM (transformers), optionally with a LoRA adapter from the registry."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tuneloop.hfmodels import load_with_adapter, pick_device
from tuneloop.providers.base import (
    BaseProvider,
    Completion,
    Message,
    RequestOptions,
    StreamChunk,
    resolve_options,
)
from tuneloop.providers.errors import ProviderError

DEFAULT_MAX_TOKENS = 512


class LocalModelProvider(BaseProvider):
    """Greedy or sampled generation with a Hugging Face model; loads lazily on first use.

    An adapter is merged into the base weights at load time: inference then costs the same as
    the base model, which is what the latency numbers should reflect. ``acomplete`` runs the
    generation in a worker thread; ``stream`` yields text as ``generate`` produces it.
    """

    def __init__(
        self,
        base_model: str,
        adapter: str | Path | None = None,
        *,
        device: str = "auto",
        name: str | None = None,
    ) -> None:
        self.base_model = base_model
        self.adapter = Path(adapter) if adapter else None
        self.device_preference = device
        self.name = name or (f"local:{base_model}" + (f"+{self.adapter}" if self.adapter else ""))
        self._model: Any = None
        self._tokenizer: Any = None
        self._lock = threading.Lock()

    def _load(self) -> None:
        if self._model is not None:
            return
        with self._lock:
            if self._model is not None:
                return
            device = pick_device(self.device_preference, ProviderError)
            tokenizer, model = load_with_adapter(self.base_model, self.adapter, ProviderError)
            self.device = device
            model.to(device).eval()
            self._tokenizer, self._model = tokenizer, model

    def _complete(self, messages: list[Message], options: RequestOptions) -> Completion:
        return self._generate([messages], options)[0]

    def complete_batch(
        self,
        conversations: list[list[Message]],
        *,
        max_tokens: int | None = None,
        temperature: float | None = None,
        options: RequestOptions | None = None,
    ) -> list[Completion]:
        """Answer several conversations in one ``generate`` call (left-padded).

        Small models on a CPU spend most of each decoding step in fixed overhead, so a batch
        of 8 costs little more than one answer. Each answer's latency is the time until its own
        last token: the batch's wall time scaled by its share of the decoding steps.
        """
        return self._generate(conversations, resolve_options(options, max_tokens, temperature))

    def _inputs(self, conversations: list[list[Message]]) -> Any:
        tokenizer = self._tokenizer
        prompts = [
            tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
            for messages in conversations
        ]
        tokenizer.padding_side = "left"
        return tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(
            self.device
        )

    def _generate_kwargs(self, options: RequestOptions) -> dict[str, Any]:
        tokenizer = self._tokenizer
        temperature = options.temperature or 0.0
        sampling: dict[str, Any] = (
            {"do_sample": True, "temperature": temperature}
            if temperature > 0
            else {"do_sample": False}
        )
        if options.top_p is not None and temperature > 0:
            sampling["top_p"] = options.top_p
        return {
            "max_new_tokens": options.max_tokens or DEFAULT_MAX_TOKENS,
            "eos_token_id": tokenizer.eos_token_id,
            "pad_token_id": tokenizer.pad_token_id,
            **sampling,
        }

    def _generate(
        self, conversations: list[list[Message]], options: RequestOptions
    ) -> list[Completion]:
        import torch

        self._load()
        tokenizer, model = self._tokenizer, self._model
        inputs = self._inputs(conversations)
        prompt_length = inputs["input_ids"].shape[1]
        started = time.perf_counter()
        with torch.inference_mode():
            output = model.generate(**inputs, **self._generate_kwargs(options))
        wall_ms = (time.perf_counter() - started) * 1000
        generated = output[:, prompt_length:]
        steps = max(1, generated.shape[1])
        max_new = options.max_tokens or DEFAULT_MAX_TOKENS
        completions = []
        for row, attention in zip(generated.tolist(), inputs["attention_mask"], strict=True):
            stopped = tokenizer.eos_token_id in row
            length = row.index(tokenizer.eos_token_id) + 1 if stopped else len(row)
            completions.append(
                Completion(
                    text=tokenizer.decode(row[:length], skip_special_tokens=True).strip(),
                    model=self.name,
                    provider="local",
                    latency_ms=wall_ms * length / steps,
                    prompt_tokens=int(attention.sum()),
                    completion_tokens=length,
                    cost_usd=0.0,
                    finish_reason="stop" if stopped or length < max_new else "length",
                )
            )
        return completions

    def _stream(self, messages: list[Message], options: RequestOptions) -> Iterator[StreamChunk]:
        """Text as it is decoded: ``generate`` runs in a thread feeding a streamer."""
        import torch

        self._load()
        tokenizer, model = self._tokenizer, self._model
        inputs = self._inputs([messages])
        streamer = token_streamer(tokenizer)
        failure: list[BaseException] = []

        def run() -> None:
            try:
                with torch.inference_mode():
                    model.generate(**inputs, **self._generate_kwargs(options), streamer=streamer)
            except BaseException as exc:  # reported to the reading side below
                failure.append(exc)
                streamer.end()

        started = time.perf_counter()
        worker = threading.Thread(target=run, name=f"generate {self.name}", daemon=True)
        worker.start()
        parts: list[str] = []
        for piece in streamer:
            if piece:
                if not parts:
                    piece = piece.lstrip()
                parts.append(piece)
                yield StreamChunk(text=piece)
        worker.join()
        if failure:
            raise ProviderError(
                f"{self.name} failed while generating: {type(failure[0]).__name__}: {failure[0]}"
            )
        text = "".join(parts).strip()
        output_tokens = len(tokenizer(text, add_special_tokens=False)["input_ids"])
        yield StreamChunk(
            completion=Completion(
                text=text,
                model=self.name,
                provider="local",
                latency_ms=(time.perf_counter() - started) * 1000,
                prompt_tokens=int(inputs["attention_mask"].sum()),
                completion_tokens=output_tokens,
                cost_usd=0.0,
                finish_reason="length"
                if output_tokens >= (options.max_tokens or DEFAULT_MAX_TOKENS)
                else "stop",
            )
        )


def token_streamer(tokenizer: Any) -> Any:
    """A ``TextIteratorStreamer`` that hands over text token by token.

    transformers' own streamer holds text back until a space or a newline, so an answer
    without spaces (compact JSON) would arrive in one piece at the end. This one releases
    everything decoded so far, except a trailing incomplete UTF-8 character, and waits
    whenever decoding one more token changed text already released (the rest then comes
    at the end)."""
    from transformers import TextIteratorStreamer

    class TokenStreamer(TextIteratorStreamer):
        released = ""

        def put(self, value: Any) -> None:
            if len(value.shape) > 1:
                value = value[0]
            if self.skip_prompt and self.next_tokens_are_prompt:
                self.next_tokens_are_prompt = False
                return
            self.token_cache.extend(value.tolist())
            text = str(self.tokenizer.decode(self.token_cache, **self.decode_kwargs))
            released = self.released
            if text.endswith("\ufffd") or len(text) <= len(released):
                return
            if not text.startswith(released):
                return
            self.released, self.print_len = text, len(text)
            self.on_finalized_text(text[len(released) :])

    return TokenStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
