"""Providers for gateway tests, named as ``callable:gateway_fakes:NAME`` specs.

The student's behaviour is chosen by the prompt (``case N``), so a test knows exactly which calls
fail and how, whatever the order requests arrive in.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

from tuneloop.providers import ProviderUnavailable


def server_error(message: str) -> ProviderUnavailable:
    """What a remote client raises on a 503 answer."""
    return ProviderUnavailable(message, status=503)


def _last_user(messages: list[dict[str, Any]]) -> str:
    return next((str(m.get("content")) for m in reversed(messages) if m["role"] == "user"), "")


def teacher(messages: list[dict[str, Any]]) -> dict[str, Any]:
    prompt = _last_user(messages)
    return {
        "text": json.dumps({"answer": prompt, "by": "teacher"}),
        "model": "teacher-model",
        "prompt_tokens": 7,
        "completion_tokens": 5,
        "cost_usd": 0.002,
    }


def student(messages: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "text": "```json\n"
        + json.dumps({"answer": _last_user(messages), "by": "student"})
        + "\n```",
        "model": "student-model",
        "prompt_tokens": 7,
        "completion_tokens": 5,
        "cost_usd": 0.0,
    }


def canary(messages: list[dict[str, Any]]) -> str:
    return json.dumps({"answer": _last_user(messages), "by": "canary"})


def shadow(messages: list[dict[str, Any]]) -> str:
    return json.dumps({"answer": _last_user(messages), "by": "shadow"})


def flaky_student(messages: list[dict[str, Any]]) -> dict[str, Any]:
    """``case N``: N % 10 in 0-2 → 503, 3 → too slow (timeout), 4 → not JSON, else valid."""
    prompt = _last_user(messages)
    number = int(prompt.rsplit("case ", 1)[1]) if "case " in prompt else 9
    kind = number % 10
    if kind <= 2:
        raise server_error("student server answered 503")
    if kind == 3:
        time.sleep(1.0)
    if kind == 4:
        return {"text": "Sure! Here is a layout: frame, text, button", "model": "student-model"}
    return student(messages)


def down(messages: list[dict[str, Any]]) -> str:
    raise server_error("provider answered 503")


class Running:
    """A uvicorn server on a free loopback port, in a thread (``with running(app) as url``)."""

    def __init__(self, app: Any) -> None:
        import threading

        import uvicorn

        self.server = uvicorn.Server(
            uvicorn.Config(
                app, host="127.0.0.1", port=0, log_level="warning", access_log=False, lifespan="on"
            )
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the gateway did not start")
            time.sleep(0.01)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    def __exit__(self, *_: object) -> None:
        self.server.should_exit = True
        self.thread.join(30)


def also_down(messages: list[dict[str, Any]]) -> str:
    raise server_error("provider answered 503")


# A student that streams in pieces from a worker thread, as the local provider does: it sends
# its first piece, then waits for the test to open ``GATE`` before the rest. ``EVENTS`` records
# the order in which the two sides moved.
GATE = None  # a threading.Event a test sets before use
EVENTS: list[str] = []


def gated_student(messages: list[dict[str, Any]]) -> Iterator[str]:
    import threading

    gate = GATE if isinstance(GATE, threading.Event) else threading.Event()
    yield '{"answer": '
    released = gate.wait(10.0)
    EVENTS.append("student released" if released else "student gave up waiting")
    yield json.dumps(_last_user(messages))
    yield ', "by": "student"}'
    EVENTS.append("student finished")


def prose_streamer(messages: list[dict[str, Any]]) -> Iterator[str]:
    """Streams prose in a JSON task: the check fails only once the answer is complete."""
    yield "Sure! "
    yield "Here is a layout."
