"""Local generation throughput: tuneloop's batched generation and lean single-stream decode
loop vs Hugging Face ``generate`` one prompt at a time — same model (the shipped base,
``builtin:tiny``), same prompts, same forced output length — each against the memory-bandwidth
bound measured in the same run.

* peer: ``model.generate`` per prompt (batch 1, greedy, ``min_new_tokens = max_new_tokens``).
* ours: the local provider's way of evaluating, one left-padded ``generate`` call per batch of
  ``--batch`` prompts, same forced length (tokens/s over all prompts).
* single stream: ``tuneloop.providers.decode.greedy_decode`` (static cache, one forward per
  step) per prompt: what one gateway request waits for.
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
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()

    import torch

    from tuneloop.hfmodels import load_pretrained
    from tuneloop.providers.decode import greedy_decode

    if args.threads:
        torch.set_num_threads(args.threads)
    tokenizer, model = load_pretrained("builtin:tiny")
    model.eval()
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
    singles = [tokenizer(t, return_tensors="pt", add_special_tokens=False) for t in texts]

    def hf_one_at_a_time() -> int:
        with torch.inference_mode():
            for encoded in singles:
                model.generate(**encoded, **forced)
        return n * len(singles)

    def batched() -> int:
        tokenizer.padding_side = "left"
        produced = 0
        with torch.inference_mode():
            for start in range(0, len(texts), args.batch):
                chunk = texts[start : start + args.batch]
                encoded = tokenizer(
                    chunk, return_tensors="pt", padding=True, add_special_tokens=False
                )
                output = model.generate(**encoded, **forced)
                produced += (output.shape[1] - encoded["input_ids"].shape[1]) * len(chunk)
        return produced

    def single_stream() -> int:
        return sum(
            len(greedy_decode(model, e["input_ids"], max_new_tokens=n, force_length=True))
            for e in singles
        )

    def rate(work: object) -> float:
        work()  # type: ignore[operator]  # warm-up: first-call allocations are not measured
        started = time.perf_counter()
        tokens = work()  # type: ignore[operator]
        return tokens / (time.perf_counter() - started)

    peer = rate(hf_one_at_a_time)
    ours = rate(batched)
    lean = rate(single_stream)

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
    batch = min(args.batch, args.prompts)
    print(
        f"weights {weight_bytes / 1e6:.1f} MB, memory bandwidth {bandwidth / 1e9:.1f} GB/s: "
        f"at most {bound_steps:,.0f} steps/s ({1000 / bound_steps:.2f} ms per step)"
    )
    print(f"HF generate, one at a time: {peer:,.1f} tokens/s ({1000 / peer:.2f} ms per step)")
    print(f"lean loop, one at a time:   {lean:,.1f} tokens/s ({1000 / lean:.2f} ms per step)")
    print(f"batched generate, batch {batch}: {ours:,.1f} tokens/s")
    print(
        json.dumps(
            {
                "bench": "eval_throughput",
                "unit": "tokens/s",
                "ours": round(ours, 1),
                "peer": round(peer, 1),
                "ratio": round(ours / peer, 2),
                "single_stream": round(lean, 1),
                "single_stream_ratio": round(lean / peer, 2),
                "bound_share": round(ours / (batch * bound_steps), 3),
                "single_stream_bound_share": round(lean / bound_steps, 3),
                "batch": batch,
                "prompts": args.prompts,
                "new_tokens": n,
                "threads": torch.get_num_threads(),
            }
        )
    )


if __name__ == "__main__":
    main()
