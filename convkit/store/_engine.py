"""Database URLs, engines with the right SQLite settings, and schema versions (migrations).

Sync and async engines get the same treatment:

- SQLite: WAL journal, ``synchronous=FULL`` (every commit is on disk before it returns;
  ``?synchronous=normal`` in the URL trades the last commits before a power cut or OS crash for
  speed), ``foreign_keys=ON``, a busy timeout, and transactions begun by convkit
  (``BEGIN`` for reads, ``BEGIN IMMEDIATE`` for writes) instead of by the sqlite3 module, so a
  writer takes the write lock up front and waits its turn instead of failing with
  "database is locked" halfway through.
- PostgreSQL through psycopg 3 (sync and async), or asyncpg for async if installed. psycopg
  connections are made with ``prepare_threshold=None`` (no server-side prepared statements), so
  the store works through PgBouncer in transaction pooling mode.

Migrations are Alembic scripts shipped in ``convkit/store/migrations``; Alembic is configured in
code (no ``alembic.ini``), so they run the same from a checkout or an installed wheel.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from convkit.errors import SchemaVersionError, StoreError, StoreValueError
from convkit.store._values import dump_json

__all__ = [
    "DEFAULT_FILENAME",
    "ENV_URL",
    "HEAD_REVISION",
    "SQLITE_SYNCHRONOUS",
    "SYNCHRONOUS_PARAM",
    "WRITE",
    "async_url",
    "check_schema",
    "current_revision",
    "default_sqlite_url",
    "display_url",
    "is_memory",
    "make_async_engine",
    "make_sync_engine",
    "opening_errors",
    "parse_url",
    "redact",
    "resolve_url",
    "secrets_of",
    "run_upgrade",
    "sqlite_synchronous",
    "sync_url",
]

#: Environment variable naming the database when no URL is given.
ENV_URL = "CONVKIT_DATABASE_URL"
#: File name of the default SQLite database in the user data directory.
DEFAULT_FILENAME = "convkit.sqlite3"
#: The newest migration; a database at any other revision is refused until upgraded.
HEAD_REVISION = "0005"
#: Execution options that mark a write transaction (SQLite begins it IMMEDIATE).
WRITE: Mapping[str, Any] = {"convkit_write": True}

#: The SQLite URL query parameter choosing the durability mode (``?synchronous=normal``).
SYNCHRONOUS_PARAM = "synchronous"
#: SQLite ``synchronous`` modes a URL may ask for; the first is the default.
SQLITE_SYNCHRONOUS = ("full", "normal")

#: Milliseconds a SQLite connection waits for another writer before giving up.
SQLITE_BUSY_TIMEOUT_MS = 60_000
# Any constant works; it only has to be the same in every convkit process.
_PG_MIGRATION_LOCK = 0x636F6E766B6974  # "convkit"


def default_sqlite_url() -> URL:
    """The SQLite file in the user data directory (``platformdirs.user_data_dir("convkit")``)."""
    import platformdirs

    path = Path(platformdirs.user_data_dir("convkit")) / DEFAULT_FILENAME
    return make_url(f"sqlite:///{path}")


def parse_url(url: str | URL, *, source: str = "the URL") -> URL:
    """Parse a database URL; raise :class:`StoreValueError` (never echoing it) if malformed.

    SQLAlchemy's own error quotes the whole string, password included.
    """
    if isinstance(url, URL):
        return url
    if not isinstance(url, str):
        raise StoreValueError(
            f"a database URL is a string or a sqlalchemy URL, got {type(url).__name__}",
            field="url",
        )
    try:
        return make_url(url)
    except (ArgumentError, ValueError):
        raise StoreValueError(
            f"{source} is not a database URL (expected dialect+driver://user:password@host/"
            "database, or sqlite:///path)",
            field="url",
        ) from None


def resolve_url(url: str | URL | None) -> tuple[URL, bool]:
    """Return the URL to open and whether it is the self-upgrading default SQLite file.

    ``None`` means ``$CONVKIT_DATABASE_URL`` if set (treated like an explicit URL), else the
    default SQLite file.
    """
    if url is None:
        env = os.environ.get(ENV_URL)
        if env:
            return parse_url(env, source=f"${ENV_URL}"), False
        return default_sqlite_url(), True
    return parse_url(url), False


_SYNC_DRIVERS = {
    "sqlite+aiosqlite": "sqlite",
    "postgresql": "postgresql+psycopg",
    "postgresql+asyncpg": "postgresql+psycopg",
    "postgresql+psycopg_async": "postgresql+psycopg",
}
_ASYNC_DRIVERS = {
    "sqlite": "sqlite+aiosqlite",
    "sqlite+pysqlite": "sqlite+aiosqlite",
    "postgresql": "postgresql+psycopg",
    "postgresql+psycopg2": "postgresql+psycopg",
}


def sync_url(url: URL) -> URL:
    """Map an async driver to its sync counterpart (``sqlite+aiosqlite`` -> ``sqlite``)."""
    name = _SYNC_DRIVERS.get(url.drivername)
    return url.set(drivername=name) if name else url


def async_url(url: URL) -> URL:
    """Map a sync driver to an async one (``sqlite`` -> ``sqlite+aiosqlite``).

    ``postgresql+psycopg`` serves both: psycopg 3 has an async API and SQLAlchemy picks it.
    """
    name = _ASYNC_DRIVERS.get(url.drivername)
    return url.set(drivername=name) if name else url


# Query parameters whose values are credentials (``?password=``, ``?sslpassword=``,
# ``?api_key=``...): any key containing one of these.
_SECRET_QUERY = ("password", "passwd", "pwd", "secret", "token", "key")


def _is_secret_key(key: str) -> bool:
    lowered = key.lower()
    return any(part in lowered for part in _SECRET_QUERY)


def secrets_of(url: URL) -> list[str]:
    """Every credential a URL carries: its password and secret-looking query values."""
    found = [] if url.password is None else [str(url.password)]
    for key, value in url.query.items():
        if _is_secret_key(key):
            found.extend([value] if isinstance(value, str) else list(value))
    return [s for s in found if s]


def display_url(url: URL) -> str:
    """The URL with its credentials masked, for messages and reprs.

    Both places a password can sit are masked: ``user:password@`` and the query string
    (``?password=...`` and other secret-looking keys, which libpq and psycopg accept).
    """
    secret = [k for k in url.query if _is_secret_key(k)]
    if not secret:
        return url.render_as_string(hide_password=True)
    shown = url.set(query={k: ("***" if k in secret else v) for k, v in url.query.items()})
    # The query is percent-encoded when rendered: show the mask as the password's is shown.
    return shown.render_as_string(hide_password=True).replace("=%2A%2A%2A", "=***")


def redact(text: str, url: URL) -> str:
    """``text`` with every credential of ``url`` replaced by ``***``."""
    for secret in secrets_of(url):
        text = text.replace(secret, "***")
    return text


@contextmanager
def opening_errors(url: URL) -> Iterator[None]:
    """Turn what goes wrong before a database is reached into :class:`StoreError`.

    An unknown dialect, a driver that is not installed, or a SQLite directory that cannot be
    created; the message names the URL with its credentials masked.
    """
    shown = display_url(url)
    try:
        yield
    except NoSuchModuleError:
        raise StoreError(
            f"unknown database dialect {url.drivername!r} in {shown}; convkit supports "
            "sqlite:// and postgresql+psycopg:// (async: sqlite+aiosqlite, postgresql+asyncpg)"
        ) from None
    except ImportError as exc:
        missing = exc.name or str(exc)
        raise StoreError(
            f"the database driver for {url.drivername!r} is not installed (no module "
            f"{missing!r}); install it to open {shown}"
        ) from None
    except ArgumentError as exc:
        raise StoreError(f"cannot open {shown}: {redact(str(exc), url)}") from None
    except OSError as exc:
        raise StoreError(
            f"cannot open {shown}: {type(exc).__name__}: {redact(exc.strerror or str(exc), url)}"
            f"{f' ({exc.filename})' if exc.filename else ''}"
        ) from None


def is_memory(url: URL) -> bool:
    """Tell whether a SQLite URL names an in-memory database."""
    return url.database in (None, "", ":memory:") or "mode=memory" in str(url.query)


def sqlite_synchronous(url: URL) -> tuple[URL, str]:
    """Split the ``synchronous`` query parameter off a SQLite URL: (URL for the driver, mode).

    ``full`` (the default) makes every commit durable: it survives a power cut. ``normal``
    (WAL mode) survives a crash of the process but may lose the last commits to an OS crash or
    a power cut; the database is never corrupted either way. See ``docs/storage.md``.
    """
    if url.get_backend_name() != "sqlite" or SYNCHRONOUS_PARAM not in url.query:
        return url, SQLITE_SYNCHRONOUS[0]
    value = url.query[SYNCHRONOUS_PARAM]
    mode = (value if isinstance(value, str) else value[-1]).lower()
    if mode not in SQLITE_SYNCHRONOUS:
        raise StoreValueError(
            f"synchronous={mode!r} in the URL; expected one of {', '.join(SQLITE_SYNCHRONOUS)}",
            field="url",
        )
    return url.difference_update_query([SYNCHRONOUS_PARAM]), mode


def _sqlite_events(engine: Engine, url: URL, synchronous: str) -> None:
    memory = is_memory(url)
    pragma = f"PRAGMA synchronous = {synchronous.upper()}"  # one of SQLITE_SYNCHRONOUS

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take BEGIN away from the sqlite3 module: it would start transactions lazily and
        # in DEFERRED mode, which turns lock waits into "database is locked" errors.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
            cursor.execute("PRAGMA foreign_keys = ON")
            if not memory:
                cursor.execute("PRAGMA journal_mode")
                if str(cursor.fetchone()[0]).lower() != "wal":
                    cursor.execute("PRAGMA journal_mode = WAL")
                # FULL: the WAL is synced at every commit, so a commit that returned survives
                # a power cut. NORMAL (opt-in): synced at checkpoints only; a crashed process
                # loses nothing, an OS crash or power cut may take back the last commits.
                cursor.execute(pragma)
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        mode = "IMMEDIATE" if conn.get_execution_options().get("convkit_write") else "DEFERRED"
        # Straight to the DBAPI cursor: BEGIN needs none of SQLAlchemy's statement handling,
        # and it is paid on every transaction.
        cursor = conn.connection.cursor()
        try:
            cursor.execute(f"BEGIN {mode}")
        finally:
            cursor.close()


def _engine_args(url: URL, options: Mapping[str, Any] | None) -> dict[str, Any]:
    # No pool_pre_ping by default: it costs a round trip per transaction. A connection the
    # server dropped fails one call and is then replaced; pass {"pool_pre_ping": True} to
    # trade that round trip for never seeing such a failure.
    args: dict[str, Any] = {"json_serializer": dump_json}
    if url.get_driver_name() in ("psycopg", "psycopg_async"):
        # No server-side prepared statements: through PgBouncer in transaction pooling mode
        # (before 1.21, or without max_prepared_statements) a statement prepared on one server
        # connection is missing on the next ("prepared statement ... does not exist"). The
        # store's statements are small; planning them each time costs little (measured in
        # benchmarks/README.md). connect_args in engine_options can set it back.
        args["connect_args"] = {"prepare_threshold": None}
    for key, value in (options or {}).items():
        if key == "connect_args" and "connect_args" in args:
            args[key] = {**args[key], **value}
        else:
            args[key] = value
    return args


def configures_pool(options: Mapping[str, Any] | None) -> bool:
    """Whether ``engine_options`` set up the connection pool (its class, size or limits)."""
    return any(k.startswith("pool") or k in ("max_overflow", "creator") for k in options or ())


def make_sync_engine(url: URL, options: Mapping[str, Any] | None = None) -> Engine:
    """Create the sync engine for ``url`` (SQLite settings installed)."""
    url, synchronous = sqlite_synchronous(sync_url(url))
    with opening_errors(url):
        engine = create_engine(url, **_engine_args(url, options))
    if url.get_backend_name() == "sqlite":
        _sqlite_events(engine, url, synchronous)
    return engine


def make_async_engine(url: URL, options: Mapping[str, Any] | None = None) -> AsyncEngine:
    """Create the async engine for ``url`` (async driver mapped, SQLite settings installed)."""
    url, synchronous = sqlite_synchronous(async_url(url))
    with opening_errors(url):
        engine = create_async_engine(url, **_engine_args(url, options))
    if url.get_backend_name() == "sqlite":
        _sqlite_events(engine.sync_engine, url, synchronous)
    return engine


def ensure_sqlite_dir(url: URL) -> None:
    """Create the directory of a SQLite file if it does not exist yet."""
    if url.get_backend_name() == "sqlite" and not is_memory(url) and url.database:
        with opening_errors(url):
            Path(url.database).expanduser().parent.mkdir(parents=True, exist_ok=True)


# --------------------------------------------------------------------------- schema versions


def current_revision(conn: Connection) -> str | None:
    """The Alembic revision the database is at, or None if it has no convkit schema.

    Raises :class:`SchemaVersionError` when ``alembic_version`` holds more than one row (two
    heads: not a state convkit's linear migrations produce).
    """
    from alembic.runtime.migration import MigrationContext

    heads = MigrationContext.configure(conn).get_current_heads()
    if len(heads) > 1:
        raise SchemaVersionError(
            f"the database at {display_url(conn.engine.url)} records {len(heads)} schema "
            f"revisions at once ({', '.join(sorted(heads))}) in alembic_version; convkit's "
            "schema has one line of revisions: keep the row of the revision the tables are at"
        )
    return heads[0] if heads else None


def _known_revisions() -> list[str]:
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(_alembic_config(None))
    return [rev.revision for rev in script.walk_revisions()]


def check_schema(conn: Connection, url: URL) -> None:
    """Raise :class:`SchemaVersionError` unless the database is at :data:`HEAD_REVISION`."""
    revision = current_revision(conn)
    if revision == HEAD_REVISION:
        return
    if revision is None:
        hint = f"run `convkit db upgrade --url {display_url(url)}`"
        raise SchemaVersionError(
            f"the database at {display_url(url)} has no convkit tables; {hint}, "
            "or open the store with create_tables=True"
        )
    if revision in _known_revisions():
        hint = f"run `convkit db upgrade --url {display_url(url)}`"
        raise SchemaVersionError(
            f"the database at {display_url(url)} has convkit schema {revision}, older than "
            f"{HEAD_REVISION} which this convkit needs; {hint}"
        )
    _refuse_unknown(revision, url)


def _refuse_unknown(revision: str, url: URL) -> NoReturn:
    raise SchemaVersionError(
        f"the database at {display_url(url)} has convkit schema {revision!r}, unknown to this "
        f"convkit (newest known: {HEAD_REVISION}); it was probably written by a newer convkit: "
        "upgrade convkit"
    )


def _alembic_config(conn: Connection | None) -> Any:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", "convkit.store:migrations")
    if conn is not None:
        config.attributes["connection"] = conn
    return config


def run_upgrade(conn: Connection, revision: str = "head") -> tuple[str | None, str | None]:
    """Upgrade the schema on ``conn`` (inside its transaction); return (before, after).

    Concurrent upgraders are serialized: on SQLite the caller's write transaction (BEGIN
    IMMEDIATE) holds the only write lock, on PostgreSQL a transaction-scoped advisory lock is
    taken first; the revision is read after the lock, so only one process migrates.
    """
    from alembic import command

    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_MIGRATION_LOCK})
    before = current_revision(conn)
    if before is not None and before not in _known_revisions():
        # Alembic would fail with "Can't locate revision": say what it means instead.
        _refuse_unknown(before, conn.engine.url)
    if before != HEAD_REVISION or revision != "head":
        command.upgrade(_alembic_config(conn), revision)
    return before, current_revision(conn)
