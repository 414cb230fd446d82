"""The vLLM hand-off: the adapter folder layout and config keys ``vllm serve --enable-lora``
loads, the command, and the spec the gateway routes to."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from tuneloop.gateway.vllm import adapter_problems, serve_command, served_spec


def write_adapter(folder: Path, **config: object) -> Path:
    folder.mkdir(parents=True)
    settings = {
        "peft_type": "LORA",
        "r": 8,
        "lora_alpha": 16,
        "bias": "none",
        "target_modules": ["q_proj", "v_proj"],
        "base_model_name_or_path": "base",
        **config,
    }
    (folder / "adapter_config.json").write_text(json.dumps(settings), encoding="utf-8")
    prefix = "base_model.model.model.layers.0.self_attn.q_proj"
    save_file(
        {
            f"{prefix}.lora_A.weight": np.zeros((8, 16), np.float32),
            f"{prefix}.lora_B.weight": np.zeros((16, 8), np.float32),
        },
        str(folder / "adapter_model.safetensors"),
    )
    return folder


def test_a_peft_lora_folder_passes_and_the_command_names_it(tmp_path: Path) -> None:
    folder = write_adapter(tmp_path / "v3")
    assert adapter_problems(folder) == []
    command = serve_command("Qwen/Qwen2.5-0.5B", {"ui-layout-v3": str(folder)}, port=8123)
    assert command[:3] == ["vllm", "serve", "Qwen/Qwen2.5-0.5B"]
    assert "--enable-lora" in command
    assert command[-1] == f"ui-layout-v3={folder.resolve()}"
    assert served_spec("http://gpu:8123/v1/", "ui-layout-v3") == (
        "openai-compatible:http://gpu:8123/v1#ui-layout-v3"
    )


@pytest.mark.parametrize(
    ("config", "problem"),
    [
        ({"r": 64}, "above --max-lora-rank 16"),
        ({"bias": "all"}, "bias is 'all'"),
        ({"use_dora": True}, "DoRA"),
        ({"peft_type": "PREFIX_TUNING"}, "peft_type"),
    ],
)
def test_what_vllm_refuses_is_named(
    tmp_path: Path, config: dict[str, object], problem: str
) -> None:
    problems = adapter_problems(write_adapter(tmp_path / "a", **config))
    assert len(problems) == 1 and problem in problems[0]


def test_missing_files_and_foreign_tensors(tmp_path: Path) -> None:
    assert "no adapter_config.json" in adapter_problems(tmp_path)[0]
    folder = write_adapter(tmp_path / "b")
    save_file(
        {"model.embed_tokens.weight": np.zeros((4, 4), np.float32)},
        str(folder / "adapter_model.safetensors"),
    )
    assert "cannot place" in adapter_problems(folder)[0]
    (folder / "adapter_model.safetensors").unlink()
    assert "no adapter_model.safetensors" in adapter_problems(folder)[0]


@pytest.mark.slow
def test_an_adapter_as_peft_saves_it_is_servable(tmp_path: Path) -> None:
    from peft import LoraConfig, get_peft_model

    from tuneloop.hfmodels import load_pretrained

    _, model = load_pretrained("builtin:tiny")
    adapter = get_peft_model(
        model,
        LoraConfig(r=8, lora_alpha=16, task_type="CAUSAL_LM", target_modules=["q_proj", "v_proj"]),
    )
    adapter.save_pretrained(str(tmp_path / "adapter"))
    assert adapter_problems(tmp_path / "adapter") == []
