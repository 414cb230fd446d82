"""DPO throughput: tuneloop's recipe (``train/dpo.py``) against TRL's ``DPOTrainer``.

Same model (the shipped ``builtin:tiny``), same preference pairs (demo requests: the right
layout preferred to a wrong-screen or a cut-off one, as users' corrections give them), same
LoRA (r 8, alpha 16, all linear layers), beta, batch, learning rate and epochs, fp32, in one
process. TRL runs as it is fastest on a CPU without native bf16 (bf16 and gradient
checkpointing off), with its reference log-probabilities computed per step (its default) and
precomputed (``precompute_ref_log_probs``); the faster of the two is the peer.

tokens/s counts the answer tokens of both sides of every pair (what the loss is on), per epoch,
over the wall time from the model load to the trained adapter (tokenization and reference
pass included on both sides). Eval: share of held-out pairs whose chosen answer gained more
log-probability than the rejected one (DPO's reward accuracy), and the mean held-out DPO loss.

    python bench/dpo_throughput.py [--pairs 24] [--epochs 2] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")

LORA = {"r": 8, "lora_alpha": 16, "lora_dropout": 0.0}
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
BETA, LR, BATCH, MAX_LENGTH = 0.1, 5e-4, 4, 384


def make_pairs(count: int, seed: int) -> list[dict[str, Any]]:
    """OpenAI DPO lines from demo requests; half wrong-screen, half cut-off rejected answers."""
    from tuneloop.demo.layouts import (
        CATEGORIES,
        SYSTEM_PROMPT,
        ScreenRequest,
        dumps,
        generate_layout,
        prompt_for,
    )
    from tuneloop.demo.simulate import random_requests

    rng = random.Random(seed)
    pairs = []
    for index, (request, template) in enumerate(random_requests(count, seed)):
        chosen = dumps(generate_layout(request))
        if index % 2:
            rejected = chosen[: rng.randint(len(chosen) // 3, len(chosen) - 10)]
        else:
            wrong = rng.choice([c for c in CATEGORIES if c != request.category])
            rejected = dumps(
                generate_layout(ScreenRequest(wrong, request.platform, request.subject))
            )
        pairs.append(
            {
                "input": {
                    "messages": [
                        {"role": "system", "content": SYSTEM_PROMPT},
                        {"role": "user", "content": prompt_for(request, template)},
                    ]
                },
                "preferred_output": [{"role": "assistant", "content": chosen}],
                "non_preferred_output": [{"role": "assistant", "content": rejected}],
            }
        )
    return pairs


def held_out_scores(adapter: Path, pairs: list[dict[str, Any]]) -> dict[str, float]:
    """Reward accuracy and DPO loss of a saved adapter on pairs it never saw."""
    import torch
    from peft import PeftModel

    from tuneloop.hfmodels import load_pretrained
    from tuneloop.train.dpo import dpo_loss, pair_logps, tokenize_pairs

    tokenizer, base = load_pretrained("builtin:tiny")
    model = PeftModel.from_pretrained(base, str(adapter)).eval()
    tokenized, _ = tokenize_pairs(tokenizer, pairs, MAX_LENGTH)
    with torch.inference_mode():
        with model.disable_adapter():
            reference = pair_logps(model, tokenized, tokenizer.pad_token_id, "cpu")
        policy = pair_logps(model, tokenized, tokenizer.pad_token_id, "cpu")
    losses, margins = dpo_loss(policy, reference, BETA)
    return {
        "accuracy": round(float((margins > 0).float().mean()), 3),
        "loss": round(float(losses.mean()), 4),
    }


def answer_tokens(pairs: list[dict[str, Any]]) -> int:
    from tuneloop.hfmodels import load_pretrained
    from tuneloop.train.dpo import tokenize_pairs

    tokenizer, _ = load_pretrained("builtin:tiny")
    tokenized, dropped = tokenize_pairs(tokenizer, pairs, MAX_LENGTH)
    assert dropped == 0, "every pair must fit, or the two sides would train on different data"
    return sum(pair.trained_tokens for pair in tokenized)


def run_ours(pairs: list[dict[str, Any]], epochs: int, out: Path) -> float:
    from tuneloop.config import TrainConfig
    from tuneloop.train.dpo import dpo_finetune

    config = TrainConfig(
        method="dpo",
        dpo_beta=BETA,
        epochs=epochs,
        batch_size=BATCH,
        learning_rate=LR,
        max_length=MAX_LENGTH,
        lora_r=LORA["r"],
        lora_alpha=LORA["lora_alpha"],
        lora_dropout=LORA["lora_dropout"],
        target_modules=TARGETS,
        warmup_ratio=0.0,
        precision="fp32",
    )
    started = time.perf_counter()
    dpo_finetune(config, pairs, [], out)
    return time.perf_counter() - started


def run_trl(pairs: list[dict[str, Any]], epochs: int, out: Path, *, precompute: bool) -> float:
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from trl import DPOConfig, DPOTrainer

    from tuneloop.hfmodels import load_pretrained

    rows = [
        {
            "prompt": pair["input"]["messages"],
            "chosen": pair["preferred_output"],
            "rejected": pair["non_preferred_output"],
        }
        for pair in pairs
    ]
    torch.manual_seed(0)
    started = time.perf_counter()
    tokenizer, model = load_pretrained("builtin:tiny")
    args = DPOConfig(
        output_dir=str(out),
        beta=BETA,
        learning_rate=LR,
        num_train_epochs=epochs,
        per_device_train_batch_size=BATCH,
        max_length=MAX_LENGTH,
        lr_scheduler_type="cosine",
        warmup_steps=0,
        bf16=False,
        gradient_checkpointing=False,
        precompute_ref_log_probs=precompute,
        save_strategy="no",
        report_to="none",
        logging_steps=1000,
        disable_tqdm=True,
        use_cpu=True,
        dataloader_num_workers=0,
    )
    trainer = DPOTrainer(
        model=model,
        args=args,
        train_dataset=Dataset.from_list(rows),
        processing_class=tokenizer,
        peft_config=LoraConfig(task_type="CAUSAL_LM", target_modules=TARGETS, **LORA),
    )
    trainer.train()
    trainer.model.save_pretrained(str(out / "adapter"))
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pairs", type=int, default=24)
    parser.add_argument("--eval-pairs", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="12 pairs, 8 held out")
    options = parser.parse_args()
    if options.quick:
        options.pairs, options.eval_pairs = 12, 8
    import peft  # noqa: F401  (imports before any clock starts: neither side pays for them)
    import trl  # noqa: F401

    pairs = make_pairs(options.pairs, seed=1)
    held_out = make_pairs(options.eval_pairs, seed=2)
    tokens = answer_tokens(pairs) * options.epochs
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        runs = [
            ("ours", lambda out: run_ours(pairs, options.epochs, out)),
            ("trl", lambda out: run_trl(pairs, options.epochs, out, precompute=False)),
            (
                "trl_precomputed_ref",
                lambda out: run_trl(pairs, options.epochs, out, precompute=True),
            ),
        ]
        for name, run in runs:
            out = Path(tmp) / name
            wall = run(out)
            adapter = out if name == "ours" else out / "adapter"
            results[name] = {
                "wall_s": round(wall, 2),
                "tokens_per_s": round(tokens / wall, 1),
                "held_out": held_out_scores(adapter, held_out),
            }
            print(name, json.dumps(results[name]), flush=True)
    peer_name = max(("trl", "trl_precomputed_ref"), key=lambda n: results[n]["tokens_per_s"])
    ours, peer = results["ours"]["tokens_per_s"], results[peer_name]["tokens_per_s"]
    print(
        json.dumps(
            {
                "bench": "dpo_throughput",
                "unit": "tokens/s",
                "ours": ours,
                "peer": peer,
                "ratio": round(ours / peer, 3),
                "peer_config": peer_name,
                "pairs": options.pairs,
                "epochs": options.epochs,
                "answer_tokens": tokens,
                "runs": results,
            }
        )
    )


if __name__ == "__main__":
    main()
