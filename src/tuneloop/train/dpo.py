"""DPO on preference pairs: the user's corrected answer preferred to the model's original.

Direct Preference Optimization (Rafailov et al., 2023) trains a LoRA adapter so that the policy
raises the log-probability of the chosen answer relative to the rejected one, measured against
a frozen reference: loss = -log σ(β · ((π_c - ref_c) - (π_r - ref_r))), where π and ref are the
summed log-probabilities of the completion tokens only (the prompt is context, not a target).

The reference is the starting weights (the base for a new adapter, whose update starts at
zero; the parent's weights when continuing). They never change, so their log-probabilities are
computed once before training, one forward pass per pair instead of one per pair per epoch and
no second model in memory. Pairs are tokenized by ``train.data`` like SFT examples, so
truncation and the answer mask are the same in both.

Why our own recipe and not TRL's ``DPOTrainer``: ``bench/dpo_throughput.py`` (the shipped
``builtin:tiny``, 24 pairs, 2 epochs, batch 4, LoRA r 8 on all linear layers, fp32, 2 idle AVX2
cores) measured 787.4 answer tokens/s here against 614.0 for TRL 1.16 with precomputed
reference log-probabilities and 543.5 with its default (1.28× and 1.45×); held-out loss and
accuracy are too noisy at this size to rank either (``docs/dpo.md``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from tuneloop.config import TrainConfig
from tuneloop.errors import TrainingError
from tuneloop.store import JobEventKind, ProgressCallback
from tuneloop.train.data import TokenizedExample, collate, tokenize_example
from tuneloop.train.precision import autocast
from tuneloop.train.recipe import Batch, FinetuneRecipe, TrainResult, finetune


@dataclass(frozen=True)
class TokenizedPair:
    chosen: TokenizedExample
    rejected: TokenizedExample
    # The starting model's summed log-probabilities of each answer (DPO's reference).
    reference: tuple[float, float] = (0.0, 0.0)

    @property
    def trained_tokens(self) -> int:
        return self.chosen.trained_tokens + self.rejected.trained_tokens


@dataclass
class DpoResult(TrainResult):
    """A training result plus what DPO moves: the chosen-minus-rejected margin and accuracy."""

    # Mean log-ratio margin on eval: how much more the chosen answer's log-probability rose
    # from the reference than the rejected one's (DPO's implicit reward margin over beta).
    eval_margin: float | None = None
    eval_accuracy: float | None = None  # share of eval pairs with a positive margin
    beta: float = 0.1

    def metrics(self) -> dict[str, Any]:
        return {
            **super().metrics(),
            "dpo_beta": self.beta,
            "eval_margin": None if self.eval_margin is None else round(self.eval_margin, 4),
            "eval_accuracy": None if self.eval_accuracy is None else round(self.eval_accuracy, 4),
        }


def pair_messages(pair: dict[str, Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The chosen and rejected conversations of an OpenAI DPO line (prompt + one answer each)."""
    prompt = list(pair["input"]["messages"])
    return [*prompt, *pair["preferred_output"]], [*prompt, *pair["non_preferred_output"]]


def tokenize_pairs(
    tokenizer: Any, pairs: list[dict[str, Any]], max_length: int
) -> tuple[list[TokenizedPair], int]:
    """Tokenized pairs with both answers intact and different, and how many were dropped."""
    kept = []
    for pair in pairs:
        chosen_messages, rejected_messages = pair_messages(pair)
        chosen = tokenize_example(tokenizer, chosen_messages, max_length)
        rejected = tokenize_example(tokenizer, rejected_messages, max_length)
        if chosen is not None and rejected is not None and chosen.input_ids != rejected.input_ids:
            kept.append(TokenizedPair(chosen, rejected))
    return kept, len(pairs) - len(kept)


def sequence_logps(
    model: Any, batch: list[TokenizedExample], pad_token_id: int, device: str
) -> Any:
    """Summed log-probability of each example's target tokens (one value per example)."""
    import torch

    tensors = collate(batch, pad_token_id)
    input_ids = tensors["input_ids"].to(device)
    logits = model(input_ids=input_ids, attention_mask=tensors["attention_mask"].to(device)).logits
    labels = tensors["labels"][:, 1:].to(device)
    token_nll = torch.nn.functional.cross_entropy(
        logits[:, :-1].flatten(0, 1).float(), labels.flatten(), reduction="none"
    )  # ignore_index -100 (prompt and padding) gives 0
    return -token_nll.view(labels.shape).sum(dim=1)


def pair_logps(model: Any, batch: list[TokenizedPair], pad_token_id: int, device: str) -> Any:
    """Chosen and rejected log-probabilities in one forward pass: shape (2, len(batch))."""
    sequences = [pair.chosen for pair in batch] + [pair.rejected for pair in batch]
    return sequence_logps(model, sequences, pad_token_id, device).view(2, len(batch))


def reference_logps(
    model: Any, pairs: list[TokenizedPair], pad_token_id: int, batch_size: int, device: str
) -> Any:
    """The starting model's log-probabilities of every pair, (2, len(pairs)), computed once."""
    import torch

    model.eval()
    with torch.inference_mode():
        parts = [
            pair_logps(model, pairs[start : start + batch_size], pad_token_id, device)
            for start in range(0, len(pairs), batch_size)
        ]
    return torch.cat(parts, dim=1) if parts else torch.zeros((2, 0))


def dpo_loss(policy: Any, reference: Any, beta: float) -> tuple[Any, Any]:
    """Per-pair DPO loss and implicit reward margin; both (batch,) tensors."""
    import torch

    margin = beta * ((policy[0] - reference[0]) - (policy[1] - reference[1]))
    return -torch.nn.functional.logsigmoid(margin), margin


def with_reference_logps(
    model: Any, pairs: list[TokenizedPair], pad_token_id: int, batch_size: int, device: str
) -> list[TokenizedPair]:
    """``pairs`` carrying the model's log-probabilities of both answers, computed once."""
    logps = reference_logps(model, pairs, pad_token_id, batch_size, device).tolist()
    return [
        replace(pair, reference=(chosen, rejected))
        for pair, chosen, rejected in zip(pairs, logps[0], logps[1], strict=True)
    ]


def pair_references(batch: list[TokenizedPair], device: str) -> Any:
    import torch

    return torch.tensor([list(pair.reference) for pair in batch], device=device).T


class DpoRecipe(FinetuneRecipe):
    """The fine-tuning recipe with preference pairs as items and DPO's loss: setup, loop,
    checkpoints and exact resume, time budget, data parallelism and saving are the SFT
    recipe's. A pair weighs one unit in a step's mean loss, whatever its length."""

    def __init__(self, config: TrainConfig, **options: Any) -> None:
        super().__init__(config, **options)
        self.beta = config.dpo_beta
        self.eval_margin: float | None = None
        self.eval_accuracy: float | None = None
        self._recent: list[Any] = []  # detached per-pair losses and margins since the last event

    def _tokenize(
        self, train_examples: list[dict[str, Any]], eval_examples: list[dict[str, Any]]
    ) -> None:
        config = self.config
        if not train_examples:
            raise TrainingError("dpo needs preference pairs and the training split has none")
        train_set, dropped = tokenize_pairs(self.tokenizer, train_examples, config.max_length)
        eval_set, eval_dropped = tokenize_pairs(self.tokenizer, eval_examples, config.max_length)
        self.dropped = dropped
        if dropped or eval_dropped:
            self._emit(
                JobEventKind.LOG,
                {
                    "message": f"dropped {dropped} train and {eval_dropped} eval pairs with an "
                    f"answer that does not fit in max_length={config.max_length} tokens, or "
                    "with equal answers",
                    "dropped_train": dropped,
                    "dropped_eval": eval_dropped,
                },
            )
        if not train_set:
            raise TrainingError(
                f"no preference pair has two different answers that fit in "
                f"max_length={config.max_length} tokens; raise train.max_length"
            )
        # The reference is the model before its first update: a new adapter's B matrices are
        # zero and a parent's adapter is where training starts, so no frozen copy is needed (and
        # a resumed run, set up from the same start, computes the same values).
        pad = self.tokenizer.pad_token_id
        with autocast(self.precision, self.device.split(":")[0]):
            self.train_set = with_reference_logps(
                self.model, train_set, pad, config.batch_size, self.device
            )
            self.eval_set = with_reference_logps(
                self.model, eval_set, pad, config.batch_size, self.device
            )

    def _loss(self, shard: Batch) -> Any:
        import torch

        policy = pair_logps(self.model, shard, self.tokenizer.pad_token_id, self.device)
        losses, margins = dpo_loss(policy, pair_references(shard, self.device), self.beta)
        self._recent.append(torch.stack([losses.detach(), margins.detach()]))
        return losses.mean()

    def _loss_units(self, item: Any) -> int:
        return 1

    def _sequence_lengths(self, item: Any) -> list[int]:
        return [len(item.chosen.input_ids), len(item.rejected.input_ids)]

    def _step_metrics(self) -> dict[str, Any]:
        import torch

        if not self._recent:
            return {}
        recent = torch.cat(self._recent, dim=1)
        self._recent.clear()
        return {
            "reward_margin": round(float(recent[1].mean()), 4),
            "reward_accuracy": round(float((recent[1] > 0).float().mean()), 4),
        }

    def _evaluate(self) -> float | None:
        """The DPO loss on the eval pairs; their margin and accuracy are kept for the result."""
        import torch

        if not self.eval_set:
            return None
        self.model.eval()
        with torch.inference_mode(), autocast(self.precision, self.device.split(":")[0]):
            policy = reference_logps(
                self.model,
                self.eval_set,
                self.tokenizer.pad_token_id,
                self.config.batch_size,
                self.device,
            )
            losses, margins = dpo_loss(
                policy, pair_references(self.eval_set, self.device), self.beta
            )
        self.model.train()
        self.eval_margin = float(margins.mean()) / self.beta
        self.eval_accuracy = float((margins > 0).float().mean())
        return float(losses.mean())

    def _result(self, **values: Any) -> DpoResult:
        return DpoResult(
            **values,
            eval_margin=self.eval_margin,
            eval_accuracy=self.eval_accuracy,
            beta=self.beta,
        )


def dpo_finetune(
    config: TrainConfig,
    train_pairs: list[dict[str, Any]],
    eval_pairs: list[dict[str, Any]],
    out_dir: Path,
    *,
    parent_adapter: Path | None = None,
    on_event: ProgressCallback | None = None,
    checkpoint_dir: Path | None = None,
    resume_from: Path | None = None,
    available_bytes: int | None = None,
) -> TrainResult:
    """Train a LoRA adapter with DPO on ``train_pairs`` (OpenAI DPO lines); save it to
    ``out_dir``. Options as for :func:`tuneloop.train.recipe.finetune`."""
    return finetune(
        config,
        train_pairs,
        eval_pairs,
        out_dir,
        parent_adapter=parent_adapter,
        on_event=on_event,
        checkpoint_dir=checkpoint_dir,
        resume_from=resume_from,
        available_bytes=available_bytes,
        recipe_class=DpoRecipe,
    )
