"""The train stage's entry point: dataset version → job with events → registered model version.

``train_model`` starts a job; ``resume_training`` continues a stopped one (killed or
interrupted) from the last checkpoint in its job folder, in the same job row, so a job
is registered once however many times it was resumed.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuneloop.config import Config, TrainConfig
from tuneloop.errors import InputError, TrainingError
from tuneloop.registry import register_version, resolve_version
from tuneloop.store import (
    Dataset,
    JobRecorder,
    JobStatus,
    ModelVersion,
    ProgressCallback,
    ProgressEvent,
    Store,
    get_job,
)
from tuneloop.train.plots import save_loss_plot

# The job state machine's way back to running (tuneloop.store.jobs.TRANSITIONS): a job that
# was stopped from outside. Failed and cancelled jobs ended for a reason; start them again.
RESUMABLE = frozenset({JobStatus.INTERRUPTED, JobStatus.STALE})


@dataclass(frozen=True)
class _Plan:
    """What a job trains, as stored in its row: enough to run it again after a kill."""

    task: str
    dataset: Dataset
    train_config: TrainConfig
    parent: ModelVersion | None
    parent_adapter: Path | None
    job_config: dict[str, Any]


def train_model(
    store: Store,
    config: Config,
    dataset: Dataset,
    *,
    task: str | None = None,
    parent: ModelVersion | None = None,
    train_config: TrainConfig | None = None,
    progress: ProgressCallback | None = None,
) -> ModelVersion:
    """Train a LoRA adapter on ``dataset`` (continuing ``parent`` when given) and register it.

    The adapter is written under ``artifacts/jobs/<id>`` while training (with checkpoints in
    ``checkpoints/``), moved to ``artifacts/models/<task>/job-<id>`` when complete (with its
    loss plot), and only then registered, so a failed run never leaves a version pointing at a
    half-written model. Under ``accelerate launch`` only the main process records the job.
    """
    plan = _plan(task or dataset.task, dataset, train_config or config.train, parent)
    if not _is_main_process():
        return _train_without_job(config, plan)
    with JobRecorder(
        store, kind="train", task=plan.task, dataset_id=dataset.id, config=plan.job_config
    ) as job:
        return _run(store, config, plan, job, progress, resume_from=None)


def resume_training(
    store: Store, config: Config, job_id: int, *, progress: ProgressCallback | None = None
) -> ModelVersion:
    """Continue train job ``job_id`` from its last checkpoint to the result an uninterrupted
    run would have had; refuses a job that is running, ended (succeeded, failed, cancelled) or
    has no checkpoint."""
    from tuneloop.curate import resolve_dataset
    from tuneloop.train.recipe import checkpoint_step, latest_checkpoint

    job, state, _events = get_job(store, job_id, events=0)
    if job.kind != "train" or job.backend != "local":
        raise InputError(f"job {job_id} is a {job.backend} {job.kind} job, not a local training")
    if state not in RESUMABLE:
        raise InputError(
            f"job {job_id} is {state}; only an interrupted or stale (killed) job can be "
            "resumed (start a failed or cancelled one again with tuneloop train)"
        )
    with store.session() as session:
        registered = session.query(ModelVersion).filter_by(job_id=job_id).first()
    if registered is not None:
        raise InputError(f"job {job_id} already registered {registered.task}@{registered.name}")
    stored = job.config
    dataset = resolve_dataset(store, stored["dataset"], workspace=config.workspace)
    if dataset.id != job.dataset_id:
        raise InputError(f"job {job_id}'s dataset {stored['dataset']} is no longer in the store")
    checkpoint = latest_checkpoint(_work_dir(config, job_id) / "checkpoints")
    if checkpoint is None:
        raise InputError(
            f"job {job_id} left no checkpoint in {_work_dir(config, job_id) / 'checkpoints'}: "
            "start it again with tuneloop train (checkpoint_every sets how often they are written)"
        )
    train_config = TrainConfig.model_validate(stored["train"])
    parent = resolve_version(store, job.task, stored["parent"]) if stored.get("parent") else None
    plan = _Plan(
        task=job.task,
        dataset=dataset,
        train_config=train_config,
        parent=parent,
        parent_adapter=_parent_adapter(parent, train_config),
        job_config=stored,
    )
    if not _is_main_process():
        return _train_without_job(config, plan, resume_from=checkpoint)
    with JobRecorder.reopen(store, job_id, after_step=checkpoint_step(checkpoint)) as recorder:
        return _run(store, config, plan, recorder, progress, resume_from=checkpoint)


def _plan(
    task: str, dataset: Dataset, train_config: TrainConfig, parent: ModelVersion | None
) -> _Plan:
    from tuneloop.hfmodels import is_adapter_dir

    if parent is not None:
        if parent.backend != "local" or not parent.artifact_path:
            raise TrainingError(
                f"cannot continue from {parent.task}@{parent.name}: it has no local weights"
            )
        if is_adapter_dir(parent.artifact_path):
            # Continuing an adapter: same base, same adapter shape as the parent.
            train_config = train_config.model_copy(
                update={
                    "base_model": parent.base_model,
                    "method": "dpo" if train_config.method == "dpo" else "lora",
                }
            )
        else:
            # A fully fine-tuned parent is itself the base of the next version.
            train_config = train_config.model_copy(update={"base_model": parent.artifact_path})
    if train_config.method == "dpo" and not _examples(dataset, train_config, "train"):
        raise TrainingError(
            f"dataset {dataset.label} has no preference pairs in its train split (pairs "
            "come from corrected answers); train with method lora or full"
        )
    job_config = {
        "train": train_config.model_dump(mode="json"),
        "dataset": dataset.label,
        "parent": parent.name if parent else None,
    }
    return _Plan(
        task=task,
        dataset=dataset,
        train_config=train_config,
        parent=parent,
        parent_adapter=_parent_adapter(parent, train_config),
        job_config=job_config,
    )


def _parent_adapter(parent: ModelVersion | None, train_config: TrainConfig) -> Path | None:
    from tuneloop.hfmodels import is_adapter_dir

    if parent is None or not parent.artifact_path or not is_adapter_dir(parent.artifact_path):
        return None
    return Path(parent.artifact_path)


def _run(
    store: Store,
    config: Config,
    plan: _Plan,
    job: JobRecorder,
    progress: ProgressCallback | None,
    *,
    resume_from: Path | None,
) -> ModelVersion:
    work_dir = _work_dir(config, job.job_id)

    def on_event(event: ProgressEvent) -> None:
        job.event(event)
        if "checkpoint" in event.data:
            job.flush()  # the events up to a checkpoint are stored before anything can kill us
        if progress is not None:
            progress(event)

    weights = _weights_name(plan.train_config)
    train_examples = _examples(plan.dataset, plan.train_config, "train")
    eval_examples = _examples(plan.dataset, plan.train_config, "eval")
    result = _trainer(plan.train_config)(
        plan.train_config,
        train_examples,
        eval_examples,
        work_dir / weights,
        parent_adapter=plan.parent_adapter,
        on_event=on_event,
        checkpoint_dir=work_dir / "checkpoints",
        resume_from=resume_from,
    )
    plot = save_loss_plot(
        result.loss_curve,
        work_dir / "loss.png",
        title=f"{plan.task} on {plan.dataset.label} (job {job.job_id})",
    )
    # Checkpoints only serve a resume; the finished job does not need them.
    shutil.rmtree(work_dir / "checkpoints", ignore_errors=True)
    # Weights and plot move into place before the version exists, and the version is
    # registered with its path in one insert: no candidate ever points at missing files.
    final_dir = config.artifacts_dir / "models" / plan.task / f"job-{job.job_id}"
    final_dir.parent.mkdir(parents=True, exist_ok=True)
    if final_dir.exists():
        shutil.rmtree(final_dir)  # left by an earlier attempt that never registered
    shutil.move(str(work_dir), str(final_dir))
    version = register_version(
        store,
        task=plan.task,
        base_model=plan.train_config.base_model,
        artifact_path=str(final_dir / weights),
        dataset_id=plan.dataset.id,
        job_id=job.job_id,
        parent_id=plan.parent.id if plan.parent else None,
        config=plan.job_config,
        metrics={"training": result.metrics()},
    )
    job.succeed(
        {
            "model_version": version.name,
            "artifact_path": version.artifact_path,
            "loss_plot": str(final_dir / "loss.png") if plot else None,
            **result.metrics(),
        }
    )
    return version


def _train_without_job(config: Config, plan: _Plan, *, resume_from: Path | None = None) -> Any:
    """A non-main process under ``accelerate launch``: trains its share and records nothing;
    the main process writes weights and checkpoints. Returns None, not a version."""
    _trainer(plan.train_config)(
        plan.train_config,
        _examples(plan.dataset, plan.train_config, "train"),
        _examples(plan.dataset, plan.train_config, "eval"),
        config.artifacts_dir / "jobs" / "unused",
        parent_adapter=plan.parent_adapter,
        resume_from=resume_from,
    )
    return None


def _trainer(train_config: TrainConfig) -> Any:
    """The local recipe for the method: SFT on chat examples, or DPO on preference pairs."""
    if train_config.method == "dpo":
        from tuneloop.train.dpo import dpo_finetune

        return dpo_finetune
    from tuneloop.train.recipe import finetune

    return finetune


def _examples(dataset: Dataset, train_config: TrainConfig, split: str) -> list[dict[str, Any]]:
    """The split's chat examples, or its preference pairs for ``method = "dpo"``."""
    from tuneloop.curate import load_pairs, load_split

    if train_config.method == "dpo":
        return load_pairs(dataset, split)
    return load_split(dataset, split)


def _work_dir(config: Config, job_id: int) -> Path:
    return config.artifacts_dir / "jobs" / str(job_id)


def _weights_name(train_config: TrainConfig) -> str:
    return "model" if train_config.method == "full" else "adapter"


def _is_main_process() -> bool:
    """Rank 0 of an ``accelerate launch`` / ``torchrun`` group, or a plain single process."""
    return int(os.environ.get("RANK", "0")) == 0
