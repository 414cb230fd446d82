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
