"""Streams pass through the gateway piece by piece: the official client sees the first text while
the upstream is still answering (shown by the order of events, never by timing), falls back only
before that first text, ends with an error event after it, and every stream is logged once."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path

import gateway_fakes
import httpx
import openai
import pytest
from fakes import FakeAPI, Reply
from gateway_fakes import Running
from test_gateway_app import TASK, add_version, make_config, wait_rows

from tuneloop.gateway import create_app
from tuneloop.store import Store

LONG = json.dumps({"answer": "a login form with two fields", "by": "remote"})


def remote(fake: FakeAPI) -> str:
    return f"openai-compatible:{fake.base_url}#student-model"


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[tuple[Store, dict[str, Running]]]:
    """Starts gateways on demand: ``start(serve_spec, **gateway_settings)`` → url."""
    started: list[Running] = []
    store: list[Store] = []

    def start(spec: str, **settings: object) -> tuple[str, Store]:
        config = make_config(tmp_path, **settings)
        store.append(Store(config.store_url))
        add_version(store[-1], spec, "production")
        running = Running(create_app(config))
        started.append(running)
        return running.__enter__(), store[-1]

    yield start  # type: ignore[misc]
    for running in started:
        running.__exit__()
    for opened in store:
        opened.close()


def test_remote_chunks_reach_the_client_before_the_upstream_finishes(
    serve: object, fake_openai: FakeAPI
) -> None:
    url, store = serve(remote(fake_openai))  # type: ignore[operator]
    gate, events = threading.Event(), []
    fake_openai.push(Reply(text=LONG, chunk_chars=8, gate=gate, gate_after=2, events=events))
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused")
    stream = client.chat.completions.create(
        model=TASK,
        messages=[{"role": "user", "content": "a login form"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    received: list[str] = []
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            received.append(chunk.choices[0].delta.content)
            if len(received) == 2:  # what the upstream sent before it stopped at the gate
                events.append("client got text")
                gate.set()
    assert events == ["client got text", "upstream released", "upstream finished"]
    assert "".join(received) == LONG and received[:2] == [LONG[:8], LONG[8:16]]
    assert stream.response.headers["x-tuneloop-model"] == f"{TASK}@v1"
    assert chunk.usage is not None and chunk.usage.completion_tokens == 7  # the fake's count
    [row] = wait_rows(store, 1)
    assert row.response == LONG and row.completion_tokens == 7 and row.prompt_tokens == 12
    info = row.metadata_["gateway"]
    assert info["stream"] is True and info["check"] == "ok" and info["route"] == "production"
    assert 0 < info["first_token_ms"] <= row.latency_ms


def test_a_local_style_student_streams_from_its_worker_thread(serve: object) -> None:
    url, store = serve("callable:gateway_fakes:gated_student")  # type: ignore[operator]
    gateway_fakes.GATE = threading.Event()
    gateway_fakes.EVENTS.clear()
    with httpx.stream(
        "POST",
        f"{url}/v1/chat/completions",
        json={"model": TASK, "stream": True, "messages": [{"role": "user", "content": "x"}]},
        timeout=30,
    ) as response:
        lines = response.iter_lines()
        bodies = []
        for line in lines:
            if not line:
                continue
            bodies.append(line)
            if '"content": "{\\"answer\\": "' in line:
                gateway_fakes.EVENTS.append("client got text")
                gateway_fakes.GATE.set()
        assert bodies[-1] == "data: [DONE]"
    assert gateway_fakes.EVENTS == ["client got text", "student released", "student finished"]
    text = "".join(
        json.loads(b.removeprefix("data: "))["choices"][0]["delta"].get("content") or ""
        for b in bodies[:-1]
    )
    assert json.loads(text) == {"answer": "x", "by": "student"}
    [row] = wait_rows(store, 1)
    assert row.response == text


def test_a_failure_before_the_first_text_falls_back_to_the_next_provider(
    serve: object, fake_openai: FakeAPI
) -> None:
    url, store = serve(remote(fake_openai))  # type: ignore[operator]
    fake_openai.push(Reply.error(401))  # final: the provider does not retry it itself
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused")
    stream = client.chat.completions.create(
        model=TASK, messages=[{"role": "user", "content": "a form"}], stream=True
    )
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert json.loads(text) == {"answer": "a form", "by": "teacher"}
    headers = stream.response.headers
    assert headers["x-tuneloop-route"] == "fallback"
    assert headers["x-tuneloop-fallback-reason"].startswith(f"{TASK}@v1:auth")
    [row] = wait_rows(store, 1)
    assert row.metadata_["gateway"]["route"] == "fallback"
    assert row.metadata_["gateway"]["fallback"][0]["model"] == f"{TASK}@v1"


def test_a_failure_after_the_first_text_ends_the_stream_with_an_error_event(
    serve: object, fake_openai: FakeAPI
) -> None:
    url, store = serve(remote(fake_openai))  # type: ignore[operator]
    fake_openai.push(Reply(text=LONG, chunk_chars=8, malformed_at=3))
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused")
    stream = client.chat.completions.create(
        model=TASK, messages=[{"role": "user", "content": "a form"}], stream=True
    )
    received = []
    with pytest.raises(openai.APIError, match="failed after its answer began streaming"):
        for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                received.append(chunk.choices[0].delta.content)
    assert "".join(received) == LONG[:24]  # three pieces, no teacher text after them
    [row] = wait_rows(store, 1)
    assert row.response == LONG[:24]
    assert row.metadata_["gateway"]["stream_error"] == "stream_interrupted"
    assert len(fake_openai.requests) == 1


def test_every_provider_down_before_the_first_text_is_a_clean_502(serve: object) -> None:
    url, _store = serve(  # type: ignore[operator]
        "callable:gateway_fakes:down", fallback=["callable:gateway_fakes:also_down"]
    )
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)
    with pytest.raises(openai.APIStatusError) as caught:
        list(
            client.chat.completions.create(
                model=TASK, messages=[{"role": "user", "content": "x"}], stream=True
            )
        )
    assert caught.value.status_code == 502
    assert "no provider answered" in caught.value.message


def test_checks_on_a_stream_run_after_it_ends_and_are_logged_not_blocking(
    serve: object,
) -> None:
    url, store = serve("callable:gateway_fakes:prose_streamer")  # type: ignore[operator]
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused")
    stream = client.chat.completions.create(
        model=TASK, messages=[{"role": "user", "content": "x"}], stream=True
    )
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text == "Sure! Here is a layout."  # a JSON task, but the text was already out
    [row] = wait_rows(store, 1)
    assert row.metadata_["gateway"]["check"] == "not_json"
    metrics = httpx.get(f"{url}/metrics").text
    assert (
        f'tuneloop_gateway_stream_check_failures_total{{model="{TASK}@v1",reason="not_json",'
        f'task="{TASK}"}} 1.0' in metrics
    )
    assert "tuneloop_gateway_first_token_seconds_count" in metrics


def test_checked_streams_wait_for_the_whole_answer_and_fall_back_on_it(serve: object) -> None:
    url, store = serve(  # type: ignore[operator]
        "callable:gateway_fakes:prose_streamer", stream_checks="before"
    )
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused")
    stream = client.chat.completions.create(
        model=TASK, messages=[{"role": "user", "content": "x"}], stream=True
    )
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert json.loads(text)["by"] == "teacher"
    assert stream.response.headers["x-tuneloop-route"] == "fallback"
    assert len(wait_rows(store, 1)) == 1


@pytest.mark.slow
def test_the_shipped_local_model_streams_token_by_token_through_the_gateway(
    serve: object,
) -> None:
    url, store = serve("builtin:tiny", json_tasks=[], device="cpu")  # type: ignore[operator]
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", timeout=120)
    stream = client.chat.completions.create(
        model=TASK,
        messages=[{"role": "user", "content": "A login screen"}],
        stream=True,
        max_tokens=24,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    pieces = [
        c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content
    ]
    assert len(pieces) > 1  # TextIteratorStreamer's pieces, not one block
    assert chunks[-1].usage is not None and 0 < chunks[-1].usage.completion_tokens <= 24
    [row] = wait_rows(store, 1, timeout=30)
    assert row.response == "".join(pieces) and row.metadata_["gateway"]["stream"] is True


def test_a_client_that_goes_away_mid_stream_is_still_logged_once(serve: object) -> None:
    url, store = serve("callable:gateway_fakes:gated_student")  # type: ignore[operator]
    gateway_fakes.GATE = threading.Event()
    gateway_fakes.EVENTS.clear()
    with httpx.stream(
        "POST",
        f"{url}/v1/chat/completions",
        json={"model": TASK, "stream": True, "messages": [{"role": "user", "content": "x"}]},
        timeout=30,
    ) as response:
        for line in response.iter_lines():
            if '"content": "{' in line:
                break  # leave with the answer half sent
    try:
        [row] = wait_rows(store, 1)  # logged while the student still waits for the gate
    finally:
        gateway_fakes.GATE.set()  # let the student's thread finish
    assert row.response == '{"answer": '
    assert row.metadata_["gateway"]["stream_error"] == "client_disconnected"
