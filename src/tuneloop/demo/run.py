"""``tuneloop demo``: the whole loop on the embedded default, offline, in a few minutes.

capture (simulated app + users) → synth → curate → evaluate the base → train v1 (LoRA) →
evaluate v1 and the teacher → register, with the numbers that show whether the student improved.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tuneloop.config import Config, load_config
from tuneloop.errors import InputError

if TYPE_CHECKING:
    from tuneloop.capture.client import Tuneloop

DEMO_MARKER = ".tuneloop-demo"
DEMO_TASK = "ui-layout"


@dataclass(frozen=True)
class DemoSize:
    """How much traffic, synthesis, training and evaluation one demo run does."""

    traffic: int
    synthetic: int
    epochs: int
    eval_requests: int  # each asked in seen and in new wording
    max_new_tokens: int
    budget_s: float | None = None  # the whole run's time; training gets what the rest leaves
    smoke: bool = False  # too small for its numbers to say anything about learning


# On a slow CPU the ten epochs do not fit in the demo's five minutes: training then gets the
# time the other stages leave (``train.max_minutes``, set when training starts) and stops at the
# steps that fit in it.
FULL = DemoSize(
    traffic=240, synthetic=80, epochs=10, eval_requests=24, max_new_tokens=384, budget_s=300
)
BUDGET_MARGIN_S = 15.0  # saving, registering and plotting after training, and some slack
# Each template-prompted synthetic example is asked for in this many other wordings too (by the
# demo's stand-in for a frontier model): the synthetic budget is split between the two.
VARIED_PER_EXAMPLE = 2
QUICK = DemoSize(traffic=24, synthetic=8, epochs=1, eval_requests=2, max_new_tokens=48, smoke=True)
TEACHER_NOTE = "the demo's reference generator with 20% injected faults, not a frontier model"


@dataclass
class DemoSummary:
    workspace: Path
    models: dict[str, dict[str, Any]] = field(default_factory=dict)
    dataset: dict[str, Any] = field(default_factory=dict)
    capture: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)
    plots: dict[str, str | None] = field(default_factory=dict)
    evaluation: dict[str, Any] = field(default_factory=dict)
    smoke: bool = False
    wall_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "models": self.models,
            "evaluation": self.evaluation,
            "smoke": self.smoke,
            "wall_s": round(self.wall_s, 1),
            "workspace": str(self.workspace),
            "dataset": self.dataset,
            "capture": self.capture,
            "training": self.training,
            "plots": self.plots,
        }


def demo_config_text(size: DemoSize) -> str:
    """The demo workspace's tuneloop.toml: the defaults plus the demo's choices, explained."""
    budget = (
        "# The demo sets max_minutes when training starts: the time its other stages leave of\n"
        f"# its {size.budget_s:g} seconds, so that it stays within them on a slow machine.\n"
        if size.budget_s
        else ""
    )
    return f"""# Written by `tuneloop demo`. Run other commands on this workspace with
#   tuneloop --config {{this file}} stats
workspace = "."
task = "{DEMO_TASK}"
teacher = "callable:tuneloop.demo.teacher:respond"

[capture]
# The demo's tenant "umbrella" opted out of data collection: its calls are never stored.
opted_out_tenants = ["umbrella"]

[train]
base_model = "builtin:tiny"
# The shipped base model has under 6M weights: training all of them is as cheap as a LoRA
# adapter on a real model, and it is what teaches this model to follow the request (LoRA
# adapters on it learn the JSON format but not which screen was asked for).
method = "full"
epochs = {size.epochs}
learning_rate = 0.001
batch_size = 4
max_length = 640
{budget}
[curate]
# Examples that share a prompt or an answer stay on one side of the split (the default), so no
# eval answer is ever seen in training.
split_group = "answer"

[evaluate]
max_new_tokens = {size.max_new_tokens}
"""


def prepare_workspace(path: Path, size: DemoSize) -> Config:
    """A fresh demo workspace; refuses to wipe a folder that is not a demo workspace."""
    path = path.resolve()
    if path.exists() and any(path.iterdir()):
        if not (path / DEMO_MARKER).exists():
            raise InputError(
                f"{path} exists and is not a demo workspace; choose another --workspace or empty it"
            )
        shutil.rmtree(path)
    path.mkdir(parents=True, exist_ok=True)
    (path / DEMO_MARKER).write_text("created by tuneloop demo; safe to delete\n")
    config_path = path / "tuneloop.toml"
    config_path.write_text(demo_config_text(size), encoding="utf-8")
    return load_config(config_path, environ={})


Step = Callable[[str, int], Callable[[int, int], None]]


def vary_synthetic(
    tl: Tuneloop, interaction_ids: list[str], *, progress: Callable[[int, int], None] | None = None
) -> int:
    """Ask for each stored synthetic example in other wordings (the synth stage's prompt
    variation, ``demo.varier`` standing in for the frontier model); store them as synthetic.

    The answers are the originals', so ``split_group = "answer"`` keeps every wording of one
    answer on the side of the split its original is on. Returns how many were stored.
    """
    from sqlalchemy import select

    from tuneloop.demo.varier import vary_requests
    from tuneloop.providers import CallableProvider
    from tuneloop.store import Interaction
    from tuneloop.synth import vary_prompts

    with tl.store.session() as session:
        rows = session.execute(
            select(
                Interaction.id, Interaction.messages, Interaction.response, Interaction.metadata_
            )
            .where(Interaction.id.in_(interaction_ids))
            .order_by(Interaction.id)
        ).all()
    examples = [
        {
            "id": row.id,
            "messages": [*row.messages, {"role": "assistant", "content": row.response}],
            "metadata": dict(row.metadata_ or {}),
        }
        for row in rows
    ]
    varier = CallableProvider(vary_requests, name="demo-varier")
    report = vary_prompts(
        varier, examples, per_example=VARIED_PER_EXAMPLE, concurrency=1, progress=progress
    )
    stored = 0
    for variation in report.examples:
        stored += (
            tl.log(
                variation.messages[:-1],
                variation.messages[-1]["content"],
                provider=varier.name,
                task=DEMO_TASK,
                source="synthetic",
                metadata=variation.metadata,
            )
            is not None
        )
    return stored


def run_demo(
    workspace: Path, *, quick: bool = False, step: Step | None = None, seed: int = 0
) -> DemoSummary:
    """Run the loop once; ``step(name, total)`` returns a progress callback for each stage."""
    from tuneloop.capture.client import Tuneloop
    from tuneloop.curate.build import build_dataset, load_split
    from tuneloop.demo.layouts import SYSTEM_PROMPT
    from tuneloop.demo.scoring import (
        NEW,
        SEEN,
        WORDINGS,
        answers_in_training,
        eval_sets,
        score_by_wording,
    )
    from tuneloop.demo.simulate import layout_validator, simulate_traffic, synth_items
    from tuneloop.demo.teacher import Teacher
    from tuneloop.evaluate.runner import evaluate_provider
    from tuneloop.providers import CallableProvider, build_provider, provider_for_version
    from tuneloop.registry import update_metrics
    from tuneloop.store import JobEventKind, ProgressEvent
    from tuneloop.synth import generate_examples
    from tuneloop.train import train_model

    started = time.perf_counter()
    size = QUICK if quick else FULL
    config = prepare_workspace(workspace, size)
    summary = DemoSummary(workspace=config.workspace)
    progress = step or (lambda _name, _total: lambda _done, _total: None)
    tl = Tuneloop(config)
    teacher = CallableProvider(Teacher(seed=seed), name="demo-teacher")

    traffic = simulate_traffic(
        tl,
        teacher,
        count=size.traffic,
        task=DEMO_TASK,
        seed=seed,
        progress=progress("simulated users", size.traffic),
    )
    templated = max(1, size.synthetic // (1 + VARIED_PER_EXAMPLE))
    synth = generate_examples(
        tl,
        teacher,
        synth_items(templated, seed),
        task=DEMO_TASK,
        system_prompt=SYSTEM_PROMPT,
        validator=layout_validator,
        progress=progress("synthetic examples", templated),
    )
    varied = vary_synthetic(
        tl, synth.interaction_ids, progress=progress("varied wordings", len(synth.interaction_ids))
    )
    summary.capture = {
        "requests": traffic.requests,
        "logged": traffic.logged,
        "not_stored_opt_out": traffic.not_stored_opt_out,
        "feedback": dict(traffic.feedback),
        "synthetic_stored": synth.stored,
        "synthetic_rejected": synth.rejected,
        "synthetic_varied": varied,
    }

    dataset = build_dataset(tl.store, config, task=DEMO_TASK)
    summary.dataset = {
        "label": dataset.label,
        "train": dataset.stats.get("train_examples"),
        "eval": dataset.stats.get("eval_examples"),
        "path": dataset.path,
    }
    eval_split = load_split(dataset, "eval")
    eval_examples = eval_sets(eval_split, size.eval_requests)
    summary.smoke = size.smoke
    summary.evaluation = {
        "requests": len(eval_examples) // 2,
        "examples": len(eval_examples),
        "eval_answers_in_training": answers_in_training(load_split(dataset, "train"), eval_split),
        "wordings": {
            SEEN: "templates the training data uses, requests whose answer it never contains",
            NEW: "the same requests in phrasings no training example uses",
        },
    }

    def evaluate(label: str, provider: Any, version_id: int | None = None) -> dict[str, Any]:
        run = evaluate_provider(
            tl.store,
            provider,
            eval_examples,
            task=DEMO_TASK,
            label=label,
            dataset_id=dataset.id,
            model_version_id=version_id,
            max_new_tokens=size.max_new_tokens,
            batch_size=config.evaluate.batch_size,
            progress=progress(f"evaluate {label}", len(eval_examples)),
        )
        scored = score_by_wording(eval_examples, run.results)
        return {
            **scored["all"],
            "latency_ms": run.metrics.get("latency_ms"),
            "tokens_per_s": run.metrics.get("tokens_per_s"),
            "batch_size": run.metrics.get("batch_size"),
            "wording": {wording: scored[wording] for wording in WORDINGS},
        }

    base_started = time.perf_counter()
    summary.models["base"] = evaluate("base", build_provider(config.train.base_model))
    # Evaluating v1 costs about what evaluating the base did; training gets the rest.
    eval_s = time.perf_counter() - base_started
    if size.budget_s is not None:
        left = size.budget_s - (time.perf_counter() - started) - eval_s - BUDGET_MARGIN_S
        train = config.train.model_copy(update={"max_minutes": max(0.5, left / 60)})
        config = config.model_copy(update={"train": train})
    train_progress = progress("train v1", 1)

    def on_train_event(event: ProgressEvent) -> None:
        if event.kind == JobEventKind.METRIC and event.step is not None:
            train_progress(event.step, event.data["total_steps"])

    version = train_model(tl.store, config, dataset, task=DEMO_TASK, progress=on_train_event)
    summary.training = version.metrics.get("training", {})
    summary.models[version.name] = evaluate(version.name, provider_for_version(version), version.id)
    update_metrics(tl.store, version.id, {"eval": summary.models[version.name]})
    teacher_row = evaluate("teacher", teacher)
    # The demo's teacher is a Python function: its speed says nothing about a frontier model's.
    summary.models["teacher"] = {
        **teacher_row,
        "latency_ms": None,
        "tokens_per_s": None,
        "note": TEACHER_NOTE,
    }
    from tuneloop.evaluate.plots import save_comparison_plot

    groups = {
        f"{label}\n{wording} wording": group
        for label, row in summary.models.items()
        for wording, group in row["wording"].items()
    }
    chart = save_comparison_plot(
        groups,
        config.workspace / "comparison.png",
        title=f"{DEMO_TASK}: base vs {version.name} vs teacher on held-out requests",
        metrics=(
            ("valid_json_rate", "valid JSON"),
            ("right_screen_rate", "requested screen"),
            ("similarity", "structural similarity"),
        ),
    )
    summary.plots = {
        "comparison": str(chart) if chart else None,
        "loss": str(Path(version.artifact_path or ".").parent / "loss.png"),
    }
    summary.wall_s = time.perf_counter() - started
    return summary
