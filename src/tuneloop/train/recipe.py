"""The local fine-tuning recipe: a plain PyTorch loop, readable top to bottom.

No Trainer: load → wrap with LoRA (or continue a previous adapter; or, with ``method = "full"``,
train every weight) → tokenize → loop with AdamW, warmup + cosine schedule, gradient
accumulation and clipping → evaluate → save the adapter (or the whole model).
Progress goes to a callback so the caller decides where it lands (store events, a progress bar).
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tuneloop.config import TrainConfig
from tuneloop.errors import TrainingError
from tuneloop.store import JobEventKind, ProgressCallback, ProgressEvent
from tuneloop.train.data import TokenizedExample, collate, tokenize_examples
from tuneloop.train.precision import autocast, resolve_precision

LENGTH_GROUP_FACTOR = 8  # sort within windows of 8 batches: less padding, still shuffled


@dataclass
class TrainResult:
    adapter_dir: Path
    steps: int
    epochs: int
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

    def metrics(self) -> dict[str, Any]:
        return {
            "train_loss": round(self.train_loss, 4),
            "eval_loss": None if self.eval_loss is None else round(self.eval_loss, 4),
            "steps": self.steps,
            "epochs": self.epochs,
            "trained_tokens": self.trained_tokens,
            "wall_s": round(self.wall_s, 1),
            "trainable_params": self.trainable_params,
            "total_params": self.total_params,
            "precision": self.precision,
            "method": self.method,
            "dropped_examples": self.dropped_examples,
        }


def finetune(
    config: TrainConfig,
    train_examples: list[dict[str, Any]],
    eval_examples: list[dict[str, Any]],
    out_dir: Path,
    *,
    parent_adapter: Path | None = None,
    on_event: ProgressCallback | None = None,
) -> TrainResult:
    """Fine-tune ``config.base_model`` on chat examples; save the adapter (or full model)."""
    import torch
    from peft import LoraConfig, PeftModel, get_peft_model

    from tuneloop.hfmodels import load_pretrained, pick_device

    def emit(kind: JobEventKind, data: dict[str, Any]) -> None:
        if on_event is not None:
            on_event(ProgressEvent(kind, data))

    if not train_examples:
        raise TrainingError("the training split is empty")
    started = time.perf_counter()
    torch.manual_seed(config.seed)
    if config.threads:
        torch.set_num_threads(config.threads)
    device = pick_device(config.device, TrainingError)
    precision = resolve_precision(config.precision, device)

    tokenizer, model = load_pretrained(config.base_model, TrainingError)
    if config.method == "full":
        pass  # every weight trains; the result is a whole model folder
    elif parent_adapter is not None:
        model = PeftModel.from_pretrained(model, str(parent_adapter), is_trainable=True)
    else:
        model = get_peft_model(
            model,
            LoraConfig(
                r=config.lora_r,
                lora_alpha=config.lora_alpha,
                lora_dropout=config.lora_dropout,
                target_modules=list(config.target_modules),
                task_type="CAUSAL_LM",
            ),
        )
    model.to(device)
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    emit(
        JobEventKind.LOG,
        {
            "message": f"{config.method} on {config.base_model}: {trainable:,} of {total:,} "
            f"parameters trainable, device {device}, {precision}"
        },
    )

    train_set, dropped = tokenize_examples(tokenizer, train_examples, config.max_length)
    eval_set, eval_dropped = tokenize_examples(tokenizer, eval_examples, config.max_length)
    if dropped or eval_dropped:
        emit(
            JobEventKind.LOG,
            {
                "message": f"dropped {dropped} train and {eval_dropped} eval examples whose "
                f"answer does not fit in max_length={config.max_length} tokens (or is empty)",
                "dropped_train": dropped,
                "dropped_eval": eval_dropped,
            },
        )
    if not train_set:
        raise TrainingError(
            f"no training example has an answer that fits in max_length={config.max_length} "
            "tokens; raise train.max_length"
        )
    rng = random.Random(config.seed)
    batches_per_epoch = math.ceil(len(train_set) / config.batch_size)
    total_steps = math.ceil(batches_per_epoch * config.epochs / config.grad_accum_steps)
    optimizer = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad],
        lr=config.learning_rate,
        weight_decay=config.weight_decay,
    )
    warmup = max(1, int(total_steps * config.warmup_ratio))
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: _warmup_cosine(step, warmup, total_steps)
    )

    step, trained_tokens, recent_losses = 0, 0, []
    loss_curve: list[tuple[int, float]] = []
    model.train()
    for epoch in range(config.epochs):
        batches = _length_grouped_batches(train_set, config.batch_size, rng)
        for index, batch in enumerate(batches):
            tensors = {k: v.to(device) for k, v in collate(batch, tokenizer.pad_token_id).items()}
            with autocast(precision, device):
                loss = model(**tensors).loss
            if not torch.isfinite(loss):
                raise TrainingError(
                    f"loss became {loss.item()} at step {step}; lower learning_rate"
                )
            (loss / config.grad_accum_steps).backward()
            trained_tokens += sum(example.trained_tokens for example in batch)
            recent_losses.append(loss.item())
            last_in_epoch = index == len(batches) - 1
            if (index + 1) % config.grad_accum_steps and not last_in_epoch:
                continue
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            mean_loss = sum(recent_losses) / len(recent_losses)
            recent_losses.clear()
            loss_curve.append((step, mean_loss))
            elapsed = time.perf_counter() - started
            emit(
                JobEventKind.METRIC,
                {
                    "step": step,
                    "total_steps": total_steps,
                    "epoch": epoch + 1,
                    "loss": round(mean_loss, 4),
                    "lr": scheduler.get_last_lr()[0],
                    "tokens_per_s": round(trained_tokens / elapsed, 1),
                    "eta_s": round(elapsed / step * (total_steps - step), 1),
                    **_memory_stats(device),
                },
            )

    with autocast(precision, device):
        eval_loss = _evaluate_loss(
            model, eval_set, tokenizer.pad_token_id, config.batch_size, device
        )
    model.train(False)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out_dir))
    tokenizer.save_pretrained(str(out_dir))
    final_loss = sum(loss for _, loss in loss_curve[-5:]) / max(1, len(loss_curve[-5:]))
    result = TrainResult(
        adapter_dir=out_dir,
        steps=step,
        epochs=config.epochs,
        train_loss=final_loss,
        eval_loss=eval_loss,
        trained_tokens=trained_tokens,
        wall_s=time.perf_counter() - started,
        trainable_params=trainable,
        total_params=total,
        precision=precision,
        method=config.method,
        dropped_examples=dropped,
        loss_curve=loss_curve,
    )
    emit(
        JobEventKind.LOG,
        {"message": f"saved {config.method} weights to {out_dir}", **result.metrics()},
    )
    return result


def _warmup_cosine(step: int, warmup: int, total: int) -> float:
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def _length_grouped_batches(
    examples: list[TokenizedExample], batch_size: int, rng: random.Random
) -> list[list[TokenizedExample]]:
    order = list(range(len(examples)))
    rng.shuffle(order)
    window = batch_size * LENGTH_GROUP_FACTOR
    batches: list[list[TokenizedExample]] = []
    for start in range(0, len(order), window):
        chunk = sorted(order[start : start + window], key=lambda i: len(examples[i].input_ids))
        batches.extend(
            [examples[i] for i in chunk[j : j + batch_size]]
            for j in range(0, len(chunk), batch_size)
        )
    rng.shuffle(batches)
    return batches


def _evaluate_loss(
    model: Any, examples: list[TokenizedExample], pad_token_id: int, batch_size: int, device: str
) -> float | None:
    """Token-weighted mean loss on the held-out split (None when there is none)."""
    import torch

    if not examples:
        return None
    model.eval()
    total_loss, total_tokens = 0.0, 0
    with torch.inference_mode():
        for start in range(0, len(examples), batch_size):
            batch = examples[start : start + batch_size]
            tensors = {k: v.to(device) for k, v in collate(batch, pad_token_id).items()}
            tokens = sum(example.trained_tokens for example in batch)
            total_loss += model(**tensors).loss.item() * tokens
            total_tokens += tokens
    return total_loss / max(1, total_tokens)


def _memory_stats(device: str) -> dict[str, float]:
    import torch

    if device == "cuda":
        return {"gpu_mem_gb": round(torch.cuda.max_memory_allocated() / 2**30, 2)}
    try:
        import resource

        return {"rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}
    except ImportError:  # not on Windows
        return {}
