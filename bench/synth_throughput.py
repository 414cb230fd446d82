"""Synthesis throughput against a loopback upstream with a fixed latency, vs the bound.

The upstream is the tests' fake OpenAI server (the real wire format, talked to by the official
``openai`` client), run in its own process so it does not share our interpreter, answering every
call after ``--latency-ms`` (default 50). With ``--concurrency`` calls in flight (default 32) no
client can beat concurrency / latency requests per second: that is the bound. Ours: a
one-step pipeline through ``tuneloop.synth.run_pipeline`` (semaphore, cache writes, gates) with
a fresh cache. Peer: distilabel's ``OpenAILLM.generate`` on the same upstream, fed batches of
``--concurrency`` inputs (its batch is its concurrency). A third figure, bare httpx posts at the
same concurrency, shows what the upstream itself can serve on this machine: on a busy 2-core box
that, not the bound, is the real ceiling.

    python bench/synth_throughput.py [--requests 1500] [--latency-ms 50] [--concurrency 32]

Last line: {"bench": "synth_throughput", "unit": "req/s", "ours": …, "peer": …,
"ratio": ours/bound, "bound": …, "ours_vs_peer": …}
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SERVER = """
import sys, time
sys.path.insert(0, {tests!r})
from fakes import FakeLLMServer, Reply
server = FakeLLMServer().start()
server.openai.default = Reply(text="A short synthetic answer for the benchmark.", delay_s={delay})
print(server.port, flush=True)
sys.stdin.read()  # until the benchmark closes our stdin
server.stop()
"""


def start_upstream(latency_s: float) -> tuple[subprocess.Popen[str], str]:
    code = SERVER.format(tests=str(ROOT / "tests"), delay=latency_s)
    process = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert process.stdout is not None
    port = process.stdout.readline().strip()
    return process, f"http://127.0.0.1:{port}/openai/v1"


def run_ours(base_url: str, requests: int, concurrency: int) -> float:
    from tuneloop.synth import Pipeline, run_pipeline

    pipeline = Pipeline.model_validate(
        {
            "name": "bench",
            "task": "bench",
            "concurrency": concurrency,
            "steps": [
                {
                    "name": "answer",
                    "provider": f"openai-compatible:{base_url}#fake-model",
                    "prompt": "Write request number {{ index }} of the benchmark.",
                    "gates": {"min_words": 2},
                }
            ],
        }
    )
    with tempfile.TemporaryDirectory() as folder:
        started = time.perf_counter()
        result = run_pipeline(pipeline, Path(folder) / "cache.sqlite", n=requests)
        seconds = time.perf_counter() - started
    kept = result.steps["answer"].kept
    if kept != requests:
        raise SystemExit(f"ours: only {kept} of {requests} calls succeeded")
    return requests / seconds


def run_raw(base_url: str, requests: int, concurrency: int) -> float:
    """The upstream's own ceiling here: bare httpx posts, no client library, no bookkeeping."""
    import asyncio

    import httpx

    async def main() -> float:
        semaphore = asyncio.Semaphore(concurrency)
        async with httpx.AsyncClient(timeout=60) as client:

            async def one(index: int) -> None:
                messages = [{"role": "user", "content": str(index)}]
                body = {"model": "fake-model", "messages": messages}
                async with semaphore:
                    response = await client.post(f"{base_url}/chat/completions", json=body)
                response.raise_for_status()

            started = time.perf_counter()
            await asyncio.gather(*(one(index) for index in range(requests)))
            return requests / (time.perf_counter() - started)

    return asyncio.run(main())


def run_peer(base_url: str, requests: int, concurrency: int) -> float | None:
    try:
        from distilabel.models.llms import OpenAILLM
    except ImportError:
        print("distilabel is not installed: no peer", file=sys.stderr)
        return None
    from pydantic import SecretStr

    llm = OpenAILLM(model="fake-model", base_url=base_url, api_key=SecretStr("no-key"))
    llm.load()
    inputs = [
        [{"role": "user", "content": f"Write request number {index} of the benchmark."}]
        for index in range(requests)
    ]
    started = time.perf_counter()
    done = 0
    for start in range(0, requests, concurrency):
        outputs = llm.generate(inputs=inputs[start : start + concurrency])
        done += sum(1 for output in outputs if output["generations"][0])
    seconds = time.perf_counter() - started
    if done != requests:
        raise SystemExit(f"peer: only {done} of {requests} calls succeeded")
    return requests / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=1500)
    parser.add_argument("--latency-ms", type=float, default=50.0)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()
    bound = args.concurrency / (args.latency_ms / 1000)
    process, base_url = start_upstream(args.latency_ms / 1000)
    try:
        run_ours(base_url, min(200, args.requests), args.concurrency)  # warm up both clients
        ours = run_ours(base_url, args.requests, args.concurrency)
        peer = run_peer(base_url, args.requests, args.concurrency)
        raw = run_raw(base_url, args.requests, args.concurrency)
    finally:
        assert process.stdin is not None
        process.stdin.close()
        process.wait(timeout=30)
    print(
        f"bound {bound:.0f} req/s; ours {ours:.0f} req/s ({ours / bound:.0%} of the bound); "
        + (f"distilabel {peer:.0f} req/s" if peer else "no peer")
        + f"; the upstream's ceiling here (bare httpx) {raw:.0f} req/s",
        file=sys.stderr,
    )
    result = {
        "bench": "synth_throughput",
        "unit": "req/s",
        "ours": round(ours, 1),
        "peer": round(peer, 1) if peer else None,
        "ratio": round(ours / bound, 3),
        "bound": round(bound, 1),
        "ours_vs_peer": round(ours / peer, 3) if peer else None,
        "peer_name": "distilabel OpenAILLM.generate" if peer else None,
        "upstream_ceiling": round(raw, 1),
        "ours_vs_ceiling": round(ours / raw, 3),
        "requests": args.requests,
        "latency_ms": args.latency_ms,
        "concurrency": args.concurrency,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
