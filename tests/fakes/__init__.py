"""Fake provider servers for tests (and benchmarks): see ``llm_server`` and ``fixtures``."""

from fakes.finetune import FakeFineTuning, FakeJob
from fakes.llm_server import FakeAPI, FakeLLMServer, RecordedRequest, Reply

__all__ = ["FakeAPI", "FakeFineTuning", "FakeJob", "FakeLLMServer", "RecordedRequest", "Reply"]
