"""Fake provider servers for tests (and benchmarks): see ``llm_server`` and ``fixtures``."""

from fakes.llm_server import FakeAPI, FakeLLMServer, RecordedRequest, Reply

__all__ = ["FakeAPI", "FakeLLMServer", "RecordedRequest", "Reply"]
