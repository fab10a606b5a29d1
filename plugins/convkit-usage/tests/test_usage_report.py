"""The report (one grouped query), its filters, and the ``convkit usage`` command run as a
subprocess: exit codes, stable JSON, CSV."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import convkit_usage
import pytest
from convkit_usage._cli import COLUMNS
from convkit_usage._db import WRITE_OPTIONS, report_statement
from convkit_usage._schema import ensure_on, usage_table
from sqlalchemy import create_engine, event, insert
from sqlalchemy.engine import URL

from convkit.hookspecs import CallContext
from convkit.messages import Usage
from convkit.store import Store

DAY1 = datetime(2026, 11, 30, 23, 59, tzinfo=timezone.utc)
DAY2 = DAY1 + timedelta(minutes=2)  # the next UTC day


def record(
    thread: str | None,
    model: str,
    when: datetime,
    prompt: int,
    completion: int,
    purpose: str = "turn",
) -> dict[str, Any]:
    ctx = CallContext(thread_id=thread, model=model, purpose=purpose)  # type: ignore[arg-type]
    u = Usage(prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion)
    return convkit_usage.record_for(
        ctx,
        model=model,
        usage=u,
        response_model=model,
        response_id="r",
        status="complete",
        now=when,
    ).as_row()


def fill(url: URL, rows: list[dict[str, Any]]) -> None:
    with Store(url) as store, store.engine.execution_options(**WRITE_OPTIONS).begin() as conn:
        ensure_on(conn)
        conn.execute(insert(usage_table), rows)


def sample(url: URL) -> None:
    fill(
        url,
        [
            record("t1", "gpt-5-mini", DAY1, 1000, 100),
            record("t1", "gpt-5-mini", DAY1, 2000, 200, purpose="summary"),
            record("t1", "gpt-5-mini", DAY2, 500, 50),
            record("t2", "gpt-5-nano", DAY2, 10_000, 1000),
            record("t2", "acme-70b", DAY2, 7, 3),
        ],
    )


def test_the_report_groups_by_day_thread_and_model(db_url: URL) -> None:
    sample(db_url)
    got = convkit_usage.report(db_url)
    assert [(r.day, r.thread_id, r.model, r.calls) for r in got] == [
        ("2026-11-30", "t1", "gpt-5-mini", 2),
        ("2026-12-01", "t1", "gpt-5-mini", 1),
        ("2026-12-01", "t2", "acme-70b", 1),
        ("2026-12-01", "t2", "gpt-5-nano", 1),
    ]
    first = got[0]
    assert (first.prompt_tokens, first.completion_tokens, first.total_tokens) == (3000, 300, 3300)
    assert first.cost_usd == Decimal("0.00135")  # 3000 * 0.25/1M + 300 * 2/1M
    assert got[2].cost_usd is None
    assert got[2].unpriced_calls == 1
    assert got[3].cost_usd == Decimal("0.0009")  # 10k * 0.05/1M + 1k * 0.40/1M


def test_the_filters(db_url: URL) -> None:
    sample(db_url)
    assert {r.thread_id for r in convkit_usage.report(db_url, thread="t2")} == {"t2"}
    assert {r.day for r in convkit_usage.report(db_url, since="2026-12-01")} == {"2026-12-01"}
    assert [r.calls for r in convkit_usage.report(db_url, model="gpt-5-mini")] == [2, 1]
    assert convkit_usage.report(db_url, thread="nope") == []


def test_nothing_recorded_yet_is_an_empty_report(db_url: URL) -> None:
    assert convkit_usage.report(db_url) == []


def test_the_report_is_one_grouped_query_over_the_indexed_columns(sqlite_url: URL) -> None:
    fill(
        sqlite_url,
        [record("t", "gpt-5-mini", DAY2 + timedelta(seconds=i), 10, 1) for i in range(1000)],
    )
    statements: list[str] = []
    engine = create_engine(sqlite_url)

    @event.listens_for(engine, "before_cursor_execute")
    def seen(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    try:
        from convkit_usage._db import query_report

        [row] = query_report(engine, thread="t", since=None, model=None)
        assert row.calls == 1000
        assert row.prompt_tokens == 10_000
        selects = [
            s for s in statements if "convkit_usage" in s and s.lstrip().startswith("SELECT")
        ]
        assert len(selects) == 1
        assert "GROUP BY" in selects[0]
        with engine.connect() as conn:
            plan = conn.exec_driver_sql(
                "EXPLAIN QUERY PLAN "
                + str(
                    report_statement(thread="t").compile(
                        engine, compile_kwargs={"literal_binds": True}
                    )
                )
            ).all()
        assert any("ix_convkit_usage_thread_day" in str(step) for step in plan), plan
    finally:
        engine.dispose()


# ---- the command


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "CONVKIT_PLUGINS": "usage", **(env or {})}
    environment.pop("CONVKIT_DATABASE_URL", None)
    return subprocess.run(
        [sys.executable, "-m", "convkit.cli", *args],
        capture_output=True,
        text=True,
        env=environment,
        timeout=120,
        check=False,
    )


def test_the_command_prints_json_csv_and_text(sqlite_url: URL) -> None:
    sample(sqlite_url)
    url = sqlite_url.render_as_string(hide_password=False)
    done = run("usage", "--url", url, "--json")
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert list(data) == ["rows", "totals"]
    assert list(data["rows"][0]) == list(COLUMNS)
    assert data["rows"][0] == {
        "day": "2026-11-30",
        "thread_id": "t1",
        "model": "gpt-5-mini",
        "calls": 2,
        "prompt_tokens": 3000,
        "cached_tokens": 0,
        "completion_tokens": 300,
        "total_tokens": 3300,
        "cost_usd": 0.00135,
        "unpriced_calls": 0,
    }
    assert data["totals"]["calls"] == 5
    assert data["totals"]["unpriced_calls"] == 1
    assert run("usage", "--url", url, "--json").stdout == done.stdout  # stable

    done = run("usage", "--url", url, "--csv", "--thread", "t2")
    assert done.returncode == 0, done.stderr
    table = list(csv.DictReader(io.StringIO(done.stdout)))
    assert [(r["model"], r["cost_usd"]) for r in table] == [
        ("acme-70b", ""),
        ("gpt-5-nano", "0.000900000"),
    ]

    done = run("usage", "--url", url, "--since", "2026-12-01", "--model", "gpt-5-nano")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].split()[:3] == ["day", "thread", "model"]
    assert "gpt-5-nano" in lines[1]
    assert "0.000900" in lines[1]
    assert lines[-1].startswith("total")


def test_the_command_migrates_and_fails_cleanly(sqlite_url: URL) -> None:
    url = sqlite_url.render_as_string(hide_password=False)
    done = run("usage", "migrate", "--url", url)
    assert done.returncode == 0, done.stderr
    assert "(none) -> u0001" in done.stdout
    assert "already at u0001" in run("usage", "migrate", "--url", url).stdout
    assert run("usage", "--url", url).stdout == "no usage recorded\n"

    bad = run("usage", "--url", "postgresql+psycopg://nobody@127.0.0.1:1/none", "--json")
    assert bad.returncode == 1
    assert "database error" in bad.stderr
    assert not bad.stdout
    wrong_day = run("usage", "--url", url, "--since", "yesterday")
    assert wrong_day.returncode == 2
    assert "YYYY-MM-DD" in wrong_day.stderr


def test_the_command_is_registered_through_the_entry_point() -> None:
    done = run("plugins", "--json")
    assert done.returncode == 0, done.stderr
    [info] = [p for p in json.loads(done.stdout) if p["name"] == "usage"]
    assert info["distribution"] == "convkit-usage"
    assert "register_commands" in info["hooks"]
    assert "process_response" in info["hooks"]


@pytest.mark.parametrize("shape", ["--json", "--csv"])
def test_json_and_csv_exclude_each_other(shape: str) -> None:
    done = run("usage", "--json", "--csv")
    assert done.returncode == 2
