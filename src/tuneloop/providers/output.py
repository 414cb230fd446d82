"""Checking and normalising answers per task: JSON, a JSON Schema, a custom validator.

The repair itself (fences, JSON in prose, ``{"reasoning": ..., "layout": ...}`` envelopes) is
``tuneloop.jsontext.normalise_output``; this module decides what a task requires and turns a
failure into ``InvalidOutput``, which a chain treats like any other provider failure (the crafter
rule: API error, timeout or invalid JSON → the next model). Error messages say what failed and
where (a schema path and keyword), never the answer itself.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuneloop.config import OutputConfig
from tuneloop.imports import import_object
from tuneloop.jsontext import normalise_output
from tuneloop.providers.base import (
    BaseProvider,
    Completion,
    Message,
    Provider,
    RequestOptions,
    StreamChunk,
)
from tuneloop.providers.errors import InvalidOutput, ProviderError

MAX_VALIDATOR_DETAIL = 160


@dataclass(frozen=True)
class OutputCheck:
    """What an answer must be. ``json``: one JSON value (after normalisation); ``schema``: a
    JSON Schema it must satisfy; ``validator``: a function of the value (or of the text when
    JSON is not required) whose False or exception rejects it; ``unwrap``: envelope keys."""

    json: bool = False
    schema: dict[str, Any] | None = None
    schema_name: str = "schema"
    validator: Callable[[Any], Any] | None = None
    validator_name: str = "validator"
    unwrap: tuple[str, ...] = ()

    @classmethod
    def from_config(cls, config: OutputConfig, base_dir: Path | None = None) -> OutputCheck:
        schema = None
        schema_name = "schema"
        if config.schema_path is not None:
            path = config.schema_path
            if not path.is_absolute() and base_dir is not None:
                path = base_dir / path
            schema, schema_name = load_schema(path), str(config.schema_path)
        validator = None
        if config.validator:
            validator = import_object(config.validator, error=ProviderError)
            if not callable(validator):
                raise ProviderError(f"output validator {config.validator!r} is not callable")
        return cls(
            json=config.json_output,
            schema=schema,
            schema_name=schema_name,
            validator=validator,
            validator_name=config.validator or "validator",
            unwrap=(config.unwrap,) if config.unwrap else (),
        )

    @property
    def needs_json(self) -> bool:
        return self.json or self.schema is not None or bool(self.unwrap)

    def apply(self, completion: Completion) -> Completion:
        """The completion with its text normalised, or ``InvalidOutput`` saying why not."""
        who = completion.provider
        value: Any = completion.text
        if self.needs_json:
            normalised = normalise_output(completion.text, unwrap_keys=self.unwrap)
            if not normalised.ok:
                raise InvalidOutput(
                    f"{who}: the answer is not JSON ({len(completion.text)} characters)",
                    reason="not_json",
                    completion=completion,
                )
            value = normalised.value
            reasoning = normalised.reasoning
            if reasoning is not None and not isinstance(reasoning, str):
                reasoning = json.dumps(reasoning, ensure_ascii=False)
            completion = completion.replace(
                text=normalised.text, reasoning=reasoning or completion.reasoning
            )
        if self.schema is not None:
            self._check_schema(value, completion)
        if self.validator is not None:
            self._check_validator(value, completion)
        return completion

    def _check_schema(self, value: Any, completion: Completion) -> None:
        import jsonschema

        validator_class = jsonschema.validators.validator_for(self.schema)
        error = jsonschema.exceptions.best_match(validator_class(self.schema).iter_errors(value))
        if error is None:
            return
        where = error.json_path if hasattr(error, "json_path") else "$"
        raise InvalidOutput(
            f"{completion.provider}: the answer does not match {self.schema_name}: at {where} "
            f"it fails the {error.validator!r} rule",
            reason="schema",
            completion=completion,
        )

    def _check_validator(self, value: Any, completion: Completion) -> None:
        try:
            verdict = self.validator(value)  # type: ignore[misc]
        except Exception as exc:
            detail = " ".join(str(exc).split())[:MAX_VALIDATOR_DETAIL]
            raise InvalidOutput(
                f"{completion.provider}: {self.validator_name} rejected the answer "
                f"({type(exc).__name__}: {detail})",
                reason="validator",
                completion=completion,
            ) from exc
        if verdict is False:
            raise InvalidOutput(
                f"{completion.provider}: {self.validator_name} rejected the answer",
                reason="validator",
                completion=completion,
            )


def load_schema(path: Path) -> dict[str, Any]:
    """A JSON Schema file, checked to be a valid schema, with errors naming the file."""
    import jsonschema

    try:
        schema = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ProviderError(f"cannot read JSON Schema {path}: {exc.strerror}") from None
    except json.JSONDecodeError as exc:
        raise ProviderError(f"{path} is not JSON (line {exc.lineno}): {exc.msg}") from None
    try:
        jsonschema.validators.validator_for(schema).check_schema(schema)
    except jsonschema.exceptions.SchemaError as exc:
        raise ProviderError(f"{path} is not a valid JSON Schema: {exc.message}") from None
    return schema


class CheckedProvider(BaseProvider):
    """A provider whose answers pass an ``OutputCheck``. Streams pass text through as it comes;
    the final completion is checked (and normalised) when the stream ends."""

    def __init__(self, inner: Provider, check: OutputCheck) -> None:
        self.inner = inner
        self.check = check
        self.name = inner.name

    def _complete(self, messages: list[Message], options: RequestOptions) -> Completion:
        return self.check.apply(self.inner.complete(messages, options=options))

    async def _acomplete(self, messages: list[Message], options: RequestOptions) -> Completion:
        return self.check.apply(await self.inner.acomplete(messages, options=options))

    def _stream(self, messages: list[Message], options: RequestOptions) -> Iterator[StreamChunk]:
        for chunk in self.inner.stream(messages, options=options):
            if chunk.completion is not None:
                yield StreamChunk(completion=self.check.apply(chunk.completion))
            else:
                yield chunk

    async def _astream(
        self, messages: list[Message], options: RequestOptions
    ) -> AsyncIterator[StreamChunk]:
        async for chunk in self.inner.astream(messages, options=options):
            if chunk.completion is not None:
                yield StreamChunk(completion=self.check.apply(chunk.completion))
            else:
                yield chunk


def checked(provider: Provider, check: OutputCheck) -> Provider:
    """``provider`` with its answers checked. A chain checks each member's answer, so an
    invalid one falls through to the next member instead of failing the whole call."""
    from tuneloop.providers.chain import FallbackChain

    if isinstance(provider, FallbackChain):
        return provider.with_output(check)
    return CheckedProvider(provider, check)


def json_check(unwrap: Sequence[str] = ()) -> OutputCheck:
    return OutputCheck(json=True, unwrap=tuple(unwrap))
