"""Values read back exactly: awkward numbers in metadata, trusted rows, rows of older formats."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL

from convkit import Message
from convkit.messages import InvalidMessageError
from convkit.store import HEAD_REVISION, NewMessage, Store
from convkit.store._rows import trusted_message

AWKWARD = {
    "big": 1e16,
    "neg_zero": -0.0,
    "max": 1.7976931348623157e308,
    "tiny": 5e-324,
    "third": 0.1 + 0.2,
    "int_big": 2**63 + 1,
    "int_neg": -(2**53) - 1,
    "exp": 1.5e-7,
    "nested": {"list": [1e16, -0.0, 1.0, 2], "deep": {"x": 123456789.123456789}},
}


def _same(a: Any, b: Any) -> bool:
    """Equal with types and the sign of zero (``-0.0 == 0`` and ``1.0 == 1`` in Python)."""
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(map(_same, a, b))
    if isinstance(a, float):
        return isinstance(b, float) and a == b and math.copysign(1, a) == math.copysign(1, b)
    return type(a) is type(b) and a == b


def test_awkward_numbers_come_back_exactly(store: Store) -> None:
    thread = store.create_thread(metadata=AWKWARD)
    assert _same(dict(thread.metadata), AWKWARD)
    assert _same(dict(store.get_thread(thread.id).metadata), AWKWARD)
    (listed,) = store.list_threads().threads
    assert _same(dict(listed.metadata), AWKWARD)
    store.append(thread.id, Message.user("hi"), metadata=AWKWARD)
    (read,) = store.messages(thread.id)
    assert _same(dict(read.metadata), AWKWARD)
    fork = store.fork(thread.id)  # metadata copied from the parent
    assert _same(dict(store.get_thread(fork.id).metadata), AWKWARD)
    store.update_thread(thread.id, metadata={**AWKWARD, "big": -1e16})
    assert _same(store.get_thread(thread.id).metadata["big"], -1e16)


def test_awkward_numbers_stay_filterable(store: Store) -> None:
    match = store.create_thread(metadata={"n": 1e16, "z": -0.0, "m": 1.7976931348623157e308})
    store.create_thread(metadata={"n": 1e15, "z": 1.0, "m": 1.0})
    for key, value in (("n", 1e16), ("z", -0.0), ("m", 1.7976931348623157e308)):
        assert [t.id for t in store.list_threads(metadata={key: value})] == [match.id], key


_text = st.text(max_size=12)
_scalar = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**40), 2**40), st.floats(allow_nan=False), _text
)
_parts = st.lists(
    st.one_of(
        st.builds(lambda t: {"type": "text", "text": t}, _text),
        st.builds(
            lambda u, d: {"type": "image_url", "image_url": {"url": u, "detail": d}},
            _text,
            st.sampled_from(["low", "high", "auto"]),
        ),
    ),
    min_size=1,
    max_size=3,
)


@st.composite
def _payloads(draw: st.DrawFn) -> dict[str, Any]:
    role = draw(st.sampled_from(["user", "assistant", "system", "developer", "tool", "function"]))
    d: dict[str, Any] = {"role": role}
    if role == "user" and draw(st.booleans()):
        d["content"] = draw(_parts)
    elif role == "assistant" and draw(st.booleans()):
        d["content"] = None
        d["tool_calls"] = [
            {"id": f"c{i}", "type": "function", "function": {"name": "f", "arguments": a}}
            for i, a in enumerate(draw(st.lists(_text, min_size=1, max_size=3)))
        ]
    else:
        d["content"] = draw(_text)
    if role == "tool":
        d["tool_call_id"] = "c" + draw(_text)
    if role == "function":
        d["name"] = "fn"
    elif draw(st.booleans()):
        d["name"] = None if draw(st.booleans()) else draw(st.text(min_size=1, max_size=5))
    if role == "assistant" and draw(st.booleans()):
        d["refusal"] = None
    if draw(st.booleans()):
        d["x_vendor"] = draw(st.dictionaries(st.sampled_from(["a", "b"]), _scalar, max_size=2))
    return d


@settings(max_examples=300)
@given(_payloads())
def test_trusted_rows_equal_validated_ones(payload: dict[str, Any]) -> None:
    checked = Message.from_openai(payload)
    wire = json.loads(json.dumps(checked.to_openai()))  # what a row holds
    trusted = trusted_message(wire)
    assert trusted == checked
    assert trusted.explicit_nulls == checked.explicit_nulls
    assert trusted.to_openai() == checked.to_openai()
    assert type(trusted.content) is type(checked.content)
    assert type(trusted.tool_calls) is type(checked.tool_calls)


def _insert_old_row(url: URL, thread_id: str, payload: str) -> None:
    """A row as written before revision 0002: no format."""
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO convkit_messages (thread_id, seq, role, message, tokens, "
                    "encoding, status, created_at) VALUES (:tid, 2, 'user', :m, 3, 'o200k_base', "
                    "'complete', '2026-01-01 00:00:00.000000')"
                ),
                {"tid": thread_id, "m": payload},
            )
            conn.execute(
                text("UPDATE convkit_threads SET last_seq = 2 WHERE id = :tid"), {"tid": thread_id}
            )
    finally:
        engine.dispose()


def test_rows_of_an_older_format_are_validated(
    store: Store, store_url: URL, monkeypatch: pytest.MonkeyPatch
) -> None:
    thread = store.create_thread()
    store.append(thread.id, Message.user("new"))
    _insert_old_row(store_url, thread.id, json.dumps({"role": "user", "content": "old"}))
    calls: list[Any] = []
    original = Message.from_openai.__func__  # type: ignore[attr-defined]

    def spy(cls: type[Message], d: Any) -> Message:
        calls.append(d)
        return original(cls, d)  # type: ignore[no-any-return]

    monkeypatch.setattr(Message, "from_openai", classmethod(spy))
    assert [m.message.text for m in store.messages(thread.id)] == ["new", "old"]
    assert calls == [{"role": "user", "content": "old"}]  # only the old row was checked


def test_invalid_rows_of_an_older_format_are_refused(store: Store, store_url: URL) -> None:
    thread = store.create_thread()
    store.append(thread.id, Message.user("new"))
    bad = {"role": "user", "content": "x", "tool_calls": [{"id": "c", "function": {"name": "f"}}]}
    _insert_old_row(store_url, thread.id, json.dumps(bad))
    with pytest.raises(InvalidMessageError, match="tool_calls"):
        store.messages(thread.id)  # checked like any outside input, not handed out

    store.append_many(thread.id, [NewMessage(message=Message.user("later"))])
    assert [m.message.text for m in store.messages(thread.id, after_seq=2)] == ["later"]


def test_upgrade_from_0001_keeps_data_and_filters(empty_url: URL) -> None:
    from convkit.store._engine import WRITE, make_sync_engine, run_upgrade

    engine = make_sync_engine(empty_url)
    try:
        with engine.execution_options(**WRITE).begin() as conn:
            run_upgrade(conn, "0001")
            conn.execute(
                text(
                    "INSERT INTO convkit_threads (id, title, metadata, created_at, updated_at, "
                    "last_seq) VALUES ('t1', NULL, :m, '2026-01-01 00:00:00.000000', "
                    "'2026-01-01 00:00:00.000000', 1)"
                ),
                {"m": json.dumps({"team": "a", "n": 2})},
            )
            conn.execute(
                text(
                    "INSERT INTO convkit_messages (thread_id, seq, role, message, tokens, "
                    "encoding, status, created_at) VALUES ('t1', 1, 'user', :p, 3, 'o200k_base', "
                    "'complete', '2026-01-01 00:00:00.000000')"
                ),
                {"p": json.dumps({"role": "user", "content": "from 0001"})},
            )
            conn.execute(
                text(
                    "INSERT INTO convkit_summaries (thread_id, covers_through_seq, text, tokens, "
                    "model, created_at) VALUES ('t1', 1, 'an old summary', 9, NULL, "
                    "'2026-01-01 00:00:00.000000')"
                )
            )
        with engine.execution_options(**WRITE).begin() as conn:
            assert run_upgrade(conn) == ("0001", HEAD_REVISION)
    finally:
        engine.dispose()
    with Store(empty_url) as store:
        assert dict(store.get_thread("t1").metadata) == {"team": "a", "n": 2}
        assert [t.id for t in store.list_threads(metadata={"team": "a"})] == ["t1"]
        assert [m.message.text for m in store.messages("t1")] == ["from 0001"]
        old = store.get_summary("t1")
        # counted before summaries recorded their counting rules: a policy recounts it
        assert old is not None and old.text == "an old summary" and old.counted_with is None
