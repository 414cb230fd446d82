"""Handing a registry adapter to vLLM: check that ``vllm serve --enable-lora --lora-modules
NAME=PATH`` will load it, and build that command and the provider spec that reaches it.

vLLM reads a PEFT folder: ``adapter_config.json`` (``peft_type`` LORA, ``r``, ``lora_alpha``,
``target_modules``; no DoRA, no bias, rank within ``--max-lora-rank``) and the weights in
``adapter_model.safetensors`` (or ``.bin``) named ``base_model.model.….lora_A/lora_B.weight``.
The gateway then routes to it as ``openai-compatible:http://HOST:PORT/v1#NAME`` (set as the
version's ``serve`` config).
"""

from __future__ import annotations

import json
from pathlib import Path

WEIGHT_FILES = ("adapter_model.safetensors", "adapter_model.bin")
DEFAULT_MAX_LORA_RANK = 16  # vLLM's default --max-lora-rank


def adapter_problems(path: str | Path, *, max_lora_rank: int = DEFAULT_MAX_LORA_RANK) -> list[str]:
    """Why vLLM would refuse this adapter folder (empty: it loads)."""
    folder = Path(path)
    config_path = folder / "adapter_config.json"
    if not config_path.is_file():
        return [f"{folder}: no adapter_config.json (not a PEFT adapter folder)"]
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        return [f"{config_path}: unreadable ({exc})"]
    problems = []
    if config.get("peft_type") != "LORA":
        problems.append(f"peft_type is {config.get('peft_type')!r}; vLLM serves LORA adapters")
    for key in ("r", "lora_alpha", "target_modules"):
        if key not in config:
            problems.append(f"adapter_config.json has no {key!r}")
    rank = config.get("r")
    if isinstance(rank, int) and rank > max_lora_rank:
        problems.append(f"rank {rank} is above --max-lora-rank {max_lora_rank}")
    if config.get("use_dora"):
        problems.append("DoRA adapters are not served by vLLM's LoRA path")
    if config.get("bias", "none") != "none":
        problems.append(f"bias is {config.get('bias')!r}; vLLM loads adapters without biases")
    weights = next((folder / name for name in WEIGHT_FILES if (folder / name).is_file()), None)
    if weights is None:
        problems.append(f"{folder}: no {' or '.join(WEIGHT_FILES)}")
    elif weights.suffix == ".safetensors":
        problems.extend(_weight_name_problems(weights))
    return problems


def _weight_name_problems(weights: Path) -> list[str]:
    from safetensors import safe_open

    with safe_open(str(weights), framework="numpy") as handle:
        names = list(handle.keys())
    if not names:
        return [f"{weights}: holds no tensors"]
    odd = [
        name
        for name in names
        if not name.startswith("base_model.model.")
        or not (".lora_A." in name or ".lora_B." in name or "lora_embedding" in name)
    ]
    if odd:
        return [f"{weights}: {len(odd)} tensor(s) vLLM cannot place, e.g. {odd[0]!r}"]
    return []


def serve_command(
    base_model: str,
    modules: dict[str, str],
    *,
    port: int = 8000,
    max_lora_rank: int = DEFAULT_MAX_LORA_RANK,
) -> list[str]:
    """``vllm serve BASE --enable-lora --lora-modules NAME=PATH …`` as an argument list."""
    return [
        "vllm",
        "serve",
        base_model,
        "--port",
        str(port),
        "--enable-lora",
        "--max-lora-rank",
        str(max_lora_rank),
        "--lora-modules",
        *(f"{name}={Path(path).resolve()}" for name, path in modules.items()),
    ]


def served_spec(base_url: str, module: str) -> str:
    """The provider spec the gateway uses for one of those modules."""
    return f"openai-compatible:{base_url.rstrip('/')}#{module}"
