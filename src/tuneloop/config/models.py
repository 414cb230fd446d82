"""The config's sections: typed, each field documented and validated (commands generate their
options from them, and `tuneloop init` its commented file)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import ConfigDict, Field, field_validator

from tuneloop.config.base import (
    BUILTIN_BASE_MODEL,
    CONFIG_FILENAME,
    ENV_PREFIX,
    NOT_CONFIG_VARIABLES,
    SECRET_KEY_NAMES,
    URL_PASSWORD,
    Section,
)
from tuneloop.config.train import TrainConfig
from tuneloop.formats import DEFAULT_PROMPT, DEFAULT_SYSTEM

__all__ = [
    "BUILTIN_BASE_MODEL",
    "CONFIG_FILENAME",
    "ENV_PREFIX",
    "NOT_CONFIG_VARIABLES",
    "SECRET_KEY_NAMES",
    "URL_PASSWORD",
    "Section",
]


class StoreConfig(Section):
    url: str | None = Field(
        None,
        description="SQLAlchemy URL of the store. Empty: SQLite at <workspace>/tuneloop.db. "
        "For a shared store use postgresql+psycopg://user@host/db",
    )

    @field_validator("url")
    @classmethod
    def _known_backend(cls, url: str | None) -> str | None:
        if url and not url.startswith(("sqlite", "postgresql")):
            raise ValueError("must start with sqlite:// or postgresql+psycopg://")
        return url


class RewardTable(Section):
    """Reward in [-1, 1] for each feedback signal (ranges from the adaptive-learning guide)."""

    thumbs_up: float = Field(1.0, ge=-1, le=1, description="explicit positive")
    thumbs_down: float = Field(-1.0, ge=-1, le=1, description="explicit negative")
    saved: float = Field(0.8, ge=-1, le=1, description="output saved as-is (accepted)")
    correction_best: float = Field(
        0.6, ge=-1, le=1, description="correction reward when almost nothing was changed"
    )
    correction_worst: float = Field(
        0.2, ge=-1, le=1, description="correction reward when everything was changed"
    )
    abandoned: float = Field(-0.5, ge=-1, le=1, description="no follow-up within the timeout")
    regenerated: float = Field(-0.6, ge=-1, le=1, description="same prompt asked again")


class CaptureConfig(Section):
    opted_out_tenants: list[str] = Field(
        default_factory=list, description="tenants whose calls are never stored"
    )
    abandon_after_s: int = Field(
        900, gt=0, description="seconds without a follow-up before a call counts as abandoned"
    )
    regenerate_window_s: int = Field(
        600, gt=0, description="same prompt again within this many seconds = regenerated"
    )
    max_text_chars: int = Field(
        1_000_000,
        ge=1,
        description="longest message, response, edit or metadata (characters) a call may carry; "
        "longer ones are refused, not cut",
    )
    max_future_s: int = Field(
        3600,
        ge=0,
        description="how far ahead of this machine's clock a created_at may be (clock skew)",
    )
    rewards: RewardTable = Field(default_factory=RewardTable)
    reward_function: str | None = Field(
        None,
        description="optional 'module:function' taking (kind, value, interaction) and returning a "
        "reward in [-1, 1], or None to use the table",
    )


class CurateConfig(Section):
    min_reward: float = Field(0.3, ge=-1, le=1, description="keep examples with reward >= this")
    min_quality: int = Field(5, ge=0, le=10, description="keep examples with quality >= this")
    keep_unrated: bool = Field(
        False, description="keep examples that have no feedback at all (synthetic ones always are)"
    )
    eval_fraction: float = Field(0.2, ge=0, lt=1, description="share of examples held out")
    split_seed: str = Field("tuneloop", description="salt of the deterministic hash split")
    split_group: str = Field(
        "answer",
        pattern=r"^(answer|prompt|metadata:[A-Za-z0-9_.-]+(,[A-Za-z0-9_.-]+)*)$",
        description="what else keeps examples on one side of the split (a shared prompt or "
        "answer always does): 'answer', 'prompt', or 'metadata:FIELD[,FIELD]', e.g. "
        "'metadata:category,platform' or 'metadata:request_id'",
    )
    strict: bool = Field(
        False, description="refuse to build when any candidate is an invalid example"
    )
    stratify_by_category: bool = Field(
        True, description="every category with two or more groups gets one on each side"
    )
    near_duplicates: bool = Field(True, description="drop near-duplicates (MinHash LSH)")
    near_dup_threshold: float = Field(
        0.8, gt=0, le=1, description="estimated Jaccard similarity above which two are near-dups"
    )
    near_dup_permutations: int = Field(64, ge=16, le=512, description="MinHash permutations")
    max_per_category: int | None = Field(
        None, ge=1, description="keep at most this many examples per category (best-rewarded)"
    )
    balance_categories: bool = Field(
        False, description="cap every category at the size of the smallest one"
    )
    import_system_prompt: str = Field(
        DEFAULT_SYSTEM, description="system message of examples imported from layout files"
    )
    import_prompt_template: str = Field(
        DEFAULT_PROMPT,
        description="user prompt of a layout file {category}_{scenario}_{platform}_{version}.json",
    )
    redact_pii: bool = Field(
        True, description="replace PII in builds and exports; turning it off is explicit"
    )
    pii_kinds: list[str] = Field(
        default_factory=lambda: [
            "email",
            "phone",
            "credit_card",
            "ipv4",
            "ipv6",
            "iban",
            "ssn",
            "url_token",
            "secret",
            "person_name",
            "business_name",
            "address",
        ],
        description="PII kinds to replace (curate/pii.py)",
    )
    pii_ner: Literal["none", "presidio"] = Field(
        "none", description="named-entity pass for names and places (presidio: extra 'pii')"
    )


class TrafficConfig(Section):
    """Analyses of gateway traffic: shadow pairs and user outcomes per version."""

    judge: str | None = Field(
        None,
        description="provider spec of a judge that compares each sampled shadow pair in both "
        "orders (empty: the suite's judge when one is given, else no judge)",
    )
    judge_sample: int = Field(
        200, ge=1, description="shadow pairs judged at most (a uniform sample; two calls each)"
    )
    weak_below: int = Field(
        30,
        ge=1,
        description="with fewer pairs or rated calls than this, a report says its evidence is weak",
    )


class EvaluateConfig(Section):
    max_new_tokens: int = Field(384, ge=1)
    batch_size: int = Field(8, ge=1, description="prompts per generate call for local models")
    max_examples: int | None = Field(None, ge=1, description="evaluate at most this many examples")
    metrics: dict[str, str] = Field(
        default_factory=dict,
        description='user metrics, name = "module:function"; the function takes '
        "(output, reference, example) and returns a number or None",
    )
    group_by: list[str] = Field(
        default_factory=list,
        description="metadata keys to break results down by (e.g. wording, category)",
    )
    traffic: TrafficConfig = Field(default_factory=TrafficConfig)


SECRET_HEADERS = ("authorization", "x-api-key", "api-key", "proxy-authorization")


class PriceConfig(Section):
    """USD per million tokens; overrides the built-in price table for one provider."""

    input: float = Field(0.0, ge=0, description="USD per 1M input (prompt) tokens")
    output: float = Field(0.0, ge=0, description="USD per 1M output (completion) tokens")


class BreakerConfig(Section):
    """Circuit breaker of a chain member: skip it after repeated failures, then probe again."""

    failures: int = Field(3, ge=1, description="failures within window_s that open the circuit")
    window_s: float = Field(60.0, gt=0, description="how far back failures count")
    cooldown_s: float = Field(30.0, ge=0, description="seconds a failing member is skipped")
    enabled: bool = Field(True, description="false: always try every member")


class OutputConfig(Section):
    """What an answer must look like; a failing answer is InvalidOutput (and a chain falls
    through to its next member)."""

    json_output: bool = Field(
        False,
        alias="json",
        description="the answer must be one JSON value (fences and "
        "surrounding prose are stripped first)",
    )
    schema_path: Path | None = Field(
        None, alias="schema", description="JSON Schema file the parsed answer must satisfy"
    )
    validator: str | None = Field(
        None,
        description="'module:function' called with the parsed answer (or the text); "
        "returning False or raising rejects it",
    )
    unwrap: str | None = Field(
        None,
        description='key of the object to keep from {"reasoning": ..., KEY: {...}} '
        "answers (the reasoning is kept beside the answer)",
    )

    model_config = ConfigDict(extra="forbid", validate_assignment=True, populate_by_name=True)


class ProviderSettings(Section):
    """One named provider, ``[providers.NAME]`` in tuneloop.toml, used as ``provider:NAME``.

    The key is never here: ``api_key_env`` names the environment variable that holds it.
    """

    kind: Literal[
        "openai",
        "anthropic",
        "together",
        "openrouter",
        "openai-compatible",
        "chain",
        "callable",
        "local",
    ] = Field(description="which API the provider speaks")
    model: str = Field("", description="model id (callable: module:function; local: path)")
    base_url: str | None = Field(
        None, description="API base URL; empty: the kind's default or its *_BASE_URL variable"
    )
    api_key_env: str | None = Field(
        None,
        description="environment variable with the key; empty: the kind's default "
        "(OPENAI_API_KEY, ANTHROPIC_API_KEY, TOGETHER_API_KEY, OPENROUTER_API_KEY)",
    )
    timeout_s: float = Field(60.0, gt=0, description="deadline of one call, retries included")
    idle_timeout_s: float = Field(
        30.0, gt=0, description="a stream that sends nothing for this long fails"
    )
    max_retries: int = Field(2, ge=0, le=20, description="retries of retryable failures")
    prices: PriceConfig | None = Field(None, description="overrides the built-in price table")
    headers: dict[str, str] = Field(default_factory=dict, description="extra HTTP headers")
    body: dict[str, Any] = Field(
        default_factory=dict,
        description="extra request body parameters (temperature, "
        "response_format, top_k…) sent with every call",
    )
    members: list[str] = Field(
        default_factory=list, description="chain only: provider specs tried in order"
    )
    fallback_on: list[str] = Field(
        default_factory=lambda: ["any"],
        description="chain only: error kinds that move on to the next member: any, retryable, "
        "final, connection, timeout, rate_limited, unavailable, authentication, bad_request, "
        "invalid_output",
    )
    breaker: BreakerConfig | None = Field(
        default_factory=BreakerConfig, description="chain only: the members' circuit breaker"
    )
    output: OutputConfig | None = Field(None, description="checks and normalisation of answers")


class GatewayConfig(Section):
    """The OpenAI-compatible gateway. Every key is also a ``tuneloop gateway`` option."""

    host: str = Field("127.0.0.1", description="address to bind; a non-loopback one needs API keys")
    port: int = Field(8300, ge=1, le=65535, description="TCP port to listen on")
    workers: int = Field(1, ge=1, le=64, description="uvicorn worker processes")
    fallback: list[str] = Field(
        default_factory=list,
        description="provider specs tried, in order, when the routed model fails; empty: the "
        "teacher",
    )
    passthrough: list[str] = Field(
        default_factory=lambda: ["openai", "anthropic", "openai-compatible", "together"],
        description="provider kinds a request's model may name directly (openai:gpt-4o); "
        "callable, local and registry specs are never taken from requests",
    )
    timeout_s: float = Field(30.0, gt=0, description="seconds each provider gets per call")
    cooldown_after: int = Field(
        3,
        ge=1,
        description="failures within cooldown_window_s after which a provider is skipped for "
        "cooldown_s",
    )
    cooldown_window_s: float = Field(60.0, gt=0, description="window in which failures count")
    cooldown_s: float = Field(30.0, ge=0, description="seconds a failing provider is skipped")
    sticky_by: Literal["session", "tenant"] = Field(
        "session", description="what keeps a user on the same side of a canary split"
    )
    json_tasks: list[str] = Field(
        default_factory=list,
        description="tasks whose answers must be JSON: an invalid one falls back to the next "
        "provider",
    )
    unwrap_keys: list[str] = Field(
        default_factory=list,
        description="in JSON tasks, an answer {reasoning, KEY: value} is unwrapped to the value of "
        "KEY (for example layout)",
    )
    validator: str | None = Field(
        None,
        description="optional 'module:function' called with each answer (its JSON value in JSON "
        "tasks, else the text); returning False or raising rejects it, which then falls back",
    )
    stream_checks: Literal["after", "before"] = Field(
        "after",
        description="streamed answers: after = forward each piece as it arrives and check the "
        "whole answer when it ends (the verdict is logged; a stream cannot fall back once text is "
        "out); before = wait for the whole answer, check it (falling back like a plain call), "
        "then send it",
    )
    shadow_queue: int = Field(
        64, ge=1, description="shadow calls waiting at most; more are dropped"
    )
    shadow_workers: int = Field(2, ge=1, description="shadow calls answered at once")
    local_batch: int = Field(
        8,
        ge=1,
        le=256,
        description="requests to local models over one base answered in one generate call, at "
        "most (each through its own version's adapter)",
    )
    local_batch_wait_ms: float = Field(
        2.0,
        ge=0,
        le=1000,
        description="how long a request to a local model waits for others to batch with",
    )
    log_queue: int = Field(10_000, ge=1, description="calls waiting to be logged, at most")
    log_batch: int = Field(1000, ge=1, description="calls written to the store per transaction")
    log_flush_s: float = Field(
        1.0,
        gt=0,
        description="longest wait before a partial batch is written (bigger batches cost the "
        "store less per call)",
    )
    spill_dir: Path | None = Field(
        None,
        description="folder of append-only files of calls kept while the store is down (one per "
        "process); empty: <workspace>/gateway-spill",
    )
    reload_s: float = Field(
        2.0, gt=0, description="seconds between checks of registry stages, opt-outs and API keys"
    )
    max_request_bytes: int = Field(4_000_000, ge=1024, description="largest request body accepted")
    device: Literal["auto", "cpu", "cuda", "mps"] = Field(
        "auto", description="device of registry versions served in-process"
    )


class Config(Section):
    """The whole configuration; ``workspace`` holds the SQLite store and all artifacts."""

    workspace: Path = Field(Path(".tuneloop"), description="folder for the store and artifacts")
    task: str = Field("default", description="default task name for logs, datasets and models")
    teacher: str = Field(
        "callable:tuneloop.demo.teacher:respond",
        description="provider spec of the big model: callable:module:function, "
        "openai:MODEL, anthropic:MODEL, provider:NAME, chain:SPEC1,SPEC2…",
    )
    providers: dict[str, ProviderSettings] = Field(
        default_factory=dict,
        description="named providers, [providers.NAME] tables, used as provider:NAME",
    )
    store: StoreConfig = Field(default_factory=StoreConfig)
    capture: CaptureConfig = Field(default_factory=CaptureConfig)
    curate: CurateConfig = Field(default_factory=CurateConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    evaluate: EvaluateConfig = Field(default_factory=EvaluateConfig)
    gateway: GatewayConfig = Field(default_factory=GatewayConfig)

    @property
    def store_url(self) -> str:
        """The store URL, SQLite inside the workspace unless one is configured."""
        if self.store.url:
            return self.store.url
        return f"sqlite:///{(self.workspace / 'tuneloop.db').as_posix()}"

    @property
    def artifacts_dir(self) -> Path:
        return self.workspace / "artifacts"
