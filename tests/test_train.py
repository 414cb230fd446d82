"""The train stage on the shipped tiny model: masking, a short LoRA run, lineage, failures."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from tuneloop.assets import BUILTIN_MODELS
from tuneloop.capture.client import Tuneloop
from tuneloop.cli.app import app
from tuneloop.config import Config, TrainConfig
from tuneloop.curate.build import build_dataset, load_split
from tuneloop.demo.layouts import SYSTEM_PROMPT
from tuneloop.demo.simulate import layout_validator, synth_items
from tuneloop.demo.teacher import Teacher
from tuneloop.errors import TrainingError
from tuneloop.providers import CallableProvider
from tuneloop.registry import list_versions
from tuneloop.store import Dataset, Job, JobEventKind, ProgressEvent
from tuneloop.synth import generate_examples
from tuneloop.train import train_model
from tuneloop.train.data import IGNORE_INDEX, tokenize_example

BASE = BUILTIN_MODELS["builtin:tiny"]
pytestmark = pytest.mark.skipif(
    not (BASE / "model.safetensors").exists(), reason="base model not built (make base-model)"
)
# max_length fits the demo's longest answer (292 tokens): answers are never cut, only dropped.
FAST = {"epochs": 1, "batch_size": 4, "max_length": 320, "lora_r": 4, "lora_alpha": 8}


@pytest.fixture
def workspace(tmp_path: Path) -> tuple[Config, Tuneloop, Dataset]:
    config = Config(workspace=tmp_path / "ws", task="ui", train=TrainConfig(**FAST))
    config.evaluate.max_new_tokens = 8
    tl = Tuneloop(config)
    teacher = CallableProvider(Teacher(seed=3, flaw_rate=0.0), name="teacher")
    generate_examples(
        tl,
        teacher,
        synth_items(12, seed=1),
        task="ui",
        system_prompt=SYSTEM_PROMPT,
        validator=layout_validator,
    )
    return config, tl, build_dataset(tl.store, config, task="ui")


def test_only_assistant_tokens_are_learned() -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(BASE)
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Say hi"},
        {"role": "assistant", "content": '{"greeting":"hi"}'},
    ]
    example = tokenize_example(tokenizer, messages, max_length=512)
    learned = [tok for tok in example.labels if tok != IGNORE_INDEX]
    assert tokenizer.decode(learned) == '{"greeting":"hi"}<|end|>'
    assert example is not None
    answer_tokens = len(learned)
    # Too long: the prompt loses its start, the answer stays whole.
    truncated = tokenize_example(tokenizer, messages, max_length=answer_tokens + 3)
    assert truncated is not None
    assert len(truncated.input_ids) == len(truncated.labels) == answer_tokens + 3
    assert truncated.input_ids == example.input_ids[-(answer_tokens + 3) :]
    assert [t for t in truncated.labels if t != IGNORE_INDEX] == learned
    # The answer alone does not fit, or there is no answer: nothing to learn, so no example.
    assert tokenize_example(tokenizer, messages, max_length=answer_tokens - 1) is None
    no_answer = [*messages[:-1], {"role": "assistant", "content": ""}]
    empty = tokenize_example(tokenizer, no_answer, max_length=512)
    assert empty is None or empty.trained_tokens > 0  # the end token alone is still a target


def test_examples_whose_answer_does_not_fit_are_dropped_not_cut(tmp_path: Path) -> None:
    from tuneloop.train.recipe import finetune

    def chat(answer: str) -> dict:
        return {
            "messages": [
                {"role": "user", "content": "Give me JSON"},
                {"role": "assistant", "content": answer},
            ]
        }

    short, long = chat('{"a": 1}'), chat("[" + ", ".join(str(i) for i in range(200)) + "]")
    events: list[tuple[str, dict]] = []
    config = TrainConfig(**{**FAST, "max_length": 32, "method": "full"})
    result = finetune(
        config,
        [short, long, short],
        [long],
        tmp_path / "out",
        on_event=lambda event: events.append((event.kind, dict(event.data))),
    )
    assert result.dropped_examples == 1
    assert result.eval_loss is None  # the only eval example was dropped: no loss, not NaN
    assert all(loss == loss for _, loss in result.loss_curve)  # no NaN
    assert any(data.get("dropped_train") == 1 for _, data in events)
    with pytest.raises(TrainingError, match="max_length"):
        finetune(config, [long], [], tmp_path / "none")


def test_train_registers_v1_then_continues_to_v2(workspace) -> None:
    config, tl, dataset = workspace
    events: list[ProgressEvent] = []
    v1 = train_model(tl.store, config, dataset, progress=events.append)
    assert v1.name == "v1" and v1.dataset_id == dataset.id
    adapter = Path(v1.artifact_path)
    assert adapter == config.artifacts_dir / "models" / "ui" / f"job-{v1.job_id}" / "adapter"
    assert (adapter.parent / "loss.png").is_file()
    assert (adapter / "adapter_config.json").is_file()
    assert not (config.artifacts_dir / "jobs" / str(v1.job_id)).exists()
    metrics = [e for e in events if e.kind == JobEventKind.METRIC]
    assert metrics and metrics[-1].step == metrics[-1].data["total_steps"]
    assert {"loss", "lr", "eta_s", "tokens_per_s"} <= set(metrics[-1].data)
    training = v1.metrics["training"]
    assert training["trainable_params"] < training["total_params"]

    v2 = train_model(tl.store, config, dataset, parent=v1)
    assert (v2.name, v2.parent_id) == ("v2", v1.id)
    assert [v.name for v in list_versions(tl.store, "ui")] == ["v1", "v2"]


def test_full_fine_tuning_saves_a_whole_model_that_serves(workspace) -> None:
    from tuneloop.providers import provider_for_version

    config, tl, dataset = workspace
    full = config.train.model_copy(update={"method": "full"})
    v1 = train_model(tl.store, config, dataset, train_config=full)
    model_dir = Path(v1.artifact_path)
    assert model_dir.name == "model" and (model_dir / "model.safetensors").is_file()
    assert v1.metrics["training"]["trainable_params"] == v1.metrics["training"]["total_params"]
    answer = provider_for_version(v1).complete(
        [{"role": "user", "content": "Design a mobile login screen."}], max_tokens=4
    )
    assert answer.completion_tokens and answer.completion_tokens <= 4
    v2 = train_model(tl.store, config, dataset, train_config=full, parent=v1)
    assert v2.base_model == str(model_dir) and v2.parent_id == v1.id


def test_failed_training_is_recorded_and_registers_nothing(workspace) -> None:
    config, tl, dataset = workspace
    broken = config.train.model_copy(update={"base_model": str(config.workspace / "missing")})
    with pytest.raises(TrainingError, match="cannot load model"):
        train_model(tl.store, config, dataset, train_config=broken)
    with tl.store.session() as session:
        job = session.query(Job).one()
        assert job.status == "failed" and "cannot load model" in job.error
    assert list_versions(tl.store, "ui") == []


def test_cli_train_eval_and_models(workspace) -> None:
    config, _tl, dataset = workspace
    config_file = config.workspace / "tuneloop.toml"
    config_file.write_text(
        f'workspace = "{config.workspace}"\ntask = "ui"\n'
        "[train]\nepochs = 1\nbatch_size = 4\nmax_length = 320\nlora_r = 4\nlora_alpha = 8\n"
        "[evaluate]\nmax_new_tokens = 8\nmax_examples = 2\n"
    )
    runner = CliRunner()
    trained = runner.invoke(app, ["train", "--config", str(config_file)])
    assert trained.exit_code == 0, trained.output
    assert "registered ui@v1" in trained.output
    evaluated = runner.invoke(app, ["eval", "base", "v1", "--config", str(config_file)])
    assert evaluated.exit_code == 0, evaluated.output
    assert "v1" in evaluated.output and "base" in evaluated.output
    listed = runner.invoke(app, ["models", "list", "--config", str(config_file)])
    assert listed.exit_code == 0 and "v1" in listed.output
    staged = runner.invoke(
        app, ["models", "stage", "v1", "production", "--config", str(config_file)]
    )
    assert staged.exit_code == 0 and "production" in staged.output
    assert len(load_split(dataset, "eval")) >= 1
