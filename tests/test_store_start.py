"""A fresh store opened by several processes at once, and commands that only look."""

from __future__ import annotations

import multiprocessing
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, inspect, select
from typer.testing import CliRunner

from tuneloop.capture.client import Tuneloop
from tuneloop.cli.app import app
from tuneloop.config import Config
from tuneloop.errors import StoreError
from tuneloop.store import Interaction, OptOut, Store

PROCESSES = 4
TUNELOOP = [sys.executable, "-m", "tuneloop.cli.app"]


def _open_and_log(url: str, workspace: str, number: int, start: Any, errors: Any) -> None:
    try:
        start.wait()
        config = Config.model_validate({"workspace": workspace, "store": {"url": url}})
        with Tuneloop(config) as client:
            client.log([{"role": "user", "content": f"hello from {number}"}], "hi")
    except BaseException as exc:
        errors.put(f"process {number}: {type(exc).__name__}: {exc}")
        raise


def test_four_processes_open_a_fresh_store_at_once(store_url: str, tmp_path: Path) -> None:
    context = multiprocessing.get_context("fork")
    start = context.Barrier(PROCESSES)
    errors = context.Queue()
    workers = [
        context.Process(target=_open_and_log, args=(store_url, str(tmp_path), n, start, errors))
        for n in range(PROCESSES)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
    problems = []
    while not errors.empty():
        problems.append(errors.get())
    assert problems == []
    assert [worker.exitcode for worker in workers] == [0] * PROCESSES
    store = Store(store_url)
    with store.session() as session:
        assert session.scalar(select(func.count()).select_from(Interaction)) == PROCESSES
    store.close()


@pytest.fixture
def config_file(tmp_path: Path, store_url: str) -> Path:
    path = tmp_path / "tuneloop.toml"
    path.write_text(f'workspace = "ws"\n[store]\nurl = "{store_url}"\n', encoding="utf-8")
    return path


def _tables(url: str) -> set[str]:
    if url.startswith("sqlite"):
        database = Path(url.removeprefix("sqlite:///"))
        if not database.exists():
            return set()
    from sqlalchemy import create_engine

    engine = create_engine(url)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


@pytest.mark.parametrize("command", [["stats"], ["dataset", "list"], ["models", "list"]])
def test_read_only_commands_never_create_a_store(
    config_file: Path, store_url: str, tmp_path: Path, command: list[str]
) -> None:
    result = CliRunner().invoke(app, [*command, "-c", str(config_file)])
    assert isinstance(result.exception, StoreError), result.output
    assert "no store here; run `tuneloop init` or pass --config" in str(result.exception)
    assert _tables(store_url) == set()
    assert not (tmp_path / "ws").exists()


def test_read_only_commands_work_on_an_existing_store_and_cannot_write(
    config_file: Path, store_url: str
) -> None:
    Store(store_url).close()
    runner = CliRunner()
    for command in (["stats", "--json"], ["dataset", "list"], ["models", "list"]):
        result = runner.invoke(app, [*command, "-c", str(config_file)])
        assert result.exit_code == 0, result.output
    looking = Store(store_url, read_only=True)
    with looking.session() as session:
        assert session.scalar(select(func.count()).select_from(OptOut)) == 0
    with pytest.raises(Exception, match="read.?only"), looking.session() as session:
        session.add(OptOut(tenant="someone"))
    looking.close()


def test_a_read_only_open_upgrades_an_older_store(store_url: str) -> None:
    from alembic import command
    from alembic.config import Config as AlembicConfig

    from tuneloop.store.engine import MIGRATIONS_DIR

    old = Store(store_url, migrate=False)
    alembic_cfg = AlembicConfig()
    alembic_cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    with old.engine.begin() as connection:
        alembic_cfg.attributes["connection"] = connection
        command.upgrade(alembic_cfg, "0001")  # a store made by the first release
    old.close()
    looking = Store(store_url, read_only=True)
    columns = {column["name"] for column in inspect(looking.engine).get_columns("interactions")}
    assert "idempotency_key" in columns
    looking.close()


def test_init_writes_the_config_and_creates_the_store(tmp_path: Path) -> None:
    target = tmp_path / "tuneloop.toml"
    result = CliRunner().invoke(app, ["init", str(target)])
    assert result.exit_code == 0, result.output
    assert (tmp_path / ".tuneloop" / "tuneloop.db").is_file()
    assert "store ready" in result.output
    stats = CliRunner().invoke(app, ["stats", "--json", "-c", str(target)])
    assert stats.exit_code == 0, stats.output


@pytest.mark.parametrize(
    ("where", "message"),
    [
        ("folder", "is a folder; give the config file to write"),
        ("missing/deeper/tuneloop.toml", "does not exist (create it first)"),
    ],
)
def test_init_into_a_folder_or_a_missing_folder_is_one_clear_error(
    tmp_path: Path, where: str, message: str
) -> None:
    (tmp_path / "folder").mkdir()
    result = subprocess.run(
        [*TUNELOOP, "init", str(tmp_path / where)], capture_output=True, text=True, cwd=tmp_path
    )
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr
