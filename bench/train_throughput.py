"""Training throughput: tuneloop's LoRA recipe against TRL's ``SFTTrainer``, side by side.

Two models: the shipped base (``builtin:tiny``, ~6 M parameters) and a ~30 M-parameter Llama
config initialised randomly with the shipped tokenizer. Same data (demo-like chat examples from
a seeded generator: the UI-layout requests and answers of ``tuneloop.demo``), same LoRA (r 8,
alpha 16, dropout 0.05, every linear layer of the blocks), learning rate, cosine schedule,
batch size and epochs; loss on the answer tokens only on both sides.

The peer is TRL's *fastest* configuration here. Every configuration of bf16 on/off ×
gradient checkpointing on/off × (padding | padding-free | packing "bfd") is probed for a few
optimizer steps or seconds (steady-state rate: set-up and, when more than one step ran, the
first step are not counted), then the fastest is run in full beside ours.
``ratio_vs_trl_defaults`` compares ours with TRL 1.16's defaults (bf16 and gradient
checkpointing on, padded batches) as probed. On a CPU without fast bf16
(``tuneloop.train.precision.cpu_has_fast_bf16``) bf16 is probed without checkpointing and with
padding or packing only: it is an order of magnitude slower there, whatever else is set.

Measured per full run, each in its own process: non-padding tokens/s (every real token of the
training data times epochs, over the wall time from loading the model to the saved weights,
tokenization included), the same for trained (answer) tokens, peak RSS, and the eval loss
(token-weighted cross-entropy on the answers of held-out examples, computed the same way for
both). A large fp32 matmul (and bf16 where the CPU runs it fast) gives the peak FLOP/s measured
in the same run; model FLOP utilisation is ours against it, with LoRA FLOPs per token =
4·N + 6·N_trainable (forward 2·N, backward through the frozen weights 2·N, weight gradients
only for the adapters), N the weights used in matmuls (the lm_head counted, the embedding
lookup not), attention scores left out (sequences here are short).

    python bench/train_throughput.py [--quick] [--examples 48] [--epochs 1]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")

TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
LORA = {"r": 8, "lora_alpha": 16, "lora_dropout": 0.05}
LR, BATCH, MAX_LENGTH, WARMUP = 2e-4, 4, 512, 0.05
# The ~30 M-parameter Llama: 9 blocks of width 512 on the shipped 4,096-token vocabulary.
LLAMA_30M = {
    "hidden_size": 512,
    "intermediate_size": 1536,
    "num_hidden_layers": 9,
    "num_attention_heads": 8,
    "num_key_value_heads": 4,
    "head_dim": 64,
    "max_position_embeddings": 1024,
    "tie_word_embeddings": True,
}


# ---------------------------------------------------------------------------------------- data
def make_examples(count: int, seed: int) -> list[dict[str, Any]]:
    """Chat examples like the demo's: a layout request and the layout JSON that answers it."""
    from tuneloop.demo.layouts import SYSTEM_PROMPT, dumps, generate_layout, prompt_for
    from tuneloop.demo.simulate import random_requests

    return [
        {
            "messages": [
                {"role": "system", "content": SYSTEM_PROMPT},
                {"role": "user", "content": prompt_for(request, template)},
                {"role": "assistant", "content": dumps(generate_layout(request))},
            ]
        }
        for request, template in random_requests(count, seed)
    ]


def token_counts(model_dir: str, examples: list[dict[str, Any]]) -> tuple[int, int]:
    """(non-padding tokens, answer tokens) of the examples as the recipe tokenizes them."""
    from tuneloop.hfmodels import load_pretrained
    from tuneloop.train.data import tokenize_examples

    tokenizer, _ = load_pretrained(model_dir)
    tokenized, dropped = tokenize_examples(tokenizer, examples, MAX_LENGTH)
    assert dropped == 0, "every example must fit, or the two sides would train on different data"
    return sum(len(e.input_ids) for e in tokenized), sum(e.trained_tokens for e in tokenized)


def make_llama_30m(directory: Path) -> Path:
    """A randomly initialised Llama of ~30 M parameters with the shipped tokenizer."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from tuneloop.assets import BUILTIN_MODELS

    tokenizer = AutoTokenizer.from_pretrained(BUILTIN_MODELS["builtin:tiny"])
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        **LLAMA_30M,
    )
    LlamaForCausalLM(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def model_flops_per_token(model_dir: str) -> dict[str, Any]:
    """Matmul weights N and LoRA-trainable weights, and the FLOPs per token they imply."""
    import torch
    from peft import LoraConfig, get_peft_model

    from tuneloop.hfmodels import load_pretrained

    _, model = load_pretrained(model_dir)
    embedding = model.get_input_embeddings().weight
    tied = model.get_output_embeddings().weight is embedding
    total = sum(p.numel() for p in model.parameters())
    matmul = total if tied else total - embedding.numel()  # the lookup is not a matmul
    with torch.no_grad():
        lora = get_peft_model(model, LoraConfig(target_modules=TARGETS, **LORA))
    trainable = sum(p.numel() for p in lora.parameters() if p.requires_grad)
    return {
        "params": total,
        "matmul_params": matmul,
        "trainable_params": trainable,
        "flops_per_token": 4 * matmul + 6 * trainable,
        "formula": "LoRA: 4*N + 6*N_trainable per token (N = matmul weights)",
    }


def matmul_peak(dtype_name: str, seconds: float = 3.0, size: int = 2048) -> float:
    """FLOP/s of a large square matmul on this machine, now (best of repeated timings)."""
    import torch

    dtype = getattr(torch, dtype_name)
    a = torch.randn(size, size, dtype=dtype)
    b = torch.randn(size, size, dtype=dtype)
    torch.mm(a, b)
    best, deadline = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        started = time.perf_counter()
        torch.mm(a, b)
        best = max(best, 2 * size**3 / (time.perf_counter() - started))
    return best


# ------------------------------------------------------------------------------------- workers
def eval_loss(model: Any, tokenizer: Any, examples: list[dict[str, Any]]) -> float:
    """Token-weighted cross-entropy on the answers of ``examples`` (fp32, no dropout)."""
    import torch

    from tuneloop.train.data import collate, tokenize_examples

    tokenized, _ = tokenize_examples(tokenizer, examples, MAX_LENGTH)
    model.eval()
    total, tokens = 0.0, 0
    with torch.inference_mode():
        for start in range(0, len(tokenized), 8):
            batch = tokenized[start : start + 8]
            tensors = collate(batch, tokenizer.pad_token_id)
            logits = model(
                input_ids=tensors["input_ids"], attention_mask=tensors["attention_mask"]
            ).logits
            total += float(
                torch.nn.functional.cross_entropy(
                    logits[:, :-1].flatten(0, 1).float(),
                    tensors["labels"][:, 1:].flatten(),
                    reduction="sum",
                )
            )
            tokens += sum(e.trained_tokens for e in batch)
    return total / tokens


def run_ours(model_dir: str, train: list[dict[str, Any]], epochs: int, out: Path) -> float:
    from tuneloop.config import TrainConfig
    from tuneloop.train.recipe import finetune

    config = TrainConfig(
        base_model=model_dir,
        method="lora",
        epochs=epochs,
        batch_size=BATCH,
        learning_rate=LR,
        max_length=MAX_LENGTH,
        lora_r=LORA["r"],
        lora_alpha=LORA["lora_alpha"],
        lora_dropout=LORA["lora_dropout"],
        target_modules=TARGETS,
        warmup_ratio=WARMUP,
        precision="fp32",
    )
    started = time.perf_counter()
    finetune(config, train, [], out)
    return time.perf_counter() - started


def trl_trainer(
    model_dir: str,
    train: list[dict[str, Any]],
    epochs: int,
    out: Path,
    variant: dict[str, Any],
    callbacks: list[Any] | None = None,
    max_steps: int = -1,
) -> Any:
    from datasets import Dataset
    from peft import LoraConfig
    from trl import SFTConfig, SFTTrainer

    from tuneloop.hfmodels import load_pretrained

    tokenizer, model = load_pretrained(model_dir)
    rows = [
        {"prompt": e["messages"][:-1], "completion": e["messages"][-1:]} for e in train
    ]  # prompt-completion: TRL's loss on the completion only, as ours
    settings: dict[str, Any] = {"max_length": MAX_LENGTH}
    if variant.get("bf16") is not None:
        settings["bf16"] = variant["bf16"]
    if variant.get("gradient_checkpointing") is not None:
        settings["gradient_checkpointing"] = variant["gradient_checkpointing"]
    if variant.get("batching") == "padding_free":
        settings["padding_free"] = True
        settings["max_length"] = None  # TRL's rule without packing; every example fits anyway
    elif variant.get("batching") == "packing":
        settings["packing"] = True  # strategy "bfd": padding-free, attention kept per example
    args = SFTConfig(
        output_dir=str(out),
        learning_rate=LR,
        num_train_epochs=epochs,
        max_steps=max_steps,
        per_device_train_batch_size=BATCH,
        lr_scheduler_type="cosine",
        warmup_steps=max(1, int(-(-len(rows) // BATCH) * epochs * WARMUP)),  # as ours counts
        save_strategy="no",
        report_to="none",
        logging_steps=10_000,
        disable_tqdm=True,
        use_cpu=True,
        dataloader_num_workers=0,
        include_num_input_tokens_seen="non_padding",
        seed=0,
        **settings,
    )
    return SFTTrainer(
        model=model,
        args=args,
        train_dataset=Dataset.from_list(rows),
        processing_class=tokenizer,
        peft_config=LoraConfig(task_type="CAUSAL_LM", target_modules=TARGETS, **LORA),
        callbacks=callbacks,
    )


def run_trl(
    model_dir: str, train: list[dict[str, Any]], epochs: int, out: Path, variant: dict[str, Any]
) -> tuple[float, Any]:
    started = time.perf_counter()
    trainer = trl_trainer(model_dir, train, epochs, out, variant)
    trainer.train()
    trainer.model.save_pretrained(str(out / "adapter"))
    return time.perf_counter() - started, trainer


def probe_trl(
    model_dir: str, train: list[dict[str, Any]], variant: dict[str, Any], steps: int, cap_s: float
) -> float:
    """Steady-state non-padding tokens/s of one TRL configuration over a few optimizer steps."""
    from transformers import TrainerCallback

    class Clock(TrainerCallback):  # type: ignore[misc]
        def __init__(self) -> None:
            self.times: list[tuple[float, float, int]] = []
            self.begun = 0.0
            self.tokens_before = 0

        def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.begun = time.perf_counter()
            self.tokens_before = state.num_input_tokens_seen

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            now = time.perf_counter()
            tokens = state.num_input_tokens_seen - self.tokens_before
            self.times.append((now - self.begun, now, tokens))
            if sum(t for t, _, _ in self.times) > cap_s:  # a slow configuration shows it at once
                control.should_training_stop = True

    clock = Clock()
    with tempfile.TemporaryDirectory() as tmp:
        trainer = trl_trainer(model_dir, train, 1, Path(tmp), variant, [clock], max_steps=steps)
        trainer.train()
    timed = clock.times[1:] or clock.times  # the first step warms up; drop it when we can
    return sum(tokens for _, _, tokens in timed) / sum(seconds for seconds, _, _ in timed)


def worker(job: dict[str, Any]) -> dict[str, Any]:
    import peft  # noqa: F401  (imported before any clock starts)
    import trl  # noqa: F401

    from tuneloop.hfmodels import load_pretrained

    train = make_examples(job["examples"], seed=1)
    held_out = make_examples(job["eval_examples"], seed=2)
    if job["mode"] == "probe":
        rates = {}
        for variant in job["variants"]:
            rate = probe_trl(job["model"], train, variant, job["probe_steps"], job["probe_cap_s"])
            rates[variant_name(variant)] = round(rate, 1)
            print("  probe", variant_name(variant), rates[variant_name(variant)], flush=True)
        return {"rates": rates}
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        if job["mode"] == "ours":
            wall = run_ours(job["model"], train, job["epochs"], out / "adapter")
            from peft import PeftModel

            tokenizer, base = load_pretrained(job["model"])
            model = PeftModel.from_pretrained(base, str(out / "adapter"))
        else:
            wall, trainer = run_trl(job["model"], train, job["epochs"], out, job["variant"])
            tokenizer, model = trainer.processing_class, trainer.model.float()
        loss = eval_loss(model, tokenizer, held_out)
    return {
        "wall_s": round(wall, 2),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "eval_loss": round(loss, 4),
    }


def variant_name(variant: dict[str, Any]) -> str:
    if not variant:
        return "defaults"
    return (
        f"{'bf16' if variant['bf16'] else 'fp32'}"
        f"{'+gc' if variant['gradient_checkpointing'] else ''}+{variant['batching']}"
    )


def in_child(job: dict[str, Any]) -> dict[str, Any]:
    """Run one job in a fresh process (its own peak RSS, no state left by another run)."""
    done = subprocess.run(
        [sys.executable, __file__, "--worker", json.dumps(job)],
        capture_output=True,
        text=True,
    )
    if done.returncode:
        sys.exit(f"a {job['mode']} run failed:\n{done.stderr[-3000:]}")
    for line in done.stdout.splitlines():
        if line.startswith("  probe"):
            print(line, flush=True)
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


# ---------------------------------------------------------------------------------------- main
def variants(fast_bf16: bool) -> list[dict[str, Any]]:
    """TRL's defaults ({}), then the grid; without fast bf16, bf16 is tried without checkpointing
    only (checkpointing adds a forward pass, so it cannot make a slow bf16 fast)."""
    grid = [
        {"bf16": bf16, "gradient_checkpointing": gc, "batching": batching}
        for bf16 in (False, True)
        for gc in (False, True)
        for batching in ("padding", "padding_free", "packing")
        if fast_bf16 or not (bf16 and (gc or batching == "padding_free"))
    ]
    return [{}, *grid]


def bench_model(
    label: str, model_dir: str, options: argparse.Namespace, fast_bf16: bool
) -> dict[str, Any]:
    common = {
        "model": model_dir,
        "examples": options.examples,
        "eval_examples": options.eval_examples,
        "epochs": options.epochs,
    }
    tokens, answer_tokens = token_counts(model_dir, make_examples(options.examples, seed=1))
    tokens, answer_tokens = tokens * options.epochs, answer_tokens * options.epochs
    flops = model_flops_per_token(model_dir)
    print(f"{label}: {flops['params']:,} parameters, {tokens:,} tokens per run", flush=True)
    probe = in_child(
        {
            **common,
            "mode": "probe",
            "variants": variants(fast_bf16),
            "probe_steps": options.probe_steps,
            "probe_cap_s": options.probe_cap_s,
        }
    )["rates"]
    best = max((name for name in probe if name != "defaults"), key=probe.__getitem__)
    best_variant = next(v for v in variants(fast_bf16) if variant_name(v) == best and v)
    ours = in_child({**common, "mode": "ours"})
    peer = in_child({**common, "mode": "trl", "variant": best_variant})
    for run in (ours, peer):
        run["tokens_per_s"] = round(tokens / run["wall_s"], 1)
        run["answer_tokens_per_s"] = round(answer_tokens / run["wall_s"], 1)
    result = {
        "ours": ours,
        "peer": {**peer, "config": best},
        "trl_probes_tokens_per_s": probe,
        "ratio": round(ours["tokens_per_s"] / peer["tokens_per_s"], 3),
        "ratio_vs_trl_defaults": round(ours["tokens_per_s"] / probe["defaults"], 3),
        **flops,
    }
    print(label, json.dumps(result), flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--examples", type=int, default=48)
    parser.add_argument("--eval-examples", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--probe-steps", type=int, default=4)
    parser.add_argument("--probe-cap-s", type=float, default=6.0)
    parser.add_argument("--models", default="builtin:tiny,llama-30m")
    parser.add_argument("--quick", action="store_true", help="smaller: 16 examples, 2-step probes")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.worker:
        print(json.dumps(worker(json.loads(options.worker))))
        return
    if options.quick:
        options.examples, options.eval_examples = 16, 8
        options.probe_steps, options.probe_cap_s = 3, 3.0
    from tuneloop.train.precision import cpu_has_fast_bf16

    fast_bf16 = cpu_has_fast_bf16()
    peaks = {"fp32": matmul_peak("float32")}
    if fast_bf16:
        peaks["bf16"] = matmul_peak("bfloat16")
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for label in options.models.split(","):
            model_dir = (
                str(make_llama_30m(Path(tmp) / "llama-30m")) if label == "llama-30m" else label
            )
            results[label] = bench_model(label, model_dir, options, fast_bf16)
    peaks["fp32"] = max(peaks["fp32"], matmul_peak("float32"))  # the best moment of the run
    headline = results[options.models.split(",")[0]]
    mfu = {
        label: round(r["ours"]["tokens_per_s"] * r["flops_per_token"] / peaks["fp32"], 3)
        for label, r in results.items()
    }
    print(
        json.dumps(
            {
                "bench": "train_throughput",
                "unit": "tokens/s",
                "ours": headline["ours"]["tokens_per_s"],
                "peer": headline["peer"]["tokens_per_s"],
                "ratio": headline["ratio"],
                "ratio_vs_trl_defaults": headline["ratio_vs_trl_defaults"],
                "eval_loss_ours": headline["ours"]["eval_loss"],
                "eval_loss_peer": headline["peer"]["eval_loss"],
                "mfu": mfu[options.models.split(",")[0]],
                "headline_model": options.models.split(",")[0],
                "mfu_by_model": mfu,
                "mfu_formula": "tokens/s * (4*N + 6*N_trainable) / fp32 matmul peak",
                "matmul_peak_gflops": {k: round(v / 1e9, 1) for k, v in peaks.items()},
                "fast_bf16": fast_bf16,
                "threads": os.cpu_count(),
                "models": results,
            }
        )
    )


if __name__ == "__main__":
    main()
