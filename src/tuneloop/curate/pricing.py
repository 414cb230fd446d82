"""Rough fine-tuning cost per provider, so a dataset build says what training it would cost.

Hosted fine-tuning bills ``training tokens × epochs`` at a price per million tokens. Prices are
from the providers' public pricing pages as of 2025 (openai.com/api/pricing,
together.ai/pricing, "Fine-tuning" sections); they change, so treat the numbers as estimates and
update this table rather than hard-coding prices elsewhere. Minimum charges are ignored.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TrainingPrice:
    target: str  # "provider/model-or-size"
    usd_per_1m_tokens: float
    note: str = ""


TRAINING_PRICES: tuple[TrainingPrice, ...] = (
    TrainingPrice("local", 0.0, "your own hardware"),
    TrainingPrice("openai/gpt-4o-mini", 3.00, "gpt-4o-mini-2024-07-18"),
    TrainingPrice("openai/gpt-4.1-mini", 5.00, "gpt-4.1-mini-2025-04-14"),
    TrainingPrice("openai/gpt-4o", 25.00, "gpt-4o-2024-08-06"),
    TrainingPrice("together/lora-up-to-16b", 0.48, "LoRA SFT, e.g. Llama 3.1 8B"),
    TrainingPrice("together/lora-17b-69b", 1.50, "LoRA SFT"),
    TrainingPrice("together/lora-70b-100b", 2.90, "LoRA SFT, e.g. Llama 3.1 70B"),
)


def estimate_training_cost(training_tokens: int, epochs: int) -> dict[str, float]:
    """USD per target for ``training_tokens`` (of the train split) seen ``epochs`` times."""
    billed = training_tokens * epochs
    return {
        price.target: round(billed / 1_000_000 * price.usd_per_1m_tokens, 4)
        for price in TRAINING_PRICES
    }


# OpenAI's rule for the epochs of a fine-tuning job left at "auto" (its data-preparation guide):
# aim for 3 epochs, but see at least 100 and at most 25,000 examples in total, within 1-25 epochs.
TARGET_EPOCHS = 3
MIN_TARGET_EXAMPLES = 100
MAX_TARGET_EXAMPLES = 25_000
MIN_DEFAULT_EPOCHS = 1
MAX_DEFAULT_EPOCHS = 25


def openai_default_epochs(train_examples: int) -> int:
    """The epochs OpenAI picks for ``train_examples`` when none are given."""
    if train_examples <= 0:
        return TARGET_EPOCHS
    if train_examples * TARGET_EPOCHS < MIN_TARGET_EXAMPLES:
        return min(MAX_DEFAULT_EPOCHS, MIN_TARGET_EXAMPLES // train_examples)
    if train_examples * TARGET_EPOCHS > MAX_TARGET_EXAMPLES:
        return max(MIN_DEFAULT_EPOCHS, MAX_TARGET_EXAMPLES // train_examples)
    return TARGET_EPOCHS
