"""Shared local bases: several adapters over one loaded base, concurrent requests answered in one
``generate`` call, and each answer the one its version gives alone."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from tuneloop.assets import BUILTIN_MODELS
from tuneloop.providers import LocalModels, RequestOptions
from tuneloop.providers.local import LocalModelProvider

BASE = BUILTIN_MODELS["builtin:tiny"]
pytestmark = pytest.mark.skipif(
    not (BASE / "model.safetensors").exists(), reason="base model not built (make base-model)"
)
PROMPTS = [
    "Return a JSON object describing a book.",
    "What does `json.dumps` do?",
    "Give me a settings screen as JSON.",
]
GREEDY = RequestOptions(max_tokens=12, temperature=0.0)


def random_adapter(folder: Path, seed: int, **options: Any) -> str:
    """A LoRA adapter with random (not zero) weights, so it changes what the model says."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(BASE)
    config = LoraConfig(
        r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False, **options
    )
    get_peft_model(model, config).save_pretrained(str(folder))
    return str(folder)


def ask(message: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": message}]


@pytest.fixture(scope="module")
def adapters(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    root = tmp_path_factory.mktemp("adapters")
    return [random_adapter(root / f"a{seed}", seed) for seed in (1, 2)]


async def gather(calls: list[tuple[Any, str, RequestOptions]]) -> list[Any]:
    return await asyncio.gather(
        *(provider.acomplete(ask(prompt), options=options) for provider, prompt, options in calls)
    )


def test_requests_for_several_adapters_share_one_batch_and_get_their_own_answers(
    adapters: list[str],
) -> None:
    # What each version says alone, from a model of its own with the adapter merged in.
    alone = {
        (adapter, prompt): LocalModelProvider(str(BASE), adapter).complete(
            ask(prompt), options=GREEDY
        )
        for adapter in [*adapters, None]
        for prompt in PROMPTS[:2]
    }
    assert len({c.text for c in alone.values()}) > 2, "the adapters must change the answers"

    pool = LocalModels(max_batch=6, max_wait_ms=2000)
    try:
        providers = {
            adapter: pool.provider(str(BASE), adapter, device="cpu", name=f"v-{adapter}")
            for adapter in [*adapters, None]
        }
        shared = {id(p.base) for p in providers.values()}
        assert len(shared) == 1, "one base in memory for every version"
        calls = [(providers[a], p, GREEDY) for a, p in alone]
        answers = asyncio.run(gather(calls))
        base = next(iter(providers.values())).base
        assert base.batches == 1
        for (adapter, prompt), answer in zip(alone, answers, strict=True):
            assert answer.text == alone[adapter, prompt].text
            assert answer.model == f"v-{adapter}"
    finally:
        pool.close()


def test_each_answer_stops_at_its_own_max_tokens_and_sampling_does_not_mix(
    adapters: list[str],
) -> None:
    pool = LocalModels(max_batch=3, max_wait_ms=2000)
    try:
        provider = pool.provider(str(BASE), adapters[0], device="cpu", name="v1")
        short = RequestOptions(max_tokens=3, temperature=0.0)
        sampled = RequestOptions(max_tokens=5, temperature=0.7)
        answers = asyncio.run(
            gather([(provider, PROMPTS[0], short), (provider, PROMPTS[0], GREEDY)])
        )
        assert answers[0].completion_tokens <= 3 < answers[1].completion_tokens
        assert answers[1].text.startswith(answers[0].text)
        assert provider.base.batches == 1
        # A sampled request never rides in a greedy batch: it gets a batch of its own.
        asyncio.run(
            gather(
                [
                    (provider, PROMPTS[0], GREEDY),
                    (provider, PROMPTS[1], sampled),
                    (provider, PROMPTS[2], GREEDY),
                ]
            )
        )
        assert provider.base.batches == 3
    finally:
        pool.close()


def test_streaming_a_shared_adapter_gives_the_plain_answer_piece_by_piece(
    adapters: list[str],
) -> None:
    pool = LocalModels(max_batch=4, max_wait_ms=1)
    try:
        provider = pool.provider(str(BASE), adapters[1], device="cpu", name="v2")
        plain = provider.complete(ask(PROMPTS[1]), options=GREEDY)
        chunks = list(provider.stream(ask(PROMPTS[1]), options=GREEDY))
        pieces = [chunk.text for chunk in chunks if chunk.text]
        final = chunks[-1].completion
        assert len(pieces) > 1 and final is not None
        assert "".join(pieces).strip() == final.text == plain.text
    finally:
        pool.close()


def test_whole_module_adapters_get_a_merged_base_and_released_adapters_leave(
    adapters: list[str], tmp_path: Path
) -> None:
    whole = random_adapter(tmp_path / "whole", 3, modules_to_save=["lm_head"])
    pool = LocalModels(max_batch=2, max_wait_ms=1)
    try:
        lora = pool.provider(str(BASE), adapters[0], device="cpu", name="lora")
        merged = pool.provider(str(BASE), whole, device="cpu", name="whole")
        assert merged.base is not lora.base and merged.adapter is None
        assert merged.complete(ask(PROMPTS[0]), options=GREEDY).text == (
            LocalModelProvider(str(BASE), whole).complete(ask(PROMPTS[0]), options=GREEDY).text
        )
        lora.complete(ask(PROMPTS[0]), options=GREEDY)
        assert list(lora.base._adapters) == [adapters[0]]
        lora.release()
        plain = pool.provider(str(BASE), None, device="cpu", name="base")
        plain.complete(ask(PROMPTS[0]), options=GREEDY)  # the next batch unloads it first
        assert lora.base._adapters == {}
    finally:
        pool.close()
