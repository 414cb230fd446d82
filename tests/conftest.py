"""Shared fixtures: a fresh store on SQLite and on a real PostgreSQL, and configs pointing at it.

PostgreSQL: ``$TUNELOOP_TEST_POSTGRES`` or ``postgresql+psycopg://postgres@127.0.0.1:5432/test``.
One database is created per test session (dropped at the end) and one schema per test
(search_path), so tests never see each other's rows. When the server is not reachable the
PostgreSQL cases are skipped, with the reason in the summary.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fakes.fixtures import (  # noqa: F401  (fixtures for every test module)
    fake_anthropic,
    fake_llm_server,
    fake_openai,
    fake_together,
)
from sqlalchemy.engine import URL, make_url

from tuneloop.capture.client import Tuneloop
from tuneloop.config import Config

POSTGRES_URL = os.environ.get(
    "TUNELOOP_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


def _libpq(url: URL) -> str:
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[URL]:
    """A new, uniquely named database for this test session."""
    import psycopg

    server = make_url(POSTGRES_URL)
    name = f"tuneloop_test_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    try:
        admin = psycopg.connect(_libpq(server), autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        pytest.skip(
            f"PostgreSQL not reachable at {server.render_as_string()} ({reason}); "
            "PostgreSQL tests skipped"
        )
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    yield server.set(database=name)
    with psycopg.connect(_libpq(server), autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """URL of an empty store (no tables yet) on each backend."""
    if request.param == "sqlite":
        yield f"sqlite:///{(tmp_path / 'store.db').as_posix()}"
        return
    import psycopg

    database: URL = request.getfixturevalue("postgres_database")
    schema = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(_libpq(database), autocommit=True) as admin:
        admin.execute(f'CREATE SCHEMA "{schema}"')
    url = database.update_query_dict({"options": f"-csearch_path={schema}"})
    yield url.render_as_string(hide_password=False)
    # Close what the test left open (stores it did not close). The schema itself stays: the
    # whole database is dropped at the end, which is faster than dropping schema by schema.
    with psycopg.connect(_libpq(database), autocommit=True) as admin:
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = %s AND pid <> pg_backend_pid()",
            (database.database,),
        )


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


ConfigFactory = Callable[..., Config]


@pytest.fixture
def config_factory(tmp_path: Path, store_url: str) -> ConfigFactory:
    """``config_factory(capture={"opted_out_tenants": ["x"]})``: a Config on this test's store."""

    def make(**sections: Any) -> Config:
        data = {"workspace": str(tmp_path / "workspace"), "store": {"url": store_url}}
        return Config.model_validate(_merge(data, sections))

    return make


@pytest.fixture
def client(config_factory: ConfigFactory) -> Iterator[Tuneloop]:
    with Tuneloop(config_factory()) as tl:
        yield tl
