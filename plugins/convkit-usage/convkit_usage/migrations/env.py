"""Alembic environment of the usage table, configured in code (no alembic.ini).

The plugin runs its migrations on a connection it opened, passed in
``config.attributes["connection"]``, and keeps its revision in its own version table
(``convkit_usage_alembic_version``), so convkit's own schema and this plugin's are upgraded
independently in one database.
"""

from __future__ import annotations

from alembic import context
from convkit_usage._schema import VERSION_TABLE, metadata


def _main() -> None:
    connection = context.config.attributes.get("connection")
    if connection is None:
        raise RuntimeError(
            "convkit-usage migrations run through `convkit usage migrate --url URL` or "
            "convkit_usage.migrate(url)"
        )
    context.configure(
        connection=connection,
        target_metadata=metadata,
        version_table=VERSION_TABLE,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


_main()
