"""Gateway overhead: the same load sent straight to an upstream, through tuneloop's gateway and
through LiteLLM's proxy, all on loopback, in one run.

The upstream is a small OpenAI-compatible server answering after a fixed delay. Each target gets
the same requests (a bounded count, a bounded time) from one async client with fixed
concurrency. Reported: added latency (p50, p99) of each proxy over the direct call, requests/s
per worker process at that concurrency, and the share of the gateway's answered calls that
reached its store: read after the gateway drained on SIGTERM (``logged_at_stop``; calls it could
not write in its drain time wait in its spill file) and again after a second gateway process
replayed that file (``logged``).

LiteLLM runs from the ``litellm`` executable given with ``--litellm`` (default: the one beside
this Python, in ``.venv-peers`` made by ``make bench-peers``, or on PATH). Its proxy pins its
own versions of shared packages, so it lives in a virtual environment of its own. Without it
the peer is null and the reason is printed.

    python bench/gateway_overhead.py [--requests 2000] [--concurrency 16] [--delay-ms 20]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

TASK = "bench-task"
PEERS_VENV = Path(__file__).resolve().parent.parent / ".venv-peers"  # `make bench-peers`
BODY_MODEL = "fake-model"


# -- the upstream: a raw ASGI app, so its own cost stays small -------------------------------


def upstream_app(delay_s: float) -> Any:
    answer = json.dumps({"title": "Settings", "children": [{"type": "toggle"}]})

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        if scope["path"].endswith("/models"):
            payload: dict[str, Any] = {
                "object": "list",
                "data": [{"id": BODY_MODEL, "object": "model", "created": 0, "owned_by": "bench"}],
            }
        else:
            await asyncio.sleep(delay_s)
            payload = {
                "id": "chatcmpl-upstream",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": BODY_MODEL,
                "choices": [
                    {
                        "index": 0,
                        "finish_reason": "stop",
                        "logprobs": None,
                        "message": {"role": "assistant", "content": answer},
                    }
                ],
                "usage": {"prompt_tokens": 12, "completion_tokens": 9, "total_tokens": 21},
            }
        data = json.dumps(payload).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(data)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": data})

    return app


def serve_upstream(port: int, delay_ms: float) -> None:
    import uvicorn

    uvicorn.run(
        upstream_app(delay_ms / 1000),
        host="127.0.0.1",
        port=port,
        log_level="error",
        access_log=False,
    )


# -- processes -------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_http(url: str, process: subprocess.Popen[bytes], timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{url}: the process exited with code {process.returncode}")
        try:
            if httpx.get(url, timeout=2).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not come up within {timeout:.0f} s")


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def rss_mb(pid: int) -> float:
    import psutil

    return float(psutil.Process(pid).memory_info().rss) / 2**20


def find_litellm(given: str | None) -> str | None:
    if given:
        return given if Path(given).exists() else None
    for folder in (Path(sys.executable).parent, PEERS_VENV / "bin"):
        if (folder / "litellm").exists():
            return str(folder / "litellm")
    return shutil.which("litellm")


# -- load ------------------------------------------------------------------------------------


async def drive(
    url: str, model: str, count: int, concurrency: int, max_s: float, headers: dict[str, str]
) -> tuple[list[float], int, float]:
    """(latencies in ms of successful calls, failures, wall seconds)."""
    latencies: list[float] = []
    failures = 0
    body = {
        "model": model,
        "messages": [
            {"role": "system", "content": "You design mobile UI layouts as JSON."},
        ],
    }
    queue: asyncio.Queue[int] = asyncio.Queue()
    for number in range(count):
        queue.put_nowait(number)
    started = time.perf_counter()
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=30, headers=headers) as client:

        async def worker() -> None:
            nonlocal failures
            while not queue.empty() and time.perf_counter() - started < max_s:
                number = queue.get_nowait()
                sent = time.perf_counter()
                try:
                    # 50 users, each asking for a different screen every time.
                    messages = [
                        body["messages"][0],
                        {"role": "user", "content": f"Screen {number} with a dark-mode toggle."},
                    ]
                    response = await client.post(
                        url,
                        json={**body, "messages": messages, "user": f"user-{number % 50}"},
                    )
                    ok = response.status_code == 200 and response.json()["choices"]
                except (httpx.HTTPError, ValueError, KeyError):
                    ok = False
                if ok:
                    latencies.append((time.perf_counter() - sent) * 1000)
                else:
                    failures += 1

        await asyncio.gather(*[worker() for _ in range(concurrency)])
    return latencies, failures, time.perf_counter() - started


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def measure(
    name: str, url: str, model: str, args: argparse.Namespace, headers: dict[str, str] | None = None
) -> dict[str, Any]:
    """Latency one call at a time (what a proxy adds to a call), then throughput at
    ``--concurrency`` (what one worker process sustains)."""
    headers = headers or {}
    warm, _, _ = asyncio.run(drive(url, model, 100, args.concurrency, 30, headers))
    latencies, slow_failures, _ = asyncio.run(
        drive(url, model, args.latency_requests, 1, args.max_s, headers)
    )
    done, failures, wall = asyncio.run(
        drive(url, model, args.requests, args.concurrency, args.max_s, headers)
    )
    result = {
        "name": name,
        "ok": len(warm) + len(latencies) + len(done),
        "failed": slow_failures + failures,
        "p50_ms": statistics.median(latencies) if latencies else None,
        "p99_ms": percentile(latencies, 0.99) if latencies else None,
        "req_s": len(done) / wall if wall else 0.0,
    }
    print(
        f"{name:>10}: p50 {result['p50_ms']:.2f} ms, p99 {result['p99_ms']:.2f} ms one at a "
        f"time; {result['req_s']:.0f} req/s at {args.concurrency} concurrent; "
        f"{result['failed']} failed",
        flush=True,
    )
    return result


# -- main ------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--requests", type=int, default=2000, help="requests per target for throughput"
    )
    parser.add_argument(
        "--latency-requests",
        type=int,
        default=300,
        help="requests per target sent one at a time for latency",
    )
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--delay-ms", type=float, default=20.0, help="upstream answer delay")
    parser.add_argument("--max-s", type=float, default=60.0, help="time limit per target")
    parser.add_argument("--litellm", help="path of the litellm executable (the peer)")
    parser.add_argument(
        "--soak",
        type=int,
        default=0,
        help="extra requests through the gateway before its RSS is read again",
    )
    parser.add_argument("--serve-upstream", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_upstream:
        serve_upstream(args.serve_upstream, args.delay_ms)
        return

    workdir = Path(tempfile.mkdtemp(prefix="gateway-bench-"))
    processes: list[subprocess.Popen[bytes]] = []
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    try:
        up_port = free_port()
        upstream = subprocess.Popen(
            [
                sys.executable,
                __file__,
                "--serve-upstream",
                str(up_port),
                "--delay-ms",
                str(args.delay_ms),
            ],
            env=env,
        )
        processes.append(upstream)
        up_url = f"http://127.0.0.1:{up_port}/v1"
        wait_http(f"{up_url}/models", upstream)
        results = [measure("direct", f"{up_url}/chat/completions", BODY_MODEL, args)]

        # Ours: the task's production version is served by the upstream; the teacher too.
        store_path = workdir / "store.db"
        spec = f"openai-compatible:{up_url}#{BODY_MODEL}"
        config = workdir / "tuneloop.toml"
        config.write_text(
            f'workspace = "{workdir.as_posix()}"\nteacher = "{spec}"\n'
            f'[store]\nurl = "sqlite:///{store_path.as_posix()}"\n',
            encoding="utf-8",
        )
        register = (
            "from tuneloop.config import load_config; from tuneloop.store import Store; "
            "from tuneloop.registry import register_version, set_stage; "
            f"s = Store(load_config({str(config)!r}).store_url); "
            f"v = register_version(s, task={TASK!r}, base_model='remote', artifact_path=None, "
            f"config={{'serve': {spec!r}}}); "
            f"set_stage(s, {TASK!r}, v.version, 'production'); "
            "from tuneloop.gateway import create_key; print(create_key(s, 'bench')[1])"
        )
        # Both proxies check a client key, as they would in production.
        key = (
            subprocess.run(
                [sys.executable, "-c", register],
                check=True,
                env=env,
                capture_output=True,
                text=True,
            )
            .stdout.strip()
            .splitlines()[-1]
        )
        gw_port = free_port()
        gateway = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tuneloop.cli.app",
                "gateway",
                "--port",
                str(gw_port),
                "--workers",
                "1",
                "-c",
                str(config),
            ],
            env=env,
            stdout=subprocess.DEVNULL,
        )
        processes.append(gateway)
        wait_http(f"http://127.0.0.1:{gw_port}/readyz", gateway)
        rss_start = rss_mb(gateway.pid)
        ours = measure(
            "tuneloop",
            f"http://127.0.0.1:{gw_port}/v1/chat/completions",
            TASK,
            args,
            {"Authorization": f"Bearer {key}"},
        )
        results.append(ours)
        soaked: list[float] = []
        soak_rss: list[float] = []  # after each tenth of the soak: flat, or growing?
        step = max(1, args.soak // 10)
        for start in range(0, args.soak, step):
            latencies, _, _ = asyncio.run(
                drive(
                    f"http://127.0.0.1:{gw_port}/v1/chat/completions",
                    TASK,
                    min(step, args.soak - start),
                    args.concurrency,
                    3600,
                    {"Authorization": f"Bearer {key}"},
                )
            )
            soaked += latencies
            soak_rss.append(round(rss_mb(gateway.pid), 1))
        if soak_rss:
            print(f"    gateway RSS during the soak (MB, every {step}): {soak_rss}", flush=True)
        rss_end = rss_mb(gateway.pid)
        print(
            f"    gateway RSS: {rss_start:.0f} MB after start, {rss_end:.0f} MB after "
            f"{ours['ok'] + len(soaked)} requests",
            flush=True,
        )
        stop(gateway)  # drains the call log; what it could not write in time is in spill files

        def stored_calls() -> int:
            with sqlite3.connect(store_path) as db:
                query = "SELECT count(*) FROM interactions WHERE source = 'gateway'"
                return int(db.execute(query).fetchone()[0])

        answered = ours["ok"] + len(soaked)  # the warm-up is logged too
        at_stop = stored_calls()
        spill_dir = workdir / "gateway-spill"
        spilled = sum(
            len(path.read_text(encoding="utf-8").splitlines())
            for path in spill_dir.glob("spill-*.jsonl")
        )
        print(
            f"    logged at stop: {at_stop} of {answered} answered calls, "
            f"{spilled} in the spill file",
            flush=True,
        )
        if spilled:  # the next gateway process replays it: start one and wait until it is done
            again = subprocess.Popen(gateway.args, env=env, stdout=subprocess.DEVNULL)
            processes.append(again)
            wait_http(f"http://127.0.0.1:{gw_port}/readyz", again)
            deadline = time.monotonic() + 120
            while list(spill_dir.glob("spill-*.jsonl")) and time.monotonic() < deadline:
                time.sleep(0.5)
            stop(again)
        stored = stored_calls()
        logged = stored / answered if answered else 0.0
        print(f"    logged: {stored} of {answered} answered calls", flush=True)

        peer = None
        litellm = find_litellm(args.litellm)
        if litellm is None:
            print(
                "litellm not found (run `make bench-peers` or pass --litellm): no peer measured",
                flush=True,
            )
        else:
            lite_port = free_port()
            lite_config = workdir / "litellm.yaml"
            lite_config.write_text(
                "model_list:\n"
                f"  - model_name: {TASK}\n"
                "    litellm_params:\n"
                f"      model: openai/{BODY_MODEL}\n"
                f"      api_base: {up_url}\n"
                "      api_key: bench-key\n"
                "general_settings:\n  master_key: sk-bench-master-key\n"
                "litellm_settings:\n  telemetry: false\n",
                encoding="utf-8",
            )
            lite = subprocess.Popen(
                [
                    litellm,
                    "--config",
                    str(lite_config),
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(lite_port),
                    "--num_workers",
                    "1",
                ],
                env={**env, "LITELLM_LOG": "ERROR", "LITELLM_TELEMETRY": "False"},
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            processes.append(lite)
            wait_http(f"http://127.0.0.1:{lite_port}/health/liveliness", lite)
            peer = measure(
                "litellm",
                f"http://127.0.0.1:{lite_port}/v1/chat/completions",
                TASK,
                args,
                {"Authorization": "Bearer sk-bench-master-key"},
            )
            results.append(peer)
    finally:
        for process in reversed(processes):
            stop(process)
        shutil.rmtree(workdir, ignore_errors=True)

    direct = results[0]
    summary = {
        "bench": "gateway_overhead",
        "unit": "req/s",
        "ours": round(ours["req_s"], 1),
        "peer": round(peer["req_s"], 1) if peer else None,
        "ratio": round(ours["req_s"] / peer["req_s"], 2) if peer and peer["req_s"] else None,
        "p50_ms": round(ours["p50_ms"] - direct["p50_ms"], 2),
        "p99_ms": round(ours["p99_ms"] - direct["p99_ms"], 2),
        "logged": round(logged, 4),
        "logged_at_stop": round(at_stop / answered, 4) if answered else 0.0,
        "rss_mb_start": round(rss_start, 1),
        "rss_mb_end": round(rss_end, 1),
        "rss_mb_soak": soak_rss,
        "peer_p50_ms": round(peer["p50_ms"] - direct["p50_ms"], 2) if peer else None,
        "peer_p99_ms": round(peer["p99_ms"] - direct["p99_ms"], 2) if peer else None,
        "direct_req_s": round(direct["req_s"], 1),
        "requests": args.requests,
        "concurrency": args.concurrency,
        "upstream_delay_ms": args.delay_ms,
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
