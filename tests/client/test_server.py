"""FakeChatServer itself: scripting, recording, named errors, and the shipped pytest fixtures."""

from __future__ import annotations

import importlib.metadata
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import httpx
import pytest

from convkit.client import ChatClient
from convkit.testing import (
    FakeChatServer,
    Reply,
    UnconsumedRepliesError,
    UnexpectedRequestError,
    approx_prompt_tokens,
    echo_responder,
)

from .conftest import MESSAGES

ROOT = Path(__file__).resolve().parents[2]


def post(
    server: FakeChatServer, body: object, path: str = "/v1/chat/completions"
) -> httpx.Response:
    with httpx.Client() as http:
        return http.post(f"http://127.0.0.1:{server.port}{path}", json=body)


def test_base_url_is_loopback_and_ephemeral() -> None:
    with FakeChatServer() as a, FakeChatServer() as b:
        assert a.base_url.startswith("http://127.0.0.1:") and a.base_url.endswith("/v1")
        assert a.port != b.port
    with pytest.raises(RuntimeError, match="start"):
        _ = a.base_url
    a.stop()  # stopping twice is harmless


def test_requests_are_recorded_in_order(chat_server: FakeChatServer) -> None:
    chat_server.enqueue(Reply.text("one"), Reply.text("two"))
    assert chat_server.pending == 2
    with ChatClient(base_url=chat_server.base_url, api_key="sk-x") as client:
        client.complete(model="a", messages=MESSAGES)
        with client.stream(model="b", messages=MESSAGES, temperature=0) as s:
            s.read()
    first, second = chat_server.requests
    assert (first.body["model"], first.stream) == ("a", False)
    assert (second.body["model"], second.stream, second.body["temperature"]) == ("b", True, 0)
    assert second.messages == MESSAGES
    assert json.loads(second.raw) == second.body
    assert first.headers["authorization"] == "Bearer sk-x"
    chat_server.assert_all_consumed()


def test_unscripted_request_is_answered_500_and_recorded(chat_server: FakeChatServer) -> None:
    r = post(chat_server, {"model": "m", "messages": MESSAGES})
    assert r.status_code == 500
    assert r.json()["error"]["code"] == "unscripted_request"
    assert "enqueue" in r.json()["error"]["message"]
    assert len(chat_server.unexpected_requests) == 1
    with pytest.raises(UnexpectedRequestError, match="nothing scripted"):
        chat_server.assert_all_consumed()
    chat_server.reset()
    chat_server.assert_all_consumed()


def test_leftover_replies_are_a_named_error(chat_server: FakeChatServer) -> None:
    chat_server.enqueue(Reply.text("never asked"), Reply.error(500))
    with pytest.raises(UnconsumedRepliesError, match="2 scripted replies never requested"):
        chat_server.assert_all_consumed()
    chat_server.reset()


def test_default_responder_echoes(chat_server: FakeChatServer) -> None:
    with FakeChatServer(default_responder=echo_responder) as server:
        body = {"model": "m", "messages": [*MESSAGES, {"role": "user", "content": "echo me"}]}
        r = post(server, body)
        assert r.json()["choices"][0]["message"]["content"] == "echo me"
        server.enqueue(Reply.text("scripted first"))
        assert post(server, body).json()["choices"][0]["message"]["content"] == "scripted first"
        assert server.unexpected_requests == []


def test_bad_bodies_and_unknown_paths(chat_server: FakeChatServer) -> None:
    r = post(chat_server, {"model": "m"})
    assert r.status_code == 400 and r.json()["error"]["param"] == "messages"
    r = post(chat_server, {"model": "m", "messages": []}, path="/v1/embeddings")
    assert r.status_code == 404
    with httpx.Client() as http:
        models = http.get(chat_server.base_url + "/models").json()
    assert models["data"][0]["id"] == "fake-model"
    chat_server.reset()


def test_usage_rule_and_hook() -> None:
    body = {
        "messages": [{"role": "system", "content": "abcd"}, {"role": "user", "content": "abcde"}]
    }
    # 3 priming + (3 + 1) + (3 + 2)
    assert approx_prompt_tokens(body) == 12
    with FakeChatServer(prompt_tokens_fn=lambda b: 1000) as server:
        server.enqueue(Reply.text("12345678"))
        usage = post(server, {"model": "m", "messages": MESSAGES}).json()["usage"]
    assert usage == {"prompt_tokens": 1000, "completion_tokens": 2, "total_tokens": 1002}


def test_reply_options_are_checked() -> None:
    with pytest.raises(ValueError, match="chunk_size"):
        Reply.text("x", chunk_size=0)
    with pytest.raises(ValueError, match="line_ending"):
        Reply.text("x", line_ending="\n\r")
    with pytest.raises(ValueError, match="400"):
        Reply.error(200)
    with pytest.raises(TypeError):
        FakeChatServer().enqueue("text")  # type: ignore[arg-type]
    assert Reply.text("x").with_options(chunk_size=2).chunk_size == 2


def _plugin_args() -> list[str]:
    installed = any(
        ep.name == "convkit" for ep in importlib.metadata.entry_points(group="pytest11")
    )
    return [] if installed else ["-p", "convkit.testing.pytest_plugin"]


def test_shipped_fixtures_work_for_a_plugin_author(tmp_path: Path) -> None:
    (tmp_path / "test_downstream.py").write_text(
        textwrap.dedent(
            """
            import pytest
            from convkit.testing import Reply

            @pytest.fixture
            def anyio_backend():
                return "asyncio"

            def test_sync(chat_server, chat_client):
                chat_server.enqueue(Reply.text("hi"))
                assert chat_client.complete(model="m", messages=[{"role": "user", "content": "q"}]).text == "hi"

            @pytest.mark.anyio
            async def test_async(chat_server, async_chat_client):
                chat_server.enqueue(Reply.text("hey"))
                r = await async_chat_client.complete(model="m", messages=[{"role": "user", "content": "q"}])
                assert r.text == "hey"

            def test_forgot_to_script(chat_server, chat_client):
                chat_server.enqueue(Reply.error(400))
                with pytest.raises(Exception):
                    chat_client.complete(model="m", messages=[{"role": "user", "content": "q"}])
                with pytest.raises(Exception):
                    chat_client.complete(model="m", messages=[{"role": "user", "content": "q"}], max_tokens=5)
            """
        )
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            *_plugin_args(),
            "-W",
            "error",
            str(tmp_path),
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    out = proc.stdout + proc.stderr
    # all three bodies pass; the teardown of test_forgot_to_script reports its stray requests
    assert "3 passed, 1 error" in out, out
    assert "ERROR test_downstream.py::test_forgot_to_script" in out, out
    assert "UnexpectedRequestError" in out and "reached chat_server with nothing scripted" in out


def test_importing_the_testing_package_and_values_stays_light() -> None:
    code = (
        "import sys, convkit.testing, convkit.chat, convkit._sse, convkit._retry; "
        "heavy = [m for m in ('httpx', 'pytest', 'openai') if m in sys.modules]; "
        "assert not heavy, heavy"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=60)
