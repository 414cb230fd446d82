"""The lean decoder answers exactly what transformers' greedy ``generate`` answers."""

from __future__ import annotations

from typing import Any

import pytest

from tuneloop.hfmodels import load_pretrained
from tuneloop.providers.decode import LeanDecoder

WORDS = ["login", "settings", "search results with filters", "checkout", "map", "cart"]


def _prompts(tokenizer: Any, count: int = len(WORDS)) -> Any:
    texts = [
        tokenizer.apply_chat_template(
            [{"role": "user", "content": f"Design a mobile {word} screen"}],
            add_generation_prompt=True,
            tokenize=False,
        )
        for word in WORDS[:count]
    ]
    tokenizer.padding_side = "left"
    return tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)


def _generate(model: Any, inputs: Any, limit: int, eos: int | None, pad: int) -> list[list[int]]:
    """transformers' greedy answers, each cut after its first EOS."""
    import torch

    with torch.inference_mode():
        output = model.generate(
            **inputs, max_new_tokens=limit, do_sample=False, eos_token_id=eos, pad_token_id=pad
        )
    rows = output[:, inputs["input_ids"].shape[1] :].tolist()
    return [row[: row.index(eos) + 1] if eos in row else row for row in rows]


def test_left_padded_batch_matches_generate_token_for_token() -> None:
    tokenizer, model = load_pretrained("builtin:tiny")
    model.eval()
    decoder = LeanDecoder.from_model(model)
    assert decoder is not None
    inputs = _prompts(tokenizer)
    assert not bool(inputs["attention_mask"].all())  # the prompts really are padded
    expected = _generate(model, inputs, 40, tokenizer.eos_token_id, tokenizer.pad_token_id)
    heard: list[tuple[int, int]] = []
    ours = decoder.generate(
        inputs["input_ids"],
        inputs["attention_mask"],
        [40] * len(WORDS),
        eos_token_id=tokenizer.eos_token_id,
        on_token=lambda row, token: heard.append((row, token)),
    )
    assert ours == expected
    assert sorted(heard) == sorted((row, t) for row, tokens in enumerate(ours) for t in tokens)


def test_rows_keep_their_own_limits_and_force_length_suppresses_eos() -> None:
    tokenizer, model = load_pretrained("builtin:tiny")
    model.eval()
    decoder = LeanDecoder.from_model(model)
    assert decoder is not None
    inputs = _prompts(tokenizer, 3)
    limits = [3, 30, 7]
    ours = decoder.generate(
        inputs["input_ids"], inputs["attention_mask"], limits, eos_token_id=tokenizer.eos_token_id
    )
    full = _generate(model, inputs, 30, tokenizer.eos_token_id, tokenizer.pad_token_id)
    assert ours == [row[:limit] for row, limit in zip(full, limits, strict=True)]
    forced = decoder.generate(
        inputs["input_ids"][:1],
        inputs["attention_mask"][:1],
        [50],
        eos_token_id=tokenizer.eos_token_id,
        force_length=True,
    )[0]
    assert len(forced) == 50 and tokenizer.eos_token_id not in forced
    with pytest.raises(ValueError, match="token limits"):
        decoder.generate(inputs["input_ids"], inputs["attention_mask"], [5], eos_token_id=None)


@pytest.mark.parametrize(
    "shape",
    [
        {"num_key_value_heads": 4, "tie_word_embeddings": False},  # no GQA, own output layer
        {"num_key_value_heads": 1, "rope_parameters": {"rope_type": "linear", "factor": 2.0}},
    ],
)
def test_other_llama_shapes_match_generate(shape: dict[str, Any]) -> None:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=300,
        hidden_size=64,
        intermediate_size=96,
        num_hidden_layers=2,
        num_attention_heads=4,
        head_dim=16,
        max_position_embeddings=256,
        **{"rope_parameters": {"rope_type": "default", "rope_theta": 10000.0}, **shape},
    )
    model = LlamaForCausalLM(config).eval()
    decoder = LeanDecoder.from_model(model)
    assert decoder is not None
    input_ids = torch.randint(3, 300, (3, 12))
    mask = torch.ones_like(input_ids)
    mask[1, :4] = 0
    mask[2, :9] = 0
    inputs = {"input_ids": input_ids, "attention_mask": mask}
    expected = _generate(model, inputs, 20, None, 0)
    assert decoder.generate(input_ids, mask, [20] * 3, eos_token_id=None) == expected


@pytest.mark.parametrize("packed_from", [1, 8, 10**6])
def test_each_weight_layout_gives_the_same_product(packed_from: int) -> None:
    """Whichever layout the calibration picks for a row count, the product is ``x @ W.T``."""
    import torch

    from tuneloop.providers.decode import _Linear

    torch.manual_seed(0)
    weight = torch.randn(48, 32)
    choices: dict[tuple[int, int], int] = {(32, 48): packed_from}  # skip the timing
    linear = _Linear(weight, choices)
    for rows in (1, 7, 8, 40):
        x, residual = torch.randn(rows, 32), torch.randn(rows, 48)
        torch.testing.assert_close(linear(x), x @ weight.T)
        torch.testing.assert_close(linear.add_product(residual, x), residual + x @ weight.T)
    three_d = torch.randn(2, 5, 32)
    torch.testing.assert_close(linear(three_d), three_d @ weight.T)


def test_calibration_measures_each_shape_once() -> None:
    from tuneloop.providers.decode import CALIBRATION_ROWS

    _, model = load_pretrained("builtin:tiny")
    decoder = LeanDecoder.from_model(model)
    assert decoder is not None
    linears = [decoder.head] + [layer.qkv for layer in decoder.layers]
    choices = {linear.packed_from for linear in linears[1:]}
    assert len(choices) == 1  # one measurement for the six same-shaped layers
    assert all(1 <= linear.packed_from <= CALIBRATION_ROWS[-1] + 1 for linear in linears)


def test_models_it_cannot_run_exactly_are_left_to_generate() -> None:
    import torch

    _, model = load_pretrained("builtin:tiny")
    assert LeanDecoder.from_model(model.to(torch.float64)) is None  # not fp32
    model.config.attention_bias = True
    assert LeanDecoder.from_model(model.to(torch.float32)) is None
    assert LeanDecoder.from_model(object()) is None


def test_the_local_provider_answers_and_streams_through_the_decoder() -> None:
    from tuneloop.providers import RequestOptions
    from tuneloop.providers.local import LocalModelProvider, generate_batch

    provider = LocalModelProvider("builtin:tiny", device="cpu")
    greedy = RequestOptions(max_tokens=24, temperature=0.0)
    conversations = [[{"role": "user", "content": f"Design a mobile {w} screen"}] for w in WORDS]
    answers = provider.complete_batch(conversations, options=greedy)
    assert provider._decoder is not None
    by_generate = generate_batch(
        provider._model,
        provider._tokenizer,
        conversations,
        [greedy] * len(conversations),
        device="cpu",
        name=provider.name,
    )
    assert [a.text for a in answers] == [a.text for a in by_generate]
    assert [a.finish_reason for a in answers] == [a.finish_reason for a in by_generate]
    chunks = list(provider.stream(conversations[0], options=greedy))
    pieces = [chunk.text for chunk in chunks if chunk.text]
    final = chunks[-1].completion
    assert len(pieces) > 1 and final is not None
    assert "".join(pieces).strip() == final.text == answers[0].text
