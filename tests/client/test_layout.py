"""The client's layout: the sans-IO attempt loop on its own, old import paths, renamed errors."""

from __future__ import annotations

import builtins
import subprocess
import sys
from typing import Any

import httpx
import pytest

import convkit
import convkit.errors
from convkit._retry import Backoff
from convkit.client._attempt import (
    Effect,
    ReadBody,
    Retries,
    Send,
    Sent,
    Sleep,
    complete_attempts,
    drive,
    open_attempts,
)
from convkit.client._errors import ErrorMap
from convkit.client._redact import Redactor
from convkit.errors import APITimeoutError, ConnectError, StreamError, TransportError

URL = "http://test/v1/chat/completions"
BODY = {"id": "c1", "model": "m", "choices": [{"index": 0, "message": {"content": "hi"}}]}


def errors() -> ErrorMap:
    return ErrorMap(URL, Redactor("sk-secret-key-0123456789"))


def retries(n: int = 2) -> Retries:
    return Retries(max_retries=n, backoff=Backoff(random=lambda: 1.0), url=URL)


def answer(status: int, **kwargs: Any) -> httpx.Response:
    return httpx.Response(status, request=httpx.Request("POST", URL), **kwargs)


class Script:
    """Answers each Send with the next scripted outcome and records every effect."""

    def __init__(self, *outcomes: httpx.Response | Exception) -> None:
        self.outcomes = list(outcomes)
        self.effects: list[Effect] = []

    def __call__(self, effect: Effect) -> Any:
        self.effects.append(effect)
        if isinstance(effect, Send):
            outcome = self.outcomes.pop(0)
            if isinstance(outcome, Exception):
                raise outcome
            return Sent(outcome, 0.0)
        if isinstance(effect, ReadBody):
            return effect.response.read()
        return None


def test_the_attempt_loop_retries_without_any_io_of_its_own() -> None:
    script = Script(httpx.ConnectError("refused"), answer(503), answer(200, json=BODY))
    response = drive(complete_attempts(errors(), retries(), b"{}"), script)
    assert response.text == "hi"
    kinds = [type(e) for e in script.effects]
    assert kinds == [Send, Sleep, Send, ReadBody, Sleep, Send, ReadBody]
    assert [e.seconds for e in script.effects if isinstance(e, Sleep)] == [0.5, 1.0]


def test_the_attempt_loop_gives_up_with_the_mapped_error_and_its_cause() -> None:
    script = Script(httpx.ConnectError("refused sk-secret-key-0123456789"))
    with pytest.raises(ConnectError) as info:
        drive(complete_attempts(errors(), retries(0), b"{}"), script)
    assert isinstance(info.value.__cause__, httpx.ConnectError)
    assert "sk-secret" not in str(info.value)


def test_opening_a_stream_reads_and_closes_a_body_that_is_not_an_event_stream() -> None:
    script = Script(answer(200, json={"choices": []}))
    with pytest.raises(StreamError, match="expected an event stream"):
        drive(open_attempts(errors(), retries(), b"{}"), script)
    [_send, read] = script.effects
    assert isinstance(read, ReadBody)


def test_a_stream_failure_after_a_chunk_is_raised_not_retried() -> None:
    failed = StreamError("truncated")
    script = Script()
    with pytest.raises(StreamError, match="truncated"):
        drive(open_attempts(errors(), retries(), b"{}", (failed, False)), script)
    assert script.effects == []


def test_a_retryable_stream_failure_waits_then_reopens() -> None:
    events = answer(200, headers={"content-type": "text/event-stream"}, content=b"")
    script = Script(events)
    got = drive(open_attempts(errors(), retries(), b"{}", (StreamError("cut"), True)), script)
    assert got.response is events
    assert [type(e) for e in script.effects] == [Sleep, Send]


def test_old_import_paths_keep_working() -> None:
    from convkit.chat import StreamAccumulator, validate_params
    from convkit.client import (
        DEFAULT_BASE_URL,
        DONE_DRAIN_SECONDS,
        AsyncChatClient,
        AsyncChatStream,
        BaseChatClient,
        ChatClient,
        ChatStream,
        Timeouts,
    )
    from convkit.testing import FakeChatServer, Reply, echo_responder
    from convkit.testing.server import (
        RecordedRequest,
        UnconsumedRepliesError,
        UnexpectedRequestError,
        approx_prompt_tokens,
        main,
    )

    assert issubclass(ChatClient, BaseChatClient) and issubclass(AsyncChatClient, BaseChatClient)
    assert ChatStream.__name__ == "ChatStream" and AsyncChatStream.__name__ == "AsyncChatStream"
    assert DEFAULT_BASE_URL.startswith("https://") and 0 < DONE_DRAIN_SECONDS < 1
    assert Timeouts().connect == 5.0 and StreamAccumulator().chunks == 0
    assert validate_params({"temperature": 1}) == {"temperature": 1}
    assert FakeChatServer.__name__ and Reply.text("x").content == "x" and callable(echo_responder)
    assert RecordedRequest and UnconsumedRepliesError and UnexpectedRequestError
    assert approx_prompt_tokens({"messages": []}) == 3 and callable(main)


def test_api_timeout_error_does_not_shadow_the_builtin_but_is_one() -> None:
    assert issubclass(APITimeoutError, TransportError)
    assert issubclass(APITimeoutError, builtins.TimeoutError)
    assert "TimeoutError" not in convkit.errors.__all__ and "TimeoutError" not in convkit.__all__
    assert "APITimeoutError" in convkit.__all__


def test_the_old_timeout_error_name_is_a_deprecated_alias() -> None:
    with pytest.warns(DeprecationWarning, match="APITimeoutError"):
        from convkit.errors import TimeoutError as old
    assert old is APITimeoutError
    code = (
        "import warnings, convkit\n"
        "with warnings.catch_warnings(record=True) as seen:\n"
        "    warnings.simplefilter('always')\n"
        "    old = convkit.TimeoutError\n"
        "print(old is convkit.APITimeoutError, [w.category.__name__ for w in seen])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "True ['DeprecationWarning']"


def test_the_client_takes_the_version_from_its_own_module() -> None:
    from convkit import _version
    from convkit.client._config import request_headers

    headers = request_headers(stream=False, api_key=None, extra={})
    assert headers["User-Agent"] == f"convkit/{_version.__version__}"
    assert convkit.__version__ == _version.__version__
