"""The shipped tiny base model must load offline and speak the chat format.

tuneloop cannot download weights, so everything downstream (fine-tuning,
assistant-only loss masks, generation) relies on this folder being complete.
"""

from __future__ import annotations

import importlib.util
import json
import os
import random
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

ROOT = Path(__file__).resolve().parents[1]
MODEL_DIR = ROOT / "src" / "tuneloop" / "assets" / "base_model"
BUILD_SCRIPT = ROOT / "scripts" / "build_base_model.py"

pytestmark = pytest.mark.skipif(
    not (MODEL_DIR / "config.json").exists(), reason="base model not built"
)


@pytest.fixture(scope="module")
def tokenizer() -> Any:
    return transformers.AutoTokenizer.from_pretrained(MODEL_DIR, local_files_only=True)


@pytest.fixture(scope="module")
def model() -> Any:
    model = transformers.AutoModelForCausalLM.from_pretrained(MODEL_DIR, local_files_only=True)
    model.eval()
    return model


@pytest.fixture(scope="module")
def build_script() -> ModuleType:
    """The build script as a module, for its corpus generators."""
    spec = importlib.util.spec_from_file_location("build_base_model", BUILD_SCRIPT)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_folder_is_complete_and_small() -> None:
    names = {p.name for p in MODEL_DIR.iterdir()}
    for required in (
        "config.json",
        "generation_config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
        "README.md",
    ):
        assert required in names
    size = sum(p.stat().st_size for p in MODEL_DIR.rglob("*") if p.is_file())
    assert size < 30 * 1024 * 1024


def test_model_is_a_few_million_parameter_llama(model: Any) -> None:
    assert model.config.model_type == "llama"
    n_params = sum(p.numel() for p in model.parameters())
    assert 1_000_000 <= n_params <= 20_000_000


def test_special_tokens_and_generation_config(tokenizer: Any, model: Any) -> None:
    assert tokenizer.bos_token == "<|bos|>"
    assert tokenizer.eos_token == "<|end|>"
    assert tokenizer.pad_token == "<|pad|>"
    assert tokenizer.model_max_length == 1024
    for token in ("<|system|>", "<|user|>", "<|assistant|>"):
        assert len(tokenizer.encode(token, add_special_tokens=False)) == 1
    assert len(tokenizer) == model.config.vocab_size
    gen = json.loads((MODEL_DIR / "generation_config.json").read_text())
    assert gen["eos_token_id"] == tokenizer.eos_token_id
    assert gen["pad_token_id"] == tokenizer.pad_token_id


def test_chat_template_format(tokenizer: Any) -> None:
    messages = [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello."},
    ]
    text = tokenizer.apply_chat_template(messages, tokenize=False)
    assert text == (
        "<|bos|><|system|>\nYou are terse.<|end|>\n"
        "<|user|>\nHi<|end|>\n<|assistant|>\nHello.<|end|>\n"
    )
    prompt = tokenizer.apply_chat_template(
        messages[1:2], tokenize=False, add_generation_prompt=True
    )
    assert prompt == "<|bos|><|user|>\nHi<|end|>\n<|assistant|>\n"


@pytest.mark.parametrize(
    "messages",
    [
        [
            {"role": "user", "content": "Give me a JSON record for a book."},
            {"role": "assistant", "content": '{"title": "The Quiet River", "pages": 212}'},
        ],
        [
            {"role": "system", "content": "Answer with JSON only."},
            {"role": "user", "content": "Two numbers?"},
            {"role": "assistant", "content": "[1, 2]"},
            {"role": "user", "content": "Now a null."},
            {"role": "assistant", "content": '{"value": null}'},
        ],
    ],
)
def test_assistant_mask_covers_exactly_the_replies(
    tokenizer: Any, messages: list[dict[str, str]]
) -> None:
    enc = tokenizer.apply_chat_template(
        messages, tokenize=True, return_dict=True, return_assistant_tokens_mask=True
    )
    ids, mask = enc["input_ids"], enc["assistant_masks"]
    assert len(ids) == len(mask)
    masked = [i for i, m in zip(ids, mask, strict=True) if m]
    expected = "".join(m["content"] + "<|end|>" for m in messages if m["role"] == "assistant")
    assert tokenizer.decode(masked) == expected
    # Every masked run ends with <|end|> and nothing outside the replies is masked.
    runs = "".join(str(m) for m in mask).split("0")
    assert sum(1 for r in runs if r) == sum(m["role"] == "assistant" for m in messages)


def test_asked_for_a_book_it_writes_a_complete_book_record(tokenizer: Any, model: Any) -> None:
    """What the model card claims of the base: it knows JSON and reads salient prompt words."""
    from tuneloop.jsontext import parse_json

    enc = tokenizer.apply_chat_template(
        [{"role": "user", "content": "Return a JSON object describing a book."}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )
    # One thread: tiny matmuls gain nothing from two, and lose a lot when the
    # machine is busy with other work.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.no_grad():
            out = model.generate(**enc, max_new_tokens=200, do_sample=False)
    finally:
        torch.set_num_threads(threads)
    new = out[0, enc["input_ids"].shape[1] :].tolist()
    assert new[-1] == tokenizer.eos_token_id  # it stopped by itself, within budget
    answer = parse_json(tokenizer.decode(new, skip_special_tokens=True))
    assert answer.ok and isinstance(answer.value, dict)
    assert {"title", "authors"} <= set(answer.value)


def test_corpus_generators_have_no_ui_vocabulary(build_script: ModuleType) -> None:
    """The base model must not learn UI layout; fine-tuning has to teach it."""
    faker = build_script.JsonFaker(random.Random(0))
    docs = [build_script.Docstring("json.dumps", "function", "json.dumps(obj)", "Serialize.")]
    vocabulary = [f"word{i}" for i in range(50)]
    for _ in range(300):
        assert build_script.is_clean(build_script.json_document(faker))
        assert build_script.is_clean(
            build_script.render_chat(build_script.chat_example(docs, faker))
        )
        assert build_script.is_clean(
            build_script.render_chat(build_script.reading_chat(vocabulary, faker.rng))
        )
    assert not build_script.is_clean('{"type": "FRAME", "layoutMode": "VERTICAL"}')
    assert build_script.clean_paragraphs("Keep this.\n\nA button here.") == "Keep this."


def test_drills_are_scored_on_their_answers_and_spans_on_their_second_copy(
    build_script: ModuleType, tokenizer: Any
) -> None:
    """The loss sees what reading can predict, not the random words it reads."""
    rng = random.Random(3)
    drill = build_script.render_chat(build_script.reading_chat(["alpha", "beta"], rng))
    span = f"{build_script.BOS}{build_script.repeated_span_document(['alpha'], rng)}"
    texts = [drill, span, "plain prose is scored whole"]
    offsets = [
        build_script.answer_offset(drill),
        build_script.second_copy_offset(span),
        0,
    ]
    stream = build_script.pack(tokenizer, texts, offsets)
    assert stream.shape[0] == 2
    ids, labels = stream.tolist()
    lengths = [len(tokenizer(t, add_special_tokens=False).input_ids) for t in texts]
    starts = [0, lengths[0], lengths[0] + lengths[1]]
    kept = [i if label != -100 else None for i, label in zip(ids, labels, strict=True)]
    scored = [
        tokenizer.decode([i for i in kept[a : a + n] if i is not None])
        for a, n in zip(starts, lengths, strict=True)
    ]
    answer = drill[offsets[0] :]
    assert scored[0] == answer  # the reply and its end marker, nothing of the prompt
    assert build_script.ASSISTANT not in scored[0]
    first, second = span[len(build_script.BOS) :].split("\n")
    assert first == second and scored[1] == second
    assert scored[2] == texts[2]
    assert all(label in (-100, i) for i, label in zip(ids, labels, strict=True))
