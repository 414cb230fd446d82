"""The local fine-tuning recipe: plain PyTorch, readable top to bottom, in phases.

``FinetuneRecipe`` runs ``setup()`` (runtime, memory check, model, data, optimizer, and a
checkpoint when resuming) → ``train()`` (the loop only) → ``save()`` → ``cleanup()``;
``save_checkpoint()`` / ``load_checkpoint()`` are phases of their own, so a killed run continues
from its last checkpoint to the same weights as an uninterrupted one. Every knob is a field of
:class:`~tuneloop.config.TrainConfig`; progress goes to one callback (store events, a bar).

Methods: LoRA (PEFT; rsLoRA, ``modules_to_save``), QLoRA (``use_4bit``, CUDA), or full
fine-tuning; a previous version's adapter can be continued. Under ``accelerate launch`` the same
recipe trains data-parallel: every process takes its share of each global batch, gradients are
averaged by DDP, and only the main process writes checkpoints and weights.

``max_minutes`` bounds the loop's wall time: the run times its first steps, keeps the steps
whose predicted time fits, and fits the learning-rate schedule to them (a resumed run keeps
that choice).

The loss of an optimizer step is the mean over every target token of its global batch (all
micro-batches, all processes), so one process with batch 4 and two with batch 2 take the same
steps.

Batches: padded rows of similar length (``packing = false``, the default) or each batch packed
into one row with attention confined to each example (``packing = true``). Measured with
``bench/packing.py`` (demo data, shipped model, LoRA r=8, batch 4, fp32, 2 threads, fastest
forward+backward per batch of 5 alternating rounds, on the project's shared 2-core CPU):
length-grouped padding 158.7 target tokens/s, packing 125.0 (0.79x). Length grouping leaves
1.9 % padding, while SDPA on a CPU applies a packed row's block-diagonal mask densely (attention
over the whole four-example row, most of it masked), so padding wins here. On GPUs with
variable-length flash attention packing is the one to try.
"""

from __future__ import annotations

import math
import random
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tuneloop.config import TrainConfig
from tuneloop.errors import TrainingError
from tuneloop.store import JobEventKind, ProgressCallback, ProgressEvent
from tuneloop.train.data import collate, collate_packed, tokenize_examples
from tuneloop.train.memory import available_memory, estimate_memory
from tuneloop.train.precision import autocast, resolve_precision
from tuneloop.train.runtime import (
    Runtime,
    check_4bit,
    four_bit_options,
    memory_stats,
    rng_state,
    set_rng_state,
)

LENGTH_GROUP_FACTOR = 8  # sort within windows of 8 batches: less padding, still shuffled
# With ``max_minutes``: steps 2..4 are timed (the first pays for warm-up), then the run keeps the
# steps whose predicted time fits in what is left of the budget.
BUDGET_TIMED_STEPS = 3
CHECKPOINT_PREFIX = "step-"
STATE_FILE = "state.pt"
Batch = list[Any]  # a micro-batch of tokenized items: examples (SFT) or pairs (DPO)


@dataclass
class TrainResult:
    adapter_dir: Path
    steps: int
    epochs: float  # as trained: fewer than configured when max_minutes cut the run
    train_loss: float
    eval_loss: float | None
    trained_tokens: int
    wall_s: float
    trainable_params: int
    total_params: int
    precision: str = "fp32"
    method: str = "lora"
    dropped_examples: int = 0
    loss_curve: list[tuple[int, float]] = field(default_factory=list)
    input_tokens: int = 0
    resumed_from_step: int | None = None
    processes: int = 1
    planned_steps: int | None = None  # what the configured epochs would have taken

    def metrics(self) -> dict[str, Any]:
        return {
            "train_loss": round(self.train_loss, 4),
            "eval_loss": None if self.eval_loss is None else round(self.eval_loss, 4),
            "steps": self.steps,
            "epochs": self.epochs,
            "trained_tokens": self.trained_tokens,
            "input_tokens": self.input_tokens,
            "wall_s": round(self.wall_s, 1),
            "trainable_params": self.trainable_params,
            "total_params": self.total_params,
            "precision": self.precision,
            "method": self.method,
            "dropped_examples": self.dropped_examples,
            "resumed_from_step": self.resumed_from_step,
            "processes": self.processes,
            "planned_steps": self.planned_steps,
        }


def finetune(
    config: TrainConfig,
    train_examples: list[dict[str, Any]],
    eval_examples: list[dict[str, Any]],
    out_dir: Path,
    *,
    parent_adapter: Path | None = None,
    on_event: ProgressCallback | None = None,
    checkpoint_dir: Path | None = None,
    resume_from: Path | None = None,
    available_bytes: int | None = None,
    recipe_class: type[FinetuneRecipe] | None = None,
) -> TrainResult:
    """Fine-tune ``config.base_model`` on chat examples; save the adapter (or full model).

    Checkpoints go to ``checkpoint_dir`` every ``config.checkpoint_every`` steps; ``resume_from``
    (a checkpoint folder) continues from one. ``available_bytes`` replaces the memory this
    machine reports (for tests and for leaving room to other work).
    """
    recipe = (recipe_class or FinetuneRecipe)(
        config,
        out_dir=out_dir,
        parent_adapter=parent_adapter,
        on_event=on_event,
        checkpoint_dir=checkpoint_dir,
        available_bytes=available_bytes,
    )
    return recipe.run(train_examples, eval_examples, resume_from=resume_from)


def latest_checkpoint(checkpoint_dir: Path) -> Path | None:
    """The newest complete checkpoint in ``checkpoint_dir`` (half-written ones never count)."""
    if not checkpoint_dir.is_dir():
        return None
    done = [
        path
        for path in checkpoint_dir.glob(f"{CHECKPOINT_PREFIX}*")
        if path.suffix != ".tmp" and (path / STATE_FILE).is_file()
    ]
    return max(done, key=lambda path: int(path.name.removeprefix(CHECKPOINT_PREFIX)), default=None)


def checkpoint_step(checkpoint: Path) -> int:
    return int(checkpoint.name.removeprefix(CHECKPOINT_PREFIX))


class FinetuneRecipe:
    """One local training run, phase by phase (see the module docstring)."""

    def __init__(
        self,
        config: TrainConfig,
        *,
        out_dir: Path,
        parent_adapter: Path | None = None,
        on_event: ProgressCallback | None = None,
        checkpoint_dir: Path | None = None,
        available_bytes: int | None = None,
    ) -> None:
        self.config = config
        self.out_dir = out_dir
        self.parent_adapter = parent_adapter
        self.on_event = on_event
        self.checkpoint_dir = checkpoint_dir
        self.available_bytes = available_bytes
        # Progress: everything a checkpoint holds besides weights, optimizer and RNG.
        self.step = 0
        self.epoch = 0
        self.group_in_epoch = 0  # optimizer steps already taken in the current epoch
        self.trained_tokens = 0
        self.input_tokens = 0
        self.loss_curve: list[tuple[int, float]] = []
        self.resumed_from_step: int | None = None
        self.dropped = 0
        self.eval_loss: float | None = None
        self.train_set: list[Any] = []  # tokenized items: examples, or pairs for DPO
        self.eval_set: list[Any] = []
        self.budget_fitted = False  # with max_minutes: total_steps already fitted to the budget
        self._created = self._started = time.perf_counter()
        self._run_start_step = 0
        self._run_start_tokens = 0

    def run(
        self,
        train_examples: list[dict[str, Any]],
        eval_examples: list[dict[str, Any]],
        *,
        resume_from: Path | None = None,
    ) -> TrainResult:
        """Every phase in order; the model and process group are let go however it ends."""
        try:
            self.setup(train_examples, eval_examples, resume_from=resume_from)
            self.train()
            return self.save()
        finally:
            self.cleanup()

    # ── setup ─────────────────────────────────────────────────────────────────────────────
    def setup(
        self,
        train_examples: list[dict[str, Any]],
        eval_examples: list[dict[str, Any]],
        *,
        resume_from: Path | None = None,
    ) -> None:
        if not train_examples:
            raise TrainingError("the training split is empty")
        self._setup_runtime()
        self._check_memory()
        self._setup_model()
        self._setup_data(train_examples, eval_examples)
        self._setup_optimizer()
        if resume_from is not None:
            self.load_checkpoint(resume_from)

    def _setup_runtime(self) -> None:
        import torch

        torch.manual_seed(self.config.seed)
        random.seed(self.config.seed)
        if self.config.threads:
            torch.set_num_threads(self.config.threads)
        self.runtime = Runtime.start(self.config.device)
        self.device = self.runtime.device
        self.precision = resolve_precision(self.config.precision, self.device.split(":")[0])
        if self.config.use_4bit:
            check_4bit(self.device)

    def _check_memory(self) -> None:
        available, where = available_memory(self.device)
        if self.available_bytes is not None:
            available = self.available_bytes
        estimate = estimate_memory(
            self.config.model_copy(update={"precision": self.precision}),
            processes=self.runtime.processes,
            available=available,
            where=where,
        )
        self._emit(JobEventKind.LOG, {"message": f"memory: {estimate.describe()}"})
        if self.config.check_memory and not estimate.fits:
            raise TrainingError(
                f"this run {estimate.describe()}: it cannot fit; {estimate.advice(self.config)}"
            )

    def _setup_model(self) -> None:
        from peft import LoraConfig, PeftModel, get_peft_model

        from tuneloop.hfmodels import load_pretrained

        config = self.config
        options: dict[str, Any] = {}
        if config.use_4bit:
            options = four_bit_options(self.device)
        self.tokenizer, model = load_pretrained(
            config.base_model, TrainingError, model_options=options
        )
        if config.gradient_checkpointing:
            model.gradient_checkpointing_enable(
                gradient_checkpointing_kwargs={"use_reentrant": False}
            )
            model.config.use_cache = False
        if config.use_4bit:
            from peft import prepare_model_for_kbit_training

            model = prepare_model_for_kbit_training(
                model, use_gradient_checkpointing=config.gradient_checkpointing
            )
        if config.method == "full":
            pass  # every weight trains; the result is a whole model folder
        elif self.parent_adapter is not None:
            model = PeftModel.from_pretrained(model, str(self.parent_adapter), is_trainable=True)
        else:
            model = get_peft_model(
                model,
                LoraConfig(
                    r=config.lora_r,
                    lora_alpha=config.lora_alpha,
                    lora_dropout=config.lora_dropout,
                    target_modules=list(config.target_modules),
                    modules_to_save=list(config.modules_to_save) or None,
                    use_rslora=config.use_rslora,
                    task_type="CAUSAL_LM",
                ),
            )
        if config.gradient_checkpointing and config.method != "full":
            model.enable_input_require_grads()  # checkpointed blocks need a grad-carrying input
        if not config.use_4bit:
            model.to(self.device)
        self.total_params = sum(p.numel() for p in model.parameters())
        self.trainable_params = sum(p.numel() for p in model.parameters() if p.requires_grad)
        self.model = model
        self._emit(
            JobEventKind.LOG,
            {
                "message": f"{config.method}{' (4-bit base)' if config.use_4bit else ''} on "
                f"{config.base_model}: {self.trainable_params:,} of {self.total_params:,} "
                f"parameters trainable, device {self.device}, {self.precision}, "
                f"{self.runtime.processes} process(es)"
            },
        )

    def _setup_data(
        self, train_examples: list[dict[str, Any]], eval_examples: list[dict[str, Any]]
    ) -> None:
        config = self.config
        self._tokenize(train_examples, eval_examples)
        self.global_batch = config.batch_size * self.runtime.processes
        batches_per_epoch = math.ceil(len(self.train_set) / self.global_batch)
        self.steps_per_epoch = math.ceil(batches_per_epoch / config.grad_accum_steps)
        self.planned_steps = self.steps_per_epoch * config.epochs
        self.total_steps = self.planned_steps  # fewer when max_minutes cuts the run short

    def _tokenize(
        self, train_examples: list[dict[str, Any]], eval_examples: list[dict[str, Any]]
    ) -> None:
        """Set ``train_set`` / ``eval_set`` (the items batches are made of) and ``dropped``."""
        config = self.config
        options = {"train_on_inputs": config.train_on_inputs}
        self.train_set, dropped = tokenize_examples(
            self.tokenizer, train_examples, config.max_length, **options
        )
        self.eval_set, eval_dropped = tokenize_examples(
            self.tokenizer, eval_examples, config.max_length, **options
        )
        self.dropped = dropped
        if dropped or eval_dropped:
            self._emit(
                JobEventKind.LOG,
                {
                    "message": f"dropped {dropped} train and {eval_dropped} eval examples whose "
                    f"answer does not fit in max_length={config.max_length} tokens (or is empty)",
                    "dropped_train": dropped,
                    "dropped_eval": eval_dropped,
                },
            )
        if not self.train_set:
            raise TrainingError(
                f"no training example has an answer that fits in max_length={config.max_length} "
                "tokens; raise train.max_length"
            )

    def _setup_optimizer(self) -> None:
        import torch

        self.optimizer = torch.optim.AdamW(
            [p for p in self.model.parameters() if p.requires_grad],
            lr=self.config.learning_rate,
            weight_decay=self.config.weight_decay,
        )
        # Read at every step, so a schedule fitted to a time budget takes effect at once.
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer,
            lambda step: _warmup_cosine(
                step, max(1, int(self.total_steps * self.config.warmup_ratio)), self.total_steps
            ),
        )
        self.model = self.runtime.prepare(self.model)

    # ── train ─────────────────────────────────────────────────────────────────────────────
    def train(self) -> None:
        """The loop: epochs of optimizer steps, each over ``grad_accum_steps`` global batches."""
        config = self.config
        self._started = time.perf_counter()
        self._run_start_step, self._run_start_tokens = self.step, self.trained_tokens
        self.model.train()
        timed: list[tuple[float, int]] = []  # (seconds, token slots) of the budget's timed steps
        while self.epoch < config.epochs and self.step < self.total_steps:
            groups = self._epoch_steps(self.epoch)
            while self.group_in_epoch < len(groups) and self.step < self.total_steps:
                group = groups[self.group_in_epoch]
                step_started = time.perf_counter()
                loss = self._train_step(group)
                if config.max_minutes is not None and not self.budget_fitted:
                    if self.step > self._run_start_step:  # the run's first step warms up
                        timed.append((time.perf_counter() - step_started, self._token_slots(group)))
                    if len(timed) == BUDGET_TIMED_STEPS or self.step + 1 == self.total_steps:
                        self._fit_to_budget(timed)
                self.step += 1
                self.group_in_epoch += 1
                self.loss_curve.append((self.step, loss))
                self._log_step(loss)
                if config.eval_every and self.step % config.eval_every == 0:
                    self._log_eval()
                if config.checkpoint_every and self.step % config.checkpoint_every == 0:
                    self.save_checkpoint()
            if self.group_in_epoch == len(groups):
                self.epoch += 1
                self.group_in_epoch = 0
        self.eval_loss = self._evaluate()

    def _fit_to_budget(self, timed: list[tuple[float, int]]) -> None:
        """Cut ``total_steps`` to the steps whose predicted time fits in what is left of
        ``max_minutes``: each step costs its token slots times the seconds per slot measured
        on the timed steps (averaged over processes, so all of them choose alike)."""
        assert self.config.max_minutes is not None
        self.budget_fitted = True
        seconds = self.runtime.sum(sum(s for s, _ in timed)) / self.runtime.processes
        per_slot = seconds / max(1, sum(slots for _, slots in timed))
        left = self.config.max_minutes * 60 - (time.perf_counter() - self._started)
        steps, predicted = self.step + 1, 0.0  # the step just taken counts
        epoch, start = self.epoch, self.group_in_epoch + 1
        while epoch < self.config.epochs and steps < self.total_steps:
            for group in self._epoch_steps(epoch)[start:]:
                predicted += self._token_slots(group) * per_slot
                if predicted > left or steps == self.total_steps:
                    break
                steps += 1
            else:
                epoch, start = epoch + 1, 0
                continue
            break
        if steps < self.total_steps:
            self._emit(
                JobEventKind.LOG,
                {
                    "message": f"training {steps} of {self.planned_steps} steps to finish "
                    f"within max_minutes={self.config.max_minutes:g}",
                    "total_steps": steps,
                    "planned_steps": self.planned_steps,
                },
            )
            self.total_steps = steps

    def _train_step(self, group: list[Batch]) -> float:
        """One optimizer step; returns the step's mean loss per loss unit (target token)."""
        import torch

        items = [item for batch in group for item in batch]
        step_units = sum(self._loss_units(item) for item in items)
        self.trained_tokens += sum(item.trained_tokens for item in items)
        self.input_tokens += sum(sum(self._sequence_lengths(item)) for item in items)
        loss_sum = 0.0
        for index, batch in enumerate(group):
            shard, weight = self.runtime.shard(batch)
            units = sum(self._loss_units(item) for item in shard)
            with self.runtime.sync_gradients(self.model, index == len(group) - 1):
                with autocast(self.precision, self.device.split(":")[0]):
                    mean_loss = self._loss(shard)
                if not torch.isfinite(mean_loss):
                    raise TrainingError(
                        f"loss became {mean_loss.item()} at step {self.step + 1}; "
                        "lower learning_rate"
                    )
                # Sum over this shard's loss units, divided by the whole step's: DDP's mean
                # over processes is undone by multiplying by their number.
                scaled = mean_loss * (units * weight * self.runtime.processes / step_units)
                self.runtime.backward(scaled)
            loss_sum += mean_loss.item() * units * weight
        if self.config.max_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.max_grad_norm)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return self.runtime.sum(loss_sum) / step_units

    # What a method changes: the items, what one weighs in the loss, and the loss itself.
    def _loss(self, shard: Batch) -> Any:
        """The shard's mean loss per target token (a scalar tensor)."""
        return self.model(**self._tensors(shard), use_cache=False).loss

    def _loss_units(self, item: Any) -> int:
        """How much one item weighs in a step's mean loss: its target tokens."""
        return int(item.trained_tokens)

    def _sequence_lengths(self, item: Any) -> list[int]:
        """The token lengths of the sequences one item runs through the model."""
        return [len(item.input_ids)]

    def _step_metrics(self) -> dict[str, Any]:
        """Method-specific values for a step's progress event."""
        return {}

    def _token_slots(self, group: list[Batch]) -> int:
        """What one optimizer step computes, in token positions: rows times the longest
        sequence, as padding costs (for packed batches a bound, which is what a budget wants)."""
        slots = 0
        for batch in group:
            lengths = [n for item in batch for n in self._sequence_lengths(item)]
            slots += len(lengths) * max(lengths, default=0)
        return slots

    def _epoch_steps(self, epoch: int) -> list[list[Batch]]:
        """The epoch's global batches grouped by optimizer step: a pure function of the seed and
        the epoch, so a resumed run sees the same order without replaying anything."""
        rng = random.Random(f"{self.config.seed}/{epoch}")
        batches = _length_grouped_batches(
            self.train_set, self.global_batch, rng, lambda item: max(self._sequence_lengths(item))
        )
        accum = self.config.grad_accum_steps
        return [batches[start : start + accum] for start in range(0, len(batches), accum)]

    def _tensors(self, batch: Batch) -> dict[str, Any]:
        if self.config.packing:
            tensors = collate_packed(batch)
        else:
            tensors = collate(batch, self.tokenizer.pad_token_id)
        return {key: value.to(self.device) for key, value in tensors.items()}

    def _log_step(self, loss: float) -> None:
        elapsed = max(1e-9, time.perf_counter() - self._started)
        steps_here = self.step - self._run_start_step
        self._emit(
            JobEventKind.METRIC,
            {
                "step": self.step,
                "total_steps": self.total_steps,
                "epoch": self.epoch + 1,
                "loss": round(loss, 4),
                "lr": self.scheduler.get_last_lr()[0],
                "tokens_per_s": round((self.trained_tokens - self._run_start_tokens) / elapsed, 1),
                "eta_s": round(elapsed / steps_here * (self.total_steps - self.step), 1),
                **self._step_metrics(),
                **memory_stats(self.device),
            },
        )

    def _log_eval(self) -> None:
        eval_loss = self._evaluate()
        if eval_loss is not None:
            self._emit(
                JobEventKind.METRIC,
                {
                    "step": self.step,
                    "total_steps": self.total_steps,
                    "eval_loss": round(eval_loss, 4),
                },
            )
        self.model.train()

    def _evaluate(self) -> float | None:
        """Token-weighted mean loss on the held-out split (None when there is none)."""
        import torch

        if not self.eval_set:
            return None
        self.model.eval()
        total_loss, total_tokens = 0.0, 0
        with torch.inference_mode(), autocast(self.precision, self.device.split(":")[0]):
            for start in range(0, len(self.eval_set), self.config.batch_size):
                batch = self.eval_set[start : start + self.config.batch_size]
                tokens = sum(example.trained_tokens for example in batch)
                total_loss += (
                    self.model(**self._tensors(batch), use_cache=False).loss.item() * tokens
                )
                total_tokens += tokens
        return total_loss / max(1, total_tokens)

    # ── checkpoints ───────────────────────────────────────────────────────────────────────
    def save_checkpoint(self) -> Path | None:
        """Write everything the run needs to continue exactly: trainable weights, optimizer,
        scheduler, RNG states (one file per process) and progress. Written to ``step-N.tmp``
        and renamed, so a kill mid-write leaves the previous checkpoint whole; older ones are
        removed. Every process takes part (their RNG states are gathered); the main one writes."""
        import torch

        rng_states = self.runtime.gather(rng_state())
        if not self.runtime.is_main or self.checkpoint_dir is None:
            return None
        final = self.checkpoint_dir / f"{CHECKPOINT_PREFIX}{self.step:06d}"
        partial = final.with_suffix(".tmp")
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        for rank, state_of_rank in enumerate(rng_states):
            torch.save(state_of_rank, partial / f"rng-{rank}.pt")
        model = self.runtime.unwrap(self.model)
        state = {
            "model": {
                name: param.detach().cpu()
                for name, param in model.named_parameters()
                if param.requires_grad
            },
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "progress": {
                "step": self.step,
                "epoch": self.epoch,
                "group_in_epoch": self.group_in_epoch,
                "trained_tokens": self.trained_tokens,
                "input_tokens": self.input_tokens,
                "loss_curve": self.loss_curve,
                "total_steps": self.total_steps,
                "planned_steps": self.planned_steps,
                "budget_fitted": self.budget_fitted,
                "processes": self.runtime.processes,
            },
        }
        torch.save(state, partial / STATE_FILE)
        partial.rename(final)
        for older in self.checkpoint_dir.glob(f"{CHECKPOINT_PREFIX}*"):
            if older != final:
                shutil.rmtree(older, ignore_errors=True)
        self._emit(
            JobEventKind.LOG,
            {
                "message": f"checkpoint at step {self.step}",
                "step": self.step,
                "checkpoint": str(final),
            },
        )
        return final

    def load_checkpoint(self, checkpoint: Path) -> None:
        """Restore a checkpoint written by :meth:`save_checkpoint` (after ``setup``'s phases)."""
        import torch

        state_file = checkpoint / STATE_FILE
        if not state_file.is_file():
            raise TrainingError(f"no checkpoint at {checkpoint} ({STATE_FILE} is missing)")
        state = torch.load(state_file, map_location="cpu", weights_only=True)
        progress = state["progress"]
        if progress["processes"] != self.runtime.processes:
            raise TrainingError(
                f"the checkpoint at {checkpoint} was written by {progress['processes']} "
                f"process(es); resume it with as many (now {self.runtime.processes})"
            )
        planned = progress.get("planned_steps", progress["total_steps"])
        if planned != self.planned_steps:
            raise TrainingError(
                f"the checkpoint at {checkpoint} belongs to a run of {planned} "
                f"steps, this one has {self.planned_steps}: data or config differ"
            )
        # A run cut to a time budget resumes with the steps it chose then, whatever the time.
        self.total_steps = progress["total_steps"]
        self.budget_fitted = progress.get("budget_fitted", False)
        model = self.runtime.unwrap(self.model)
        parameters = dict(model.named_parameters())
        with torch.no_grad():
            for name, value in state["model"].items():
                parameters[name].copy_(value.to(parameters[name].device))
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        for key in ("step", "epoch", "group_in_epoch", "trained_tokens", "input_tokens"):
            setattr(self, key, progress[key])
        self.loss_curve = [(int(step), float(loss)) for step, loss in progress["loss_curve"]]
        rng_file = checkpoint / f"rng-{self.runtime.rank}.pt"
        set_rng_state(torch.load(rng_file, map_location="cpu", weights_only=False))
        self.resumed_from_step = self.step
        self._emit(
            JobEventKind.LOG,
            {
                "message": f"resumed from the checkpoint at step {self.step} of {self.total_steps}",
                "resumed_from_step": self.step,
            },
        )

    # ── save and cleanup ──────────────────────────────────────────────────────────────────
    def save(self) -> TrainResult:
        """Write the adapter (or the whole model) and the tokenizer; the main process only."""
        if self.runtime.is_main:
            model = self.runtime.unwrap(self.model)
            model.train(False)
            self.out_dir.mkdir(parents=True, exist_ok=True)
            model.save_pretrained(str(self.out_dir))
            self.tokenizer.save_pretrained(str(self.out_dir))
        self.runtime.wait()
        recent = self.loss_curve[-5:]
        result = self._result(
            adapter_dir=self.out_dir,
            steps=self.step,
            epochs=round(self.step / self.steps_per_epoch, 2),
            train_loss=sum(loss for _, loss in recent) / max(1, len(recent)),
            eval_loss=self.eval_loss,
            trained_tokens=self.trained_tokens,
            wall_s=time.perf_counter() - self._created,
            trainable_params=self.trainable_params,
            total_params=self.total_params,
            precision=self.precision,
            method=self.config.method,
            dropped_examples=self.dropped,
            loss_curve=list(self.loss_curve),
            input_tokens=self.input_tokens,
            resumed_from_step=self.resumed_from_step,
            processes=self.runtime.processes,
            planned_steps=self.planned_steps,
        )
        self._emit(
            JobEventKind.LOG,
            {
                "message": f"saved {self.config.method} weights to {self.out_dir}",
                **result.metrics(),
            },
        )
        return result

    def _result(self, **values: Any) -> TrainResult:
        return TrainResult(**values)

    def cleanup(self) -> None:
        """Let go of the model and optimizer (and the GPU cache) and of the process group."""
        for name in ("model", "optimizer", "scheduler"):
            if hasattr(self, name):
                delattr(self, name)
        if getattr(self, "device", "cpu").startswith("cuda"):
            import torch

            torch.cuda.empty_cache()
        if hasattr(self, "runtime"):
            self.runtime.close()

    def _emit(self, kind: JobEventKind, data: dict[str, Any]) -> None:
        """Progress from the main process only: other processes would repeat it."""
        runtime = getattr(self, "runtime", None)
        if self.on_event is not None and (runtime is None or runtime.is_main):
            self.on_event(ProgressEvent(kind, data))


def _warmup_cosine(step: int, warmup: int, total: int) -> float:
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def _length_grouped_batches(
    examples: list[Any], batch_size: int, rng: random.Random, length: Callable[[Any], int]
) -> list[Batch]:
    order = list(range(len(examples)))
    rng.shuffle(order)
    window = batch_size * LENGTH_GROUP_FACTOR
    batches: list[Batch] = []
    for start in range(0, len(order), window):
        chunk = sorted(order[start : start + window], key=lambda i: length(examples[i]))
        batches.extend(
            [examples[i] for i in chunk[j : j + batch_size]]
            for j in range(0, len(chunk), batch_size)
        )
    rng.shuffle(batches)
    return batches
