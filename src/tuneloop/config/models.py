"""The config's sections: typed, each field documented and validated (commands generate their
options from them, and `tuneloop init` its commented file)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, field_validator, model_validator

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


def _auto_is_none(value: Any) -> Any:
    """``"auto"`` (any case) means "the provider decides", stored as None."""
    return None if isinstance(value, str) and value.strip().lower() == "auto" else value


class HostedSettings(Section):
    """Where a hosted fine-tuning API lives and how often a watched job is polled."""

    base_url: str | None = Field(
        None,
        description="API base URL with its /v1; empty: $OPENAI_BASE_URL / $TOGETHER_BASE_URL or "
        "the provider's own. The registered model is served through the same URL",
    )
    api_key_env: str | None = Field(
        None,
        pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
        description="environment variable with the key; empty: OPENAI_API_KEY / TOGETHER_API_KEY",
    )
    poll_s: float = Field(
        10.0, ge=0, le=3600, description="seconds between two polls of a watched job"
    )
    request_timeout_s: float = Field(
        60.0, gt=0, le=3600, description="deadline of one API request (uploads included)"
    )
    suffix: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9_.-]{1,40}$",
        description="up to 40 letters, digits, '-', '_' or '.' added to the fine-tuned model name",
    )
    seed: int | None = Field(None, ge=0, description="the provider's random seed; empty: its own")

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, url: str | None) -> str | None:
        if url and not url.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return url.rstrip("/") if url else url


class OpenAITrainConfig(HostedSettings):
    """OpenAI fine-tuning (``train.backend = "openai"``): upload, job, watch, ``ft:`` model."""

    model: str = Field(
        "gpt-4o-mini-2024-07-18", min_length=1, description="the OpenAI model to fine-tune"
    )
    method: Literal["supervised", "dpo"] = Field(
        "supervised",
        description="supervised: the dataset's chat examples; dpo: its preference pairs "
        "(corrected answers preferred to the originals)",
    )
    n_epochs: int | None = Field(
        None,
        ge=1,
        le=50,
        description="passes over the training file; empty or 'auto': OpenAI's rule (3, so that "
        "100 to 25,000 examples are seen, within 1-25 epochs)",
    )
    batch_size: int | None = Field(
        None, ge=1, le=256, description="examples per batch; empty or 'auto': OpenAI's choice"
    )
    learning_rate_multiplier: float | None = Field(
        None,
        gt=0,
        le=10,
        description="scales OpenAI's base learning rate; empty or 'auto': OpenAI's choice",
    )
    beta: float | None = Field(
        None, gt=0, le=2, description="dpo: the penalty weight; empty or 'auto': OpenAI's choice"
    )

    _auto = field_validator(
        "n_epochs", "batch_size", "learning_rate_multiplier", "beta", mode="before"
    )(_auto_is_none)


class TogetherTrainConfig(HostedSettings):
    """Together fine-tuning (``train.backend = "together"``): LoRA by default."""

    model: str = Field(
        "meta-llama/Meta-Llama-3.1-8B-Instruct-Reference",
        min_length=1,
        description="the Together base model (ignored when from_checkpoint is set)",
    )
    training_method: Literal["sft", "dpo"] = Field(
        "sft", description="sft: the chat examples; dpo: the dataset's preference pairs"
    )
    n_epochs: int = Field(1, ge=1, le=100, description="passes over the training file")
    n_checkpoints: int = Field(1, ge=1, le=100, description="checkpoints saved during training")
    n_evals: int = Field(
        0, ge=0, le=100, description="evaluations on the validation file (the eval split)"
    )
    validation: bool = Field(
        True,
        description="upload the dataset's eval split as the validation file (used when "
        "n_evals > 0)",
    )
    batch_size: int | None = Field(
        None, ge=1, description="examples per batch; empty or 'max': the model's largest"
    )
    learning_rate: float = Field(1e-5, gt=0, lt=1, description="peak learning rate")
    warmup_ratio: float = Field(0.0, ge=0, le=1, description="share of steps warming up")
    lora: bool = Field(True, description="train LoRA adapters (false: every weight)")
    lora_r: int | None = Field(
        None, ge=1, le=1024, description="LoRA rank; empty: the model's default rank"
    )
    lora_alpha: int | None = Field(None, ge=1, description="LoRA alpha; empty: twice the rank")
    lora_dropout: float = Field(0.0, ge=0, lt=1, description="dropout on the LoRA adapters")
    lora_trainable_modules: str = Field(
        "all-linear",
        pattern=r"^(all-linear|[A-Za-z_][A-Za-z0-9_]*(,[A-Za-z_][A-Za-z0-9_]*)*)$",
        description="'all-linear' or comma-separated module names (q_proj,v_proj)",
    )
    train_on_inputs: bool | None = Field(
        None,
        description="sft: also learn the prompt tokens; empty or 'auto': Together decides "
        "(prompts masked for chat data)",
    )
    dpo_beta: float | None = Field(None, gt=0, le=10, description="dpo: the beta; empty: default")
    from_checkpoint: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_./-]*(:[0-9]+)?$",
        description="continue a finished Together job: JOB_ID or OUTPUT_MODEL, optionally :STEP",
    )
    download_adapter: bool = Field(
        False,
        description="after success, download the adapter into the version's folder (it is "
        "served by Together either way)",
    )

    _auto = field_validator("train_on_inputs", mode="before")(_auto_is_none)

    @field_validator("batch_size", mode="before")
    @classmethod
    def _max_is_none(cls, value: Any) -> Any:
        return None if isinstance(value, str) and value.strip().lower() == "max" else value

    @model_validator(mode="after")
    def _consistent(self) -> TogetherTrainConfig:
        if self.training_method == "dpo" and self.train_on_inputs is not None:
            raise ValueError("train_on_inputs applies to sft only; leave it empty for dpo")
        if self.training_method == "sft" and self.dpo_beta is not None:
            raise ValueError("dpo_beta applies to dpo only; leave it empty for sft")
        if self.n_evals > 0 and not self.validation:
            raise ValueError("n_evals > 0 needs validation = true (the eval split)")
        return self


class TrainConfig(Section):
    """Local fine-tuning (LoRA by default). Every key is also a ``tuneloop train`` option.

    The keys of the architect guide (epochs, learning_rate, batch_size, lora_rank, lora_alpha,
    lora_dropout, use_4bit, gradient_checkpointing, max_length, target_modules, seed) plus the
    recipe's own knobs; cross-key rules are checked together (``_consistent``).
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True, populate_by_name=True)

    base_model: str = Field(
        BUILTIN_BASE_MODEL,
        description="Hugging Face model path or id; 'builtin:tiny' is the model in the package",
    )
    epochs: int = Field(3, ge=1, le=1000)
    learning_rate: float = Field(2e-4, gt=0, lt=1)
    batch_size: int = Field(
        4,
        ge=1,
        description="examples per micro-batch on each process (global batch = "
        "batch_size x grad_accum_steps x processes)",
    )
    grad_accum_steps: int = Field(1, ge=1, description="micro-batches per optimizer step")
    max_length: int = Field(512, ge=16, description="tokens per example; longer ones are truncated")
    method: Literal["lora", "full", "dpo"] = Field(
        "lora",
        description="lora: train small adapters (PEFT); full: train every weight; dpo: train "
        "adapters on the dataset's preference pairs (corrected answers preferred to originals)",
    )
    dpo_beta: float = Field(
        0.1,
        gt=0,
        le=10,
        description="dpo: how far from the starting model the policy may move (higher = less)",
    )
    lora_r: int = Field(
        8,
        ge=1,
        le=1024,
        validation_alias=AliasChoices("lora_r", "lora_rank"),
        description="LoRA rank (lora_rank is accepted too)",
    )
    lora_alpha: int = Field(16, ge=1, description="LoRA scaling numerator (alpha / r)")
    lora_dropout: float = Field(0.05, ge=0, lt=1)
    use_rslora: bool = Field(
        False, description="rank-stabilised LoRA: scale by alpha / sqrt(r) instead of alpha / r"
    )
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
        min_length=1,
        description="linear layers that get LoRA adapters",
    )
    modules_to_save: list[str] = Field(
        default_factory=list,
        description="modules trained in full beside the adapters and saved with them "
        "(e.g. embed_tokens,lm_head)",
    )
    train_on_inputs: bool = Field(
        False, description="learn the prompt tokens too; default: loss on the assistant's reply"
    )
    use_4bit: bool = Field(
        False, description="QLoRA: load the base in 4-bit (bitsandbytes, CUDA only), train LoRA"
    )
    gradient_checkpointing: bool = Field(
        False, description="recompute activations in backward: less memory, about 30% slower"
    )
    packing: bool = Field(
        False,
        description="pack each batch into one row with attention kept inside each example, "
        "instead of padded length-grouped rows (slower on CPU; see docs/training.md)",
    )
    warmup_ratio: float = Field(0.05, ge=0, lt=1)
    weight_decay: float = Field(0.0, ge=0)
    max_grad_norm: float | None = Field(
        1.0, gt=0, description="clip the gradient norm to this; empty: no clipping"
    )
    max_minutes: float | None = Field(
        None,
        gt=0,
        description="wall-clock budget for the training loop: the run times its first steps and "
        "trains only the steps that fit, with the learning-rate schedule fitted to them; "
        "empty: all epochs",
    )
    eval_every: int | None = Field(
        None, ge=1, description="optimizer steps between eval-loss measurements on the eval split"
    )
    checkpoint_every: int | None = Field(
        50,
        ge=1,
        description="optimizer steps between checkpoints in the job folder (for `tuneloop "
        "train resume`); empty: none",
    )
    seed: int = 0
    device: Literal["auto", "cpu", "cuda", "mps"] = "auto"
    precision: Literal["auto", "fp32", "bf16"] = Field(
        "auto", description="bf16 autocast on CUDA and on CPUs with fast bf16; fp32 otherwise"
    )
    threads: int | None = Field(None, ge=1, description="CPU threads for torch; empty = all cores")
    check_memory: bool = Field(
        True, description="refuse to start when the memory estimate exceeds what is available"
    )

    backend: Literal["local", "openai", "together"] = Field(
        "local",
        description="local: train here (PyTorch); openai or together: a hosted job, configured in "
        "[train.openai] / [train.together], watched with `tuneloop train watch`",
    )
    openai: OpenAITrainConfig = Field(default_factory=OpenAITrainConfig)
    together: TogetherTrainConfig = Field(default_factory=TogetherTrainConfig)

    @model_validator(mode="after")
    def _consistent(self) -> TrainConfig:
        if self.method == "full" and (self.use_4bit or self.modules_to_save):
            key = "use_4bit" if self.use_4bit else "modules_to_save"
            raise ValueError(f"{key} applies to method = 'lora' only (full trains every weight)")
        return self


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
