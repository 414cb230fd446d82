"""DPO from corrections: pairs out of a dataset version, a margin that grows, one-line errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from tuneloop.assets import BUILTIN_MODELS
from tuneloop.capture.client import Tuneloop
from tuneloop.cli.app import app
from tuneloop.config import Config, TrainConfig, load_config
from tuneloop.curate import build_dataset, load_pairs
from tuneloop.errors import ConfigError, TrainingError
from tuneloop.registry import list_versions
from tuneloop.store import Job

BASE = BUILTIN_MODELS["builtin:tiny"]
pytestmark = pytest.mark.skipif(
    not (BASE / "model.safetensors").exists(), reason="base model not built (make base-model)"
)
COLORS = ["red", "green", "blue", "amber", "teal", "violet", "coral", "olive", "navy", "plum"]
ITEMS = ["button", "header", "card", "badge", "link", "banner", "toast", "tab", "menu", "chip"]
DPO = {"method": "dpo", "epochs": 3, "batch_size": 4, "max_length": 96, "learning_rate": 2e-3}
# Corrections are accepted with edits (+1) on valid JSON (+3): quality 4, reward below 0.3.
CURATE = {"min_quality": 4, "min_reward": -1}


def answers(item: str, color: str) -> tuple[str, str]:
    """The user's fix (complete JSON) and the model's answer (cut off mid-object)."""
    chosen = json.dumps({"component": item, "color": color, "done": True})
    return chosen, chosen[: len(chosen) // 2]


def prompt(item: str, color: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": f"Style the {item} in {color}."}]


def corrected_workspace(tmp_path: Path, *, corrections: bool = True) -> tuple[Config, Tuneloop]:
    config = Config(workspace=tmp_path / "ws", task="ui", curate=CURATE, train=TrainConfig(**DPO))
    tl = Tuneloop(config)
    for index, item in enumerate(ITEMS):
        color = COLORS[index]
        chosen, rejected = answers(item, color)
        interaction = tl.log(prompt(item, color), rejected if corrections else chosen, task="ui")
        if corrections:
            tl.correct(interaction, chosen)
        else:
            tl.saved(interaction)
    return config, tl


def margins(model: Any, tokenizer: Any, pairs: list[dict[str, Any]]) -> list[float]:
    """log p(chosen) - log p(rejected) of each pair, answer tokens only."""
    from tuneloop.train.dpo import pair_logps, tokenize_pairs

    tokenized, dropped = tokenize_pairs(tokenizer, pairs, 96)
    assert dropped == 0
    import torch

    with torch.inference_mode():
        logps = pair_logps(model.eval(), tokenized, tokenizer.pad_token_id, "cpu")
    return (logps[0] - logps[1]).tolist()


def dpo_line(item: str, color: str) -> dict[str, Any]:
    chosen, rejected = answers(item, color)
    return {
        "input": {"messages": prompt(item, color)},
        "preferred_output": [{"role": "assistant", "content": chosen}],
        "non_preferred_output": [{"role": "assistant", "content": rejected}],
    }


@pytest.mark.slow
def test_dpo_on_corrections_raises_the_margin_and_registers_a_version(tmp_path: Path) -> None:
    from peft import PeftModel

    from tuneloop.hfmodels import load_pretrained
    from tuneloop.train import train_model

    config, tl = corrected_workspace(tmp_path)
    dataset = build_dataset(tl.store, config, task="ui")
    pairs = load_pairs(dataset, "train") + load_pairs(dataset, "eval")
    assert len(pairs) == len(ITEMS)
    held_out = [dpo_line("slider", "silver")]  # in neither split

    version = train_model(tl.store, config, dataset)

    assert version.name == "v1"
    training = version.metrics["training"]
    assert training["method"] == "dpo" and training["dpo_beta"] == 0.1
    assert Path(version.artifact_path, "adapter_config.json").is_file()
    tokenizer, base = load_pretrained("builtin:tiny")
    model = PeftModel.from_pretrained(base, version.artifact_path)
    with model.disable_adapter():  # the reference: the starting weights
        before = margins(model, tokenizer, pairs + held_out)
    after = margins(model, tokenizer, pairs + held_out)
    gains = [a - b for a, b in zip(after, before, strict=True)]
    assert sum(gains[:-1]) / len(pairs) > 1.0, gains  # the pairs it trained on
    assert gains[-1] > 0.5, gains  # and a pair it never saw
    with tl.store.session() as session:
        job = session.get(Job, version.job_id)
        assert job is not None and job.status == "succeeded"


def test_dpo_without_pairs_is_refused_in_one_line(tmp_path: Path) -> None:
    from tuneloop.train import train_model

    config, tl = corrected_workspace(tmp_path, corrections=False)
    dataset = build_dataset(tl.store, config, task="ui")
    assert load_pairs(dataset, "train") == []
    with pytest.raises(TrainingError, match="has no preference pairs") as error:
        train_model(tl.store, config, dataset)
    assert "\n" not in str(error.value)
    assert list_versions(tl.store, "ui") == []
    result = CliRunner().invoke(
        app, ["train", "--method", "dpo", "-c", str(write_config(config, tmp_path))]
    )
    assert isinstance(result.exception, TrainingError)  # main() prints it on one line
    assert "has no preference pairs" in str(result.exception)


def write_config(config: Config, tmp_path: Path) -> Path:
    path = tmp_path / "tuneloop.toml"
    path.write_text(
        f'workspace = "{config.workspace}"\ntask = "ui"\n'
        "[curate]\nmin_quality = 4\nmin_reward = -1\n",
        encoding="utf-8",
    )
    return path


@pytest.mark.parametrize("beta", ["0", "-0.5", "100", "'high'"])
def test_bad_beta_is_one_line_naming_the_key(tmp_path: Path, beta: str) -> None:
    path = tmp_path / "tl.toml"
    path.write_text(f'[train]\nmethod = "dpo"\ndpo_beta = {beta}\n', encoding="utf-8")
    with pytest.raises(ConfigError, match="train.dpo_beta") as error:
        load_config(path, environ={})
    # The config's error shape: a heading, then one line per problem with key, value, origin.
    (line,) = [line for line in str(error.value).splitlines() if "dpo_beta" in line]
    assert str(path) in line


def test_dpo_pairs_with_equal_answers_are_dropped() -> None:
    from transformers import AutoTokenizer

    from tuneloop.train.dpo import tokenize_pairs

    tokenizer = AutoTokenizer.from_pretrained(BASE)
    same = dpo_line("button", "red")
    same["non_preferred_output"] = same["preferred_output"]
    kept, dropped = tokenize_pairs(tokenizer, [dpo_line("card", "blue"), same], 96)
    assert (len(kept), dropped) == (1, 1)
    assert kept[0].chosen.trained_tokens > kept[0].rejected.trained_tokens > 0


class Stopped(Exception):
    """Stands in for a kill right after a checkpoint."""


def test_dpo_resumes_from_a_checkpoint_to_the_uninterrupted_result(tmp_path: Path) -> None:
    from safetensors.torch import load_file

    from tuneloop.store import ProgressEvent
    from tuneloop.train.dpo import dpo_finetune
    from tuneloop.train.recipe import checkpoint_step, latest_checkpoint

    pairs = [dpo_line(item, COLORS[index]) for index, item in enumerate(ITEMS)]
    config = TrainConfig(
        **{**DPO, "epochs": 2}, threads=1, precision="fp32", device="cpu", checkpoint_every=2
    )
    whole = dpo_finetune(config, pairs, pairs[:2], tmp_path / "whole")

    def stop_after_first_checkpoint(event: ProgressEvent) -> None:
        if "checkpoint" in event.data:
            raise Stopped

    checkpoints = tmp_path / "checkpoints"
    with pytest.raises(Stopped):
        dpo_finetune(
            config,
            pairs,
            pairs[:2],
            tmp_path / "killed",
            on_event=stop_after_first_checkpoint,
            checkpoint_dir=checkpoints,
        )
    checkpoint = latest_checkpoint(checkpoints)
    assert checkpoint is not None and checkpoint_step(checkpoint) == 2 < whole.steps
    resumed = dpo_finetune(config, pairs, pairs[:2], tmp_path / "resumed", resume_from=checkpoint)
    assert resumed.resumed_from_step == 2 and resumed.steps == whole.steps
    assert resumed.eval_loss == pytest.approx(whole.eval_loss, abs=1e-6)
    a = load_file(str(tmp_path / "whole" / "adapter_model.safetensors"))
    b = load_file(str(tmp_path / "resumed" / "adapter_model.safetensors"))
    assert a.keys() == b.keys() and a
    for name in a:
        assert (a[name] - b[name]).abs().max() <= 1e-6, name
