"""A lean greedy decode loop for one stream: a static KV cache and one forward call per step.

``transformers``' ``generate`` spends part of each decoding step outside the model (logits
processors, stopping criteria, cache and input bookkeeping). One gateway request waits for
that overhead times its answer's length, so this loop does only "forward the last token, take
the argmax" — what single-stream latency can be measured against. Batches go through
``generate`` (``LocalModelProvider.complete_batch``), where the overhead is shared.
"""

from __future__ import annotations

from typing import Any


def greedy_decode(
    model: Any,
    input_ids: Any,
    *,
    max_new_tokens: int,
    eos_token_id: int | None = None,
    force_length: bool = False,
) -> list[int]:
    """The greedy continuation of one prompt (``input_ids`` of shape ``(1, prompt_len)``).

    Stops after ``eos_token_id`` (included) unless ``force_length``, which always produces
    ``max_new_tokens`` tokens (benchmarks compare equal amounts of work).
    """
    import torch
    from transformers import StaticCache

    if input_ids.shape[0] != 1:
        raise ValueError("greedy_decode decodes one stream; batch through generate")
    prompt_len = input_ids.shape[1]
    cache = StaticCache(config=model.config, max_cache_len=prompt_len + max_new_tokens)
    positions = torch.arange(prompt_len + max_new_tokens, device=input_ids.device)
    tokens: list[int] = []
    with torch.inference_mode():
        logits = model(
            input_ids=input_ids,
            past_key_values=cache,
            cache_position=positions[:prompt_len],
            use_cache=True,
            logits_to_keep=1,
        ).logits
        for step in range(max_new_tokens):
            token = logits[:, -1].argmax(-1, keepdim=True)
            value = int(token)
            tokens.append(value)
            if len(tokens) == max_new_tokens or (value == eos_token_id and not force_length):
                break
            at = prompt_len + step
            logits = model(
                input_ids=token,
                past_key_values=cache,
                cache_position=positions[at : at + 1],
                use_cache=True,
            ).logits
    return tokens
