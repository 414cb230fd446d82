"""A local causal LM (transformers), optionally with a LoRA adapter from the registry."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from tuneloop.assets import resolve_model_path
from tuneloop.errors import ProviderError
from tuneloop.providers.base import Completion, Message


def is_adapter_dir(path: str | Path) -> bool:
    """A PEFT adapter folder (as opposed to a whole model saved by full fine-tuning)."""
    return (Path(path) / "adapter_config.json").is_file()


def load_pretrained(spec: str, error: type[Exception] = ProviderError) -> tuple[Any, Any]:
    """(tokenizer, model) of a model spec (``builtin:tiny``, a folder or a hub id), offline-safe.

    ``error`` is the exception type raised with a message naming the model when it cannot load.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()
    path = resolve_model_path(spec)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
        model = AutoModelForCausalLM.from_pretrained(path)
    except (OSError, ValueError) as exc:
        raise error(f"cannot load model {spec!r}: {exc}") from exc
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer, model


def pick_device(preference: str = "auto") -> str:
    """The device to run on: CUDA, then Apple MPS, then CPU, unless one is asked for."""
    import torch

    if preference != "auto":
        return preference
    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


class LocalModelProvider:
    """Greedy or sampled generation with a Hugging Face model; loads lazily on first use.

    An adapter is merged into the base weights at load time: inference then costs the same as
    the base model, which is what the latency numbers should reflect.
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
            tokenizer, model = load_pretrained(self.base_model)
            if self.adapter is not None:
                if not is_adapter_dir(self.adapter):
                    raise ProviderError(f"no LoRA adapter at {self.adapter}")
                from peft import PeftModel

                model = PeftModel.from_pretrained(model, str(self.adapter)).merge_and_unload()
            self.device = pick_device(self.device_preference)
            model.to(self.device).eval()
            self._tokenizer, self._model = tokenizer, model

    def complete(
        self, messages: list[Message], *, max_tokens: int | None = None, temperature: float = 0.0
    ) -> Completion:
        return self.complete_batch([messages], max_tokens=max_tokens, temperature=temperature)[0]

    def complete_batch(
        self,
        conversations: list[list[Message]],
        *,
        max_tokens: int | None = None,
        temperature: float = 0.0,
    ) -> list[Completion]:
        """Answer several conversations in one ``generate`` call (left-padded).

        Small models on a CPU spend most of each decoding step in fixed overhead, so a batch
        of 8 costs little more than one answer. Each answer's latency is the time until its own
        last token: the batch's wall time scaled by its share of the decoding steps.
        """
        import torch

        self._load()
        tokenizer, model = self._tokenizer, self._model
        prompts = [
            tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
            for messages in conversations
        ]
        tokenizer.padding_side = "left"
        inputs = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(
            self.device
        )
        prompt_length = inputs["input_ids"].shape[1]
        sampling: dict[str, Any] = (
            {"do_sample": True, "temperature": temperature}
            if temperature > 0
            else {"do_sample": False}
        )
        started = time.perf_counter()
        with torch.inference_mode():
            output = model.generate(
                **inputs,
                max_new_tokens=max_tokens or 512,
                eos_token_id=tokenizer.eos_token_id,
                pad_token_id=tokenizer.pad_token_id,
                **sampling,
            )
        wall_ms = (time.perf_counter() - started) * 1000
        generated = output[:, prompt_length:]
        steps = max(1, generated.shape[1])
        completions = []
        for row, attention in zip(generated.tolist(), inputs["attention_mask"], strict=True):
            length = (
                row.index(tokenizer.eos_token_id) + 1 if tokenizer.eos_token_id in row else len(row)
            )
            completions.append(
                Completion(
                    text=tokenizer.decode(row[:length], skip_special_tokens=True).strip(),
                    model=self.name,
                    provider="local",
                    latency_ms=wall_ms * length / steps,
                    prompt_tokens=int(attention.sum()),
                    completion_tokens=length,
                    cost_usd=0.0,
                )
            )
        return completions
