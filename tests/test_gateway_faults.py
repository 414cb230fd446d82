"""Faults on loopback: a student failing half the time behind a healthy teacher, and everything
down. Every request gets a valid answer or a clean error; every answered call is stored once."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import httpx
import openai
from fakes.llm_server import FakeAPI, Reply
from gateway_fakes import Running
from sqlalchemy import func, select
from test_gateway_app import TASK, add_version, make_config

from tuneloop.config import ProviderSettings
from tuneloop.gateway import create_app
from tuneloop.registry import set_stage
from tuneloop.store import Interaction, Store

REQUESTS = 60


def count(store: Store) -> int:
    with store.session() as session:
        return int(session.scalar(select(func.count()).select_from(Interaction)) or 0)


def test_flaky_student_every_request_valid_and_logged_once(tmp_path: Path) -> None:
    # 30 % 503, 10 % too slow, 10 % prose instead of JSON; no cooldown, so every kind happens.
    config = make_config(tmp_path, timeout_s=0.3, cooldown_after=10_000)
    store = Store(config.store_url)
    add_version(store, "callable:gateway_fakes:flaky_student", "production")

    async def run(url: str) -> list[tuple[int, str, str, str]]:
        client = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)

        async def one(number: int) -> tuple[int, str, str, str]:
            raw = await client.chat.completions.with_raw_response.create(
                model=TASK, messages=[{"role": "user", "content": f"screen case {number}"}]
            )
            text = raw.parse().choices[0].message.content or ""
            return (
                number,
                raw.headers["x-tuneloop-route"],
                raw.headers.get("x-tuneloop-fallback-reason", ""),
                text,
            )

        return await asyncio.gather(*[one(n) for n in range(REQUESTS)])

    with Running(create_app(config)) as url:
        results = asyncio.run(run(url))
        deadline = time.monotonic() + 10
        while count(store) < REQUESTS and time.monotonic() < deadline:
            time.sleep(0.05)
        metrics = httpx.get(f"{url}/metrics").text
    expected = {
        0: "unavailable",
        1: "unavailable",
        2: "unavailable",
        3: "timeout",
        4: "invalid_output",
    }
    for number, route, reason, text in results:
        answer = json.loads(text)
        assert answer["answer"] == f"screen case {number}"
        kind = number % 10
        if kind in expected:
            assert (route, reason, answer["by"]) == (
                "fallback",
                f"{TASK}@v1:{expected[kind]}",
                "teacher",
            )
        else:
            assert (route, reason, answer["by"]) == ("production", "", "student")
    assert count(store) == REQUESTS
    with store.session() as session:
        keys = session.scalars(select(Interaction.idempotency_key)).all()
        trails = [row.metadata_["gateway"] for row in session.scalars(select(Interaction))]
    assert len(set(keys)) == REQUESTS
    assert sum(1 for info in trails if info["route"] == "fallback") == REQUESTS // 2
    for reason, times in (("unavailable", 18), ("timeout", 6), ("invalid_output", 6)):
        assert (
            f'tuneloop_gateway_fallbacks_total{{model="{TASK}@v1",reason="{reason}",'
            f'task="{TASK}"}} {times}.0'
        ) in metrics
    store.close()


def test_everything_down_502_then_503_while_cooling(tmp_path: Path) -> None:
    config = make_config(
        tmp_path, fallback=["callable:gateway_fakes:down"], cooldown_after=1, cooldown_s=60
    )
    store = Store(config.store_url)
    add_version(store, "callable:gateway_fakes:also_down", "production")
    with Running(create_app(config)) as url:
        body = {"model": TASK, "messages": [{"role": "user", "content": "private prompt"}]}
        first = httpx.post(f"{url}/v1/chat/completions", json=body)
        second = httpx.post(f"{url}/v1/chat/completions", json=body)
    assert first.status_code == 502
    assert first.json()["error"]["type"] == "upstream_error"
    assert (
        "ui-layout@v1: unavailable; callable:gateway_fakes:down: unavailable"
        in (first.json()["error"]["message"])
    )
    assert second.status_code == 503
    assert "circuit_open" in second.json()["error"]["message"]
    for response in (first, second):
        assert "private prompt" not in response.text
    assert count(store) == 0
    store.close()


def test_remote_student_over_http_falls_back_on_each_kind_of_failure(
    tmp_path: Path, fake_openai: FakeAPI
) -> None:
    """The student is an OpenAI-compatible server (the shared fake): 500, 429, a hang past the
    deadline, prose in a JSON task, and a refused connection each hand the call to the teacher."""
    config = make_config(tmp_path, timeout_s=0.5, cooldown_after=100)
    config.providers = {
        "student": ProviderSettings(
            kind="openai-compatible",
            model="student-model",
            base_url=fake_openai.base_url,
            max_retries=0,
        ),
        "gone": ProviderSettings(
            kind="openai-compatible", model="m", max_retries=0, base_url="http://127.0.0.1:9/v1"
        ),
    }
    store = Store(config.store_url)
    add_version(store, "provider:student", "production")
    good = json.dumps({"answer": "ok", "by": "remote student"})
    fake_openai.push(
        Reply.error(500),
        Reply.error(429, retry_after=0),
        Reply.hang(2.0, good),
        Reply(text="a login form, centred"),
        Reply(text=good),
    )
    with Running(create_app(config)) as url:

        def ask() -> tuple[str, str, str]:
            raw = httpx.post(
                f"{url}/v1/chat/completions",
                timeout=30,
                json={"model": TASK, "messages": [{"role": "user", "content": "a login form"}]},
            )
            assert raw.status_code == 200, raw.text
            by = json.loads(raw.json()["choices"][0]["message"]["content"])["by"]
            return (
                raw.headers["x-tuneloop-route"],
                raw.headers.get("x-tuneloop-fallback-reason", ""),
                by,
            )

        seen = [ask() for _ in range(5)]
        set_stage(store, TASK, 1, "archived")
        add_version(store, "provider:gone", "production")
        time.sleep(0.4)
        seen.append(ask())
    student = f"{TASK}@v1"
    assert seen == [
        ("fallback", f"{student}:unavailable", "teacher"),
        ("fallback", f"{student}:rate_limited", "teacher"),
        ("fallback", f"{student}:timeout", "teacher"),
        ("fallback", f"{student}:invalid_output", "teacher"),
        ("production", "", "remote student"),
        ("fallback", f"{TASK}@v2:connection", "teacher"),
    ]
    assert all(request.body["model"] == "student-model" for request in fake_openai.requests)
    store.close()
