"""A synthesis pipeline as a TOML file, checked completely before any paid call.

A pipeline has input variables (every combination, shuffled by the seed), then ordered steps.
Each step renders a Jinja2 prompt from the item's variables and the outputs of earlier steps
(by step name), asks a provider spec or a fallback chain, makes ``fan_out`` outputs per input,
parses them (``text``, ``json`` or ``json_schema``) and keeps only those passing its gates. The
last step's request and answer become the training example.

Every mistake that would otherwise surface half-way through a paid run (an unknown step, a
template variable nobody provides, an unknown provider, a key variable that is not set) is an
``InputError`` naming the file, the step and the field.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from tuneloop.errors import InputError

Parser = Literal["text", "json", "json_schema"]
RESERVED = ("item", "index", "sample")  # index: the input's number; sample: fan-out number


class Gates(BaseModel):
    """Checks an output must pass to be kept (and fed to the next step)."""

    model_config = ConfigDict(extra="forbid")

    min_words: int | None = Field(None, ge=1, description="at least this many words")
    max_words: int | None = Field(None, ge=1, description="at most this many words")
    valid_json: bool = Field(False, description="the output must be JSON")
    schema_: dict[str, Any] | None = Field(None, alias="schema", description="a JSON schema")
    custom: list[str] = Field(
        default_factory=list,
        description="module:function checks, called with (text, value, variables) -> bool",
    )


class Step(BaseModel):
    """One stage: prompt template → provider (or chain) → ``fan_out`` parsed, gated outputs."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    provider: str | list[str] = Field(description="a provider spec, or a list tried in order")
    prompt: str = Field(description="Jinja2 template of the user message")
    system: str | None = Field(None, description="Jinja2 template of the system message")
    fan_out: int = Field(1, ge=1, le=100, description="outputs per input")
    parser: Parser = "text"
    schema_: dict[str, Any] | None = Field(None, alias="schema", description="for json_schema")
    max_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=2)
    gates: Gates = Field(default_factory=Gates)

    @property
    def members(self) -> list[str]:
        return [self.provider] if isinstance(self.provider, str) else list(self.provider)


class Limit(BaseModel):
    """Requests and tokens per minute for one provider spec (a chain member or a step's spec)."""

    model_config = ConfigDict(extra="forbid")

    rpm: int | None = Field(None, ge=1)
    tpm: int | None = Field(None, ge=1)


class Output(BaseModel):
    """What becomes the training example: by default the last step's request and answer."""

    model_config = ConfigDict(extra="forbid")

    step: str | None = Field(None, description="the answer's step (default: the last)")
    user: str | None = Field(None, description="Jinja2 template of the example's user message")
    system: str | None = Field(None, description="the example's system message")
    near_dup_threshold: float = Field(0.9, gt=0, le=1)
    file: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9_.-]+$",
        description="file name stem: STEM.jsonl, STEM_detailed.json, STEM_metadata.json "
        "(default: the pipeline's name)",
    )


class Pipeline(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    task: str
    seed: int = 0
    n: int = Field(20, ge=1, description="inputs to the first step (combinations cycle)")
    concurrency: int = Field(8, ge=1, le=1024)
    vars: dict[str, list[str]] = Field(default_factory=dict)
    steps: list[Step] = Field(min_length=1)
    limits: dict[str, Limit] = Field(default_factory=dict)
    output: Output = Field(default_factory=Output)

    @field_validator("vars")
    @classmethod
    def _non_empty(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        for key, values in value.items():
            if not values:
                raise ValueError(f"variable {key!r} has no values")
        return value

    def step(self, name: str) -> Step:
        return next(step for step in self.steps if step.name == name)

    @property
    def answer_step(self) -> Step:
        return self.step(self.output.step) if self.output.step else self.steps[-1]


def load_pipeline(
    path: Path,
    *,
    providers: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Pipeline:
    """Read and check a pipeline file; every problem names the file, the step and the field."""
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise InputError(f"{path}: cannot read the pipeline ({exc.strerror})") from None
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"{path}: not valid TOML ({exc})") from None
    try:
        pipeline = Pipeline.model_validate(raw)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = _where(raw, error["loc"])
        raise InputError(f"{path}: {where}: {error['msg']}") from None
    check_pipeline(pipeline, str(path), providers=providers, environ=environ)
    return pipeline


def _where(raw: dict[str, Any], loc: tuple[Any, ...]) -> str:
    """``step 'draft', field 'fan_out'`` rather than ``steps.1.fan_out``."""
    if len(loc) >= 2 and loc[0] == "steps" and isinstance(loc[1], int):
        steps = raw.get("steps") or []
        name = steps[loc[1]].get("name", f"#{loc[1] + 1}") if loc[1] < len(steps) else loc[1]
        field = ".".join(str(part) for part in loc[2:]) or "(step)"
        return f"step {name!r}, field {field!r}"
    return "field " + repr(".".join(str(part) for part in loc))


def check_pipeline(
    pipeline: Pipeline,
    source: str,
    *,
    providers: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> None:
    """The checks pydantic cannot do: names, template variables, provider specs and keys."""
    from jinja2 import Environment, TemplateSyntaxError, meta

    env = Environment()
    seen: list[str] = []
    names = [step.name for step in pipeline.steps]
    for step in pipeline.steps:
        where = f"{source}: step {step.name!r}"
        if step.name in seen:
            raise InputError(f"{where}, field 'name': a second step with this name")
        if step.name in pipeline.vars or step.name in RESERVED:
            raise InputError(f"{where}, field 'name': the name is already a variable")
        if step.parser == "json_schema" and step.schema_ is None:
            raise InputError(f"{where}, field 'schema': parser json_schema needs a schema")
        for field in ("prompt", "system"):
            template = getattr(step, field)
            if template is None:
                continue
            try:
                used = meta.find_undeclared_variables(env.parse(template))
            except TemplateSyntaxError as exc:
                problem = f"bad template ({exc.message})"
                raise InputError(f"{where}, field {field!r}: {problem}") from None
            for variable in sorted(used):
                if variable in seen or variable in pipeline.vars or variable in RESERVED:
                    continue
                if variable in names:
                    problem = f"step {variable!r} runs later, so its output is not available"
                else:
                    problem = f"variable {variable!r} is never provided (not a var or a step)"
                raise InputError(f"{where}, field {field!r}: {problem}")
        for member in step.members:
            check_spec(member, f"{where}, field 'provider'", providers=providers, environ=environ)
        for spec in step.gates.custom:
            _check_import(spec, f"{where}, field 'gates.custom'")
        seen.append(step.name)
    used_specs = {spec for step in pipeline.steps for spec in step.members}
    for spec in pipeline.limits:
        if spec not in used_specs:
            raise InputError(
                f"{source}: limits, field {spec!r}: no step uses this provider "
                f"(limits are keyed by the provider spec exactly as a step names it)"
            )
    if pipeline.output.step is not None and pipeline.output.step not in names:
        raise InputError(
            f"{source}: output, field 'step': unknown step {pipeline.output.step!r} "
            f"(steps: {', '.join(names)})"
        )
    if pipeline.output.user is not None:
        try:
            used = meta.find_undeclared_variables(env.parse(pipeline.output.user))
        except TemplateSyntaxError as exc:
            problem = f"bad template ({exc.message})"
            raise InputError(f"{source}: output, field 'user': {problem}") from None
        unknown = sorted(used - set(names) - set(pipeline.vars) - set(RESERVED))
        if unknown:
            raise InputError(
                f"{source}: output, field 'user': variable {unknown[0]!r} is never provided"
            )


def _check_import(spec: str, where: str) -> None:
    from tuneloop.imports import import_object

    try:
        target = import_object(spec)
    except InputError as exc:
        raise InputError(f"{where}: {exc}") from None
    if not callable(target):
        raise InputError(f"{where}: {spec!r} is not callable")


def check_spec(
    spec: str,
    where: str,
    *,
    providers: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> None:
    """Refuse an unknown provider spec or a remote one whose key variable is not set."""
    from tuneloop.providers import KINDS, key_env_of

    environ = os.environ if environ is None else environ
    kind, colon, rest = spec.strip().partition(":")
    if not colon and "/" in kind:
        return  # a hub id or a folder: a local model, no key needed
    known = ("callable", "builtin", "local", "registry", "provider", "chain", *KINDS)
    if kind not in known or (kind != "builtin" and not rest):
        raise InputError(f"{where}: unknown provider spec {spec!r}")
    if kind == "callable":
        _check_import(rest, where)
        return
    if kind == "chain":
        for member in (part.strip() for part in rest.split(",") if part.strip()):
            check_spec(member, where, providers=providers, environ=environ)
        return
    variable: str | None = None
    if kind == "provider":
        settings = (providers or {}).get(rest)
        if settings is None:
            raise InputError(f"{where}: no provider named {rest!r} in the config's [providers]")
        if settings.kind == "chain":
            for member in settings.members:
                check_spec(member, where, providers=providers, environ=environ)
            return
        if settings.kind in KINDS and (KINDS[settings.kind].key_required or settings.api_key_env):
            variable = key_env_of(settings)
    elif kind in KINDS and KINDS[kind].key_required:
        variable = KINDS[kind].key_env
    if variable and not environ.get(variable):
        raise InputError(f"{where}: {spec!r} needs its API key in ${variable}, which is not set")
