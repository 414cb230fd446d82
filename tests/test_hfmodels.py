"""Model loading shared by train and the local provider: clear one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from tuneloop.errors import InputError, TrainingError
from tuneloop.hfmodels import is_adapter_dir, load_pretrained, looks_like_path, pick_device
from tuneloop.imports import import_object
from tuneloop.providers import ProviderError, build_provider


def test_asking_for_cuda_without_it_is_a_one_line_error() -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(TrainingError, match="'cuda' was asked for") as caught:
        pick_device("cuda", TrainingError)
    assert "\n" not in str(caught.value)
    assert pick_device("cpu") == "cpu"
    with pytest.raises(InputError, match="unknown device"):
        pick_device("tpu")


def test_a_missing_base_model_folder_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-model"
    with pytest.raises(TrainingError, match="does not exist") as caught:
        load_pretrained(str(missing), TrainingError)
    assert str(missing) in str(caught.value) and "\n" not in str(caught.value)
    provider = build_provider(f"local:{missing}")
    with pytest.raises(ProviderError, match="does not exist"):
        provider.complete([{"role": "user", "content": "hi"}])


def test_paths_and_adapters_are_told_apart(tmp_path: Path) -> None:
    assert looks_like_path("./model") and looks_like_path("/models/x")
    assert not looks_like_path("Qwen/Qwen2.5-0.5B-Instruct")
    assert not is_adapter_dir(tmp_path)
    (tmp_path / "adapter_config.json").write_text("{}")
    assert is_adapter_dir(tmp_path)


def test_import_object_names_the_missing_part() -> None:
    assert import_object("json:dumps").__name__ == "dumps"
    with pytest.raises(InputError, match="no attribute 'nope'"):
        import_object("json:nope")
    with pytest.raises(ProviderError, match="not of the form"):
        import_object("json", error=ProviderError)
