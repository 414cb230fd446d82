"""Prompt-reading probes: does a model use what its prompt says, or only its format?

A student can learn a request only if its base model reads the prompt. Three probes test that
with words the model cannot have memorised (pseudo-words split off from those the base model's
corpus uses, see :func:`pseudo_word`):

- ``copy``: "Repeat exactly: w1 … wn" (3–6 words) must return the same words;
- ``recall``: a short ``key = value`` list, then "What is KEY?" must return its value;
- ``json_shape``: words put in order into a given ``name``/``type``/``children`` JSON shape,
  compared as JSON values.

The same task generators (:func:`reading_task`) write the base model's training examples with
the other half of the pseudo-words, so a pass means the skill transferred, not the answers.
"""

from __future__ import annotations

import json
import random
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

ONSETS = ("b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "br", "tr", "st")
VOWELS = ("a", "e", "i", "o", "u")
CODAS = ("", "", "", "n", "r", "l", "k", "s")
PROBE_KINDS = ("copy", "recall", "json_shape")
COPY_PHRASES = ("Repeat exactly: ", "Say back: ", "Echo these words: ", "Copy this: ")
RECALL_QUESTIONS = (
    "What is {key}? Answer with the value only.",
    "Which value does {key} have?",
    "Give the value of {key}.",
)
SHAPE_PHRASES = (
    "Put the words {words} in order into this JSON shape: {shape}",
    "Fill this JSON shape with {words}, in order: {shape}",
)


def pseudo_word(rng: random.Random, *, held_out: bool) -> str:
    """A pronounceable non-word; ``held_out`` words and training words never coincide.

    The split is by a stable hash, so the base model's corpus (``held_out=False``) and the
    probes (``held_out=True``) draw from disjoint halves of the same space.
    """
    while True:
        word = "".join(
            rng.choice(ONSETS) + rng.choice(VOWELS) + rng.choice(CODAS)
            for _ in range(rng.randint(2, 3))
        )
        if (zlib.crc32(word.encode()) % 2 == 1) == held_out:
            return word


@dataclass(frozen=True)
class ReadingTask:
    """One prompt, its exact expected answer, and how answers are compared."""

    kind: str
    prompt: str
    answer: str

    def passes(self, output: str) -> bool:
        text = output.strip()
        if self.kind != "json_shape":
            return text == self.answer
        try:
            return bool(json.loads(text) == json.loads(self.answer))
        except ValueError:
            return False


def _words(rng: random.Random, count: int, word: Callable[[], str]) -> list[str]:
    chosen: list[str] = []
    for _ in range(count * 50):
        candidate = word()
        if candidate not in chosen:
            chosen.append(candidate)
            if len(chosen) == count:
                return chosen
    raise ValueError(f"could not draw {count} distinct words; the word source is too small")


def _shape(words: list[str], rng: random.Random) -> tuple[Any, Any]:
    """(blank shape, filled value) for ``words``: name/type, optionally children."""
    blank: dict[str, Any] = {"name": "_", "type": "_"}
    filled: dict[str, Any] = {"name": words[0], "type": words[1]}
    rest = words[2:]
    if rest:
        if rng.random() < 0.5:
            blank["children"] = ["_"] * len(rest)
            filled["children"] = list(rest)
        else:
            blank["children"] = [{"name": "_"} for _ in rest]
            filled["children"] = [{"name": w} for w in rest]
    return blank, filled


def reading_task(kind: str, rng: random.Random, word: Callable[[], str]) -> ReadingTask:
    """A task of ``kind`` whose words come from ``word()``."""
    if kind == "copy":
        picked = _words(rng, rng.randint(3, 6), word)
        return ReadingTask(kind, rng.choice(COPY_PHRASES) + " ".join(picked), " ".join(picked))
    if kind == "recall":
        pairs = _words(rng, 2 * rng.randint(3, 6), word)
        keys, values = pairs[::2], pairs[1::2]
        sep = rng.choice(("; ", ", ", "\n"))
        listing = sep.join(f"{k} = {v}" for k, v in zip(keys, values, strict=True))
        asked = rng.randrange(len(keys))
        question = rng.choice(RECALL_QUESTIONS).format(key=keys[asked])
        return ReadingTask(kind, f"{listing}\n{question}", values[asked])
    if kind == "json_shape":
        picked = _words(rng, rng.randint(2, 4), word)
        blank, filled = _shape(picked, rng)
        prompt = rng.choice(SHAPE_PHRASES).format(
            words=", ".join(picked), shape=json.dumps(blank, separators=(",", ":"))
        )
        return ReadingTask(kind, prompt, json.dumps(filled, separators=(",", ":")))
    raise ValueError(f"unknown probe kind {kind!r}; expected one of {', '.join(PROBE_KINDS)}")


def probe_tasks(per_kind: int = 40, seed: int = 7) -> list[ReadingTask]:
    """The fixed probe set: ``per_kind`` tasks of each kind on held-out pseudo-words."""
    rng = random.Random(seed)

    def word() -> str:
        return pseudo_word(rng, held_out=True)

    return [reading_task(kind, rng, word) for kind in PROBE_KINDS for _ in range(per_kind)]


@dataclass
class ProbeReport:
    """Pass rate per probe kind, with a few failures for the model card."""

    scores: dict[str, float]
    counts: dict[str, int]
    failures: list[tuple[str, str, str]] = field(default_factory=list)

    def passed(self, thresholds: dict[str, float]) -> bool:
        return all(self.scores.get(kind, 0.0) >= floor for kind, floor in thresholds.items())

    def summary(self) -> str:
        return ", ".join(f"{kind} {score:.0%}" for kind, score in self.scores.items())


# What the base-model issue asks of a base that reads its prompt.
PROBE_THRESHOLDS = {"copy": 0.90, "recall": 0.80, "json_shape": 0.80}


def run_probes(
    model: Any, tokenizer: Any, tasks: list[ReadingTask], *, batch_size: int = 24
) -> ProbeReport:
    """Greedy-decode every task with the tokenizer's chat template and score exact answers."""
    import torch

    was_training = model.training
    model.eval()
    passed: dict[str, int] = {}
    counts: dict[str, int] = {}
    failures: list[tuple[str, str, str]] = []
    tokenizer.padding_side = "left"
    with torch.inference_mode():
        for start in range(0, len(tasks), batch_size):
            batch = tasks[start : start + batch_size]
            prompts = [
                tokenizer.apply_chat_template(
                    [{"role": "user", "content": task.prompt}],
                    add_generation_prompt=True,
                    tokenize=False,
                )
                for task in batch
            ]
            encoded = tokenizer(
                prompts, return_tensors="pt", padding=True, add_special_tokens=False
            ).to(model.device)
            longest = max(len(tokenizer(task.answer).input_ids) for task in batch)
            generated = model.generate(
                **encoded,
                max_new_tokens=longest + 8,
                do_sample=False,
                pad_token_id=tokenizer.pad_token_id,
            )
            new_tokens = generated[:, encoded["input_ids"].shape[1] :]
            outputs = tokenizer.batch_decode(new_tokens, skip_special_tokens=True)
            for task, output in zip(batch, outputs, strict=True):
                counts[task.kind] = counts.get(task.kind, 0) + 1
                if task.passes(output):
                    passed[task.kind] = passed.get(task.kind, 0) + 1
                elif len(failures) < 6:
                    failures.append((task.prompt, task.answer, output.strip()))
    model.train(was_training)
    scores = {kind: passed.get(kind, 0) / counts[kind] for kind in counts}
    return ProbeReport(scores=scores, counts=counts, failures=failures)
