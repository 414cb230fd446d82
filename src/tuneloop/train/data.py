"""Turning chat examples into token ids with a loss mask, and batches into tensors.

Two batch layouts, the same examples and the same loss: ``collate`` right-pads rows (the recipe
groups similar lengths so little is padding), ``collate_packed`` puts the whole batch in one row
with position ids restarting at each example, from which transformers builds a block-diagonal
mask, so no example attends to another and no token is padding.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

IGNORE_INDEX = -100


@dataclass(frozen=True)
class TokenizedExample:
    input_ids: list[int]
    labels: list[int]  # IGNORE_INDEX where the model should not learn (prompt tokens)

    @property
    def trained_tokens(self) -> int:
        return sum(1 for label in self.labels if label != IGNORE_INDEX)


def tokenize_example(
    tokenizer: Any,
    messages: list[dict[str, Any]],
    max_length: int,
    *,
    train_on_inputs: bool = False,
) -> TokenizedExample | None:
    """Tokenize with the chat template; learn only the assistant tokens (or, with
    ``train_on_inputs``, every token after the first).

    Templates with ``{% generation %}`` markers give the mask directly. For templates without
    them, the prompt part (everything before the last assistant turn) is masked instead.

    An example longer than ``max_length`` loses tokens from the start of its prompt, never from
    the answer it teaches: a cut-off answer would teach the model to stop mid-JSON. An example
    whose answer alone does not fit, or that has no answer tokens at all, gives None (the
    caller drops and counts it).
    """
    encoded = tokenizer.apply_chat_template(
        messages, tokenize=True, return_dict=True, return_assistant_tokens_mask=True
    )
    input_ids = list(encoded["input_ids"])
    mask = list(encoded.get("assistant_masks") or [])
    if not any(mask):
        prompt_ids = tokenizer.apply_chat_template(
            messages[:-1], tokenize=True, add_generation_prompt=True
        )
        prompt_length = len(prompt_ids["input_ids"] if isinstance(prompt_ids, dict) else prompt_ids)
        mask = [0] * prompt_length + [1] * (len(input_ids) - prompt_length)
    labels = [tok if keep else IGNORE_INDEX for tok, keep in zip(input_ids, mask, strict=True)]
    first_target = next((i for i, label in enumerate(labels) if label != IGNORE_INDEX), None)
    if first_target is None or len(labels) - first_target > max_length:
        return None
    cut = max(0, len(input_ids) - max_length)
    input_ids, labels = input_ids[cut:], labels[cut:]
    if train_on_inputs:
        labels = list(input_ids)
    # The first token is never predicted (nothing comes before it); saying so keeps the token
    # counts exact and stops a packed row from teaching one example's start from another's end.
    labels[0] = IGNORE_INDEX
    return TokenizedExample(input_ids, labels)


def tokenize_examples(
    tokenizer: Any,
    examples: list[dict[str, Any]],
    max_length: int,
    *,
    train_on_inputs: bool = False,
) -> tuple[list[TokenizedExample], int]:
    """Tokenized examples that have something to learn, and how many were dropped."""
    tokenized = [
        tokenize_example(tokenizer, ex["messages"], max_length, train_on_inputs=train_on_inputs)
        for ex in examples
    ]
    kept = [example for example in tokenized if example is not None and example.trained_tokens]
    return kept, len(tokenized) - len(kept)


def collate(batch: list[TokenizedExample], pad_token_id: int) -> dict[str, Any]:
    """Right-pad a batch into tensors; padding is masked out of attention and loss."""
    import torch

    width = max(len(example.input_ids) for example in batch)
    input_ids = torch.full((len(batch), width), pad_token_id, dtype=torch.long)
    labels = torch.full((len(batch), width), IGNORE_INDEX, dtype=torch.long)
    attention = torch.zeros((len(batch), width), dtype=torch.long)
    for row, example in enumerate(batch):
        length = len(example.input_ids)
        input_ids[row, :length] = torch.tensor(example.input_ids)
        labels[row, :length] = torch.tensor(example.labels)
        attention[row, :length] = 1
    return {"input_ids": input_ids, "labels": labels, "attention_mask": attention}


def collate_packed(batch: list[TokenizedExample]) -> dict[str, Any]:
    """One row holding every example of the batch, position ids restarting at each one.

    With no attention mask, no cache (call the model with ``use_cache=False``) and packed position
    ids, transformers (5.x, eager and sdpa) derives a block-diagonal causal mask from the position
    ids, so attention stays inside each example.
    Each example's first label is already ignored, so no token learns across a boundary.
    """
    import torch

    input_ids = [token for example in batch for token in example.input_ids]
    labels = [label for example in batch for label in example.labels]
    positions = [index for example in batch for index in range(len(example.input_ids))]
    return {
        "input_ids": torch.tensor([input_ids], dtype=torch.long),
        "labels": torch.tensor([labels], dtype=torch.long),
        "position_ids": torch.tensor([positions], dtype=torch.long),
    }
