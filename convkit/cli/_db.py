"""``convkit db upgrade|current``: the store's schema."""

from __future__ import annotations

import argparse
from typing import Any

from convkit.cli import _check_database_url, add_connection_options, settings
from convkit.cli._config import display_database_url

__all__ = ["register"]


def _url(args: argparse.Namespace) -> Any:
    from convkit.store import default_url

    url = settings(args)["database_url"]
    _check_database_url(url)
    return url if url is not None else default_url()


def _shown(url: Any) -> str:
    from sqlalchemy.engine import URL

    text = url.render_as_string(hide_password=False) if isinstance(url, URL) else str(url)
    return display_database_url(text)


def _upgrade(args: argparse.Namespace) -> int:
    from convkit.store import HEAD_REVISION, upgrade

    url = _url(args)
    before, after = upgrade(url)
    if before == after:
        print(f"{_shown(url)}: already at schema {after} (newest: {HEAD_REVISION})")
    else:
        print(f"{_shown(url)}: upgraded schema {before or '(empty)'} -> {after}")
    return 0


def _current(args: argparse.Namespace) -> int:
    from convkit.store import HEAD_REVISION, schema_revision
    from convkit.store._engine import _known_revisions

    url = _url(args)
    revision = schema_revision(url)
    if revision == HEAD_REVISION:
        state = "up to date"
    elif revision is None:
        state = "no convkit tables; run `convkit db upgrade`"
    elif revision in _known_revisions():
        state = f"needs `convkit db upgrade` to {HEAD_REVISION}"
    else:
        state = f"newer than this convkit knows (newest: {HEAD_REVISION}); upgrade convkit"
    print(f"{_shown(url)}: schema {revision or '(none)'} ({state})")
    return 0 if revision == HEAD_REVISION else 1


def register(subparsers: Any) -> None:
    """Add ``convkit db``."""
    db = subparsers.add_parser("db", help="manage the conversation database's schema")
    actions = db.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    up = actions.add_parser("upgrade", help="apply schema migrations (safe to repeat)")
    add_connection_options(up)
    up.set_defaults(handler=_upgrade)
    cur = actions.add_parser("current", help="show the schema revision (exit 1 if not up to date)")
    add_connection_options(cur)
    cur.set_defaults(handler=_current)
