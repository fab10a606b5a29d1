"""Alembic environment of convkit's schema, configured in code (no alembic.ini).

convkit runs migrations on a connection it opened and passes in
``config.attributes["connection"]`` (see ``convkit.store.upgrade`` and ``convkit db upgrade``).
For writing new revisions with the ``alembic`` command, set ``sqlalchemy.url`` on the config.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, create_engine

from convkit.store._rows import Base


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        # SQLite cannot ALTER most things; batch mode rebuilds the table instead.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def _main() -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    url = context.config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError(
            "convkit migrations run through `convkit db upgrade --url URL` or "
            "convkit.store.upgrade(url); set sqlalchemy.url to use the alembic command directly"
        )
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            _run(conn)
    finally:
        engine.dispose()


_main()
