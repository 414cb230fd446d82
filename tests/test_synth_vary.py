"""Prompt variation: new requests for existing answers, cached, stored once."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sqlalchemy import select

from tuneloop.config import Config
from tuneloop.demo.layouts import (
    HELD_OUT_TEMPLATES,
    SYSTEM_PROMPT,
    ScreenRequest,
    parse_request,
    prompt_for,
)
from tuneloop.demo.varier import vary_requests
from tuneloop.providers import CallableProvider
from tuneloop.store import Interaction, Store
from tuneloop.synth import vary_and_store, vary_prompts

REQUESTS = [
    ScreenRequest("settings", "web", "pet care"),
    ScreenRequest("calendar", "mobile", "bike sharing"),
]


def example(request: ScreenRequest) -> dict[str, Any]:
    return {
        "messages": [
            {"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": prompt_for(request)},
            {"role": "assistant", "content": json.dumps({"screen": request.category})},
        ]
    }


def test_each_answer_gets_new_requests_for_the_same_thing() -> None:
    report = vary_prompts(
        CallableProvider(vary_requests), [example(r) for r in REQUESTS], per_example=3
    )
    assert len(report.examples) == 6 and not report.failures
    held_out = {t.format(**r.__dict__) for r in REQUESTS for t in HELD_OUT_TEMPLATES}
    expected = [r for r in REQUESTS for _ in range(3)]
    for variation, request in zip(report.examples, expected, strict=True):
        system, user, answer = variation.messages
        assert system["content"] == SYSTEM_PROMPT
        assert answer["content"] == json.dumps({"screen": request.category})  # answer kept
        assert parse_request(user["content"]) == request
        assert user["content"] != prompt_for(request) and user["content"] not in held_out
    assert len({v.messages[1]["content"] for v in report.examples}) == 6


def test_answers_that_are_not_a_json_list_are_counted_as_failures() -> None:
    report = vary_prompts(
        CallableProvider(lambda messages: "Sure! Here are some ideas."), [example(REQUESTS[0])]
    )
    assert report.examples == [] and report.failures == {"parse:json": 1}


def test_vary_from_a_file_stores_once_and_pays_once(tmp_path: Path) -> None:
    source = tmp_path / "seed.jsonl"
    source.write_text("".join(json.dumps(example(r)) + "\n" for r in REQUESTS))
    config = Config.model_validate({"workspace": str(tmp_path / "ws")})
    spec = "callable:tuneloop.demo.varier:vary_requests"

    first = vary_and_store(config, str(source), spec, task="layouts", per_example=2)
    assert first["variations"] == 4 and first["stored"] == 4 and first["cached"] == 0
    lines = Path(first["file"]).read_text().splitlines()
    assert len(lines) == 4

    again = vary_and_store(config, str(source), spec, task="layouts", per_example=2)
    assert again["cached"] == 2
    store = Store(config.store_url)
    with store.session() as session:
        rows = session.scalars(select(Interaction)).all()
        assert len(rows) == 4
        assert {row.source for row in rows} == {"synthetic"}
        assert all(row.metadata_["varied_from"] for row in rows)
    store.close()


def test_examples_come_from_the_store_or_a_dataset_version(tmp_path: Path) -> None:
    from tuneloop.capture import Tuneloop
    from tuneloop.curate import build_dataset
    from tuneloop.synth import load_examples

    config = Config.model_validate({"workspace": str(tmp_path / "ws"), "task": "layouts"})
    subjects = ["pet care", "bike sharing", "car rental", "plant care", "job search", "team chat"]
    with Tuneloop(config) as client:
        for subject in subjects:
            request = ScreenRequest("settings", "web", subject)
            messages = example(request)["messages"]
            client.log(messages[:-1], messages[-1]["content"], source="synthetic")
        dataset = build_dataset(client.store, config, task="layouts")

    from_store = load_examples("store:layouts", config)
    assert len(from_store) == len(subjects)
    assert all(e["messages"][-1]["role"] == "assistant" for e in from_store)

    from_dataset = load_examples(f"dataset:{dataset.name}@v{dataset.version}", config)
    assert 0 < len(from_dataset) <= len(subjects)
    assert {e["id"] for e in from_dataset} <= {e["id"] for e in from_store}
