"""The training sections of the config: local fine-tuning (``[train]``) and the hosted jobs'
settings (``[train.openai]``, ``[train.together]``)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import AliasChoices, ConfigDict, Field, field_validator, model_validator

from tuneloop.config.base import BUILTIN_BASE_MODEL, Section


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
