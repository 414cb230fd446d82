"""Synth dedup against the task's data streams from the store and decides as in memory."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from tuneloop.capture import Tuneloop
from tuneloop.config import Config
from tuneloop.curate import Example, remove_near_duplicates, select_examples, stream_examples
from tuneloop.synth.output import SynthExample, drop_near_duplicates

WORDS = [f"w{index}" for index in range(400)]
THRESHOLD = 0.8  # 40 words: one changed word stays near, two changed words do not


def _text(rng: random.Random) -> list[str]:
    return [rng.choice(WORDS) for _ in range(40)]


def _edit(words: list[str], rng: random.Random) -> list[str]:
    changed = list(words)
    changed[rng.randrange(5, 35)] = rng.choice(WORDS) + "x"
    return changed


def _messages(prompt: list[str], answer: list[str]) -> list[dict[str, str]]:
    return [
        {"role": "system", "content": "You answer."},
        {"role": "user", "content": " ".join(prompt)},
        {"role": "assistant", "content": " ".join(answer)},
    ]


@pytest.mark.slow  # a few thousand stored rows
def test_streamed_dedup_against_stored_rows_decides_as_in_memory(tmp_path: Path) -> None:
    rng = random.Random(5)
    config = Config.model_validate(
        {"workspace": str(tmp_path), "curate": {"keep_unrated": True, "min_reward": 0.0}}
    )
    stored: list[list[dict[str, str]]] = []
    records = []
    for cluster in range(1500):
        prompt, answer = _text(rng), _text(rng)
        # Chains: each a near copy of the one before, the ends not near each other.
        for _ in range(rng.choice((1, 1, 2, 3))):
            messages = _messages(prompt, answer)
            stored.append(messages)
            source = rng.choice(("app", "app", "synthetic"))
            metadata = {"pipeline": "mine"} if cluster % 10 == 0 else {"pipeline": "other"}
            records.append(
                {
                    "messages": messages[:-1],
                    "response": messages[-1]["content"],
                    "task": "support" if cluster % 17 else "elsewhere",
                    "source": source,
                    "metadata": metadata,
                }
            )
            prompt, answer = _edit(prompt, rng), _edit(answer, rng)
    with Tuneloop(config) as client:
        ids = client.log_many(records)
        for interaction_id in ids[::13]:
            client.thumbs_down(interaction_id)  # rated below min_reward: filtered out
        store = client.store
        candidates = []
        for index in range(600):
            base = rng.choice(stored)
            prompt = base[1]["content"].split()
            answer = base[2]["content"].split()
            if index % 3 == 0:
                prompt, answer = _text(rng), _text(rng)  # new
            elif index % 3 == 1:
                prompt, answer = _edit(prompt, rng), _edit(answer, rng)
            candidates.append(SynthExample(id=f"new-{index}", messages=_messages(prompt, answer)))

        existing = list(
            stream_examples(
                store,
                config.curate,
                task="support",
                exclude_metadata={"pipeline": "mine"},
                batch=97,
            )
        )
        selection = select_examples(store, config.curate, task="support")
        anchors = [e for e in selection.examples if e.metadata.get("pipeline") != "mine"]
        assert {e.key for e in existing} == {e.key for e in anchors}
        assert len(records) > 2500 and len(anchors) > 2000

        streamed = drop_near_duplicates(
            candidates,
            THRESHOLD,
            stream_examples(
                store,
                config.curate,
                task="support",
                exclude_metadata={"pipeline": "mine"},
                batch=97,
            ),
        )
    in_memory = remove_near_duplicates(
        [
            *(Example(f"existing:{e.interaction_id}", e.messages, reward=2.0) for e in anchors),
            *(Example(c.id, c.messages, source="synthetic") for c in candidates),
        ],
        threshold=THRESHOLD,
    )
    expected = {e.interaction_id for e in in_memory.kept if e.interaction_id.startswith("new-")}
    kept = {example.id for example in streamed}
    assert kept == expected
    assert 150 < len(kept) < 550  # both kinds of decision were made, many times
