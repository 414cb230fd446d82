"""Loading Hugging Face models: the one place train and the local provider share.

Device choice, model loading (offline-safe, ``builtin:tiny`` resolved to the shipped folder) and
telling a LoRA adapter folder from a whole model. torch and transformers are imported inside the
functions so importing this module costs nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tuneloop.assets import resolve_model_path
from tuneloop.errors import InputError, TuneloopError

DEVICES = ("auto", "cpu", "cuda", "mps")


def is_adapter_dir(path: str | Path) -> bool:
    """A PEFT adapter folder (as opposed to a whole model saved by full fine-tuning)."""
    return (Path(path) / "adapter_config.json").is_file()


def looks_like_path(spec: str) -> bool:
    """A model spec meant as a folder (``./m``, ``/models/x``, ``~/m``) rather than a hub id."""
    return spec.startswith((".", "/", "~")) or "\\" in spec or spec.count("/") > 1


def pick_device(preference: str = "auto", error: type[TuneloopError] = InputError) -> str:
    """The device to run on: CUDA, then Apple MPS, then CPU, unless one is asked for.

    Asking for a device this machine does not have is an error naming it, rather than a torch
    traceback at the first tensor moved there.
    """
    import torch

    if preference not in DEVICES:
        raise error(f"unknown device {preference!r}; expected one of: {', '.join(DEVICES)}")
    mps = getattr(torch.backends, "mps", None)
    has_mps = bool(mps and mps.is_available())
    if preference == "auto":
        if torch.cuda.is_available():
            return "cuda"
        return "mps" if has_mps else "cpu"
    if preference == "cuda" and not torch.cuda.is_available():
        raise error(
            "device 'cuda' was asked for but torch sees no CUDA GPU on this machine "
            "(use --device auto or cpu)"
        )
    if preference == "mps" and not has_mps:
        raise error(
            "device 'mps' was asked for but Apple MPS is not available here "
            "(use --device auto or cpu)"
        )
    return preference


def load_pretrained(
    spec: str,
    error: type[TuneloopError] = InputError,
    *,
    model_options: Mapping[str, Any] | None = None,
) -> tuple[Any, Any]:
    """(tokenizer, model) of a model spec (``builtin:tiny``, a folder or a hub id), offline-safe.

    ``error`` is the exception type raised with a one-line message naming the model when it
    cannot load (a folder that does not exist is caught before transformers sees it).
    ``model_options`` go to ``from_pretrained`` (a quantization config and device map for QLoRA).
    """
    path = _existing_model_path(spec, error)
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
        model = AutoModelForCausalLM.from_pretrained(path, **dict(model_options or {}))
    except (OSError, ValueError) as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise error(f"cannot load model {spec!r}: {first_line}") from exc
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer, model


def load_model_config(spec: str, error: type[TuneloopError] = InputError) -> Any:
    """The model's ``config.json`` as a transformers config (no weights), errors as above."""
    path = _existing_model_path(spec, error)
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(path)
    except (OSError, ValueError) as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise error(f"cannot load model {spec!r}: {first_line}") from exc


def _existing_model_path(spec: str, error: type[TuneloopError]) -> str:
    path = resolve_model_path(spec)
    if looks_like_path(path) and not Path(path).expanduser().exists():
        raise error(f"cannot load model {spec!r}: the folder {path} does not exist")
    return path


def load_with_adapter(
    base_model: str, adapter: str | Path | None, error: type[TuneloopError] = InputError
) -> tuple[Any, Any]:
    """(tokenizer, model) of a base model with a LoRA adapter merged in (if one is given)."""
    tokenizer, model = load_pretrained(base_model, error)
    if adapter is not None:
        if not is_adapter_dir(adapter):
            raise error(f"no LoRA adapter at {adapter} (adapter_config.json is missing)")
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()
    return tokenizer, model
