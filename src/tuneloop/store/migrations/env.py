"""Alembic environment: runs on the connection the Store hands over, or on a URL from alembic -x."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, create_engine

from tuneloop.store.models import Base

config = context.config
target_metadata = Base.metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


connection = config.attributes.get("connection")
if connection is not None:
    _run(connection)
else:
    url = context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option(
        "sqlalchemy.url"
    )
    if not url:
        raise SystemExit("give the database: alembic -x url=postgresql+psycopg://...")
    with create_engine(url).begin() as new_connection:
        _run(new_connection)
