"""What a call costs: USD per million input and output tokens for common models.

From the providers' public pricing pages (openai.com/api/pricing, anthropic.com/pricing,
together.ai/pricing) as of 2025; prices change, so a provider's ``prices`` setting in
``tuneloop.toml`` overrides this table, and an unknown model has no cost rather than a guess.
Dated or suffixed ids (``gpt-4o-2024-08-06``, ``claude-sonnet-4-5-20250929``) match the longest
listed prefix; an OpenRouter id (``openai/gpt-4o``) is looked up without its vendor part.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Price:
    input_per_1m: float
    output_per_1m: float

    def cost(self, input_tokens: int | None, output_tokens: int | None) -> float:
        return (
            (input_tokens or 0) * self.input_per_1m + (output_tokens or 0) * self.output_per_1m
        ) / 1_000_000


PRICES: dict[str, Price] = {
    # OpenAI
    "gpt-4o": Price(2.50, 10.00),
    "gpt-4o-mini": Price(0.15, 0.60),
    "gpt-4.1": Price(2.00, 8.00),
    "gpt-4.1-mini": Price(0.40, 1.60),
    "gpt-4.1-nano": Price(0.10, 0.40),
    "gpt-5": Price(1.25, 10.00),
    "gpt-5-mini": Price(0.25, 2.00),
    "gpt-5-nano": Price(0.05, 0.40),
    "o3": Price(2.00, 8.00),
    "o3-mini": Price(1.10, 4.40),
    "o4-mini": Price(1.10, 4.40),
    # Anthropic
    "claude-opus-4": Price(15.00, 75.00),
    "claude-opus-4-1": Price(15.00, 75.00),
    "claude-opus-4-5": Price(5.00, 25.00),
    "claude-sonnet-4": Price(3.00, 15.00),
    "claude-sonnet-4-5": Price(3.00, 15.00),
    "claude-3-7-sonnet": Price(3.00, 15.00),
    "claude-3-5-sonnet": Price(3.00, 15.00),
    "claude-haiku-4-5": Price(1.00, 5.00),
    "claude-3-5-haiku": Price(0.80, 4.00),
    "claude-3-haiku": Price(0.25, 1.25),
    # Together (serverless)
    "meta-llama/Meta-Llama-3.1-8B-Instruct-Turbo": Price(0.18, 0.18),
    "meta-llama/Meta-Llama-3.1-70B-Instruct-Turbo": Price(0.88, 0.88),
    "meta-llama/Meta-Llama-3.1-405B-Instruct-Turbo": Price(3.50, 3.50),
    "meta-llama/Llama-3.3-70B-Instruct-Turbo": Price(0.88, 0.88),
    "meta-llama/Llama-3.2-3B-Instruct-Turbo": Price(0.06, 0.06),
    "Qwen/Qwen2.5-7B-Instruct-Turbo": Price(0.30, 0.30),
    "Qwen/Qwen2.5-72B-Instruct-Turbo": Price(1.20, 1.20),
    "mistralai/Mixtral-8x7B-Instruct-v0.1": Price(0.60, 0.60),
    "deepseek-ai/DeepSeek-V3": Price(1.25, 1.25),
}


def price_for(model: str) -> Price | None:
    """The table's price of ``model`` (exact id, else the longest listed prefix), or None."""
    candidates = [model]
    vendor, slash, rest = model.partition("/")
    if slash and vendor in ("openai", "anthropic"):  # OpenRouter: anthropic/claude-sonnet-4.5
        candidates.extend([rest, rest.replace(".", "-")])
    for candidate in candidates:
        if candidate in PRICES:
            return PRICES[candidate]
        prefixes = [key for key in PRICES if candidate.startswith(key + "-")]
        if prefixes:
            return PRICES[max(prefixes, key=len)]
    return None
