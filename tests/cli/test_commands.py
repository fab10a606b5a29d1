"""Every ``convkit`` command, run as a subprocess against the loopback server and a temp database."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from convkit.messages import Message
from convkit.testing import FakeChatServer, Reply

from .conftest import SECRET_KEY, Runner


def _lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


# --------------------------------------------------------------------------- conventions


def test_help_lists_every_command(cli: Runner) -> None:
    done = cli("--help")
    assert done.returncode == 0
    for command in ("chat", "threads", "count", "models", "db", "demo", "plugins", "config"):
        assert command in done.stdout


def test_usage_errors_exit_2_with_one_line(cli: Runner) -> None:
    for args in (
        ("threads", "list", "--limit", "0"),
        ("chat", "--thread", "abc", "--continue"),
        ("chat", "--budget", "-3"),
        ("threads", "list", "--meta", "novalue"),
        ("threads", "rm", "abc"),  # no --yes and stdin is not a terminal
        ("demo", "--budget", "-5"),
        ("demo", "--db", "not a url"),
        ("db", "upgrade", "--db", "mysql://u:pw-secret@h/x"),
    ):
        done = cli(*args)
        assert done.returncode == 2, (args, done.stderr)
        assert len(_lines(done.stderr)) == 1, (args, done.stderr)
        assert done.stderr.startswith("convkit: error: ")
        assert "pw-secret" not in done.stderr
    assert cli("no-such-command").returncode == 2  # argparse's own usage error


def test_a_bad_demo_option_creates_nothing(cli: Runner, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'never.db'}"
    assert cli("demo", "--budget", "-5", "--db", url).returncode == 2
    assert not (tmp_path / "never.db").exists()


def test_failures_exit_1_with_one_line_and_debug_shows_the_traceback(
    cli: Runner, store: Any
) -> None:
    done = cli("threads", "show", "no-such-thread")
    assert done.returncode == 1
    assert _lines(done.stderr) == ["convkit: error: no thread with id 'no-such-thread'"]
    debug = cli("--debug", "threads", "show", "no-such-thread")
    assert debug.returncode == 1
    assert "Traceback" in debug.stderr and "ThreadNotFoundError" in debug.stderr


def test_database_errors_are_one_line_without_the_password(cli: Runner) -> None:
    done = cli("db", "current", "--db", "postgresql+psycopg://u:pw-secret@127.0.0.1:1/x")
    assert done.returncode == 1
    assert len(_lines(done.stderr)) == 1 and "database error" in done.stderr
    assert "pw-secret" not in done.stderr


def test_db_upgrade_and_current(cli: Runner, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    current = cli("db", "current", "--db", url)
    assert current.returncode == 1 and "no convkit tables" in current.stdout
    assert cli("db", "upgrade", "--db", url).returncode == 0
    again = cli("db", "current", "--url", url)  # --url: the old spelling still works
    assert again.returncode == 0 and "(up to date)" in again.stdout


# --------------------------------------------------------------------------- threads


def _thread(store: Any, n: int, *, title: str, meta: dict[str, Any]) -> str:
    t = store.create_thread(title=title, metadata=meta)
    for i in range(n):
        role = Message.user if i % 2 == 0 else Message.assistant
        store.append(t.id, role(f"message {i + 1} of {title}"))
    return str(t.id)


def test_threads_list_filters_and_pages(cli: Runner, store: Any) -> None:
    ids = [
        _thread(store, 2, title=f"t{i}", meta={"project": "a" if i < 3 else "b"}) for i in range(5)
    ]
    done = cli("threads", "list", "--meta", "project=a", "--limit", "2", "--json")
    assert done.returncode == 0
    page = json.loads(done.stdout)
    assert [t["title"] for t in page["threads"]] == ["t2", "t1"]
    assert set(page["threads"][0]) == {
        "id",
        "title",
        "messages",
        "created_at",
        "updated_at",
        "parent_id",
        "fork_seq",
        "metadata",
    }
    assert page["next_cursor"]
    rest = json.loads(
        cli(
            "threads", "list", "--meta", "project=a", "--cursor", page["next_cursor"], "--json"
        ).stdout
    )
    assert [t["title"] for t in rest["threads"]] == ["t0"] and rest["next_cursor"] is None
    text = cli("threads", "list", "--limit", "2")
    assert ids[4] in text.stdout and "more: --cursor" in text.stderr
    assert "no threads match" in cli("threads", "list", "--meta", "project=zzz").stdout


def test_threads_show_pages_with_token_counts(cli: Runner, store: Any) -> None:
    tid = _thread(store, 6, title="paged", meta={})
    page = json.loads(cli("threads", "show", tid, "--after", "2", "--limit", "2", "--json").stdout)
    assert [m["seq"] for m in page["messages"]] == [3, 4]
    assert all(m["tokens"] > 0 for m in page["messages"])
    assert page["messages"][0]["message"] == {"role": "user", "content": "message 3 of paged"}
    assert page["next_after"] == 4
    done = cli("threads", "show", tid, "--limit", "4")
    assert "message 4 of paged" in done.stdout and "message 5" not in done.stdout
    assert "4 messages shown" in done.stdout and "more: --after 4" in done.stderr
    last = cli("threads", "show", tid, "--last", "1")
    assert "message 6 of paged" in last.stdout and "message 5" not in last.stdout


def test_threads_rename_and_rm(cli: Runner, store: Any) -> None:
    tid = _thread(store, 1, title="old", meta={})
    assert (
        json.loads(cli("threads", "rename", tid, "new name", "--json").stdout)["title"]
        == "new name"
    )
    assert store.get_thread(tid).title == "new name"
    assert cli("threads", "rm", tid, "missing-id", "--yes").returncode == 1  # nothing deleted
    assert store.get_thread(tid).id == tid
    done = cli("threads", "rm", tid, "--yes")
    assert done.returncode == 0 and f"deleted {tid}" in done.stdout
    assert store.list_threads().threads == ()


def test_threads_export_and_import_one_or_all(cli: Runner, store: Any, tmp_path: Path) -> None:
    a = _thread(store, 3, title="alpha", meta={"k": 1})
    b = store.create_thread(title="beta").id
    # Line and paragraph separators inside a message must not split a JSON line.
    store.append(b, Message.user("odd\u2028line\u2029breaks\u0085here"))
    out = tmp_path / "all.jsonl"
    assert cli("threads", "export", "--all", "-o", str(out)).returncode == 0
    assert (
        out.read_text(encoding="utf-8").count('"type": "thread"')
        + out.read_text(encoding="utf-8").count('"type":"thread"')
        == 2
    )
    done = cli("threads", "import", str(out), "--json")
    assert done.returncode == 0, done.stderr
    imported = json.loads(done.stdout)["imported"]
    assert sorted((t["title"], t["messages"]) for t in imported) == [("alpha", 3), ("beta", 1)]
    new_b = next(t["id"] for t in imported if t["title"] == "beta")
    assert store.messages(new_b)[0].message.text == "odd\u2028line\u2029breaks\u0085here"
    one = cli("threads", "export", a)
    assert one.returncode == 0 and len(_lines(one.stdout)) == 4  # header + 3 messages
    kept = cli("threads", "import", "-", "--keep-ids", input=one.stdout)
    assert kept.returncode == 1 and "thread 1" in kept.stderr  # the id exists already
    assert len(store.list_threads().threads) == 4


def test_import_refuses_a_broken_file(cli: Runner, tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"type": "thread"}\nnot json\n', encoding="utf-8")
    done = cli("threads", "import", str(bad))
    assert done.returncode == 1 and "line 2" in done.stderr
    assert cli("threads", "import", str(tmp_path / "missing.jsonl")).returncode == 1


# --------------------------------------------------------------------------- count, models


def test_count_states_exact_or_estimated(cli: Runner, tmp_path: Path) -> None:
    from convkit import count_tokens

    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi!"}]
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
    (tmp_path / "m.json").write_text(json.dumps(messages), encoding="utf-8")
    (tmp_path / "t.json").write_text(json.dumps(tools), encoding="utf-8")
    done = cli(
        "count",
        str(tmp_path / "m.json"),
        "--model",
        "gpt-4o",
        "--tools",
        str(tmp_path / "t.json"),
        "--json",
    )
    result = json.loads(done.stdout)
    assert result["prompt_tokens"] == count_tokens(messages, model="gpt-4o", tools=tools)
    assert result["exact"] is True and result["reasons"] == [] and result["tools"] == 1
    text = cli("count", "-", "--model", "some-local-llama", input=json.dumps(messages))
    assert "prompt tokens for some-local-llama (estimated)" in text.stdout
    assert "estimated:" in text.stdout
    body = {"model": "gpt-4o", "messages": messages}
    assert "(exact)" in cli("count", "-", input=json.dumps(body)).stdout  # the body's model
    assert cli("count", "-", input="{not json").returncode == 1
    assert cli("count", "-", input='[{"role": 3}]').returncode == 1


def test_models_lists_the_registry(cli: Runner) -> None:
    rows = json.loads(cli("models", "--json").stdout)
    gpt4o = next(r for r in rows if r["name"] == "gpt-4o")
    assert gpt4o["context_window"] == 128_000 and gpt4o["exact"] is True
    assert gpt4o["encoding"] == "o200k_base"
    unknown = cli("models", "my-vendor-model")
    assert "not in the registry" in unknown.stdout and "estimated" in unknown.stdout


# --------------------------------------------------------------------------- config


def test_config_precedence_and_masking(cli: Runner, tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    assert cli("config", "path").stdout.strip() == str(config)
    config.write_text(
        f'model = "from-file"\napi_key = "{SECRET_KEY}-file"\nplugins = ["redact"]\n'
        '[chat]\nsystem = "Be brief."\n',
        encoding="utf-8",
    )
    shown = json.loads(
        cli(
            "config", "show", "--json", env={"OPENAI_API_KEY": None, "CONVKIT_PLUGINS": None}
        ).stdout
    )
    s = shown["settings"]
    assert s["model"] == {"value": "from-file", "source": "config file"}
    assert s["api_key"] == {"value": "********", "source": "config file"}
    assert s["plugins"]["value"] == ["redact"] and s["system"]["value"] == "Be brief."
    env = json.loads(cli("config", "show", "--json", env={"CONVKIT_MODEL": "from-env"}).stdout)
    assert env["settings"]["model"] == {"value": "from-env", "source": "env CONVKIT_MODEL"}
    assert env["settings"]["api_key"]["source"] == "env OPENAI_API_KEY"
    flag = cli("count", "-", "--model", "gpt-4o", input="[]", env={"CONVKIT_MODEL": "from-env"})
    assert "for gpt-4o" in flag.stdout
    text = cli(
        "config",
        "show",
        env={"CONVKIT_DATABASE_URL": "postgresql+psycopg://u:pw-secret@h/db?password=q-secret"},
    )
    assert "pw-secret" not in text.stdout and "q-secret" not in text.stdout
    assert "********" in text.stdout


def test_a_broken_config_file_is_one_line(cli: Runner, tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text("model = [unclosed\n", encoding="utf-8")
    done = cli("config", "show")
    assert done.returncode == 1 and len(_lines(done.stderr)) == 1
    assert "invalid TOML" in done.stderr
    assert cli("--help").returncode == 0  # help still works
    (tmp_path / "config.toml").write_text('colour = "blue"\n', encoding="utf-8")
    assert "unknown setting 'colour'" in cli("config", "show").stderr


def test_plugins_lists_none_when_none_load(cli: Runner) -> None:
    done = cli("plugins", "--json")
    assert done.returncode == 0
    # installed plugins (the first-party ones, when the test command installed them) are
    # listed as excluded: the runner's CONVKIT_PLUGINS="" loads none of them
    assert all(p["status"] == "excluded" and not p["hooks"] for p in json.loads(done.stdout))


# --------------------------------------------------------------------------- chat (piped)


def test_chat_reads_piped_lines_and_continues_the_latest_thread(
    cli: Runner, server: FakeChatServer, store: Any
) -> None:
    server.enqueue(Reply.text("Hello from the model", chunk_size=3))
    done = cli(
        "chat",
        "--system",
        "Be brief.",
        "--model",
        "gpt-4o",
        input="Hi there\n/window\n/tokens\n/summary\n/exit\n",
    )
    assert done.returncode == 0, done.stderr
    assert "Hello from the model" in done.stdout
    assert "prompt tokens" in done.stdout and "predicted" in done.stdout
    assert "messages, " in done.stdout and "tokens stored" in done.stdout
    assert "no summary yet" in done.stdout
    (thread,) = store.list_threads().threads
    assert [m.role for m in store.messages(thread.id)] == ["user", "assistant"]
    again = cli("chat", "--continue", input="second question\n")
    assert again.returncode == 0 and "second question" in again.stdout  # the echo
    assert f"thread {thread.id} (resumed, 2 messages)" in again.stdout
    sent = server.requests[-1].messages
    assert [m["role"] for m in sent] == ["system", "user", "assistant", "user"]
    assert sent[0]["content"] == "Be brief."  # the stored system prompt came back on resume
    assert server.requests[-1].body["model"] == "gpt-4o"  # and the thread's model
    assert "Authorization" not in done.stdout


def test_chat_slash_commands_fork_edit_regenerate_model_system(
    cli: Runner, server: FakeChatServer, store: Any
) -> None:
    tid = _thread(store, 2, title="base", meta={})
    script = "\n".join(
        [
            "/threads",
            "/fork",
            "/regenerate",
            "/edit 1 changed question",
            "/model gpt-4o",
            "/system You are terse.",
            "/system",
            "/switch " + tid[:10],
            "/nonsense",
            "/help",
        ]
    )
    done = cli("chat", "--thread", tid, input=script + "\n")
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert f"* {tid}" in out
    assert "on fork" in out and "answered again on fork" in out
    assert "changed question" in out  # the echo of the edited message
    assert "model gpt-4o (context 128,000, exact counts)" in out
    assert "system: You are terse." in out
    assert f"thread {tid} (resumed, 2 messages)" in out.split("/switch")[-1] or out.count(tid) >= 3
    assert "unknown command /nonsense" in out
    assert "/regenerate" in out.split("unknown command")[-1]
    assert store.get_thread(tid).last_seq == 2  # the original thread is untouched
    assert len(store.list_threads().threads) == 4  # base, /fork, /regenerate's and /edit's forks


def test_chat_reports_an_unreachable_endpoint_in_one_line(cli: Runner, store: Any) -> None:
    done = cli("chat", "--base-url", "http://127.0.0.1:1/v1", input="hello\n")
    assert done.returncode == 0
    assert "error:" in done.stdout and SECRET_KEY not in done.stdout


# --------------------------------------------------------------------------- demo


def test_demo_runs_as_a_command(cli: Runner) -> None:
    done = cli("demo", "--plain")
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "every prompt counted exactly: True" in out and "MISMATCH" not in out
    assert "[calls get_weather" in out and "summarized through seq" in out
    assert "summary through seq" in out and "prompt tokens: predicted" in out
    assert "\x1b[" not in out


def test_an_unwritable_path_and_a_newer_schema_are_one_line(cli: Runner, tmp_path: Path) -> None:
    import sqlite3

    blocked = tmp_path / "file"
    blocked.write_text("not a directory", encoding="utf-8")
    done = cli("db", "upgrade", "--db", f"sqlite:///{blocked}/sub/x.db")
    assert done.returncode == 1 and len(_lines(done.stderr)) == 1, done.stderr
    url_path = tmp_path / "newer.db"
    assert cli("db", "upgrade", "--db", f"sqlite:///{url_path}").returncode == 0
    with sqlite3.connect(url_path) as conn:
        conn.execute("UPDATE alembic_version SET version_num = '9999'")
    current = cli("db", "current", "--db", f"sqlite:///{url_path}")
    assert current.returncode == 1 and "upgrade convkit" in current.stdout
    listing = cli("threads", "list", "--db", f"sqlite:///{url_path}")
    assert listing.returncode == 1 and len(_lines(listing.stderr)) == 1
    assert "newer convkit" in listing.stderr


def test_the_command_module_is_light_to_import() -> None:
    import subprocess
    import sys

    code = (
        "import sys, convkit.cli\n"
        "heavy = [m for m in ('httpx', 'sqlalchemy', 'tiktoken', 'rich', 'prompt_toolkit')"
        " if m in sys.modules]\n"
        "print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
