"""Running the gateway: one process, or several uvicorn workers sharing one resolved config and
one folder of Prometheus values (so ``/metrics`` in any worker counts every worker's calls)."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from fastapi import FastAPI

from tuneloop.config import Config
from tuneloop.errors import ConfigError
from tuneloop.gateway.app import create_app
from tuneloop.gateway.keys import list_keys
from tuneloop.gateway.metrics import MULTIPROCESS_ENV, prepare_multiprocess_dir
from tuneloop.gateway.service import is_loopback
from tuneloop.store import Store

CONFIG_ENV = "TUNELOOP_GATEWAY_RESOLVED_CONFIG"  # how worker processes receive the config


def check_bind(config: Config, store: Store) -> None:
    """Refuse to listen beyond this machine while no client API key exists."""
    host = config.gateway.host
    if not is_loopback(host) and not list_keys(store):
        raise ConfigError(
            f"gateway.host = {host!r} is reachable from other machines but no API key exists: "
            "create one with `tuneloop gateway keys create NAME`, or bind 127.0.0.1"
        )


def serve(config: Config) -> None:
    """Serve until SIGTERM/SIGINT; the call log drains before the process exits."""
    import uvicorn

    store = Store(config.store_url)
    try:
        check_bind(config, store)
    finally:
        store.close()
    settings = config.gateway
    if settings.workers == 1:
        uvicorn.run(
            create_app(config),
            host=settings.host,
            port=settings.port,
            log_level="warning",
            access_log=False,
        )
        return
    os.environ[CONFIG_ENV] = config.model_dump_json()
    given = os.environ.get(MULTIPROCESS_ENV)
    folder = Path(given) if given else Path(tempfile.mkdtemp(prefix="tuneloop-gateway-metrics-"))
    # Set before the workers start, so their prometheus_client writes values to the folder.
    os.environ[MULTIPROCESS_ENV] = str(prepare_multiprocess_dir(folder))
    try:
        uvicorn.run(
            "tuneloop.gateway.server:app_from_environment",
            factory=True,
            host=settings.host,
            port=settings.port,
            workers=settings.workers,
            log_level="warning",
            access_log=False,
        )
    finally:
        if not given:
            shutil.rmtree(folder, ignore_errors=True)


def app_from_environment() -> FastAPI:
    """The app of a worker process (uvicorn's factory), from the config its parent resolved."""
    raw = os.environ.get(CONFIG_ENV)
    if raw is None:
        raise ConfigError(f"{CONFIG_ENV} is not set: start workers with `tuneloop gateway`")
    return create_app(Config.model_validate_json(raw))
