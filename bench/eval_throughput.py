"""Local generation throughput: tuneloop's lean decoder, batched and one stream at a time, vs
Hugging Face ``generate`` one prompt at a time — same model (the shipped base, ``builtin:tiny``),
same prompts, same forced output length — each against the memory-bandwidth bound measured in
the same run.

* peer: ``model.generate`` per prompt (batch 1, greedy, ``min_new_tokens = max_new_tokens``).
* ours: the local provider's greedy path, ``LeanDecoder.generate`` on left-padded batches of
  ``--batch`` prompts, same forced length (tokens/s over all prompts). ``--batch 0`` (the
  default) picks the size at run time: the fastest of 8, 16, 32 and 64 on a short trial.
* single stream: the same decoder on one prompt at a time: what one gateway request waits for.
* also measured: HF ``generate`` on the same left-padded batches, the best a caller of
  transformers gets by batching.
* bound: the measured memory bandwidth (a large tensor copy) over the bytes of the weights is
  the most decoding steps per second a memory-bound decoder can make; times the batch size it
  bounds tokens/s. ``bound_share`` is ours over that.

Last line: {"bench": "eval_throughput", "unit": "tokens/s", "ours", "peer", "ratio",
"single_stream_ratio", "bound_share", ...}.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

WORDS = [
    "login",
    "settings",
    "profile",
    "checkout",
    "search results",
    "onboarding",
    "feed",
    "dashboard",
    "inbox",
    "calendar",
    "map",
    "player",
    "cart",
    "help",
    "signup",
    "stats",
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=64)
    parser.add_argument("--batch", type=int, default=0, help="0: pick the size at run time")
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()

    import torch

    from tuneloop.hfmodels import load_pretrained
    from tuneloop.providers.decode import LeanDecoder

    if args.threads:
        torch.set_num_threads(args.threads)
    tokenizer, model = load_pretrained("builtin:tiny")
    model.eval()
    decoder = LeanDecoder.from_model(model)
    assert decoder is not None, "the shipped base is a Llama the lean decoder runs"
    texts = [
        tokenizer.apply_chat_template(
            [{"role": "user", "content": f"Design a mobile {WORDS[i % len(WORDS)]} screen"}],
            add_generation_prompt=True,
            tokenize=False,
        )
        for i in range(args.prompts)
    ]
    n = args.new_tokens
    forced = {
        "max_new_tokens": n,
        "min_new_tokens": n,
        "do_sample": False,
        "pad_token_id": tokenizer.pad_token_id,
    }
    tokenizer.padding_side = "left"

    def batches(size: int) -> list[Any]:
        return [
            tokenizer(
                texts[at : at + size], return_tensors="pt", padding=True, add_special_tokens=False
            )
            for at in range(0, len(texts), size)
        ]

    def hf_generate(encoded: list[Any]) -> int:
        produced = 0
        with torch.inference_mode():
            for e in encoded:
                output = model.generate(**e, **forced)
                produced += (output.shape[1] - e["input_ids"].shape[1]) * output.shape[0]
        return produced

    def lean(encoded: list[Any], length: int = n) -> int:
        produced = 0
        for e in encoded:
            answers = decoder.generate(
                e["input_ids"],
                e["attention_mask"],
                [length] * e["input_ids"].shape[0],
                eos_token_id=tokenizer.eos_token_id,
                force_length=True,
            )
            produced += sum(len(answer) for answer in answers)
        return produced

    def rate(work: Any) -> float:
        work()  # warm-up: first-call allocations are not measured
        started = time.perf_counter()
        tokens = work()
        return float(tokens / (time.perf_counter() - started))

    batch = args.batch
    if batch <= 0:  # the fastest size on this machine, from a short trial of each
        trials = {}
        for size in (8, 16, 32, 64):
            if size <= len(texts):
                trial = batches(size)[:1]
                trials[size] = rate(lambda trial=trial: lean(trial, 16))
        batch = max(trials, key=trials.__getitem__)
    batch = min(batch, len(texts))
    singles, grouped = batches(1), batches(batch)

    peer = rate(lambda: hf_generate(singles))
    ours = rate(lambda: lean(grouped))
    single = rate(lambda: lean(singles))
    hf_batched = rate(lambda: hf_generate(grouped))

    weight_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    block = torch.empty(64 * 1024 * 1024 // 4, dtype=torch.float32)  # 64 MiB
    target = torch.empty_like(block)
    target.copy_(block)
    copies = 20
    started = time.perf_counter()
    for _ in range(copies):
        target.copy_(block)
    bandwidth = 2 * block.numel() * 4 * copies / (time.perf_counter() - started)  # read+write
    bound_steps = bandwidth / weight_bytes
    print(
        f"weights {weight_bytes / 1e6:.1f} MB, memory bandwidth {bandwidth / 1e9:.1f} GB/s: "
        f"at most {bound_steps:,.0f} steps/s ({1000 / bound_steps:.2f} ms per step)"
    )
    print(f"HF generate, one at a time:  {peer:,.1f} tokens/s ({1000 / peer:.2f} ms per step)")
    print(f"lean decoder, one at a time: {single:,.1f} tokens/s ({1000 / single:.2f} ms per step)")
    print(f"HF generate, batch {batch}:     {hf_batched:,.1f} tokens/s")
    print(f"lean decoder, batch {batch}:    {ours:,.1f} tokens/s")
    print(
        json.dumps(
            {
                "bench": "eval_throughput",
                "unit": "tokens/s",
                "ours": round(ours, 1),
                "peer": round(peer, 1),
                "ratio": round(ours / peer, 2),
                "single_stream": round(single, 1),
                "single_stream_ratio": round(single / peer, 2),
                "hf_batched": round(hf_batched, 1),
                "hf_batched_ratio": round(hf_batched / peer, 2),
                "bound_share": round(ours / (batch * bound_steps), 3),
                "single_stream_bound_share": round(single / bound_steps, 3),
                "batch": batch,
                "prompts": args.prompts,
                "new_tokens": n,
                "threads": torch.get_num_threads(),
            }
        )
    )


if __name__ == "__main__":
    main()
