"""The gateway as real processes: SIGTERM under load loses no call; two gateways share one
PostgreSQL store and both follow a stage change."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select
from test_gateway_app import TASK, add_version

from tuneloop.store import Interaction, Store

pytestmark = pytest.mark.slow
TESTS = Path(__file__).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_gateway(
    tmp_path: Path, store_url: str, name: str, *options: str
) -> tuple[subprocess.Popen[bytes], str]:
    config = tmp_path / f"{name}.toml"
    config.write_text(
        f'workspace = "{(tmp_path / name).as_posix()}"\n[store]\nurl = "{store_url}"\n'
        '[gateway]\nfallback = ["callable:gateway_fakes:teacher"]\nreload_s = 0.2\n'
        "log_flush_s = 0.05\n",
        encoding="utf-8",
    )
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]),
    }
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tuneloop.cli.app",
            "gateway",
            "--port",
            str(port),
            "-c",
            str(config),
            *options,
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                return process, url
        except httpx.HTTPError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(f"gateway did not start: {process.stderr.read()!r}")
        time.sleep(0.1)


def count(store: Store) -> int:
    with store.session() as session:
        return int(session.scalar(select(func.count()).select_from(Interaction)) or 0)


def test_sigterm_under_load_loses_no_call(tmp_path: Path) -> None:
    store_url = f"sqlite:///{(tmp_path / 'store.db').as_posix()}"
    process, url = start_gateway(tmp_path, store_url, "one")

    async def load() -> int:
        answered = 0
        async with httpx.AsyncClient(timeout=30) as client:

            async def one(number: int) -> None:
                nonlocal answered
                await asyncio.sleep(number * 0.005)
                try:
                    response = await client.post(
                        f"{url}/v1/chat/completions",
                        json={
                            "model": TASK,
                            "messages": [{"role": "user", "content": f"q {number}"}],
                        },
                    )
                except httpx.HTTPError:
                    return  # refused after SIGTERM: never answered, so nothing to store
                if response.status_code == 200:
                    answered += 1

            async def terminate() -> None:
                await asyncio.sleep(0.6)
                process.send_signal(signal.SIGTERM)

            await asyncio.gather(terminate(), *[one(n) for n in range(300)])
        return answered

    answered = asyncio.run(load())
    # uvicorn shuts down gracefully, then re-raises the signal, so the exit says SIGTERM.
    assert process.wait(60) in (0, -signal.SIGTERM)
    store = Store(store_url)
    assert answered > 0
    assert count(store) == answered
    store.close()


def test_two_gateways_share_one_postgresql_store(tmp_path: Path, store_url: str) -> None:
    if not store_url.startswith("postgresql"):
        pytest.skip("the shared store of several hosts is PostgreSQL")
    store = Store(store_url)
    first, first_url = start_gateway(tmp_path, store_url, "a")
    second, second_url = start_gateway(tmp_path, store_url, "b")
    try:
        body = {"model": TASK, "messages": [{"role": "user", "content": "a card"}]}
        for url in (first_url, second_url):
            response = httpx.post(f"{url}/v1/chat/completions", json=body, timeout=30)
            assert response.headers["x-tuneloop-route"] == "fallback"
        add_version(store, "callable:gateway_fakes:student", "production")
        deadline = time.monotonic() + 20
        routes = set()
        while routes != {"production"} and time.monotonic() < deadline:
            time.sleep(0.2)
            routes = {
                httpx.post(f"{url}/v1/chat/completions", json=body, timeout=30).headers[
                    "x-tuneloop-route"
                ]
                for url in (first_url, second_url)
            }
        assert routes == {"production"}
    finally:
        for process in (first, second):
            process.send_signal(signal.SIGTERM)
            process.wait(60)
    with store.session() as session:
        rows = session.execute(select(Interaction.idempotency_key, Interaction.metadata_)).all()
    assert len(rows) == len({key for key, _ in rows}) >= 4
    assert {meta["gateway"]["route"] for _, meta in rows} == {"fallback", "production"}
    store.close()


def test_metrics_of_several_workers_add_up(tmp_path: Path) -> None:
    store_url = f"sqlite:///{(tmp_path / 'store.db').as_posix()}"
    process, url = start_gateway(tmp_path, store_url, "workers", "--workers", "2")
    try:
        body = {"model": TASK, "messages": [{"role": "user", "content": "a card"}]}
        with httpx.Client(timeout=30) as client:
            for _ in range(12):  # new connections: the workers share them out
                assert client.post(
                    f"{url}/v1/chat/completions", json=body, headers={"Connection": "close"}
                ).is_success
            totals = set()
            for _ in range(6):  # whichever worker answers, it reports all 12
                text = client.get(f"{url}/metrics", headers={"Connection": "close"}).text
                totals.add(
                    sum(
                        float(line.rsplit(" ", 1)[1])
                        for line in text.splitlines()
                        if line.startswith("tuneloop_gateway_requests_total{")
                    )
                )
        assert totals == {12.0}
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(60)
