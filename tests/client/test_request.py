"""Request values and parameter checks (everything here happens before sending)."""

from __future__ import annotations

import math
from typing import Any

import pytest

from convkit import InvalidMessageError, InvalidRequestError, Message
from convkit.chat import ChatRequest, validate_params

TOOLS = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]

GOOD: list[tuple[str, Any]] = [
    ("temperature", 0),
    ("temperature", 2),
    ("temperature", 0.7),
    ("top_p", 0),
    ("top_p", 1),
    ("top_p", 0.5),
    ("frequency_penalty", -2),
    ("frequency_penalty", 2),
    ("presence_penalty", 0.5),
    ("max_tokens", 1),
    ("max_tokens", 4096),
    ("max_completion_tokens", 10),
    ("n", 1),
    ("n", 3),
    ("seed", -5),
    ("seed", 0),
    ("top_logprobs", 0),
    ("top_logprobs", 20),
    ("stop", "END"),
    ("stop", ["a", "b", "c", "d"]),
    ("stop", []),
    ("tools", TOOLS),
    ("tools", []),
    ("functions", [{"name": "f"}]),
    ("tool_choice", "auto"),
    ("tool_choice", "required"),
    ("tool_choice", {"type": "function", "function": {"name": "f"}}),
    ("function_call", "none"),
    ("response_format", {"type": "json_object"}),
    ("response_format", {"type": "json_schema", "json_schema": {"name": "x", "schema": {}}}),
    ("stream", True),
    ("stream", False),
    ("stream_options", {"include_usage": True}),
    ("stream_options", {}),
    ("logprobs", True),
    ("parallel_tool_calls", False),
    ("store", True),
    ("logit_bias", {"50256": -100, 1234: 5.5}),
    ("metadata", {"team": "search"}),
    ("modalities", ["text", "audio"]),
    ("user", "user-1"),
    ("reasoning_effort", "low"),
    ("service_tier", "auto"),
    ("verbosity", "low"),
    ("safety_identifier", "h"),
    ("prompt_cache_key", "k"),
    ("audio", {"voice": "alloy", "format": "wav"}),
    ("prediction", {"type": "content"}),
    ("web_search_options", {}),
]

BAD: list[tuple[str, Any, str]] = [
    ("temperature", -0.1, "between 0 and 2"),
    ("temperature", 2.01, "between 0 and 2"),
    ("temperature", math.nan, "between 0 and 2"),
    ("temperature", "0.5", "expected a number"),
    ("temperature", True, "expected a number"),
    ("top_p", 1.5, "between 0 and 1"),
    ("frequency_penalty", -2.5, "between -2 and 2"),
    ("presence_penalty", 3, "between -2 and 2"),
    ("max_tokens", 0, "at least 1"),
    ("max_tokens", -3, "at least 1"),
    ("max_tokens", 1.5, "expected an integer"),
    ("max_tokens", True, "expected an integer"),
    ("max_completion_tokens", "100", "expected an integer"),
    ("n", 0, "at least 1"),
    ("seed", 1.0, "expected an integer"),
    ("top_logprobs", 21, "at most 20"),
    ("stop", ["a", "b", "c", "d", "e"], "at most 4"),
    ("stop", 5, "a string or a list"),
    ("stop", ["a", 1], "item 1"),
    ("tools", {"type": "function"}, "a list of objects"),
    ("tools", ["f"], "item 0 must be an object"),
    ("tools", [{"function": {}}], "'type'"),
    ("tool_choice", 1, "a string or an object"),
    ("response_format", "json", "expected an object"),
    ("response_format", {"schema": {}}, "'type'"),
    ("stream", "yes", "a boolean"),
    ("stream_options", {"include_usage": "yes"}, "include_usage"),
    ("stream_options", [], "expected an object"),
    ("logprobs", 1, "a boolean"),
    ("logit_bias", {"1": 200}, "-100..100"),
    ("logit_bias", [1], "expected an object"),
    ("metadata", {"a": 1}, "strings"),
    ("modalities", "text", "a list of strings"),
    ("user", 42, "a string"),
    ("reasoning_effort", 1, "a string"),
    ("audio", "alloy", "an object"),
]


@pytest.mark.parametrize(("name", "value"), GOOD)
def test_standard_parameters_accept_documented_values(name: str, value: Any) -> None:
    assert validate_params({name: value}) == {name: value}


@pytest.mark.parametrize(("name", "value", "fragment"), BAD)
def test_bad_parameters_are_rejected_with_their_name(name: str, value: Any, fragment: str) -> None:
    with pytest.raises(InvalidRequestError) as info:
        validate_params({name: value})
    assert info.value.param == name
    assert name in str(info.value) and fragment in str(info.value)


def test_none_is_accepted_for_any_standard_parameter() -> None:
    params = {"temperature": None, "tools": None, "stop": None}
    assert validate_params(params) == params


def test_vendor_fields_pass_through_untouched() -> None:
    vendor = {
        "top_k": 40,
        "repetition_penalty": 1.1,
        "chat_template_kwargs": {"x": [1]},
        "extra_body_thing": "v",
        "min_p": "weird",
    }
    out = validate_params(vendor)
    assert out == vendor
    assert out["chat_template_kwargs"] is vendor["chat_template_kwargs"]


def test_model_and_messages_are_not_parameters() -> None:
    for name in ("model", "messages"):
        with pytest.raises(InvalidRequestError) as info:
            validate_params({name: "x"})
        assert info.value.param == name
    with pytest.raises(InvalidRequestError):
        validate_params({1: "x"})  # type: ignore[dict-item]
    with pytest.raises(InvalidRequestError):
        validate_params([("temperature", 1)])  # type: ignore[arg-type]


def test_chat_request_body() -> None:
    req = ChatRequest(
        model="gpt-4o-mini",
        messages=[Message.system("be brief"), {"role": "user", "content": "hi", "x_vendor": 1}],
        params={"temperature": 0.2, "tools": TOOLS, "top_k": 3},
    )
    body = req.to_openai()
    assert body == {
        "model": "gpt-4o-mini",
        "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "hi", "x_vendor": 1},
        ],
        "temperature": 0.2,
        "tools": TOOLS,
        "top_k": 3,
    }
    body["tools"][0]["type"] = "changed"  # the body is a fresh copy: the request is unchanged
    assert req.params["tools"][0]["type"] == "function"
    assert not req.stream
    assert ChatRequest(model="m", messages=[], params={"stream": True}).stream


def test_chat_request_validates_everything() -> None:
    with pytest.raises(InvalidRequestError) as info:
        ChatRequest(model="m", messages=[], params={"temperature": 9})
    assert info.value.param == "temperature"
    with pytest.raises(InvalidRequestError):
        ChatRequest(model="", messages=[])
    with pytest.raises(InvalidMessageError) as minfo:
        ChatRequest(model="m", messages=[{"role": "user", "content": "ok"}, {"role": "robot"}])
    assert minfo.value.index == 1
    with pytest.raises(TypeError):
        ChatRequest(model="m", messages=[]).params["temperature"] = 1  # type: ignore[index]
