"""A local causal LM (transformers), optionally with a LoRA adapter from the registry."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from tuneloop.assets import resolve_model_path
from tuneloop.errors import ProviderError
from tuneloop.providers.base import Completion, Message


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
            from transformers import AutoModelForCausalLM, AutoTokenizer

            path = resolve_model_path(self.base_model)
            try:
                tokenizer = AutoTokenizer.from_pretrained(path)
                model = AutoModelForCausalLM.from_pretrained(path)
            except OSError as exc:
                raise ProviderError(f"cannot load model {self.base_model!r}: {exc}") from exc
            if self.adapter is not None:
                if not (self.adapter / "adapter_config.json").is_file():
                    raise ProviderError(f"no LoRA adapter at {self.adapter}")
                from peft import PeftModel

                model = PeftModel.from_pretrained(model, str(self.adapter)).merge_and_unload()
            self.device = pick_device(self.device_preference)
            model.to(self.device).eval()
            self._tokenizer, self._model = tokenizer, model

    def complete(
        self, messages: list[Message], *, max_tokens: int | None = None, temperature: float = 0.0
    ) -> Completion:
        import torch

        self._load()
        tokenizer, model = self._tokenizer, self._model
        inputs = tokenizer.apply_chat_template(
            messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
        ).to(self.device)
        prompt_length = inputs["input_ids"].shape[1]
        sampling: dict[str, Any] = (
            {"do_sample": True, "temperature": temperature} if temperature > 0
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
        latency_ms = (time.perf_counter() - started) * 1000
        new_tokens = output[0, prompt_length:]
        text = tokenizer.decode(new_tokens, skip_special_tokens=True)
        return Completion(
            text=text.strip(),
            model=self.name,
            provider="local",
            latency_ms=latency_ms,
            prompt_tokens=int(prompt_length),
            completion_tokens=int(new_tokens.shape[0]),
            cost_usd=0.0,
        )
