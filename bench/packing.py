"""Packing vs length-grouped padded batches in the local recipe, on the demo's kind of data.

Both layouts train the same examples in the same order with the same loss (a packed row's
block-diagonal attention keeps examples apart), so the only difference is speed: the time of a
forward and backward pass per batch. Every batch of an epoch runs in both layouts, alternating,
``--rounds`` times; each batch keeps its fastest time per layout (on a shared machine the
fastest is the least disturbed), and the rate is the epoch's target tokens over the sum.

    nice -n 15 python bench/packing.py [--examples 48] [--rounds 5] [--threads 2]

Last line: {"bench": "packing", "unit": "tokens/s", "padded": …, "packed": …, "ratio": …, …}
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from tuneloop.capture.client import Tuneloop
from tuneloop.config import Config, TrainConfig
from tuneloop.curate.build import build_dataset, load_split
from tuneloop.demo.layouts import SYSTEM_PROMPT
from tuneloop.demo.simulate import layout_validator, synth_items
from tuneloop.demo.teacher import Teacher
from tuneloop.providers import CallableProvider
from tuneloop.synth import generate_examples
from tuneloop.train.data import collate, collate_packed
from tuneloop.train.recipe import FinetuneRecipe


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


def step_seconds(recipe: FinetuneRecipe, batch: list[Any], packing: bool) -> float:
    """Wall time of one forward and backward pass over ``batch`` in one layout."""
    pad = recipe.tokenizer.pad_token_id
    tensors = collate_packed(batch) if packing else collate(batch, pad)
    started = time.perf_counter()
    recipe.model(**tensors, use_cache=False).loss.backward()
    elapsed = time.perf_counter() - started
    recipe.model.zero_grad(set_to_none=True)
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=48)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=4)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        examples = demo_examples(args.examples, Path(folder))
        config = TrainConfig(
            epochs=1,
            batch_size=args.batch_size,
            max_length=320,
            threads=args.threads,
            precision="fp32",
            device="cpu",
            checkpoint_every=None,
        )
        recipe = FinetuneRecipe(config, out_dir=Path(folder) / "unused")
        recipe.setup(examples, [])
        recipe.model.train()
        batches = [batch for group in recipe._epoch_steps(0) for batch in group]
        # Per batch and layout, the fastest of the rounds (the least disturbed on a shared
        # machine); layouts alternate so that both see the same conditions.
        best = {False: [float("inf")] * len(batches), True: [float("inf")] * len(batches)}
        for _round in range(args.rounds):
            for index, batch in enumerate(batches):
                for packing in (False, True):
                    seconds = step_seconds(recipe, batch, packing)
                    best[packing][index] = min(best[packing][index], seconds)
        target = sum(example.trained_tokens for batch in batches for example in batch)
        inputs = sum(len(example.input_ids) for batch in batches for example in batch)
        padded_cells = sum(len(batch) * max(len(e.input_ids) for e in batch) for batch in batches)
        padded, packed = target / sum(best[False]), target / sum(best[True])
    print(
        json.dumps(
            {
                "bench": "packing",
                "unit": "tokens/s",
                "padded": round(padded, 1),
                "packed": round(packed, 1),
                "ratio": round(packed / padded, 3),
                "padded_input_tokens_per_s": round(padded * inputs / target, 1),
                "packed_input_tokens_per_s": round(packed * inputs / target, 1),
                "padding_share": round(1 - inputs / padded_cells, 3),
                "examples": len(recipe.train_set),
                "batches": len(batches),
                "rounds": args.rounds,
                "threads": args.threads,
            }
        )
    )


if __name__ == "__main__":
    main()
