"""Time the usage report over a 1,000-call thread (among 20,000 calls of other threads).

    python plugins/convkit-usage/benchmarks/bench_report.py [URL]

URL defaults to a fresh SQLite file; give a PostgreSQL URL of a database at convkit's schema to
time it there. Prints the median of 20 runs of the report query (connection already open)
and of the whole ``convkit_usage.report()`` call (opening the store included).
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import convkit_usage
from convkit_usage._db import WRITE_OPTIONS, query_report
from convkit_usage._schema import ensure_on, usage_table
from sqlalchemy import delete, insert

from convkit.hookspecs import CallContext
from convkit.messages import Usage
from convkit.store import Store, upgrade


def rows(thread: str, n: int, start: datetime) -> list[dict[str, object]]:
    ctx = CallContext(thread_id=thread, model="gpt-5-mini", purpose="turn")
    out = []
    for i in range(n):
        u = Usage(prompt_tokens=1000 + i, completion_tokens=50, total_tokens=1050 + i)
        record = convkit_usage.record_for(
            ctx,
            model="gpt-5-mini",
            usage=u,
            response_model="gpt-5-mini",
            response_id=f"r{i}",
            status="complete",
            now=start + timedelta(minutes=i),
        )
        out.append(record.as_row())
    return out


def main() -> None:
    url = sys.argv[1] if len(sys.argv) > 1 else None
    if url is None:
        url = f"sqlite:///{Path(tempfile.mkdtemp()) / 'bench.sqlite3'}"
    upgrade(url)
    start = datetime(2026, 11, 1, tzinfo=timezone.utc)
    with Store(url) as store:
        with store.engine.execution_options(**WRITE_OPTIONS).begin() as conn:
            ensure_on(conn)
            conn.execute(delete(usage_table))
            conn.execute(insert(usage_table), rows("the-thread", 1000, start))
            for t in range(20):
                conn.execute(insert(usage_table), rows(f"other-{t}", 1000, start))
        query = []
        for _ in range(20):
            t0 = time.perf_counter()
            result = query_report(store.engine, thread="the-thread", since=None, model=None)
            query.append(time.perf_counter() - t0)
    whole = []
    for _ in range(20):
        t0 = time.perf_counter()
        convkit_usage.report(url, thread="the-thread")
        whole.append(time.perf_counter() - t0)
    calls = sum(r.calls for r in result)
    print(f"{url.split(':')[0]}: {calls} calls in {len(result)} report rows")
    print(f"  report query, median of 20: {statistics.median(query) * 1000:.2f} ms")
    print(f"  report() with store open, median of 20: {statistics.median(whole) * 1000:.2f} ms")


if __name__ == "__main__":
    main()
