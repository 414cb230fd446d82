"""One typed configuration, read from ``tuneloop.toml`` with ``TUNELOOP_*`` environment overrides.

Precedence, lowest first: defaults in this module, the TOML file, then environment variables named
``TUNELOOP_<SECTION>__<KEY>`` (for example ``TUNELOOP_TRAIN__EPOCHS=5``, or ``TUNELOOP_WORKSPACE``
for a top-level key). Secrets never live here: provider settings name the environment variable that
holds a key, and a secret-looking key with a value in the file is refused.
"""

from __future__ import annotations

import difflib
import json
import os
import re
import tomllib
import types
import warnings
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from tuneloop.errors import ConfigError
from tuneloop.formats import DEFAULT_PROMPT, DEFAULT_SYSTEM

CONFIG_FILENAME = "tuneloop.toml"
ENV_PREFIX = "TUNELOOP_"
NOT_CONFIG_VARIABLES = frozenset({"TUNELOOP_CONFIG"})  # read by tuneloop, but not config keys
URL_PASSWORD = re.compile(r"(://[^:/@\s]*:)[^@\s]*@")
BUILTIN_BASE_MODEL = "builtin:tiny"
SECRET_KEY_NAMES = ("api_key", "apikey", "secret", "password", "token")


class Section(BaseModel):
    """A config table: unknown keys are errors, so a typo never silently does nothing."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


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


class TrainConfig(Section):
    """Local fine-tuning (LoRA by default). Every key is also a ``tuneloop train`` option."""

    base_model: str = Field(
        BUILTIN_BASE_MODEL,
        description="Hugging Face model path or id; 'builtin:tiny' is the model in the package",
    )
    epochs: int = Field(3, ge=1, le=1000)
    learning_rate: float = Field(2e-4, gt=0, lt=1)
    batch_size: int = Field(4, ge=1)
    grad_accum_steps: int = Field(1, ge=1)
    max_length: int = Field(512, ge=16, description="tokens per example; longer ones are truncated")
    method: Literal["lora", "full"] = Field(
        "lora", description="lora: train small adapters (PEFT); full: train every weight"
    )
    lora_r: int = Field(8, ge=1, le=1024)
    lora_alpha: int = Field(16, ge=1)
    lora_dropout: float = Field(0.05, ge=0, lt=1)
    target_modules: list[str] = Field(
        default_factory=lambda: [
            "q_proj",
            "k_proj",
            "v_proj",
            "o_proj",
            "gate_proj",
            "up_proj",
            "down_proj",
        ],
        description="linear layers that get LoRA adapters",
    )
    warmup_ratio: float = Field(0.05, ge=0, lt=1)
    weight_decay: float = Field(0.0, ge=0)
    seed: int = 0
    device: Literal["auto", "cpu", "cuda", "mps"] = "auto"
    precision: Literal["auto", "fp32", "bf16"] = Field(
        "auto", description="bf16 autocast on CUDA and on CPUs with fast bf16; fp32 otherwise"
    )
    threads: int | None = Field(None, ge=1, description="CPU threads for torch; empty = all cores")


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
    shadow_queue: int = Field(
        64, ge=1, description="shadow calls waiting at most; more are dropped"
    )
    shadow_workers: int = Field(2, ge=1, description="shadow calls answered at once")
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


def load_config(
    path: str | Path | None = None,
    *,
    environ: dict[str, str] | None = None,
    overrides: dict[str, Any] | None = None,
) -> Config:
    """Read the config file (if any), apply env and explicit overrides, validate.

    ``path`` defaults to ``$TUNELOOP_CONFIG`` or ``./tuneloop.toml``; a missing default file is
    fine (defaults apply) but a missing explicit file is an error. Relative paths in the file are
    taken relative to the file's folder.
    """
    environ = dict(os.environ if environ is None else environ)
    explicit = path is not None or "TUNELOOP_CONFIG" in environ
    config_path = Path(path or environ.get("TUNELOOP_CONFIG") or CONFIG_FILENAME)
    data: dict[str, Any] = {}
    origins: dict[tuple[str, ...], str] = {}
    base_dir = Path.cwd()
    if config_path.is_file():
        data = _read_toml(config_path)
        base_dir = config_path.resolve().parent
        _refuse_secrets(data, config_path)
        _refuse_url_password(data, config_path)
        for key_path in _leaf_paths(data):
            origins[key_path] = str(config_path)
    elif explicit:
        raise ConfigError(f"config file {config_path} does not exist (run `tuneloop init`)")

    for name, raw in sorted(environ.items()):
        if not name.startswith(ENV_PREFIX) or name in NOT_CONFIG_VARIABLES:
            continue
        key_path = tuple(part.lower() for part in name[len(ENV_PREFIX) :].split("__"))
        annotation = _annotation_at(key_path)
        if annotation is _UNKNOWN:
            warnings.warn(_unknown_variable(name), ConfigWarning, stacklevel=2)
            continue
        value, read_as = _parse_env_value(name, raw, annotation)
        _set_path(data, key_path, value)
        origins[key_path] = f"environment variable {name}{read_as}"
    for dotted, value in (overrides or {}).items():
        key_path = tuple(dotted.split("."))
        _set_path(data, key_path, value)
        origins[key_path] = "command-line option"

    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_describe_validation_error(exc, origins)) from None
    if not config.workspace.is_absolute():
        config.workspace = base_dir / config.workspace
    _check_provider_references(config.providers, config_path)
    for provider in config.providers.values():
        output = provider.output
        if output is not None and output.schema_path and not output.schema_path.is_absolute():
            output.schema_path = base_dir / output.schema_path
    return config


def _check_provider_references(providers: dict[str, ProviderSettings], path: Path) -> None:
    """Chain members named ``provider:NAME`` must exist, and no chain may contain itself."""
    members = {
        name: [
            m.strip().removeprefix("provider:")
            for m in settings.members
            if m.strip().startswith("provider:")
        ]
        for name, settings in providers.items()
    }
    for name, refs in members.items():
        for ref in refs:
            if ref not in providers:
                known = ", ".join(sorted(providers))
                raise ConfigError(
                    f"{path}: providers.{name}.members names provider:{ref}, "
                    f"which is not configured (known: {known})"
                )

    def visit(name: str, trail: tuple[str, ...]) -> None:
        if name in trail:
            cycle = " → ".join((*trail[trail.index(name) :], name))
            raise ConfigError(f"{path}: chains contain each other: {cycle}")
        for ref in members.get(name, []):
            visit(ref, (*trail, name))

    for name in providers:
        visit(name, ())


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None


def _refuse_secrets(data: dict[str, Any], path: Path, prefix: str = "") -> None:
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict):
            _refuse_secrets(value, path, f"{dotted}.")
        elif (
            _looks_secret(key) or (prefix.endswith("headers.") and key.lower() in SECRET_HEADERS)
        ) and value:
            raise ConfigError(
                f"{path}: key {dotted} looks like a secret; secrets are read only from "
                "environment variables (for example OPENAI_API_KEY), never from the config file"
            )


def _refuse_url_password(data: dict[str, Any], path: Path) -> None:
    store = data.get("store")
    url = store.get("url") if isinstance(store, dict) else None
    if isinstance(url, str):
        try:
            password = urlsplit(url).password
        except ValueError:
            password = None
        if password:
            raise ConfigError(
                f"{path}: store.url contains a password; secrets are read only from environment "
                "variables: set TUNELOOP_STORE__URL instead (or use a password file such as "
                "~/.pgpass) and remove it from the file"
            )


def _looks_secret(key: str) -> bool:
    name = key.lower()
    return any(name == word or name.endswith(f"_{word}") for word in SECRET_KEY_NAMES)


def _leaf_paths(data: dict[str, Any], prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    paths: list[tuple[str, ...]] = []
    for key, value in data.items():
        if isinstance(value, dict):
            paths.extend(_leaf_paths(value, (*prefix, key)))
        else:
            paths.append((*prefix, key))
    return paths


def _set_path(data: dict[str, Any], key_path: tuple[str, ...], value: Any) -> None:
    node = data
    for part in key_path[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    node[key_path[-1]] = value


class ConfigWarning(UserWarning):
    """Something in the environment looks meant for tuneloop but is not used (the CLI prints it)."""


_UNKNOWN = object()  # _annotation_at: the path names no config key
_ANY = object()  # _annotation_at: inside a free-form table (headers, body): any key goes


def _annotation_at(key_path: tuple[str, ...]) -> Any:
    """The type of the config key at ``key_path``; ``_UNKNOWN`` when there is no such key."""
    node: Any = Config
    for part in key_path:
        model = _model_in(node)
        if model is not None:
            field = model.model_fields.get(part)
            if field is None:
                return _UNKNOWN
            node = field.annotation
        elif get_origin(_strip_optional(node)) is dict:
            node = get_args(_strip_optional(node))[1]  # a table of named entries: any name
        else:
            return _ANY if node is Any else _UNKNOWN  # a scalar has no keys below it
    return node


def _strip_optional(annotation: Any) -> Any:
    if get_origin(annotation) in (Union, types.UnionType):
        members = [arg for arg in get_args(annotation) if arg is not type(None)]
        return members[0] if len(members) == 1 else annotation
    return annotation


def _model_in(annotation: Any) -> type[BaseModel] | None:
    annotation = _strip_optional(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None


def _env_names(node: Any = None, prefix: tuple[str, ...] = ()) -> list[str]:
    """Every environment variable name that sets a key (tables of named entries excluded)."""
    model = _model_in(Config if node is None else node)
    if model is None:
        return [ENV_PREFIX + "__".join(part.upper() for part in prefix)] if prefix else []
    names: list[str] = []
    for name, field in model.model_fields.items():
        names.extend(_env_names(field.annotation, (*prefix, name)))
    return names


def _unknown_variable(name: str) -> str:
    close = difflib.get_close_matches(name, _env_names(), n=1, cutoff=0.5)
    hint = f"; the closest is {close[0]}" if close else ""
    return f"environment variable {name} is not a tuneloop config key{hint}; it is ignored"


def _is_list(annotation: Any) -> bool:
    return get_origin(_strip_optional(annotation)) in (list, tuple)


def _parse_env_value(name: str, raw: str, annotation: Any) -> tuple[Any, str]:
    """An environment value and how it was read: lists take JSON (``["a","b"]``) or commas
    (``a,b``); other keys take the text, or JSON for a table."""
    stripped = raw.strip()
    if _is_list(annotation):
        if stripped.startswith("["):
            try:
                return json.loads(stripped), " (read as a JSON list)"
            except json.JSONDecodeError as exc:
                raise ConfigError(
                    f"environment variable {name} starts with '[' but is not a JSON list "
                    f'({exc.msg} at column {exc.colno}); give JSON such as ["a", "b"] '
                    "or a comma-separated list such as a,b"
                ) from None
        items = [item.strip() for item in stripped.split(",") if item.strip()]
        return items, " (read as a comma-separated list)"
    if stripped[:1] == "{":
        try:
            return json.loads(stripped), " (read as JSON)"
        except json.JSONDecodeError:
            return raw, ""
    return raw, ""


def redact_url(text: str) -> str:
    """The text with the password of any ``scheme://user:password@host`` URL in it masked."""
    return URL_PASSWORD.sub(r"\1***@", text)


def _describe_validation_error(exc: ValidationError, origins: dict[tuple[str, ...], str]) -> str:
    lines = ["invalid configuration:"]
    for error in exc.errors():
        loc = tuple(str(part) for part in error["loc"])
        dotted = ".".join(loc) or "(top level)"
        origin = next(
            (origins[loc[:n]] for n in range(len(loc), 0, -1) if loc[:n] in origins), "defaults"
        )
        if error["type"] == "extra_forbidden":
            allowed = _allowed_keys(loc[:-1])
            lines.append(
                f"  {dotted} (from {origin}): unknown key; allowed here: {', '.join(allowed)}"
            )
            continue
        value = redact_url(repr(error.get("input")))
        lines.append(f"  {dotted} = {value} (from {origin}): {error['msg']}")
    return "\n".join(lines)


def _allowed_keys(section_path: tuple[str, ...]) -> list[str]:
    model: type[BaseModel] = Config
    for part in section_path:
        field = model.model_fields.get(part)
        annotation = field.annotation if field else None
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return []
        model = annotation
    return sorted(model.model_fields)


def render_default_config() -> str:
    """A commented ``tuneloop.toml`` with every key at its default, generated from the models."""
    lines = [
        "# tuneloop configuration. Every key is optional; shown values are the defaults.",
        "# Environment variables override it: TUNELOOP_<SECTION>__<KEY>, e.g. "
        "TUNELOOP_TRAIN__EPOCHS=5.",
        "# Secrets (API keys) are read only from environment variables, never from this file.",
        "",
    ]
    lines.extend(_render_section(Config(), ()))
    return "\n".join(lines).rstrip() + "\n"


def _render_section(section: BaseModel, path: tuple[str, ...]) -> list[str]:
    scalars: list[str] = []
    tables: list[str] = []
    for name, field in type(section).model_fields.items():
        value = getattr(section, name)
        if isinstance(value, BaseModel):
            tables.append("")
            tables.append(f"[{'.'.join((*path, name))}]")
            doc = (type(value).__doc__ or "").strip().splitlines()
            if doc and type(value).__doc__ != BaseModel.__doc__:
                tables.insert(len(tables) - 1, f"# {doc[0]}")
            tables.extend(_render_section(value, (*path, name)))
            continue
        if field.description:
            scalars.append(f"# {field.description}")
        if value is None:
            scalars.append(f"# {name} = ")
        elif isinstance(value, dict) and not value:
            # A table of named tables (providers): an inline {} would forbid adding them.
            scalars.append(f"# [{'.'.join((*path, name))}.NAME] tables, none yet")
        else:
            scalars.append(f"{name} = {_toml_value(value)}")
    return scalars + tables


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Path):
        return json.dumps(value.as_posix())
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    return repr(value)
