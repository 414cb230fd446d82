"""The local recipe's phases: config keys, QLoRA and memory refusals, packing, exact resume
after SIGKILL, and two data-parallel processes matching one."""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from tuneloop.assets import BUILTIN_MODELS
from tuneloop.capture.client import Tuneloop
from tuneloop.cli.app import app
from tuneloop.config import Config, TrainConfig, load_config
from tuneloop.curate.build import build_dataset
from tuneloop.demo.layouts import SYSTEM_PROMPT
from tuneloop.demo.simulate import layout_validator, synth_items
from tuneloop.demo.teacher import Teacher
from tuneloop.errors import ConfigError, TrainingError
from tuneloop.providers import CallableProvider
from tuneloop.registry import list_versions
from tuneloop.store import Job, JobEvent, JobEventKind, JobStatus, effective_status
from tuneloop.synth import generate_examples
from tuneloop.train.recipe import finetune

BASE = BUILTIN_MODELS["builtin:tiny"]
pytestmark = pytest.mark.skipif(
    not (BASE / "model.safetensors").exists(), reason="base model not built (make base-model)"
)
# fp32 on one thread: the same run gives the same bits, so resumed and uninterrupted runs compare.
EXACT = {
    "epochs": 2,
    "batch_size": 2,
    "max_length": 320,
    "lora_r": 4,
    "lora_alpha": 8,
    "lora_dropout": 0.1,
    "threads": 1,
    "precision": "fp32",
    "device": "cpu",
    "seed": 7,
}
SRC = Path(__file__).resolve().parents[1] / "src"


def chat(prompt: str, answer: str) -> dict[str, Any]:
    return {
        "messages": [
            {"role": "user", "content": prompt},
            {"role": "assistant", "content": answer},
        ]
    }


TINY_DATA = [chat(f"Give item {i} as JSON", f'{{"item": {i}, "ok": true}}') for i in range(10)]


def adapter_weights(folder: Path) -> dict[str, Any]:
    from safetensors.torch import load_file

    return load_file(str(folder / "adapter_model.safetensors"))


def assert_same_weights(left: Path, right: Path) -> None:
    import torch

    a, b = adapter_weights(left), adapter_weights(right)
    assert a.keys() == b.keys() and a
    for name in a:
        assert torch.allclose(a[name], b[name], rtol=0, atol=1e-6), name


def test_architect_guide_keys_are_typed_and_validated(tmp_path: Path) -> None:
    config_file = tmp_path / "tuneloop.toml"
    config_file.write_text(
        "[train]\nlora_rank = 16\nuse_rslora = true\nmodules_to_save = ['embed_tokens', "
        "'lm_head']\ntrain_on_inputs = true\neval_every = 5\ncheckpoint_every = 10\n"
        "gradient_checkpointing = true\npacking = true\n"
    )
    train = load_config(config_file).train
    assert (train.lora_r, train.use_rslora, train.eval_every) == (16, True, 5)
    assert train.modules_to_save == ["embed_tokens", "lm_head"] and train.packing
    config_file.write_text("[train]\nmethod = 'full'\nuse_4bit = true\n")
    with pytest.raises(ConfigError, match="use_4bit applies to method = 'lora' only"):
        load_config(config_file)
    config_file.write_text("[train]\neval_every = 0\n")
    with pytest.raises(ConfigError, match="train.eval_every"):
        load_config(config_file)


def test_use_4bit_without_cuda_is_one_clear_error(tmp_path: Path) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: 4-bit runs here")
    config = TrainConfig(use_4bit=True, device="cpu")
    with pytest.raises(TrainingError, match="use_4bit needs a CUDA GPU") as caught:
        finetune(config, TINY_DATA, [], tmp_path / "out")
    assert "\n" not in str(caught.value)
    assert not (tmp_path / "out").exists()


def test_memory_estimate_refuses_with_advice_when_it_cannot_fit(tmp_path: Path) -> None:
    config = TrainConfig(method="full", batch_size=64, max_length=1024, device="cpu")
    with pytest.raises(TrainingError) as caught:
        finetune(config, TINY_DATA, [], tmp_path / "out", available_bytes=200 * 2**20)
    message = str(caught.value)
    assert "needs about" in message and "this machine has 0.2 GB of RAM available" in message
    assert "smaller batch_size (now 64)" in message and "gradient_checkpointing" in message
    assert "method = 'lora'" in message and "\n" not in message
    # The estimate grows with what it should: batch, full fine-tuning; checkpointing shrinks it.
    from tuneloop.train.memory import estimate_memory

    lora = estimate_memory(TrainConfig(batch_size=4, max_length=256))
    assert estimate_memory(TrainConfig(batch_size=8, max_length=256)).total > lora.total
    assert estimate_memory(TrainConfig(method="full", batch_size=4, max_length=256)).optimizer > (
        10 * lora.optimizer
    )
    checkpointed = TrainConfig(batch_size=4, max_length=256, gradient_checkpointing=True)
    assert estimate_memory(checkpointed).activations < lora.activations


def test_a_packed_batch_has_the_loss_and_gradients_of_the_padded_one() -> None:
    import torch

    from tuneloop.hfmodels import load_pretrained
    from tuneloop.train.data import collate, collate_packed, tokenize_examples

    tokenizer, model = load_pretrained("builtin:tiny")
    examples, _ = tokenize_examples(tokenizer, [*TINY_DATA[:3], chat("Hi", "Hello there")], 128)
    results = []
    for tensors in (collate(examples, tokenizer.pad_token_id), collate_packed(examples)):
        model.zero_grad()
        loss = model(**tensors, use_cache=False).loss
        loss.backward()
        results.append((loss.item(), model.model.embed_tokens.weight.grad.clone()))
    (padded_loss, padded_grad), (packed_loss, packed_grad) = results
    assert packed_loss == pytest.approx(padded_loss, abs=1e-5)
    # Summation order differs between the two layouts: float noise is ~2e-6 on gradients up to
    # 1.3 on some CPUs, while a leak across packed sequences moves them by ~0.3.
    assert torch.allclose(packed_grad, padded_grad, atol=1e-5)


@pytest.fixture
def workspace(tmp_path: Path) -> tuple[Config, Path]:
    config = Config(workspace=tmp_path / "ws", task="ui", train=TrainConfig(**EXACT))
    tl = Tuneloop(config)
    teacher = CallableProvider(Teacher(seed=3, flaw_rate=0.0), name="teacher")
    generate_examples(
        tl,
        teacher,
        synth_items(16, seed=1),
        task="ui",
        system_prompt=SYSTEM_PROMPT,
        validator=layout_validator,
    )
    build_dataset(tl.store, config, task="ui")
    config_file = tmp_path / "tuneloop.toml"
    lines = [f"{key} = {value!r}" for key, value in EXACT.items()]
    config_file.write_text(
        f'workspace = "{config.workspace}"\ntask = "ui"\n[train]\n'
        + "\n".join(line.replace("'", '"') for line in lines)
        + "\ncheckpoint_every = 2\neval_every = 3\n"
    )
    return config, config_file


@pytest.mark.slow
def test_sigkilled_training_resumes_to_the_uninterrupted_result(workspace) -> None:
    from tuneloop.train.recipe import checkpoint_step, latest_checkpoint

    config, config_file = workspace
    runner = CliRunner()
    # Job 1 in a child process, killed without warning a little after a random checkpoint.
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]),
    }
    child = subprocess.Popen(
        [sys.executable, "-m", "tuneloop.cli.app", "train", "--config", str(config_file)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    checkpoints = config.artifacts_dir / "jobs" / "1" / "checkpoints"
    kill_after = random.choice([2, 4, 6])
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and child.poll() is None:
        found = latest_checkpoint(checkpoints)
        if found is not None and checkpoint_step(found) >= kill_after:
            break
        time.sleep(0.02)
    time.sleep(random.uniform(0, 0.3))
    assert child.poll() is None, child.stderr.read().decode() if child.stderr else ""
    child.send_signal(signal.SIGKILL)
    child.wait()
    kept = latest_checkpoint(checkpoints)
    assert kept is not None
    with Tuneloop(config).store.session() as session:
        assert effective_status(session.get_one(Job, 1)) == JobStatus.STALE
    assert list_versions(Tuneloop(config).store, "ui") == []

    resumed = runner.invoke(app, ["train", "resume", "1", "--config", str(config_file)])
    assert resumed.exit_code == 0, resumed.output
    assert "resumed from the checkpoint at step" in resumed.output
    again = runner.invoke(app, ["train", "resume", "1", "--config", str(config_file)])
    assert again.exit_code != 0 and "job 1 is succeeded" in str(again.exception)

    # Job 2: the same config, never interrupted.
    plain = runner.invoke(app, ["train", "--config", str(config_file)])
    assert plain.exit_code == 0, plain.output
    store = Tuneloop(config).store
    v1, v2 = list_versions(store, "ui")
    assert (v1.job_id, v2.job_id) == (1, 2)  # the resumed job registered once
    assert_same_weights(Path(v1.artifact_path), Path(v2.artifact_path))
    assert not (Path(v1.artifact_path).parent / "checkpoints").exists()

    def curve(job_id: int) -> list[tuple[int, float, str]]:
        with store.session() as session:
            events = session.query(JobEvent).filter_by(job_id=job_id, kind=JobEventKind.METRIC)
            return [
                (
                    e.step,
                    e.data.get("loss", e.data.get("eval_loss")),
                    "eval" * ("eval_loss" in e.data),
                )
                for e in events.order_by(JobEvent.id)
            ]

    resumed_curve, plain_curve = curve(1), curve(2)
    assert [s for s, _, _ in resumed_curve] == [s for s, _, _ in plain_curve]  # no step twice
    for (_, a, _), (_, b, _) in zip(resumed_curve, plain_curve, strict=True):
        assert a == pytest.approx(b, abs=2e-4)
    assert any(kind == "eval" for _, _, kind in plain_curve)
    with store.session() as session:
        logs = session.query(JobEvent).filter_by(job_id=1, kind=JobEventKind.LOG).all()
        job = session.get_one(Job, 1)
        assert job.status == JobStatus.SUCCEEDED
    assert [
        e.data["resumed_from_step"] for e in logs if e.data["message"].startswith("resumed")
    ] == [checkpoint_step(kept)]
    assert v1.metrics["training"]["resumed_from_step"] == checkpoint_step(kept)


@pytest.mark.slow
def test_two_data_parallel_processes_match_one_on_the_same_global_batch(tmp_path: Path) -> None:

    # Nine examples: the last global batch of each epoch has one, so one process idles through
    # it (weight 0) and gradients must still synchronise. No dropout: its masks are per process.
    data = TINY_DATA[:9]
    common = {**EXACT, "lora_dropout": 0.0, "checkpoint_every": None}
    single = finetune(TrainConfig(**{**common, "batch_size": 4}), data, data[:2], tmp_path / "one")
    (tmp_path / "data.json").write_text(json.dumps(data))
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]),
    }
    launched = subprocess.run(
        [
            sys.executable,
            "-m",
            "accelerate.commands.launch",
            "--multi_gpu",  # accelerate's name for "several processes"; on a CPU it uses gloo
            "--num_processes",
            "2",
            "--num_machines",
            "1",
            "--mixed_precision",
            "no",
            "--dynamo_backend",
            "no",
            str(Path(__file__).parent / "ddp_worker.py"),
            TrainConfig(**{**common, "batch_size": 2}).model_dump_json(),
            str(tmp_path / "data.json"),
            str(tmp_path / "two"),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert launched.returncode == 0, launched.stderr[-3000:]
    # Both processes write to one pipe: their lines may run together.
    reports = [json.loads(found) for found in re.findall(r"\{[^{}]*\}", launched.stdout)]
    assert [report["processes"] for report in reports] == [2, 2]
    assert {report["steps"] for report in reports} == {single.steps}
    import torch

    one, two = adapter_weights(tmp_path / "one"), adapter_weights(tmp_path / "two")
    base = adapter_weights(tmp_path / "one")  # B starts at zero: every B weight was learned
    assert one.keys() == two.keys()
    for name in one:
        assert torch.allclose(one[name], two[name], rtol=1e-4, atol=1e-5), name
    assert any(name.endswith("lora_B.weight") and base[name].abs().sum() > 0 for name in base)


@pytest.mark.slow
def test_adapter_placement_prompt_loss_and_eval_events(tmp_path: Path) -> None:
    from tuneloop.hfmodels import load_pretrained
    from tuneloop.train.data import tokenize_example

    tokenizer, _model = load_pretrained("builtin:tiny")
    messages = TINY_DATA[0]["messages"]
    reply_only = tokenize_example(tokenizer, messages, 128)
    everything = tokenize_example(tokenizer, messages, 128, train_on_inputs=True)
    assert reply_only is not None and everything is not None
    assert everything.trained_tokens == len(everything.input_ids) - 1 > reply_only.trained_tokens

    events: list[dict[str, Any]] = []
    config = TrainConfig(
        **{**EXACT, "epochs": 1, "batch_size": 4},
        modules_to_save=["embed_tokens", "lm_head"],
        use_rslora=True,
        eval_every=1,
        checkpoint_every=None,
    )
    result = finetune(
        config,
        TINY_DATA,
        TINY_DATA[:2],
        tmp_path / "out",
        on_event=lambda e: events.append(dict(e.data)),
    )
    plain = finetune(
        TrainConfig(**{**EXACT, "epochs": 1, "batch_size": 4}, checkpoint_every=None),
        TINY_DATA,
        [],
        tmp_path / "plain",
    )
    embeddings = 4096 * 256
    assert result.trainable_params >= plain.trainable_params + embeddings
    saved = adapter_weights(tmp_path / "out")
    assert any(name.endswith("embed_tokens.weight") for name in saved)
    assert any(name.endswith("lm_head.weight") for name in saved)
    adapter_config = json.loads((tmp_path / "out" / "adapter_config.json").read_text())
    assert adapter_config["use_rslora"] is True
    evals = [event for event in events if "eval_loss" in event and "step" in event]
    assert [event["step"] for event in evals] == list(range(1, result.steps + 1))
    steps = [event for event in events if "lr" in event]
    assert steps and all({"loss", "lr", "tokens_per_s", "eta_s", "rss_mb"} <= set(e) for e in steps)


def test_max_minutes_fits_the_steps_and_schedule_to_the_budget(tmp_path: Path) -> None:
    events: list[dict[str, Any]] = []
    budget = {**EXACT, "epochs": 20, "checkpoint_every": 1}
    cut = finetune(
        TrainConfig(**budget, max_minutes=1e-4),  # 6 ms: less than the timed steps took
        TINY_DATA,
        [],
        tmp_path / "cut",
        on_event=lambda e: events.append(dict(e.data)),
        checkpoint_dir=tmp_path / "checkpoints",
    )
    timed_steps = 1 + 3  # a warm-up step, then three timed ones
    assert cut.steps == timed_steps
    notes = [e["message"] for e in events if str(e.get("message", "")).startswith("training ")]
    assert notes == [f"training {timed_steps} of 100 steps to finish within max_minutes=0.0001"]
    assert len([e for e in events if "lr" in e]) == timed_steps

    # Resumed with another budget, the run keeps the number of steps it chose.
    from tuneloop.train.recipe import latest_checkpoint

    checkpoint = latest_checkpoint(tmp_path / "checkpoints")
    assert checkpoint is not None
    resumed = finetune(
        TrainConfig(**budget, max_minutes=60),
        TINY_DATA,
        [],
        tmp_path / "resumed",
        resume_from=checkpoint,
    )
    assert resumed.steps == timed_steps

    roomy = finetune(
        TrainConfig(**{**budget, "epochs": 2, "checkpoint_every": None}, max_minutes=60),
        TINY_DATA,
        [],
        tmp_path / "roomy",
    )
    assert roomy.steps == 10


def test_a_fitted_budget_keeps_the_steps_that_fit_and_ends_the_schedule_there(
    tmp_path: Path,
) -> None:
    from tuneloop.train.recipe import FinetuneRecipe

    events: list[dict[str, Any]] = []
    config = TrainConfig(**EXACT, max_minutes=1, checkpoint_every=None)
    recipe = FinetuneRecipe(
        config, out_dir=tmp_path / "out", on_event=lambda e: events.append(dict(e.data))
    )
    try:
        recipe.setup(TINY_DATA, [])
        assert recipe.total_steps == recipe.planned_steps == 10
        # Pretend a step of typical size took 15 s: 60 s hold about four steps.
        typical = recipe._token_slots(recipe._epoch_steps(0)[0])
        recipe._started = time.perf_counter()
        recipe._fit_to_budget([(15.0, typical)])
        assert 3 <= recipe.total_steps <= 5 and recipe.budget_fitted
        recipe.train()
        assert recipe.step == recipe.total_steps
    finally:
        recipe.cleanup()
    lrs = [e["lr"] for e in events if "lr" in e]
    assert len(lrs) == len(set(lrs)) > 2 and lrs[-1] == pytest.approx(0.0, abs=1e-12)
