"""The store on SQLite and PostgreSQL: migrations, JSON, concurrent writers, cascades."""

from __future__ import annotations

import multiprocessing
from datetime import UTC, datetime
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import delete, func, inspect, select

from tuneloop.capture.client import Tuneloop
from tuneloop.config import Config
from tuneloop.store import Base, Feedback, Interaction, Store

PROCESSES = 4
LOGS_PER_PROCESS = 50


def test_migrations_create_every_table_and_reopening_is_a_noop(
    store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = Store(store_url)
    tables = set(inspect(store.engine).get_table_names())
    assert set(Base.metadata.tables) | {"alembic_version"} <= tables
    store.close()

    import alembic.command

    def refuse(*_: Any, **__: Any) -> None:
        raise AssertionError("a second open must not run migrations")

    monkeypatch.setattr(alembic.command, "upgrade", refuse)
    again = Store(store_url)
    assert set(inspect(again.engine).get_table_names()) == tables
    again.close()


def test_migrations_match_models(store_url: str) -> None:
    store = Store(store_url)
    with store.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert compare_metadata(context, Base.metadata) == []
    store.close()


def test_crud_round_trip_with_json_columns(store_url: str) -> None:
    store = Store(store_url)
    messages = [{"role": "user", "content": "Grüße, 世界 ✓", "extra": {"n": [1, 2.5, None]}}]
    when = datetime(2025, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)
    with store.session() as session:
        session.add(
            Interaction(
                id="a" * 32,
                messages=messages,
                response="{}",
                created_at=when,
                metadata_={"nested": {"list": [True, False]}},
                tags=["x", "y"],
            )
        )
        session.add(
            Feedback(interaction_id="a" * 32, kind="thumbs_up", value={"k": "v"}, reward=1.0)
        )
    with store.session() as session:
        row = session.get(Interaction, "a" * 32)
        assert row is not None
        assert row.messages == messages
        assert row.metadata_ == {"nested": {"list": [True, False]}}
        assert row.tags == ["x", "y"]
        assert row.created_at.replace(tzinfo=UTC) == when
        assert [(f.kind, f.value, f.reward) for f in row.feedback] == [
            ("thumbs_up", {"k": "v"}, 1.0)
        ]
        row.metadata_ = {**row.metadata_, "added": 1}
    with store.session() as session:
        row = session.get(Interaction, "a" * 32)
        assert row is not None and row.metadata_["added"] == 1
        session.delete(row)
    with store.session() as session:
        assert session.scalar(select(func.count()).select_from(Interaction)) == 0
    store.close()


def test_deleting_an_interaction_cascades_to_its_feedback(store_url: str) -> None:
    store = Store(store_url)
    with store.session() as session:
        for interaction_id in ("orm", "sql"):
            session.add(Interaction(id=interaction_id, messages=[], response="r"))
            session.add(Feedback(interaction_id=interaction_id, kind="saved", reward=0.8))
    with store.session() as session:  # ORM cascade
        session.delete(session.get(Interaction, "orm"))
    with store.session() as session:  # database ON DELETE CASCADE (bulk delete, no ORM)
        session.execute(
            delete(Interaction).where(Interaction.id == "sql"),
            execution_options={"synchronize_session": False},
        )
    with store.session() as session:
        assert session.scalar(select(func.count()).select_from(Feedback)) == 0
    store.close()


def _writer(url: str, workspace: str, number: int, start: Any, errors: Any) -> None:
    """One process logging calls (and some feedback) as fast as it can."""
    try:
        config = Config.model_validate({"workspace": workspace, "store": {"url": url}})
        with Tuneloop(config) as client:
            start.wait()
            for index in range(LOGS_PER_PROCESS):
                interaction_id = client.log(
                    [{"role": "user", "content": f"question {index % 7}"}],
                    f"answer {index}",
                    tenant=f"tenant-{number % 2}",
                    session_id=f"session-{number}-{index // 5}",
                )
                if interaction_id and index % 5 == 0:
                    client.thumbs_up(interaction_id)
    except BaseException as exc:
        errors.put(f"process {number}: {type(exc).__name__}: {exc}")
        raise


def test_several_processes_write_at_once_without_losing_rows(store_url: str, tmp_path: Any) -> None:
    Store(store_url).close()  # migrate once, before the writers race
    context = multiprocessing.get_context("fork")
    start = context.Barrier(PROCESSES)
    errors = context.Queue()
    workers = [
        context.Process(target=_writer, args=(store_url, str(tmp_path), n, start, errors))
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
        assert session.scalar(select(func.count()).select_from(Interaction)) == (
            PROCESSES * LOGS_PER_PROCESS
        )
        thumbs = select(func.count()).where(Feedback.kind == "thumbs_up")
        assert session.scalar(thumbs) == PROCESSES * LOGS_PER_PROCESS // 5
    store.close()
