"""The train stage's entry point: dataset version → job with events → registered model version."""

from __future__ import annotations

import shutil
from pathlib import Path

from tuneloop.config import Config, TrainConfig
from tuneloop.errors import TrainingError
from tuneloop.registry import register_version
from tuneloop.store import (
    Dataset,
    JobRecorder,
    ModelVersion,
    ProgressCallback,
    ProgressEvent,
    Store,
)
from tuneloop.train.plots import save_loss_plot


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

    The adapter is written under ``artifacts/jobs/<id>`` while training, moved to
    ``artifacts/models/<task>/job-<id>`` when complete (with its loss plot), and only then
    registered, so a failed run never leaves a version pointing at a half-written model.
    """
    from tuneloop.curate.build import load_split
    from tuneloop.hfmodels import is_adapter_dir
    from tuneloop.train.recipe import finetune

    task = task or dataset.task
    train_config = train_config or config.train
    parent_adapter: Path | None = None
    if parent is not None:
        if parent.backend != "local" or not parent.artifact_path:
            raise TrainingError(
                f"cannot continue from {parent.task}@{parent.name}: it has no local weights"
            )
        if is_adapter_dir(parent.artifact_path):
            # Continuing an adapter: same base, same adapter shape as the parent.
            parent_adapter = Path(parent.artifact_path)
            train_config = train_config.model_copy(
                update={"base_model": parent.base_model, "method": "lora"}
            )
        else:
            # A fully fine-tuned parent is itself the base of the next version.
            train_config = train_config.model_copy(update={"base_model": parent.artifact_path})
    train_examples = load_split(dataset, "train")
    eval_examples = load_split(dataset, "eval")
    job_config = {
        "train": train_config.model_dump(mode="json"),
        "dataset": dataset.label,
        "parent": parent.name if parent else None,
    }

    with JobRecorder(
        store, kind="train", task=task, dataset_id=dataset.id, config=job_config
    ) as job:
        work_dir = config.artifacts_dir / "jobs" / str(job.job_id)

        def on_event(event: ProgressEvent) -> None:
            job.event(event)
            if progress is not None:
                progress(event)

        weights = "adapter" if train_config.method == "lora" else "model"
        result = finetune(
            train_config,
            train_examples,
            eval_examples,
            work_dir / weights,
            parent_adapter=parent_adapter,
            on_event=on_event,
        )
        plot = save_loss_plot(
            result.loss_curve,
            work_dir / "loss.png",
            title=f"{task} on {dataset.label} (job {job.job_id})",
        )
        # Weights and plot move into place before the version exists, and the version is
        # registered with its path in one insert: no candidate ever points at missing files.
        final_dir = config.artifacts_dir / "models" / task / f"job-{job.job_id}"
        final_dir.parent.mkdir(parents=True, exist_ok=True)
        if final_dir.exists():
            shutil.rmtree(final_dir)  # left by an earlier attempt that never registered
        shutil.move(str(work_dir), str(final_dir))
        version = register_version(
            store,
            task=task,
            base_model=train_config.base_model,
            artifact_path=str(final_dir / weights),
            dataset_id=dataset.id,
            job_id=job.job_id,
            parent_id=parent.id if parent else None,
            config=job_config,
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
