"""The lean decode loop answers exactly what transformers' greedy ``generate`` answers."""

from __future__ import annotations

import pytest

from tuneloop.hfmodels import load_pretrained
from tuneloop.providers.decode import greedy_decode


@pytest.mark.slow
def test_greedy_decode_matches_generate_and_forces_length() -> None:
    import torch

    tokenizer, model = load_pretrained("builtin:tiny")
    model.eval()
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": "Design a mobile settings screen"}],
        add_generation_prompt=True,
        tokenize=False,
    )
    ids = tokenizer(text, return_tensors="pt", add_special_tokens=False)["input_ids"]
    with torch.inference_mode():
        expected = model.generate(
            input_ids=ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=24,
            do_sample=False,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )[0, ids.shape[1] :].tolist()
    ours = greedy_decode(model, ids, max_new_tokens=24, eos_token_id=tokenizer.eos_token_id)
    assert ours == expected
    forced = greedy_decode(model, ids, max_new_tokens=30, eos_token_id=0, force_length=True)
    assert len(forced) == 30 and forced[: len(ours)] == ours[: len(forced)]
    with pytest.raises(ValueError, match="one stream"):
        greedy_decode(model, ids.repeat(2, 1), max_new_tokens=2)
