"""Store faults: what opening a store, exporting and counting must survive (hardening issue).

Items of the hostile review pinned here: an export with line separators inside its JSON lines
(2), counts reused under other per-message overheads (4), raw exceptions out of opening a store
(13), a password in the URL's query string shown in messages and reprs (14).
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL, make_url

from convkit import SchemaVersionError, StoreError, TrimOldest, count_tokens
from convkit.context import counting_key
from convkit.store import HEAD_REVISION, AsyncStore, Store, schema_revision, upgrade
from convkit.store._engine import WRITE, display_url
from convkit.tokens import TokenCounter

SECRET = "hunter2-s3cret"


# --------------------------------------------------------------------------- item 2


SEPARATORS = "\u2028 \u2029 \u0085 \x0b \x0c \x1c \x1d \x1e \r"


def test_export_import_survives_every_line_separator(store: Store) -> None:
    thread = store.create_thread(title=f"title{SEPARATORS}", metadata={"k": SEPARATORS})
    store.append(thread.id, {"role": "user", "content": f"a{SEPARATORS}b"})
    store.append(thread.id, {"role": "assistant", "content": "ok"}, metadata={"note": SEPARATORS})
    out = io.StringIO()
    store.export_thread(thread.id, out)
    exported = out.getvalue()
    assert "\u2028" in exported  # written raw: the reader must not split there
    for source in (exported, io.StringIO(exported)):
        copy = store.import_thread(source)
        assert copy.title == thread.title
        assert dict(copy.metadata) == {"k": SEPARATORS}
        got = store.messages(copy.id)
        assert [m.message for m in got] == [m.message for m in store.messages(thread.id)]
        assert dict(got[1].metadata) == {"note": SEPARATORS}


def test_export_with_crlf_line_ends_imports(store: Store) -> None:
    thread = store.create_thread()
    store.append(thread.id, {"role": "user", "content": "x\u2028y"})
    out = io.StringIO()
    store.export_thread(thread.id, out)
    copy = store.import_thread(out.getvalue().replace("\n", "\r\n"))
    assert store.messages(copy.id)[0].message.content == "x\u2028y"


# --------------------------------------------------------------------------- item 4


def test_window_never_over_budget_when_models_share_an_encoding_but_not_overheads(
    store_url: URL,
) -> None:
    # gpt-4 and gpt-3.5-turbo-0301: both cl100k_base, 3 and 4 tokens of framing a message.
    store_counter, policy_model = TokenCounter("gpt-4"), "gpt-3.5-turbo-0301"
    policy_counter = TokenCounter(policy_model)
    assert store_counter.encoding_name == policy_counter.encoding_name
    assert counting_key(store_counter) != counting_key(policy_counter)
    policy = TrimOldest(policy_model, max_prompt_tokens=300)
    with Store(store_url, counter=store_counter) as store:
        thread = store.create_thread()
        for i in range(120):
            role = "user" if i % 2 == 0 else "assistant"
            stored = store.append(thread.id, {"role": role, "content": f"m{i}"})
            assert stored.counted_with == counting_key(store_counter)
        rows = store.window(thread.id, policy.read_plan())
        assert all(r.counted_with == counting_key(store_counter) for r in rows)
        window = policy.fit(rows)
        real = count_tokens(window.messages, model=policy_model)
        assert window.prompt_tokens == real
        assert real <= policy.budget()
        # read back (not only as appended): the rules come from the row
        assert store.messages(thread.id, last=1)[0].counted_with == counting_key(store_counter)


def test_rows_without_counting_rules_are_recounted_by_window(store_url: URL) -> None:
    counter = TokenCounter("gpt-4")
    with Store(store_url, counter=counter) as store:
        thread = store.create_thread()
        for i in range(6):
            store.append(thread.id, {"role": "user" if i % 2 == 0 else "assistant", "content": "x"})
        # what an older convkit wrote: a bare encoding name, no rules, and a wrong count
        engine = create_engine(store_url)
        try:
            with engine.begin() as conn:
                conn.execute(
                    text(
                        "UPDATE convkit_messages SET counted_with = NULL, tokens = 1 "
                        "WHERE thread_id = :t"
                    ),
                    {"t": thread.id},
                )
        finally:
            engine.dispose()
        rows = store.window(thread.id, 10_000)
        assert [r.tokens for r in rows] == [
            counter.count_message(r.message) for r in rows
        ]  # recounted, not the stale 1
        assert {r.counted_with for r in rows} == {counting_key(counter)}
        assert store.messages(thread.id)[0].counted_with is None  # the row itself is kept


def test_counting_rules_survive_export_and_import(store: Store) -> None:
    thread = store.create_thread()
    store.append(thread.id, {"role": "user", "content": "hi"})
    out = io.StringIO()
    store.export_thread(thread.id, out)
    copy = store.import_thread(out.getvalue())
    assert store.messages(copy.id)[0].counted_with == counting_key(store.counter)


# --------------------------------------------------------------------------- item 13


def _assert_clean(exc: BaseException, *secrets: str) -> None:
    seen: list[str] = []
    e: BaseException | None = exc
    while e is not None:
        seen.append(f"{type(e).__name__}: {e!s} {e!r}")
        e = e.__cause__ or e.__context__
    for secret in secrets:
        assert secret not in "\n".join(seen)


@pytest.mark.parametrize(
    ("url", "match"),
    [
        ("not a url", "not a database URL"),
        (f"postgresql+psycopg://u:{SECRET}@h:notaport/x", "not a database URL"),
        (f"nosuchdialect://u:{SECRET}@h/x", "unknown database dialect"),
        (f"mysql://u:{SECRET}@h/x", "driver .* is not installed"),
        (f"postgresql+pg8000://u:{SECRET}@h/x", "driver .* is not installed"),
    ],
)
@pytest.mark.parametrize("kind", ["sync", "async", "upgrade", "revision"])
async def test_unusable_urls_raise_store_error(url: str, match: str, kind: str) -> None:
    with pytest.raises(StoreError, match=match) as info:
        if kind == "sync":
            Store(url)
        elif kind == "async":
            AsyncStore(url)
        elif kind == "upgrade":
            upgrade(url)
        else:
            schema_revision(url)
    _assert_clean(info.value, SECRET)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


pytestmark = pytest.mark.anyio


def test_unwritable_sqlite_path_raises_store_error(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    for url in (f"sqlite:///{blocker}/sub/db.sqlite3", f"sqlite:///{blocker}/db.sqlite3"):
        with pytest.raises(StoreError, match=r"cannot open|unable to open"):
            Store(url, create_tables=True)
        with pytest.raises(StoreError):
            upgrade(url)


def _stamp(url: URL, *revisions: str) -> None:
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(text("DELETE FROM alembic_version"))
            for r in revisions:
                conn.execute(text("INSERT INTO alembic_version VALUES (:r)"), {"r": r})
    finally:
        engine.dispose()


async def test_newer_schema_is_a_schema_version_error_everywhere(empty_url: URL) -> None:
    upgrade(empty_url)
    _stamp(empty_url, "9999")
    for open_ in (
        lambda: Store(empty_url),
        lambda: Store(empty_url, create_tables=True),
        lambda: upgrade(empty_url),
    ):
        with pytest.raises(SchemaVersionError, match="unknown to this convkit"):
            open_()
    with pytest.raises(SchemaVersionError, match="unknown to this convkit"):
        async with AsyncStore(empty_url, create_tables=True):
            pass
    _stamp(empty_url, HEAD_REVISION)
    with Store(empty_url) as store:
        _stamp(empty_url, "9999")
        with pytest.raises(SchemaVersionError, match="unknown to this convkit"):
            store.upgrade()


def test_self_upgrading_default_file_with_newer_schema(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import platformdirs

    monkeypatch.delenv("CONVKIT_DATABASE_URL", raising=False)
    monkeypatch.setattr(platformdirs, "user_data_dir", lambda *a, **k: str(tmp_path / "data"))
    with Store() as store:
        url = store.url
    _stamp(url, "9999")
    with pytest.raises(SchemaVersionError, match=r"unknown to this convkit.*upgrade convkit"):
        Store()


async def test_two_rows_in_alembic_version(empty_url: URL) -> None:
    upgrade(empty_url)
    _stamp(empty_url, "0003", "0004")
    for open_ in (
        lambda: Store(empty_url),
        lambda: Store(empty_url, create_tables=True),
        lambda: upgrade(empty_url),
        lambda: schema_revision(empty_url),
    ):
        with pytest.raises(SchemaVersionError, match="2 schema revisions"):
            open_()
    with pytest.raises(SchemaVersionError, match="2 schema revisions"):
        async with AsyncStore(empty_url):
            pass


@pytest.fixture
def held_lock_store(tmp_path: Path) -> tuple[str, dict[str, Any]]:
    url = f"sqlite:///{tmp_path / 'pool.sqlite3'}"
    upgrade(url)
    return url, {"pool_size": 1, "max_overflow": 0, "pool_timeout": 0.05}


def test_pool_exhausted_under_a_held_write_lock(held_lock_store: tuple[str, Any]) -> None:
    url, options = held_lock_store
    with Store(url, engine_options=options) as store:
        thread = store.create_thread()
        # the pool's only connection, holding the write lock
        with store.engine.execution_options(**WRITE).begin():
            with pytest.raises(StoreError, match="TimeoutError"):
                store.append(thread.id, {"role": "user", "content": "hi"})
            with pytest.raises(StoreError, match="TimeoutError"):
                store.messages(thread.id)
        assert store.messages(thread.id) == []


async def test_async_pool_exhausted_under_a_held_write_lock(
    held_lock_store: tuple[str, Any],
) -> None:
    url, options = held_lock_store
    async with AsyncStore(url, engine_options=options) as store:
        thread = await store.create_thread()
        assert store.thread_engine is not None
        with (
            store.thread_engine.execution_options(**WRITE).begin(),
            pytest.raises(StoreError, match="TimeoutError"),
        ):
            await store.append(thread.id, {"role": "user", "content": "hi"})
        assert await store.messages(thread.id) == []


# --------------------------------------------------------------------------- item 14


@pytest.mark.parametrize(
    "raw",
    [
        f"postgresql+psycopg://u@h/db?password={SECRET}",
        f"postgresql+psycopg://u:{SECRET}@h/db?sslpassword={SECRET}&application_name=x",
        f"postgresql+psycopg://u@h/db?PassWord={SECRET}&password={SECRET}",
        f"sqlite:///x.db?api_key={SECRET}",
    ],
)
def test_display_url_masks_query_string_secrets(raw: str) -> None:
    shown = display_url(make_url(raw))
    assert SECRET not in shown
    assert "=***" in shown


def test_query_string_password_absent_from_repr_and_errors(postgres_url: URL) -> None:
    with_secret = postgres_url.update_query_dict({"password": SECRET})
    with Store(with_secret) as store:  # the test server trusts: the password is not checked
        assert SECRET not in repr(store)
        assert "password=***" in repr(store)
    refused = with_secret.set(port=1)  # nothing listens there
    with pytest.raises(StoreError) as info:
        Store(refused)
    assert "password=***" in str(info.value)
    _assert_clean(info.value, SECRET)
    with pytest.raises(SchemaVersionError) as schema_info:
        Store(with_secret.set(database="postgres"))  # the server's own: no convkit tables
    assert "password=***" in str(schema_info.value)
    assert SECRET not in str(schema_info.value)
