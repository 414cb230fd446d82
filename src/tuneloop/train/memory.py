"""How much memory a training run needs, estimated before anything heavy is loaded.

A run that cannot fit should say so in its first second with advice, not after loading a model
and crashing at the first backward pass. The estimate adds four parts:

- weights: every parameter, 4 bytes in fp32 (about half a byte in 4-bit);
- gradients: 4 bytes per trainable parameter;
- optimizer: AdamW keeps two fp32 moments, 8 bytes per trainable parameter;
- activations: batch x length x layers x hidden x bytes per element x a factor for what each
  layer keeps for backward (about 17 hidden-sized tensors per token, after Korthikanti et al.,
  "Reducing Activation Recomputation in Large Transformer Models", 2022), or one tensor per layer
  with gradient checkpointing; plus the logits (batch x length x vocab, three copies).

It is an estimate (allocator overhead, fragmentation and framework buffers come on top), so the
check refuses only when the estimate alone exceeds what is available.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuneloop.config import TrainConfig

GB = 1024**3
SAVED_TENSORS_PER_LAYER = 17  # hidden-sized tensors a decoder layer keeps per token for backward
LOGIT_COPIES = 3  # logits, their log-softmax, and the gradient


@dataclass(frozen=True)
class MemoryEstimate:
    weights: int
    gradients: int
    optimizer: int
    activations: int
    available: int | None  # bytes free on the device; None when it cannot be told
    where: str  # "RAM" or "GPU memory"

    @property
    def total(self) -> int:
        return self.weights + self.gradients + self.optimizer + self.activations

    @property
    def fits(self) -> bool:
        return self.available is None or self.total <= self.available

    def describe(self) -> str:
        parts = (
            f"weights {_gb(self.weights)} GB, gradients {_gb(self.gradients)} GB, "
            f"optimizer {_gb(self.optimizer)} GB, activations {_gb(self.activations)} GB"
        )
        have = "unknown" if self.available is None else f"{_gb(self.available)} GB"
        return (
            f"needs about {_gb(self.total)} GB ({parts}), this machine has {have} "
            f"of {self.where} available"
        )

    def advice(self, config: TrainConfig) -> str:
        """What to change so that the run fits, most effective first for this estimate."""
        hints = []
        if self.activations > self.optimizer + self.gradients and config.batch_size > 1:
            hints.append(f"a smaller batch_size (now {config.batch_size}) with grad_accum_steps")
        if not config.gradient_checkpointing:
            hints.append("gradient_checkpointing = true")
        if config.method == "full":
            hints.append("method = 'lora'")
        elif not config.use_4bit:
            hints.append("use_4bit = true (on a CUDA GPU)")
        hints.append(f"a shorter max_length (now {config.max_length})")
        return "try " + ", ".join(hints)


def estimate_memory(
    config: TrainConfig, *, processes: int = 1, available: int | None = None, where: str = "RAM"
) -> MemoryEstimate:
    """The estimate for ``config`` from the model's config alone (a weightless meta model);
    ``processes`` data-parallel replicas count once per process when they share RAM."""
    model_config, total, trainable = count_parameters(config)
    hidden = int(model_config.hidden_size)
    layers = int(model_config.num_hidden_layers)
    vocab = int(model_config.vocab_size)
    element = 2 if config.precision == "bf16" else 4
    tokens = config.batch_size * config.max_length
    per_layer = 1 if config.gradient_checkpointing else SAVED_TENSORS_PER_LAYER
    activations = tokens * layers * hidden * element * per_layer
    if config.gradient_checkpointing:
        activations += tokens * hidden * element * SAVED_TENSORS_PER_LAYER  # one layer recomputed
    activations += tokens * vocab * 4 * LOGIT_COPIES
    weight_bytes = total // 2 if config.use_4bit else total * 4
    # Data-parallel processes on one machine's RAM each hold a whole replica; GPUs hold one each.
    copies = processes if where == "RAM" else 1
    return MemoryEstimate(
        weights=weight_bytes * copies,
        gradients=trainable * 4 * copies,
        optimizer=trainable * 8 * copies,
        activations=activations * copies,
        available=available,
        where=where,
    )


def count_parameters(config: TrainConfig) -> tuple[Any, int, int]:
    """(model config, all parameters, trainable parameters) without loading any weight."""
    import torch
    from transformers import AutoModelForCausalLM

    from tuneloop.errors import TrainingError
    from tuneloop.hfmodels import load_model_config

    model_config = load_model_config(config.base_model, TrainingError)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(model_config)
    total = sum(parameter.numel() for parameter in model.parameters())
    if config.method == "full":
        return model_config, total, total
    trainable = 0
    for name, module in model.named_modules():
        leaf = name.rsplit(".", 1)[-1]
        if leaf in config.modules_to_save:
            trainable += sum(parameter.numel() for parameter in module.parameters())
        elif leaf in config.target_modules and isinstance(module, torch.nn.Linear):
            trainable += config.lora_r * (module.in_features + module.out_features)
    return model_config, total, trainable


def available_memory(device: str) -> tuple[int | None, str]:
    """(bytes free, what kind) on ``device``: free GPU memory, or MemAvailable of this machine."""
    if device.startswith("cuda"):
        import torch

        free, _total = torch.cuda.mem_get_info(torch.device(device))
        return int(free), "GPU memory"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024, "RAM"
    except OSError:
        pass
    return None, "RAM"


def _gb(size: int) -> str:
    value = size / GB
    return f"{value:.1f}" if value >= 0.1 else f"{value:.2f}"
