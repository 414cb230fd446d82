"""Request and response shapes of the OpenAI chat API, as the official clients send and read them.

Requests are validated with pydantic (unknown parameters are kept and passed on to providers that
understand them); responses are plain dicts built by the functions here, because they are on the
hot path and their shape is fixed.
"""

from __future__ import annotations

import time
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from tuneloop.providers import RequestOptions

ROLES = ("system", "developer", "user", "assistant", "tool", "function")


class ChatMessage(BaseModel):
    """One message; content may be text, a list of parts, or absent on a tool-call turn."""

    model_config = ConfigDict(extra="allow")

    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[dict[str, Any]] | None = None


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow")

    include_usage: bool = False


class ChatCompletionRequest(BaseModel):
    """``POST /v1/chat/completions``; parameters we do not use are kept in ``model_extra``."""

    model_config = ConfigDict(extra="allow")

    model: str = Field(min_length=1, max_length=300)
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=2)
    n: int | None = Field(None, ge=1, le=1)
    user: str | None = Field(None, max_length=200)
    metadata: dict[str, str] | None = None
    response_format: dict[str, Any] | None = None

    @property
    def token_limit(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens

    @property
    def wants_usage_chunk(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)

    def message_dicts(self) -> list[dict[str, Any]]:
        return [message.model_dump(exclude_none=True) for message in self.messages]

    def options(self) -> RequestOptions:
        """What providers get besides the messages; parameters we do not model travel in
        ``extra_body`` to the providers that pass it on."""
        extra = dict(self.model_extra or {})
        known = {name: extra.pop(name, None) for name in ("top_p", "stop", "tools", "tool_choice")}
        for unused in (
            "logprobs",
            "top_logprobs",
            "store",
            "service_tier",
            "parallel_tool_calls",
            "stream_options",
        ):
            extra.pop(unused, None)
        stop, tools = known["stop"], known["tools"]
        if isinstance(stop, str):
            stop = [stop]
        return RequestOptions(
            max_tokens=self.token_limit,
            temperature=self.temperature,
            top_p=known["top_p"] if isinstance(known["top_p"], int | float) else None,
            stop=tuple(stop) if isinstance(stop, list) else None,
            response_format=self.response_format,
            tools=tuple(tools) if isinstance(tools, list) else None,
            tool_choice=known["tool_choice"],
            extra_body=extra or None,
        )


class FeedbackRequest(BaseModel):
    """``POST /v1/feedback``: a capture feedback kind about a call the gateway answered."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1, max_length=64, description="the call id (the response's id)")
    kind: str = Field(min_length=1, max_length=40)
    score: float | None = None
    edited: str | None = None
    comment: str | None = Field(None, max_length=10_000)
    value: dict[str, Any] | None = None


def usage_body(prompt_tokens: int | None, completion_tokens: int | None) -> dict[str, int]:
    prompt, completion = prompt_tokens or 0, completion_tokens or 0
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


def completion_body(
    response_id: str, model: str, text: str, usage: dict[str, int], created: int | None = None
) -> dict[str, Any]:
    """A ``chat.completion`` object with one choice."""
    return {
        "id": response_id,
        "object": "chat.completion",
        "created": created or int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text, "refusal": None},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": usage,
        "system_fingerprint": None,
    }


def chunk_body(
    response_id: str,
    model: str,
    created: int,
    delta: dict[str, Any] | None,
    *,
    finish_reason: str | None = None,
    usage: dict[str, int] | None = None,
    with_usage_field: bool = False,
) -> dict[str, Any]:
    """A ``chat.completion.chunk``: ``delta=None`` gives the usage-only chunk (no choices)."""
    body: dict[str, Any] = {
        "id": response_id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "system_fingerprint": None,
        "choices": []
        if delta is None
        else [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
    }
    if with_usage_field or usage is not None:
        body["usage"] = usage
    return body


def model_entry(model_id: str, owned_by: str, created: int) -> dict[str, Any]:
    return {"id": model_id, "object": "model", "created": created, "owned_by": owned_by}
