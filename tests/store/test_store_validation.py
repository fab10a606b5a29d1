"""Bad input gets a clear error and writes nothing; credentials never reach the database."""

from __future__ import annotations

import datetime
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import text

from convkit import InvalidMessageError, Message, SchemaVersionError
from convkit.context import Summary
from convkit.store import MAX_METADATA_BYTES, NewMessage, Store, StoreValueError


def _row_counts(store: Store) -> tuple[int, int, int]:
    with store.engine.connect() as conn:
        return tuple(  # type: ignore[return-value]
            conn.execute(text(f"SELECT count(*) FROM {t}")).scalar_one()
            for t in ("convkit_threads", "convkit_messages", "convkit_summaries")
        )


BAD_METADATA: list[tuple[Any, str]] = [
    ({"when": datetime.datetime(2024, 1, 1)}, "datetime is not a JSON value"),
    ({"tags": {"a", "b"}}, "set is not a JSON value"),
    ({"x": float("nan")}, "not a JSON number"),
    ({"x": float("inf")}, "not a JSON number"),
    ({1: "int key"}, "keys must be strings"),
    ({"deep": {"er": [1, {2: 3}]}}, "keys must be strings"),
    ({"big": "x" * (MAX_METADATA_BYTES + 1)}, f"the limit is {MAX_METADATA_BYTES}"),
    ({"s": "nul \x00 here"}, "NUL"),
    ({"s": "lone \ud800 surrogate"}, "surrogate"),
    ("not a mapping", "must be a JSON object"),
    ({"api_key": "anything"}, "credential"),
    ({"headers": {"Authorization": "x"}}, "credential"),
    ({"OpenAI-API-Key": "x"}, "credential"),
    ({"password": "x"}, "credential"),
    ({"note": "sk-proj-abcdefghijklmnopqrstuvwx"}, "API key"),
    ({"list": ["ok", "Bearer abcdef123456789"]}, "API key"),
    ({"header": "Authorization: Bearer abcdef123456789"}, "API key"),
    ({"url": "https://x.example/?key=sk-proj-abcdefghijklmnopqrstuvwx"}, "API key"),
    ({"Cookie": "session=abc"}, "credential"),
    ({"Ocp-Apim-Subscription-Key": "x"}, "credential"),
    ({"n": 10**5000}, "too many digits"),
]


@pytest.mark.parametrize(("metadata", "reason"), BAD_METADATA)
def test_bad_metadata_is_refused_and_nothing_written(
    store: Store, metadata: Any, reason: str
) -> None:
    thread = store.create_thread(title="t")
    store.append(thread.id, Message.user("hi"))
    before = _row_counts(store)
    calls: list[Callable[[], object]] = [
        lambda: store.create_thread(metadata=metadata),
        lambda: store.update_thread(thread.id, metadata=metadata, title="changed"),
        lambda: store.append(thread.id, Message.user("x"), metadata=metadata),
        lambda: store.fork(thread.id, metadata=metadata),
    ]
    for call in calls:
        with pytest.raises(StoreValueError, match=reason) as info:
            call()
        assert isinstance(info.value, ValueError)
    assert _row_counts(store) == before
    assert store.get_thread(thread.id).title == "t"


def test_error_names_the_field(store: Store) -> None:
    with pytest.raises(StoreValueError) as info:
        store.create_thread(metadata={"user": {"prefs": {"api_key": "x"}}})
    assert info.value.field == "metadata.user.prefs.api_key"
    assert "x" not in str(info.value).replace("metadata", "").replace("prefs", "")


def test_secret_values_are_never_echoed(store: Store) -> None:
    secret = "sk-proj-" + "A1b2C3d4" * 4
    with pytest.raises(StoreValueError) as info:
        store.create_thread(metadata={"note": secret})
    assert secret not in str(info.value)
    with pytest.raises(StoreValueError) as info:
        store.create_thread(title=secret)
    assert secret not in str(info.value)
    assert _row_counts(store) == (0, 0, 0)


def test_harmless_lookalikes_are_accepted(store: Store) -> None:
    meta = {
        "tokens": 12,
        "max_tokens": 100,
        "skip": "sk-short",
        "task": "ask-me",
        "keyboard": "qwerty",
        "ticket": "task-0123456789abcdefghij",  # "sk-" inside a word is not a key
        "desk": "the desk-0123456789abcdefghij",
        "cookies_eaten": 3,  # a name that only contains a credential word
        "note": "bearer of bad news",
        "session_id": "chat-42",  # an app's own session id is not a credential
    }
    assert dict(store.create_thread(metadata=meta).metadata) == meta


def test_invalid_messages(store: Store) -> None:
    thread = store.create_thread()
    bad: list[Any] = [
        {"role": "wizard", "content": "x"},
        {"role": "tool", "content": "no id"},
        {"content": "no role"},
        "just a string",
    ]
    for m in bad:
        with pytest.raises(InvalidMessageError):
            store.append(thread.id, m)
    # a non-JSON extra is refused when the Message is built, before any store sees it
    with pytest.raises(InvalidMessageError, match="date is not a JSON value"):
        Message(role="user", content="x", extra={"when": datetime.date(2024, 1, 1)})
    with pytest.raises(StoreValueError, match="status"):
        store.append(thread.id, Message.user("x"), status="done")  # type: ignore[arg-type]
    with pytest.raises(StoreValueError, match="tokens"):
        store.append(thread.id, Message.user("x"), tokens=-1)
    with pytest.raises(StoreValueError, match="usage"):
        store.append(thread.id, Message.user("x"), usage=42)
    assert store.get_thread(thread.id).last_seq == 0
    assert _row_counts(store) == (1, 0, 0)


def test_summary_validation(store: Store) -> None:
    thread = store.create_thread()
    store.append(thread.id, Message.user("x"))
    with pytest.raises(StoreValueError, match="cannot cover seq 2"):
        store.put_summary(thread.id, Summary(covers_through_seq=2, text="too far"))
    with pytest.raises(StoreValueError, match="covers_through_seq"):
        store.put_summary(thread.id, Summary(covers_through_seq=0, text="nothing"))
    with pytest.raises(StoreValueError, match="NUL"):
        store.put_summary(thread.id, Summary(covers_through_seq=1, text="a\x00b"))
    assert store.get_summary(thread.id) is None


def test_passwords_stay_out_of_messages_and_reprs(postgres_server: Any, postgres_url: Any) -> None:
    # PostgreSQL only: SQLite URLs carry no password. The test server trusts local
    # connections, so any password connects; it must never show.
    empty = postgres_server.create("convkit_pw")
    try:
        with pytest.raises(SchemaVersionError) as info:
            Store(empty.set(password="hunter2-secret"))
        assert "hunter2" not in str(info.value)
        assert "convkit db upgrade --url" in str(info.value)
    finally:
        postgres_server.drop(empty)
    with Store(postgres_url.set(password="hunter2-secret")) as store:
        assert "hunter2" not in repr(store)
        assert "***" in repr(store)


TOO_BIG = 2**31  # one more than a 32-bit integer column (PostgreSQL's integer) holds

COLUMN_LIMITS: list[tuple[str, Callable[[Store, str], object], str]] = [
    (
        "append tokens",
        lambda s, t: s.append(t, Message.user("x"), tokens=TOO_BIG),
        "message.tokens",
    ),
    (
        "append_many tokens",
        lambda s, t: s.append_many(
            t, [Message.user("ok"), NewMessage(message=Message.user("x"), tokens=TOO_BIG)]
        ),
        "messages[1].tokens",
    ),
    ("summary tokens", lambda s, t: s.put_summary(t, Summary(covers_through_seq=1, text="s", tokens=TOO_BIG)), "tokens"),
    ("summary model", lambda s, t: s.put_summary(t, Summary(covers_through_seq=1, text="s", model="m" * 201)), "model"),
    ("summary seq", lambda s, t: s.put_summary(t, Summary(covers_through_seq=TOO_BIG, text="s")), "covers_through_seq"),
    ("fork seq", lambda s, t: s.fork(t, TOO_BIG), "at_seq"),
    ("after_seq", lambda s, t: s.messages(t, after_seq=TOO_BIG), "after_seq"),
    ("last", lambda s, t: s.messages(t, last=TOO_BIG), "last"),
    ("limit", lambda s, t: s.messages(t, limit=TOO_BIG), "limit"),
    ("list limit", lambda s, t: s.list_threads(limit=TOO_BIG), "limit"),
]


@pytest.mark.parametrize(
    ("name", "call", "field"), COLUMN_LIMITS, ids=[c[0] for c in COLUMN_LIMITS]
)
def test_column_limits_are_checked_before_writing(
    store: Store, name: str, call: Callable[[Store, str], object], field: str
) -> None:
    thread = store.create_thread()
    store.append(thread.id, Message.user("hi"))
    before = _row_counts(store)
    with pytest.raises(StoreValueError) as info:
        call(store, thread.id)
    assert info.value.field == field
    assert _row_counts(store) == before
    assert store.get_thread(thread.id).last_seq == 1


def test_values_at_the_limits_are_stored_on_every_backend(store: Store) -> None:
    thread = store.create_thread()
    stored = store.append(thread.id, Message.user("hi"), tokens=2**31 - 1)
    assert store.messages(thread.id)[0].tokens == stored.tokens == 2**31 - 1
    summary = store.put_summary(thread.id, Summary(covers_through_seq=1, text="s", model="m" * 200, tokens=2**31 - 1))
    assert store.get_summary(thread.id) == summary


class _Counter:
    def __init__(self, count: int, encoding: str = "test_enc") -> None:
        self.count = count
        self.encoding_name = encoding

    def count_message(self, msg: Message) -> int:
        return self.count


def test_counts_and_encodings_from_a_custom_counter_are_checked(store_url: Any) -> None:
    with Store(store_url, counter=_Counter(TOO_BIG)) as store:
        thread = store.create_thread()
        with pytest.raises(StoreValueError) as info:
            store.append(thread.id, Message.user("x"))
        assert info.value.field == "message.tokens"
        assert store.get_thread(thread.id).last_seq == 0
        store.append(thread.id, Message.user("x"), tokens=1)  # a given count is not recounted
        with pytest.raises(StoreValueError) as info:
            store.put_summary(thread.id, Summary(covers_through_seq=1, text="s"))
        assert info.value.field == "tokens"
        assert store.list_summaries(thread.id) == []
    with Store(store_url, counter=_Counter(3, encoding="e" * 65)) as store:
        thread = store.create_thread()
        with pytest.raises(StoreValueError, match="limit is 64") as info:
            store.append(thread.id, Message.user("x"))
        assert info.value.field == "encoding"
        assert store.messages(thread.id) == []


def test_role_longer_than_its_column_is_refused(store: Store) -> None:
    # Message validation only admits the API's roles; the store checks the column anyway.
    thread = store.create_thread()
    message = Message.user("x")
    object.__setattr__(message, "role", "r" * 33)
    with pytest.raises(StoreValueError) as info:
        store.append(thread.id, message)
    assert info.value.field == "message.role"
    assert store.get_thread(thread.id).last_seq == 0
