"""pytest fixtures over the fake LLM server: one server per session, a clean script per test.

``fake_openai``, ``fake_together`` and ``fake_anthropic`` each give a ``FakeAPI``: its
``base_url`` for a provider's ``base_url`` setting, ``push(Reply(...))`` to script answers and
faults, ``requests`` to see what the client sent, ``expected_key`` to demand a key.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from fakes.llm_server import FakeAPI, FakeLLMServer


@pytest.fixture(scope="session")
def fake_llm_server() -> Iterator[FakeLLMServer]:
    server = FakeLLMServer().start()
    yield server
    server.stop()


@pytest.fixture
def fake_openai(fake_llm_server: FakeLLMServer) -> Iterator[FakeAPI]:
    fake_llm_server.openai.reset()
    yield fake_llm_server.openai
    fake_llm_server.openai.reset()


@pytest.fixture
def fake_together(fake_llm_server: FakeLLMServer) -> Iterator[FakeAPI]:
    fake_llm_server.together.reset()
    yield fake_llm_server.together
    fake_llm_server.together.reset()


@pytest.fixture
def fake_anthropic(fake_llm_server: FakeLLMServer) -> Iterator[FakeAPI]:
    fake_llm_server.anthropic.reset()
    yield fake_llm_server.anthropic
    fake_llm_server.anthropic.reset()
