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
from tuneloop.providers.decode import LeanDecoder
from tuneloop.providers.errors import ProviderError

DEFAULT_MAX_TOKENS = 512


class LocalModelProvider(BaseProvider):
    """Greedy or sampled generation with a Hugging Face model; loads lazily on first use.

    An adapter is merged into the base weights at load time: inference then costs the same as
    the base model, which is what the latency numbers should reflect. Greedy requests on a CPU
    decode with :class:`LeanDecoder` where the model allows, the rest with ``generate``.
    ``acomplete`` runs the generation in a worker thread; ``stream`` yields text as it is
    decoded.
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
        self._decoder: LeanDecoder | None = None
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
            self._decoder = LeanDecoder.from_model(model)
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

    def _generate(
        self, conversations: list[list[Message]], options: RequestOptions
    ) -> list[Completion]:
        self._load()
        return generate_batch(
            self._model,
            self._tokenizer,
            conversations,
            [options] * len(conversations),
            device=self.device,
            name=self.name,
            decoder=self._decoder,
        )

    def _stream(self, messages: list[Message], options: RequestOptions) -> Iterator[StreamChunk]:
        """Text as it is decoded: ``generate`` runs in a thread feeding a streamer."""
        self._load()
        streamer = token_streamer(self._tokenizer)
        inputs = chat_inputs(self._tokenizer, [messages], self.device)

        def run() -> None:
            generate_into(
                self._model, self._tokenizer, inputs, options, streamer, decoder=self._decoder
            )

        threading.Thread(target=run, name=f"generate {self.name}", daemon=True).start()
        yield from read_stream(streamer, self._tokenizer, inputs, options, self.name)


# The pieces below are shared with ``shared_local`` (one base serving several adapters).


def chat_inputs(tokenizer: Any, conversations: list[list[Message]], device: str) -> Any:
    """The conversations' prompts through the chat template, left-padded for generation."""
    prompts = [
        tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        for messages in conversations
    ]
    tokenizer.padding_side = "left"
    return tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(
        device
    )


def is_greedy(options: RequestOptions) -> bool:
    """No temperature asked for: the answer is the argmax path."""
    return not options.temperature or options.temperature <= 0


def generate_kwargs(tokenizer: Any, options: RequestOptions) -> dict[str, Any]:
    """``generate``'s arguments for one request's options (greedy unless a temperature)."""
    sampling: dict[str, Any] = {"do_sample": False}
    if not is_greedy(options):
        sampling = {"do_sample": True, "temperature": options.temperature}
        if options.top_p is not None:
            sampling["top_p"] = options.top_p
    return {
        "max_new_tokens": options.max_tokens or DEFAULT_MAX_TOKENS,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
        **sampling,
    }


def generate_batch(
    model: Any,
    tokenizer: Any,
    conversations: list[list[Message]],
    options: list[RequestOptions],
    *,
    device: str,
    name: str | list[str],
    extra: dict[str, Any] | None = None,
    decoder: LeanDecoder | None = None,
) -> list[Completion]:
    """Several conversations decoded together, left-padded: by ``decoder`` when there is one
    and the requests are greedy (each row stops at its own end), else in one ``generate`` call
    that decodes as far as the longest ``max_tokens``, each answer then cut at its own (the
    sampling settings are the first request's: callers batch only requests that share them).
    Each answer's latency is the batch's wall time scaled by its share of the decoding steps.
    ``name`` is the model name of every answer, or one per conversation."""
    import torch

    inputs = chat_inputs(tokenizer, conversations, device)
    limits = [max(1, option.max_tokens or DEFAULT_MAX_TOKENS) for option in options]
    started = time.perf_counter()
    if decoder is not None and is_greedy(options[0]):
        generated = decoder.generate(
            inputs["input_ids"],
            inputs["attention_mask"],
            limits,
            eos_token_id=tokenizer.eos_token_id,
        )
    else:
        kwargs = {**generate_kwargs(tokenizer, options[0]), "max_new_tokens": max(limits)}
        prompt_length = inputs["input_ids"].shape[1]
        with torch.inference_mode():
            output = model.generate(**inputs, **kwargs, **(extra or {}))
        generated = output[:, prompt_length:].tolist()
    wall_ms = (time.perf_counter() - started) * 1000
    steps = max(1, max((len(row) for row in generated), default=1))
    names = name if isinstance(name, list) else [name] * len(conversations)
    completions = []
    for row, attention, limit, model_name in zip(
        generated, inputs["attention_mask"], limits, names, strict=True
    ):
        row = row[:limit]
        stopped = tokenizer.eos_token_id in row
        length = row.index(tokenizer.eos_token_id) + 1 if stopped else len(row)
        completions.append(
            Completion(
                text=tokenizer.decode(row[:length], skip_special_tokens=True).strip(),
                model=model_name,
                provider="local",
                latency_ms=wall_ms * length / steps,
                prompt_tokens=int(attention.sum()),
                completion_tokens=length,
                cost_usd=0.0,
                finish_reason="stop" if stopped or length < limit else "length",
            )
        )
    return completions


def generate_into(
    model: Any,
    tokenizer: Any,
    inputs: Any,
    options: RequestOptions,
    streamer: Any,
    extra: dict[str, Any] | None = None,
    decoder: LeanDecoder | None = None,
) -> None:
    """Decode one conversation feeding ``streamer`` (with ``decoder`` when there is one and the
    request is greedy, else ``generate``); a failure ends the stream and is kept on it, for
    :func:`read_stream` to raise on the reading side."""
    import torch

    try:
        if decoder is not None and is_greedy(options):
            streamer.put(inputs["input_ids"][0])  # the prompt, which the streamer skips
            decoder.generate(
                inputs["input_ids"],
                inputs["attention_mask"],
                [max(1, options.max_tokens or DEFAULT_MAX_TOKENS)],
                eos_token_id=tokenizer.eos_token_id,
                on_token=lambda _row, token: streamer.put(torch.tensor([token])),
            )
            streamer.end()
            return
        with torch.inference_mode():
            model.generate(
                **inputs, **generate_kwargs(tokenizer, options), **(extra or {}), streamer=streamer
            )
    except BaseException as exc:
        streamer.failure = exc
        streamer.end()


def read_stream(
    streamer: Any, tokenizer: Any, inputs: Any, options: RequestOptions, name: str
) -> Iterator[StreamChunk]:
    """The pieces a streamer receives, then the whole answer as a completion."""
    started = time.perf_counter()
    parts: list[str] = []
    for piece in streamer:
        if piece:
            if not parts:
                piece = piece.lstrip()
            parts.append(piece)
            yield StreamChunk(text=piece)
    failure = streamer.failure
    if failure is not None:
        raise ProviderError(f"{name} failed while generating: {type(failure).__name__}: {failure}")
    text = "".join(parts).strip()
    output_tokens = len(tokenizer(text, add_special_tokens=False)["input_ids"])
    yield StreamChunk(
        completion=Completion(
            text=text,
            model=name,
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
        failure: BaseException | None = None  # set by ``generate_into`` when generate fails

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
