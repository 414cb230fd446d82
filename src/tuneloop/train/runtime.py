"""Where and how a training run executes: one process or several under ``accelerate launch``,
QLoRA's device check, RNG state for exact resume, and memory readings for progress events."""

from __future__ import annotations

import os
import random
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

from tuneloop.errors import TrainingError

Item = TypeVar("Item")


@dataclass
class Runtime:
    """Where the recipe runs: one process, or one of several under ``accelerate launch``.

    The recipe asks it for the few things that differ (device, this process's share of a
    batch, gradient sync, waiting for the others); with one process each is the plain thing.
    """

    device: str
    rank: int = 0
    processes: int = 1
    accelerator: Any = None

    @classmethod
    def start(cls, preference: str) -> Runtime:
        from tuneloop.hfmodels import pick_device

        if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
            return cls(device=pick_device(preference, TrainingError))
        from accelerate import Accelerator

        device = pick_device(preference, TrainingError)
        accelerator = Accelerator(cpu=device == "cpu")
        return cls(
            device=str(accelerator.device),
            rank=accelerator.process_index,
            processes=accelerator.num_processes,
            accelerator=accelerator,
        )

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def prepare(self, model: Any) -> Any:
        return model if self.accelerator is None else self.accelerator.prepare_model(model)

    def unwrap(self, model: Any) -> Any:
        return model if self.accelerator is None else self.accelerator.unwrap_model(model)

    def shard(self, batch: Sequence[Item]) -> tuple[list[Item], int]:
        """This process's examples of a global batch, and 1; a process left without any (the
        epoch's last, short batch) runs the first example with weight 0 so gradients still
        synchronise."""
        mine = list(batch[self.rank :: self.processes])
        return (mine, 1) if mine else (list(batch[:1]), 0)

    @contextmanager
    def sync_gradients(self, model: Any, sync: bool) -> Iterator[None]:
        """Average gradients across processes only on a step's last micro-batch."""
        if self.accelerator is None or sync:
            yield
            return
        with model.no_sync():
            yield

    def backward(self, loss: Any) -> None:
        if self.accelerator is None:
            loss.backward()
        else:
            self.accelerator.backward(loss)

    def sum(self, value: float) -> float:
        if self.accelerator is None:
            return value
        import torch

        total = self.accelerator.reduce(torch.tensor([value], device=self.device), "sum")
        return float(total.item())

    def gather(self, value: Any) -> list[Any]:
        """``value`` from every process, in rank order (on every process)."""
        if self.accelerator is None:
            return [value]
        from accelerate.utils import gather_object

        return list(gather_object([value]))

    def wait(self) -> None:
        if self.accelerator is not None:
            self.accelerator.wait_for_everyone()

    def close(self) -> None:
        if self.accelerator is None:
            return
        import torch.distributed

        self.accelerator.wait_for_everyone()
        if torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


def check_4bit(device: str) -> None:
    """QLoRA needs bitsandbytes' CUDA kernels: say so in one line instead of failing deep."""
    if not device.startswith("cuda"):
        raise TrainingError(
            f"use_4bit needs a CUDA GPU (bitsandbytes 4-bit kernels); this run's device is "
            f"{device}: set use_4bit = false (LoRA in full precision) or run on a CUDA machine"
        )
    try:
        import bitsandbytes  # noqa: F401
    except ImportError as exc:
        raise TrainingError(
            "use_4bit needs the bitsandbytes package: pip install bitsandbytes"
        ) from exc


def four_bit_options(device: str) -> dict[str, Any]:
    import torch
    from transformers import BitsAndBytesConfig

    return {
        "quantization_config": BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch.bfloat16
            if torch.cuda.is_bf16_supported()
            else torch.float16,
        ),
        "device_map": {"": torch.device(device).index or 0},
    }


def rng_state() -> dict[str, Any]:
    import torch

    state: dict[str, Any] = {"python": random.getstate(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    import torch

    random.setstate(state["python"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def memory_stats(device: str) -> dict[str, float]:
    import torch

    if device.startswith("cuda"):
        return {"gpu_mem_gb": round(torch.cuda.max_memory_allocated() / 2**30, 2)}
    try:
        import resource

        return {"rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}
    except ImportError:  # not on Windows
        return {}
