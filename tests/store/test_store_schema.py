"""Schema versions, migrations, the default database, and ``convkit db``."""

from __future__ import annotations

import importlib.resources
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL, make_url

from convkit import Message, SchemaVersionError
from convkit.cli import main
from convkit.store import HEAD_REVISION, AsyncStore, Store, default_url, schema_revision, upgrade
from convkit.store._rows import Base

PG_ONLY_INDEX = "ix_convkit_threads_metadata"


def test_migrations_create_exactly_the_models(store_url: URL) -> None:
    engine = create_engine(store_url)
    try:
        with engine.connect() as conn:
            ctx = MigrationContext.configure(conn, opts={"compare_type": True})
            diff = compare_metadata(ctx, Base.metadata)
            # The one thing the models cannot declare: PostgreSQL's GIN expression index for
            # list_threads filters (tested for use in test_store_threads).
            extra = [d for d in diff if d[0] == "remove_index" and d[1].name == PG_ONLY_INDEX]
            assert len(extra) == (1 if conn.dialect.name == "postgresql" else 0)
            assert [d for d in diff if d not in extra] == []
    finally:
        engine.dispose()


def test_migration_files_ship_in_the_package() -> None:
    root = importlib.resources.files("convkit.store") / "migrations"
    assert (root / "env.py").is_file()
    assert (root / "versions" / "0001_initial.py").is_file()


def test_unmigrated_database_is_refused_with_a_hint(empty_url: URL) -> None:
    with pytest.raises(
        SchemaVersionError, match=r"no convkit tables; run `convkit db upgrade --url "
    ):
        Store(empty_url)
    assert schema_revision(empty_url) is None
    with Store(empty_url, create_tables=True) as store:
        thread = store.create_thread()
        assert store.append(thread.id, Message.user("hi")).seq == 1
    assert schema_revision(empty_url) == HEAD_REVISION
    assert upgrade(empty_url) == (HEAD_REVISION, HEAD_REVISION)  # idempotent


def _stamp(url: URL, revision: str) -> None:
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(text("UPDATE alembic_version SET version_num = :r"), {"r": revision})
    finally:
        engine.dispose()


def test_older_and_newer_schemas_are_named(store_url: URL, monkeypatch: pytest.MonkeyPatch) -> None:
    import convkit.store._engine as engine_mod

    try:
        _stamp(store_url, "9999")
        with pytest.raises(SchemaVersionError, match=r"unknown to this convkit.*upgrade convkit"):
            Store(store_url)
        # an older revision this convkit knows about: told to run the upgrade command
        monkeypatch.setattr(engine_mod, "_known_revisions", lambda: [HEAD_REVISION, "0000"])
        _stamp(store_url, "0000")
        with pytest.raises(
            SchemaVersionError, match=rf"older than {HEAD_REVISION}.*convkit db upgrade --url"
        ):
            Store(store_url)
    finally:
        _stamp(store_url, HEAD_REVISION)  # the PostgreSQL database is shared by the session


@pytest.mark.anyio
async def test_async_store_checks_the_schema_too(empty_url: URL) -> None:
    store = AsyncStore(empty_url)
    with pytest.raises(SchemaVersionError, match="no convkit tables"):
        await store.get_summary("x")
    await store.aclose()
    with pytest.raises(SchemaVersionError):
        async with AsyncStore(empty_url):
            pass
    async with AsyncStore(empty_url, create_tables=True) as store:
        thread = await store.create_thread()
        assert (await store.append(thread.id, Message.user("hi"))).seq == 1


def test_default_store_is_a_self_upgrading_sqlite_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CONVKIT_DATABASE_URL", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    expected = tmp_path / "data" / "convkit" / "convkit.sqlite3"
    assert default_url() == make_url(f"sqlite:///{expected}")
    assert not expected.exists()
    with Store() as store:
        thread = store.create_thread()
        store.append(thread.id, Message.user("hi"))
        with store.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 1000
    assert expected.exists()
    with sqlite3.connect(expected) as raw:
        assert raw.execute("SELECT version_num FROM alembic_version").fetchone() == (HEAD_REVISION,)
    raw.close()


def test_env_url_is_used_and_not_auto_upgraded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path / 'env.db'}"
    monkeypatch.setenv("CONVKIT_DATABASE_URL", url)
    assert default_url() == make_url(url)
    with pytest.raises(SchemaVersionError):
        Store()
    assert main(["db", "upgrade"]) == 0
    with Store() as store:
        assert store.url == make_url(url)


def test_foreign_keys_are_enforced(store: Store) -> None:
    from sqlalchemy.exc import IntegrityError

    with pytest.raises(IntegrityError), store.engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO convkit_messages (thread_id, seq, role, message, tokens, encoding, "
                "status, created_at) VALUES ('ghost', 1, 'user', '{}', 1, 'e', 'complete', "
                "'2024-01-01 00:00:00')"
            )
        )


def test_cli_db_upgrade_and_current(empty_url: URL, capsys: pytest.CaptureFixture[str]) -> None:
    shown = empty_url.render_as_string(hide_password=True)
    assert main(["db", "current", "--url", empty_url.render_as_string(hide_password=False)]) == 1
    assert "no convkit tables" in capsys.readouterr().out
    assert main(["db", "upgrade", "--url", empty_url.render_as_string(hide_password=False)]) == 0
    out = capsys.readouterr().out
    assert f"{shown}: upgraded schema (empty) -> {HEAD_REVISION}" in out
    assert main(["db", "upgrade", "--url", empty_url.render_as_string(hide_password=False)]) == 0
    assert "already at schema" in capsys.readouterr().out
    assert main(["db", "current", "--url", empty_url.render_as_string(hide_password=False)]) == 0
    assert "(up to date)" in capsys.readouterr().out


def test_cli_reports_database_errors(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["db", "current", "--url", "postgresql+psycopg://u:pw-secret@127.0.0.1:1/x"]) == 1  # an error, not a usage error
    err = capsys.readouterr().err
    assert "database error" in err and "pw-secret" not in err
    with pytest.raises(SystemExit):
        main(["db"])


def test_cli_parser_is_extensible() -> None:
    from convkit import cli

    calls: list[Any] = []

    def register(subparsers: Any) -> None:
        p = subparsers.add_parser("hello")
        p.set_defaults(handler=lambda args: calls.append(args) or 7)

    cli.COMMANDS.append(register)
    try:
        assert main(["hello"]) == 7
    finally:
        cli.COMMANDS.remove(register)
    assert len(calls) == 1


def test_import_of_convkit_store_has_no_side_effects(tmp_path: Path) -> None:
    import subprocess
    import sys

    code = "import convkit.store, os; print(sorted(os.listdir(os.environ['XDG_DATA_HOME'])))"
    env = {"XDG_DATA_HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    assert out.stdout.strip() == "[]"
