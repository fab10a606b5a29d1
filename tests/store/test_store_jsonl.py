"""Export / import of a thread as JSON lines: exact round trip; bad files import nothing."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest

from convkit import Message, ToolCall, Usage
from convkit.context import Summary
from convkit.store import EXPORT_FORMAT, NewMessage, Store, StoreValueError


def _export(store: Store, thread_id: str) -> list[dict[str, Any]]:
    out = io.StringIO()
    store.export_thread(thread_id, out)
    text = out.getvalue()
    assert text.endswith("\n")
    return [json.loads(line) for line in text.splitlines()]


def _fill(store: Store) -> str:
    thread = store.create_thread(title="trip", metadata={"user": "ann", "n": [1, 2]})
    store.append_many(
        thread.id,
        [
            Message.system("be brief"),
            NewMessage(message=Message.user("weather?"), metadata={"ip_country": "FR"}),
            Message.assistant(
                tool_calls=[ToolCall(id="c1", name="weather", arguments='{"q":"Paris"}')]
            ),
            Message.tool("22C", tool_call_id="c1"),
            NewMessage(
                message=Message.assistant("22C in Paris ☀"),
                usage=Usage(prompt_tokens=50, completion_tokens=7, total_tokens=57),
                status="incomplete",
                tokens=12,
            ),
        ],
    )
    store.put_summary(thread.id, Summary(covers_through_seq=4, text="asked for the weather", model="mini"))
    return thread.id


def test_format_of_an_export(store: Store) -> None:
    tid = _fill(store)
    records = _export(store, tid)
    header, *rest = records
    assert (
        header["type"] == "thread" and header["format"] == EXPORT_FORMAT and header["version"] == 1
    )
    assert header["id"] == tid and header["title"] == "trip" and header["message_count"] == 5
    assert [r["type"] for r in rest] == ["message"] * 5 + ["summary"]
    assert [r["seq"] for r in rest[:5]] == [1, 2, 3, 4, 5]
    assert rest[1]["metadata"] == {"ip_country": "FR"}
    assert rest[4]["status"] == "incomplete" and rest[4]["tokens"] == 12
    assert rest[4]["usage"]["total_tokens"] == 57
    assert rest[5] == {
        **rest[5],
        "covers_through_seq": 4,
        "text": "asked for the weather",
        "model": "mini",
    }


def test_import_round_trips_exactly(store: Store) -> None:
    tid = _fill(store)
    first = _export(store, tid)
    out = io.StringIO()
    store.export_thread(tid, out)
    imported = store.import_thread(io.StringIO(out.getvalue()))
    assert imported.id != tid
    second = _export(store, imported.id)
    strip = {"id", "parent_id", "fork_seq"}
    assert {k: v for k, v in first[0].items() if k not in strip} == {
        k: v for k, v in second[0].items() if k not in strip
    }
    assert first[1:] == second[1:]
    original = store.messages(tid)
    copy = store.messages(imported.id)
    assert [
        (m.seq, m.message, m.tokens, m.encoding, m.status, m.usage, m.created_at, m.metadata)
        for m in original
    ] == [
        (m.seq, m.message, m.tokens, m.encoding, m.status, m.usage, m.created_at, m.metadata)
        for m in copy
    ]
    # and it is a normal thread: appends continue after the imported history
    assert store.append(imported.id, Message.user("more")).seq == 6


def test_forked_thread_exports_flattened(store: Store) -> None:
    tid = _fill(store)
    fork = store.fork(tid, at_seq=2)
    store.append(fork.id, Message.user("other question"))
    records = _export(store, fork.id)
    assert records[0]["parent_id"] == tid and records[0]["fork_seq"] == 2
    assert [r["seq"] for r in records if r["type"] == "message"] == [1, 2, 3]
    imported = store.import_thread([json.dumps(r) for r in records])
    assert imported.parent_id is None
    assert [m.message.text for m in store.messages(imported.id)] == [
        "be brief",
        "weather?",
        "other question",
    ]


def _lines(store: Store) -> list[str]:
    out = io.StringIO()
    store.export_thread(_fill(store), out)
    return out.getvalue().splitlines()


def _edit(lines: list[str], index: int, **changes: Any) -> list[str]:
    record = json.loads(lines[index])
    record.update(changes)
    return [*lines[:index], json.dumps(record), *lines[index + 1 :]]


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda ls: [], "empty export"),
        (lambda ls: ls[1:], "first record must be the thread header"),
        (lambda ls: [*ls[:2], "{not json", *ls[2:]], "line 3: not JSON"),
        (lambda ls: _edit(ls, 0, version=99), "unsupported export version"),
        (lambda ls: [ls[0], ls[1], ls[3]], "expected 2, got 3"),
        (lambda ls: _edit(ls, 2, message={"role": "tool", "content": "x"}), "invalid message"),
        (lambda ls: _edit(ls, 2, metadata={"api_key": "x"}), "credential"),
        (lambda ls: _edit(ls, 2, created_at="yesterday"), "ISO 8601"),
        (lambda ls: _edit(ls, 2, created_at="2024-01-01T00:00:00"), "UTC offset"),
        (lambda ls: _edit(ls, 2, tokens=-3), "tokens"),
        (lambda ls: _edit(ls, 2, status="partial"), "status"),
        (lambda ls: _edit(ls, 6, covers_through_seq=9), "summary covers seq 9"),
        (lambda ls: [*ls, json.dumps({"type": "attachment"})], "unknown record type"),
        (lambda ls: _edit(ls, 0, title="sk-" + "a" * 30), "API key"),
        # column limits, refused the same way on every backend (PostgreSQL used to raise
        # a raw DataError, SQLite stored them)
        (lambda ls: _edit(ls, 2, encoding="e" * 65), r"line 3\.encoding: .*limit is 64"),
        (lambda ls: _edit(ls, 2, encoding=""), r"line 3\.encoding: must be a non-empty"),
        (lambda ls: _edit(ls, 2, tokens=2**31), r"line 3\.tokens: must be <= 2147483647"),
        (lambda ls: _edit(ls, 6, tokens=2**31), r"line 7\.tokens: must be <= 2147483647"),
        (lambda ls: _edit(ls, 6, model="m" * 201), r"line 7\.model: .*limit is 200"),
        (
            lambda ls: _edit(ls, 6, covers_through_seq=2**31),
            r"line 7\.covers_through_seq: must be <= 2147483647",
        ),
        (
            lambda ls: _edit(ls, 2, created_at="0001-01-01T00:00:00+01:00"),
            r"line 3\.created_at: .*out of range",
        ),
        (
            lambda ls: _edit(ls, 0, updated_at="9999-12-31T23:30:00-01:00"),
            r"line 1\.updated_at: .*out of range",
        ),
    ],
)
def test_bad_exports_import_nothing(store: Store, mutate: Any, reason: str) -> None:
    lines = _lines(store)
    before = len(store.list_threads())
    with pytest.raises(StoreValueError, match=reason):
        store.import_thread(mutate(lines))
    assert len(store.list_threads()) == before


def test_import_with_chosen_id_and_conflict(store: Store) -> None:
    lines = _lines(store)
    t = store.import_thread("\n".join(lines), thread_id="restored-1")
    assert t.id == "restored-1"
    with pytest.raises(StoreValueError, match="already exists"):
        store.import_thread(lines, thread_id="restored-1")
    assert len(store.messages("restored-1")) == 5


def test_values_at_the_column_limits_import_on_every_backend(store: Store) -> None:
    lines = _lines(store)
    lines = _edit(lines, 2, encoding="e" * 64, tokens=2**31 - 1)
    lines = _edit(lines, 6, model="m" * 200, tokens=2**31 - 1)
    imported = store.import_thread(lines)
    second = store.messages(imported.id)[1]
    assert (second.encoding, second.tokens) == ("e" * 64, 2**31 - 1)
    (summary,) = store.list_summaries(imported.id)
    assert (summary.model, summary.tokens) == ("m" * 200, 2**31 - 1)


@pytest.mark.parametrize("detail", [[], {}, ["low"]])
def test_unusable_image_detail_imports_nothing(store: Store, detail: Any) -> None:
    lines = _lines(store)
    image = {
        "type": "image_url",
        "image_url": {"url": "https://example.com/a.png", "detail": detail},
    }
    bad = _edit(lines, 2, message={"role": "user", "content": [image]})
    before = len(store.list_threads())
    with pytest.raises(StoreValueError) as info:
        store.import_thread(bad)
    assert info.value.field == "line 3.message"
    assert len(store.list_threads()) == before


@pytest.mark.parametrize(
    "error",
    [
        TypeError("unhashable type: 'list'"),
        ValueError("image dimensions must be positive"),
        OverflowError("cannot convert float infinity to integer"),
        RecursionError("maximum recursion depth exceeded"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_any_failure_of_the_message_parser_is_a_store_value_error(
    store: Store, monkeypatch: pytest.MonkeyPatch, error: Exception
) -> None:
    lines = _lines(store)
    before = len(store.list_threads())

    class Tripping:
        @staticmethod
        def from_openai(data: Any) -> Message:
            raise error

    monkeypatch.setattr("convkit.store._jsonl.Message", Tripping)
    with pytest.raises(StoreValueError) as info:
        store.import_thread(lines)
    assert info.value.field == "line 2.message"
    assert str(error) in str(info.value)
    assert len(store.list_threads()) == before


def test_a_line_nested_too_deeply_imports_nothing(store: Store) -> None:
    lines = _lines(store)
    before = len(store.list_threads())
    with pytest.raises(StoreValueError, match="nested too deeply") as info:
        store.import_thread([lines[0], "[" * 100_000 + "]" * 100_000])
    assert info.value.field == "line 2"
    assert len(store.list_threads()) == before
