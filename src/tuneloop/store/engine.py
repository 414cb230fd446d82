"""Opening the store: one engine per URL, SQLite tuned for several writers, migrations on open.

Several processes may open a new store at the same moment (importers, gateway replicas): the
migration runs under a lock (an advisory lock on PostgreSQL, a lock file beside the SQLite
database), so one process migrates and the others wait and find the schema ready.
"""

from __future__ import annotations

import sqlite3
import zlib
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, inspect, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from tuneloop.config import redact_url
from tuneloop.errors import StoreError

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
SQLITE_BUSY_TIMEOUT_MS = 30_000
MIGRATION_LOCK_TIMEOUT_S = 300
# One advisory lock key for tuneloop's migrations, whatever the database (a 32-bit constant).
MIGRATION_LOCK_KEY = zlib.crc32(b"tuneloop.store.migrate")
NO_STORE = "no store here; run `tuneloop init` or pass --config"


class Store:
    """The shared database of every stage. ``Store(url).session()`` gives a transaction.

    ``read_only=True`` is for commands that only look: they never create a store (a missing
    one is a StoreError saying so) and never write (SQLite opens the file read-only,
    PostgreSQL sessions are read-only). An existing store made by an older tuneloop is still
    upgraded first, under the migration lock.
    """

    def __init__(self, url: str, *, migrate: bool = True, read_only: bool = False) -> None:
        self.url = url
        self.read_only = read_only
        if read_only:
            _require_sqlite_file(url)
        self.engine = _create_engine(url, read_only=read_only)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        if read_only:
            self._require_schema()
        elif migrate:
            self.migrate()

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def migrate(self) -> None:
        """Bring the schema to the newest migration (a no-op when it is already there)."""
        from alembic import command

        alembic_cfg = _alembic_config()
        head = _head(alembic_cfg)
        try:
            if self._revision() == head:
                return
            with self._migration_lock(), self.engine.begin() as connection:
                if self.dialect == "postgresql":  # held until this transaction ends
                    connection.execute(
                        text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY}
                    )
                if _current_revision(connection) == head:
                    return  # another process migrated while this one waited
                alembic_cfg.attributes["connection"] = connection
                command.upgrade(alembic_cfg, "head")
        except SQLAlchemyError as exc:
            raise StoreError(
                f"cannot migrate the store at {self.display_url}: {_reason(exc)}"
            ) from exc

    def _revision(self) -> str | None:
        with self.engine.connect() as connection:
            return _current_revision(connection)

    def _migration_lock(self) -> AbstractContextManager[Any]:
        """A lock file beside a SQLite database (PostgreSQL locks inside the transaction)."""
        database = make_url(self.url).database
        if self.dialect != "sqlite" or not database or database == ":memory:":
            return nullcontext()
        from filelock import FileLock, Timeout

        lock = FileLock(f"{database}.migrate.lock", timeout=MIGRATION_LOCK_TIMEOUT_S)

        @contextmanager
        def held() -> Iterator[None]:
            try:
                with lock:
                    yield
            except Timeout:
                raise StoreError(
                    f"waited {MIGRATION_LOCK_TIMEOUT_S} s for another process to "
                    f"finish migrating {self.display_url} (lock file "
                    f"{lock.lock_file})"
                ) from None

        return held()

    def _require_schema(self) -> None:
        """For a read-only open: the store must exist; bring an older schema up to date."""
        try:
            with self.engine.connect() as connection:
                exists = inspect(connection).has_table("alembic_version")
                current = _current_revision(connection) if exists else None
        except OperationalError as exc:
            raise StoreError(
                f"cannot open the store at {self.display_url}: {_reason(exc)}"
            ) from exc
        if current is None:
            self.engine.dispose()
            raise StoreError(f"{NO_STORE} (nothing at {self.display_url})")
        if current != _head(_alembic_config()):
            Store(self.url).close()  # it exists: upgrading it is not creating it

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session in one transaction: committed on success, rolled back on any error."""
        session = self._sessions()
        try:
            yield session
            session.commit()
        except OperationalError as exc:
            session.rollback()
            raise StoreError(f"store {self.display_url} failed: {exc.orig}") from exc
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    @property
    def display_url(self) -> str:
        """The URL without its password, for messages."""
        return make_url(self.url).render_as_string(hide_password=True)

    def close(self) -> None:
        self.engine.dispose()


def _alembic_config() -> Any:
    from alembic.config import Config as AlembicConfig

    alembic_cfg = AlembicConfig()
    alembic_cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    return alembic_cfg


def _head(alembic_cfg: Any) -> str | None:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_cfg).get_current_head()


def _current_revision(connection: Connection) -> str | None:
    from alembic.runtime.migration import MigrationContext

    return MigrationContext.configure(connection).get_current_revision()


def _reason(exc: SQLAlchemyError) -> str:
    """The driver's message without the SQL and parameters SQLAlchemy appends."""
    orig = getattr(exc, "orig", None)
    return str(orig if orig is not None else exc).strip().splitlines()[0]


def _parse(url: str) -> URL:
    try:
        return make_url(url)
    except Exception as exc:  # sqlalchemy raises ArgumentError with a terse message
        raise StoreError(
            f"store URL {redact_url(repr(url))} is not a valid database URL: {redact_url(str(exc))}"
        ) from None


def _require_sqlite_file(url: str) -> None:
    """A read-only open of SQLite needs the database file to be there already."""
    parsed = _parse(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return
    path = Path(parsed.database)
    if path.is_dir():
        raise StoreError(f"the store path {path} is a folder, not a database file")
    if not path.is_file():
        raise StoreError(f"{NO_STORE} (no database at {path})")


def _create_engine(url: str, *, read_only: bool = False) -> Engine:
    parsed = _parse(url)
    if parsed.get_backend_name() == "sqlite":
        return _sqlite_engine(parsed, read_only=read_only)
    if parsed.get_backend_name() == "postgresql":
        if parsed.drivername == "postgresql":
            parsed = parsed.set(drivername="postgresql+psycopg")
        engine = create_engine(parsed, pool_pre_ping=True)
        if read_only:

            @event.listens_for(engine, "connect")
            def _read_only(dbapi_connection: Any, _record: object) -> None:
                with dbapi_connection.cursor() as cursor:
                    cursor.execute("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")
                dbapi_connection.commit()

        return engine
    raise StoreError(
        f"store URL {redact_url(repr(url))}: only sqlite:// and postgresql+psycopg:// are supported"
    )


def _sqlite_engine(parsed: URL, *, read_only: bool) -> Engine:
    database = parsed.database
    if database and database != ":memory:":
        folder = Path(database).parent
        if Path(database).is_dir():
            raise StoreError(f"the store path {database} is a folder, not a database file")
        if not read_only:
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreError(
                    f"cannot create the store folder {folder}: {exc.strerror}"
                ) from exc
    if read_only and database and database != ":memory:":
        # SQLite's URI form opens the file read-only: nothing can be written, not even by
        # mistake, and a missing file is an error instead of a new empty database.
        parsed = parsed.set(database=f"file:{Path(database).as_posix()}").update_query_dict(
            {"mode": "ro", "uri": "true"}
        )
    engine = create_engine(parsed, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: sqlite3.Connection, _record: object) -> None:
        # WAL lets readers run while one process writes; busy_timeout makes concurrent
        # writers wait instead of failing; foreign keys are off by default in SQLite.
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        if not read_only:
            cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    return engine
