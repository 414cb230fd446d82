"""``merge``: a LoRA version folded into its base, saved as a plain Hugging Face model.

Serving stacks without PEFT (or that are faster without it) load the result like any causal
LM. The merge is written to a temporary folder and moved into place when complete.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from tuneloop.assets import resolve_model_path
from tuneloop.errors import InputError
from tuneloop.registry.versions import resolve_version
from tuneloop.store import Store


def merge_version(store: Store, task: str, version: str | int, out_dir: Path | None = None) -> Path:
    """Write ``task@version`` as a full model (base + adapter merged) and return its folder.

    A version trained in full is already a plain model: it is copied. The default folder is
    ``<version folder>/merged``.
    """
    row = resolve_version(store, task, version)
    if row.backend != "local" or not row.artifact_path:
        raise InputError(
            f"{task}@{row.name} was trained by {row.backend!r}; only local "
            "versions can be merged here"
        )
    source = Path(row.artifact_path)
    if not source.is_dir():
        raise InputError(f"{task}@{row.name}: no model folder at {source}")
    target = (out_dir or source.parent / "merged").resolve()
    if target.exists() and any(target.iterdir()):
        raise InputError(f"{target} exists and is not empty; choose another --out")
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".merge-", dir=target.parent))
    try:
        if (source / "adapter_config.json").is_file():
            _merge_adapter(row.base_model, source, staging)
        else:
            shutil.copytree(source, staging, dirs_exist_ok=True)
        if target.exists():
            target.rmdir()
        staging.rename(target)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return target


def _merge_adapter(base_model: str, adapter: Path, out: Path) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = resolve_model_path(base_model)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
        base = AutoModelForCausalLM.from_pretrained(path)
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot load base model {base_model!r}: {exc}") from exc
    merged = PeftModel.from_pretrained(base, str(adapter)).merge_and_unload()
    merged.save_pretrained(out)
    tokenizer.save_pretrained(out)
