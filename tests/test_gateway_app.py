"""The gateway over HTTP on loopback, spoken to by the official openai client, unchanged."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from gateway_fakes import Running
from sqlalchemy import func, select

from tuneloop.capture.client import Tuneloop
from tuneloop.config import Config
from tuneloop.gateway import create_app, create_key
from tuneloop.registry import register_version, set_stage
from tuneloop.store import Interaction, Store

TASK = "ui-layout"


def make_config(tmp_path: Path, store_url: str | None = None, **gateway: Any) -> Config:
    url = store_url or f"sqlite:///{(tmp_path / 'store.db').as_posix()}"
    settings = {
        "log_flush_s": 0.02,
        "reload_s": 0.1,
        "json_tasks": [TASK],
        "fallback": ["callable:gateway_fakes:teacher"],
        **gateway,
    }
    return Config.model_validate(
        {"workspace": str(tmp_path / "ws"), "store": {"url": url}, "gateway": settings}
    )


def add_version(store: Store, serve: str, stage: str, percent: float = 0.0) -> None:
    version = register_version(
        store, task=TASK, base_model="builtin:tiny", artifact_path=None, config={"serve": serve}
    )
    set_stage(store, TASK, version.version, stage, traffic_percent=percent)


def rows(store: Store, **where: Any) -> list[Interaction]:
    with store.session() as session:
        query = select(Interaction).order_by(Interaction.created_at)
        for key, value in where.items():
            query = query.where(getattr(Interaction, key) == value)
        return list(session.scalars(query))


def wait_rows(store: Store, count: int, timeout: float = 10.0, **where: Any) -> list[Interaction]:
    deadline = time.monotonic() + timeout
    while True:
        found = rows(store, **where)
        if len(found) >= count or time.monotonic() > deadline:
            return found
        time.sleep(0.02)


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[tuple[str, Store]]:
    config = make_config(tmp_path)
    store = Store(config.store_url)
    add_version(store, "callable:gateway_fakes:student", "production")
    with Running(create_app(config)) as url:
        yield url, store
    store.close()


def test_sync_client_gets_the_student_and_the_call_is_logged(gateway: tuple[str, Store]) -> None:
    url, store = gateway
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused")
    raw = client.chat.completions.with_raw_response.create(
        model=TASK,
        messages=[{"role": "user", "content": "a settings screen"}],
        extra_headers={"X-Tuneloop-Tenant": "acme", "X-Tuneloop-Session": "s1"},
    )
    completion = raw.parse()
    assert json.loads(completion.choices[0].message.content) == {
        "answer": "a settings screen",
        "by": "student",
    }  # the fence was stripped
    assert completion.model == f"{TASK}@v1"
    assert raw.headers["x-tuneloop-route"] == "production"
    assert "x-tuneloop-fallback-reason" not in raw.headers
    assert completion.usage is not None and completion.usage.total_tokens == 12
    call_id = raw.headers["x-tuneloop-call-id"]
    assert completion.id == f"chatcmpl-{call_id}"
    [row] = wait_rows(store, 1)
    assert (row.source, row.task, row.tenant, row.session_id) == ("gateway", TASK, "acme", "s1")
    assert row.provider == "callable:gateway_fakes:student"
    assert row.metadata_["gateway"] == {"route": "production", "served_by": f"{TASK}@v1"}
    assert row.response == completion.choices[0].message.content
    assert row.prompt_tokens == 7 and row.latency_ms is not None


def test_streaming_chunks_in_openai_format_with_usage_last(gateway: tuple[str, Store]) -> None:
    url, store = gateway
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused")
    stream = client.chat.completions.create(
        model=TASK,
        messages=[{"role": "user", "content": "a long login form " * 5}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    # passed through as the student wrote it (fence included): normalising needs the whole text
    assert (
        text.startswith("```json\n")
        and json.loads(text.strip("`\n").removeprefix("json"))["by"] == "student"
    )
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 5
    assert len({c.id for c in chunks}) == 1
    [row] = wait_rows(store, 1)
    assert row.response == text and row.metadata_["gateway"]["check"] == "ok"


def test_raw_stream_is_server_sent_events_ending_in_done(gateway: tuple[str, Store]) -> None:
    url, _ = gateway
    with httpx.stream(
        "POST",
        f"{url}/v1/chat/completions",
        json={"model": TASK, "stream": True, "messages": [{"role": "user", "content": "x"}]},
    ) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        events = [line for line in response.iter_lines() if line]
    assert events[-1] == "data: [DONE]"
    bodies = [json.loads(line.removeprefix("data: ")) for line in events[:-1]]
    assert all(body["object"] == "chat.completion.chunk" for body in bodies)
    assert all("usage" not in body for body in bodies)  # not asked for


def test_async_client_and_models_list(gateway: tuple[str, Store]) -> None:
    url, store = gateway

    async def run() -> tuple[list[str], list[str]]:
        client = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="unused")
        answers = await asyncio.gather(
            *[
                client.chat.completions.create(
                    model=TASK, messages=[{"role": "user", "content": f"screen {n}"}]
                )
                for n in range(8)
            ]
        )
        models = await client.models.list()
        return [a.choices[0].message.content or "" for a in answers], [m.id for m in models.data]

    answers, models = asyncio.run(run())
    assert sorted(json.loads(a)["answer"] for a in answers) == sorted(
        f"screen {n}" for n in range(8)
    )
    assert models == [TASK, "callable:gateway_fakes:teacher"]
    assert len(wait_rows(store, 8)) == 8


def test_bad_requests_get_openai_shaped_errors(tmp_path: Path) -> None:
    config = make_config(tmp_path, max_request_bytes=2048)
    with Running(create_app(config)) as url:
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)
        with pytest.raises(openai.BadRequestError) as caught:
            client.chat.completions.create(model=TASK, messages=[])
        assert caught.value.body["param"] == "messages"  # type: ignore[index]
        with pytest.raises(openai.BadRequestError) as caught:
            client.chat.completions.create(
                model="callable:os:system", messages=[{"role": "user", "content": "x"}]
            )
        assert "not accepted from requests" in caught.value.message
        with pytest.raises(openai.BadRequestError) as caught:
            client.chat.completions.create(
                model=TASK,
                messages=[{"role": "user", "content": "x"}],
                response_format={
                    "type": "json_schema",
                    "json_schema": {"name": "s", "schema": {"type": "nonsense"}},
                },
            )
        assert "not a valid JSON Schema" in caught.value.message
        big = httpx.post(
            f"{url}/v1/chat/completions",
            json={"model": TASK, "messages": [{"role": "user", "content": "x" * 5000}]},
        )
        assert big.status_code == 413
        assert big.json()["error"]["code"] == "request_too_large"
        assert "xxxx" not in big.text
        broken = httpx.post(
            f"{url}/v1/chat/completions",
            content=b"{not json",
            headers={"content-type": "application/json"},
        )
        assert broken.status_code == 400 and broken.json()["error"]["code"] == "invalid_json"
        missing = httpx.get(f"{url}/v1/nothing")
        assert missing.status_code == 404 and missing.json()["error"]["type"] == "not_found_error"


def test_opted_out_tenant_is_served_but_never_stored(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    config.capture.opted_out_tenants = ["private-co"]
    store = Store(config.store_url)
    with Running(create_app(config)) as url:
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused")
        for tenant in ("private-co", "open-co"):
            answer = client.chat.completions.create(
                model=TASK,
                messages=[{"role": "user", "content": "secret plans"}],
                extra_headers={"X-Tuneloop-Tenant": tenant},
            )
            assert answer.choices[0].message.content
        assert [row.tenant for row in wait_rows(store, 1)] == ["open-co"]
    spill = tmp_path / "ws" / "gateway-spill"
    assert not any("secret plans" in path.read_text() for path in spill.glob("*.jsonl"))
    assert [row.tenant for row in rows(store)] == ["open-co"]
    store.close()


def test_stage_changes_apply_without_restart_and_shadow_is_a_linked_pair(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    store = Store(config.store_url)
    with Running(create_app(config)) as url:
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused")

        def ask(session: str) -> tuple[str, str]:
            raw = client.chat.completions.with_raw_response.create(
                model=TASK,
                messages=[{"role": "user", "content": "a card"}],
                extra_headers={"X-Tuneloop-Session": session},
            )
            return raw.headers["x-tuneloop-route"], json.loads(
                raw.parse().choices[0].message.content or ""
            )["by"]

        assert ask("a") == ("fallback", "teacher")  # no version yet: the teacher answers
        add_version(store, "callable:gateway_fakes:student", "production")
        add_version(store, "callable:gateway_fakes:canary", "canary", 50)
        add_version(store, "callable:gateway_fakes:shadow", "shadow")
        time.sleep(0.5)
        seen = {ask(f"user-{n}") for n in range(20)}
        assert seen == {("production", "student"), ("canary", "canary")}
        served = wait_rows(store, 21, source="gateway")
        shadows = wait_rows(store, 20, source="shadow")
    assert len(served) == 21 and len(shadows) == 20
    by_call = {row.idempotency_key: row for row in served}
    for row in shadows:
        info = row.metadata_["gateway"]
        assert info["route"] == "shadow" and info["served_by"] == f"{TASK}@v3"
        assert info["shadow_of"] in by_call
        assert json.loads(row.response)["by"] == "shadow"
    store.close()


def test_fallback_headers_and_all_down_is_a_clean_502(tmp_path: Path) -> None:
    config = make_config(tmp_path, fallback=["callable:gateway_fakes:down"], cooldown_after=100)
    store = Store(config.store_url)
    add_version(store, "callable:gateway_fakes:also_down", "production")
    with Running(create_app(config)) as url:
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)
        with pytest.raises(openai.APIStatusError) as caught:
            client.chat.completions.create(model=TASK, messages=[{"role": "user", "content": "x"}])
        assert caught.value.status_code == 502
        message = caught.value.message
        assert f"{TASK}@v1: unavailable" in message
        assert "callable:gateway_fakes:down: unavailable" in message
        metrics = httpx.get(f"{url}/metrics").text
        assert (
            'tuneloop_gateway_fallbacks_total{model="ui-layout@v1",reason="unavailable"' in metrics
        )
    store.close()


def test_api_keys_scope_tenants_and_feedback(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    store = Store(config.store_url)
    _, acme_key = create_key(store, "acme app", tenants=["acme"])
    _, other_key = create_key(store, "other app", tenants=["other"], tasks=[TASK])
    with Running(create_app(config)) as url:
        anonymous = openai.OpenAI(base_url=f"{url}/v1", api_key="wrong", max_retries=0)
        with pytest.raises(openai.AuthenticationError):
            anonymous.chat.completions.create(
                model=TASK, messages=[{"role": "user", "content": "x"}]
            )
        acme = openai.OpenAI(base_url=f"{url}/v1", api_key=acme_key)
        raw = acme.chat.completions.with_raw_response.create(
            model=TASK, messages=[{"role": "user", "content": "x"}]
        )
        call_id = raw.parse().id
        with pytest.raises(openai.PermissionDeniedError):
            acme.chat.completions.create(
                model=TASK,
                messages=[{"role": "user", "content": "x"}],
                extra_headers={"X-Tuneloop-Tenant": "other"},
            )
        [row] = wait_rows(store, 1)
        assert row.tenant == "acme"
        foreign = httpx.post(
            f"{url}/v1/feedback",
            json={"id": call_id, "kind": "thumbs_up"},
            headers={"Authorization": f"Bearer {other_key}"},
        )
        assert foreign.status_code == 404
        own = httpx.post(
            f"{url}/v1/feedback",
            json={"id": call_id, "kind": "thumbs_up"},
            headers={"Authorization": f"Bearer {acme_key}"},
        )
        assert own.status_code == 200 and own.json()["reward"] == 1.0
        unknown_kind = httpx.post(
            f"{url}/v1/feedback",
            json={"id": call_id, "kind": "meh"},
            headers={"Authorization": f"Bearer {acme_key}"},
        )
        assert unknown_kind.status_code == 400
        metrics = httpx.get(f"{url}/metrics").text
    with store.session() as session:
        assert session.scalar(select(func.count()).select_from(Interaction)) == 1
    assert Tuneloop(config, store).get(row.id).reward == 1.0
    for key in (acme_key, other_key):
        assert key not in metrics
        for path in (tmp_path / "ws").rglob("*"):
            if path.is_file():
                assert key.encode() not in path.read_bytes()
    store.close()


def test_asking_again_in_a_session_marks_the_first_answer_regenerated(
    gateway: tuple[str, Store],
) -> None:
    url, store = gateway
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused")
    for _ in range(2):
        client.chat.completions.create(
            model=TASK,
            messages=[{"role": "user", "content": "a pricing page"}],
            metadata={"session_id": "s9", "tenant": "acme", "screen": "pricing"},
        )
        wait_rows(store, 1)
    first, second = wait_rows(store, 2)
    assert (first.tenant, first.session_id) == ("acme", "s9")
    assert first.metadata_["screen"] == "pricing" and "tenant" not in first.metadata_
    with store.session() as session:
        kinds = [f.kind for f in session.get_one(Interaction, first.id).feedback]
    assert kinds == ["regenerated"] and first.id != second.id
