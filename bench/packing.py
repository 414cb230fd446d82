"""Packing vs length-grouped padded batches in the local recipe, on the demo's kind of data.

Both layouts train the same examples in the same order with the same loss (a packed row's
block-diagonal attention keeps examples apart), so the only difference is speed. Each layout
runs ``--rounds`` times, alternating, and keeps its best target-token rate (the machine may be
shared: the best round is the one least disturbed).

    nice -n 15 python bench/packing.py [--examples 48] [--rounds 3] [--threads 2]

Last line: {"bench": "packing", "unit": "tokens/s", "padded": …, "packed": …, "ratio": …, …}
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

from tuneloop.capture.client import Tuneloop
from tuneloop.config import Config, TrainConfig
from tuneloop.curate.build import build_dataset, load_split
from tuneloop.demo.layouts import SYSTEM_PROMPT
from tuneloop.demo.simulate import layout_validator, synth_items
from tuneloop.demo.teacher import Teacher
from tuneloop.providers import CallableProvider
from tuneloop.store import JobEventKind, ProgressEvent
from tuneloop.synth import generate_examples
from tuneloop.train.recipe import finetune


def demo_examples(count: int, folder: Path) -> list[dict[str, Any]]:
    config = Config(workspace=folder / "ws", task="ui")
    tl = Tuneloop(config)
    teacher = CallableProvider(Teacher(seed=3, flaw_rate=0.0), name="teacher")
    generate_examples(
        tl,
        teacher,
        synth_items(count, seed=1),
        task="ui",
        system_prompt=SYSTEM_PROMPT,
        validator=layout_validator,
    )
    return load_split(build_dataset(tl.store, config, task="ui"), "train")


def run(config: TrainConfig, examples: list[dict[str, Any]], out: Path) -> dict[str, float]:
    rates: list[float] = []

    def on_event(event: ProgressEvent) -> None:
        if event.kind == JobEventKind.METRIC and "tokens_per_s" in event.data:
            rates.append(event.data["tokens_per_s"])

    result = finetune(config, examples, [], out, on_event=on_event)
    return {
        "tokens_per_s": rates[-1],
        "input_tokens_per_s": rates[-1] * result.input_tokens / max(1, result.trained_tokens),
        "final_loss": result.train_loss,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=48)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=4)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        examples = demo_examples(args.examples, Path(folder))
        best: dict[str, dict[str, float]] = {}
        for round_number in range(args.rounds):
            for packing in (False, True):
                config = TrainConfig(
                    epochs=1,
                    batch_size=args.batch_size,
                    max_length=320,
                    threads=args.threads,
                    precision="fp32",
                    device="cpu",
                    packing=packing,
                    checkpoint_every=None,
                )
                name = "packed" if packing else "padded"
                measured = run(config, examples, Path(folder) / f"{name}-{round_number}")
                print(name, json.dumps(measured), flush=True)
                if measured["tokens_per_s"] > best.get(name, {}).get("tokens_per_s", 0):
                    best[name] = measured
    print(
        json.dumps(
            {
                "bench": "packing",
                "unit": "tokens/s",
                "padded": round(best["padded"]["tokens_per_s"], 1),
                "packed": round(best["packed"]["tokens_per_s"], 1),
                "ratio": round(best["packed"]["tokens_per_s"] / best["padded"]["tokens_per_s"], 3),
                "padded_input_tokens_per_s": round(best["padded"]["input_tokens_per_s"], 1),
                "packed_input_tokens_per_s": round(best["packed"]["input_tokens_per_s"], 1),
                "examples": len(examples),
                "rounds": args.rounds,
            }
        )
    )


if __name__ == "__main__":
    main()
