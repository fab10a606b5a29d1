"""API-reported prompt-token figures for requests with tools, functions and tool-call history.

Every vector is a request (its messages, tools or legacy functions, tool or function choice) and
the ``prompt_tokens`` the API reported for it, with the model the figure was taken on. Sources:

* ``HMARR``: hmarr/openai-chat-tokens, ``tests/token-counts.test.ts`` at commit
  1b0942a08e4ae5e82d31a57a5d60139062966548 (2023, OpenAI ``gpt-3.5-turbo``, legacy ``functions``
  and ``function_call``). The file's cases are checked against the API by its own test.
* ``PAMELAFOX``: pamelafox/openai-messages-token-helper, ``tests/functions.py`` at commit
  c9cfddc8c367f93a540651110a5a85b9c6f138a9 (2024, Azure OpenAI ``gpt-35-turbo``, ``tools`` and
  ``tool_choice``; one system message each). ``tests/verify_functions.py`` (commit
  3a320eb4e84dbb46aafdaf44d0d1f3a14c940a43) asserts each ``count`` equals the API's
  ``usage.prompt_tokens``.
* ``HISTORY``: community measurements of tool-call history (assistant ``tool_calls`` and
  ``tool`` results), each with its thread.

The cookbook's tool example (105 / 101) lives in :mod:`tests.cookbook`.
"""

from __future__ import annotations

from typing import Any

import attrs


@attrs.frozen
class Vector:
    """One API-reported figure: the request and the ``prompt_tokens`` it was charged."""

    name: str
    model: str
    messages: list[dict[str, Any]]
    expected: int
    tools: list[dict[str, Any]] | None = None
    tool_choice: Any = None
    functions: list[dict[str, Any]] | None = None
    function_call: Any = None
    source: str = ""


# ---------------------------------------------------------------------------------------------
# hmarr/openai-chat-tokens, tests/token-counts.test.ts @ 1b0942a08e4ae5e82d31a57a5d60139062966548

_H = "hmarr/openai-chat-tokens tests/token-counts.test.ts@1b0942a08e4ae5e82d31a57a5d60139062966548"
_HELLO = [{"role": "user", "content": "hello"}]
_EMPTY = {"type": "object", "properties": {}}
_DO_STUFF = {"name": "do_stuff", "parameters": _EMPTY}
_DO_OTHER = {"name": "do_other_stuff", "parameters": _EMPTY}
_THREE_SYSTEM = [
    {"role": "system", "content": "Hello:"},
    {"role": "system", "content": "Hello"},
    {"role": "user", "content": "Hi there"},
]


def _h(name: str, messages: list[dict[str, Any]], expected: int, **kw: Any) -> Vector:
    return Vector(
        name=name, model="gpt-3.5-turbo", messages=messages, expected=expected, source=_H, **kw
    )


HMARR: list[Vector] = [
    # The cookbook's per-message figures, each message alone.
    _h(
        "cookbook system",
        [
            {
                "role": "system",
                "content": "You are a helpful, pattern-following "
                "assistant that translates corporate jargon into plain English.",
            }
        ],
        25,
    ),
    _h(
        "cookbook example_user",
        [
            {
                "role": "system",
                "name": "example_user",
                "content": "New synergies will help drive top-line growth.",
            }
        ],
        20,
    ),
    _h(
        "cookbook example_assistant",
        [
            {
                "role": "system",
                "name": "example_assistant",
                "content": "Things working well together will increase revenue.",
            }
        ],
        19,
    ),
    _h(
        "cookbook example_user 2",
        [
            {
                "role": "system",
                "name": "example_user",
                "content": "Let's circle back when we have more bandwidth to touch base on opportunities "
                "for increased leverage.",
            }
        ],
        28,
    ),
    _h(
        "cookbook example_assistant 2",
        [
            {
                "role": "system",
                "name": "example_assistant",
                "content": "Let's talk later when we're less busy about how to do better.",
            }
        ],
        26,
    ),
    _h(
        "cookbook user",
        [
            {
                "role": "user",
                "content": "This late pivot means we don't have time "
                "to boil the ocean for the client deliverable.",
            }
        ],
        26,
    ),
    # Plain messages.
    _h("hello", _HELLO, 8),
    _h("hello world", [{"role": "user", "content": "hello world"}], 9),
    _h("system hello", [{"role": "system", "content": "hello"}], 8),
    _h("system hello:", [{"role": "system", "content": "hello:"}], 9),
    _h(
        "three roles",
        [
            {"role": "system", "content": "# Important: you're the best robot"},
            {"role": "user", "content": "hello robot"},
            {"role": "assistant", "content": "hello world"},
        ],
        27,
    ),
    # Function definitions and function_call.
    _h("foo", _HELLO, 31, functions=[{"name": "foo", "parameters": _EMPTY}]),
    _h(
        "foo, call none",
        _HELLO,
        32,
        functions=[{"name": "foo", "parameters": _EMPTY}],
        function_call="none",
    ),
    _h(
        "foo, call auto",
        _HELLO,
        31,
        functions=[{"name": "foo", "parameters": _EMPTY}],
        function_call="auto",
    ),
    _h(
        "foo, call foo",
        _HELLO,
        36,
        functions=[{"name": "foo", "parameters": _EMPTY}],
        function_call={"name": "foo"},
    ),
    _h(
        "foo described",
        _HELLO,
        36,
        functions=[{"name": "foo", "description": "Do a foo", "parameters": _EMPTY}],
    ),
    _h(
        "bing_bong one string",
        _HELLO,
        49,
        functions=[
            {
                "name": "bing_bong",
                "description": "Do a bing bong",
                "parameters": {"type": "object", "properties": {"foo": {"type": "string"}}},
            }
        ],
    ),
    _h(
        "bing_bong string and number",
        _HELLO,
        57,
        functions=[
            {
                "name": "bing_bong",
                "description": "Do a bing bong",
                "parameters": {
                    "type": "object",
                    "properties": {
                        "foo": {"type": "string"},
                        "bar": {"type": "number", "description": "A number"},
                    },
                },
            }
        ],
    ),
    _h(
        "bing_bong nested object",
        _HELLO,
        68,
        functions=[
            {
                "name": "bing_bong",
                "description": "Do a bing bong",
                "parameters": {
                    "type": "object",
                    "properties": {
                        "foo": {
                            "type": "object",
                            "properties": {
                                "bar": {"type": "string", "enum": ["a", "b", "c"]},
                                "baz": {"type": "boolean"},
                            },
                        },
                    },
                },
            }
        ],
    ),
    # Function results and calls in the history.
    _h(
        "function result {}",
        [
            {"role": "user", "content": "hello world"},
            {"role": "function", "name": "do_stuff", "content": "{}"},
        ],
        15,
    ),
    _h(
        "function result object",
        [
            {"role": "user", "content": "hello world"},
            {"role": "function", "name": "do_stuff", "content": '{"foo": "bar", "baz": 1.5}'},
        ],
        28,
    ),
    _h(
        "function result nested",
        [
            {
                "role": "function",
                "name": "dance_the_tango",
                "content": '{"a": { "b" : { "c": false}}}',
            },
        ],
        24,
    ),
    _h(
        "function_call",
        [
            {
                "role": "assistant",
                "content": "",
                "function_call": {"name": "do_stuff", "arguments": '{"foo": "bar", "baz": 1.5}'},
            }
        ],
        26,
    ),
    _h(
        "function_call, odd spacing",
        [
            {
                "role": "assistant",
                "content": "",
                "function_call": {"name": "do_stuff", "arguments": '{"foo":"bar", "baz":\n\n 1.5}'},
            }
        ],
        25,
    ),
    # System messages next to functions.
    _h(
        "system + functions",
        [
            {"role": "system", "content": "Hello"},
            {"role": "user", "content": "Hi there"},
        ],
        35,
        functions=[_DO_STUFF],
    ),
    _h(
        "system with colon + functions",
        [
            {"role": "system", "content": "Hello:"},
            {"role": "user", "content": "Hi there"},
        ],
        35,
        functions=[_DO_STUFF],
    ),
    _h("two systems + functions", _THREE_SYSTEM, 40, functions=[_DO_STUFF]),
    _h("two systems + two functions", _THREE_SYSTEM, 49, functions=[_DO_STUFF, _DO_OTHER]),
    _h(
        "two systems + two functions, call do_stuff",
        _THREE_SYSTEM,
        55,
        functions=[_DO_STUFF, _DO_OTHER],
        function_call={"name": "do_stuff"},
    ),
    # Arrays of objects, nested descriptions.
    _h(
        "get_recipe",
        _HELLO,
        106,
        functions=[
            {
                "name": "get_recipe",
                "parameters": {
                    "type": "object",
                    "required": ["ingredients", "instructions", "time_to_cook"],
                    "properties": {
                        "ingredients": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "required": ["name", "unit", "amount"],
                                "properties": {
                                    "name": {"type": "string"},
                                    "unit": {
                                        "enum": ["grams", "ml", "cups", "pieces", "teaspoons"],
                                        "type": "string",
                                    },
                                    "amount": {"type": "number"},
                                },
                            },
                        },
                        "instructions": {
                            "type": "array",
                            "items": {"type": "string"},
                            "description": "Steps to prepare the recipe (no numbering)",
                        },
                        "time_to_cook": {
                            "type": "number",
                            "description": "Total time to prepare the recipe in minutes",
                        },
                    },
                },
            }
        ],
    ),
    _h(
        "nested description in an array",
        _HELLO,
        46,
        functions=[
            {
                "name": "function",
                "description": "description",
                "parameters": {
                    "type": "object",
                    "properties": {
                        "quality": {
                            "type": "object",
                            "properties": {
                                "pros": {
                                    "type": "array",
                                    "items": {"type": "string"},
                                    "description": "Write 3 points why this text is well written",
                                },
                            },
                        },
                    },
                },
            }
        ],
    ),
    _h(
        "nested descriptions everywhere",
        _HELLO,
        96,
        functions=[
            {
                "name": "function",
                "description": "desctiption1",
                "parameters": {
                    "type": "object",
                    "description": "desctiption2",
                    "properties": {
                        "mainField": {"type": "string", "description": "description3"},
                        "field number one": {
                            "type": "object",
                            "description": "description4",
                            "properties": {
                                "yesNoField": {
                                    "type": "string",
                                    "description": "description5",
                                    "enum": ["Yes", "No"],
                                },
                                "howIsInteresting": {
                                    "type": "string",
                                    "description": "description6",
                                },
                                "scoreInteresting": {
                                    "type": "number",
                                    "description": "description7",
                                },
                                "isInteresting": {
                                    "type": "string",
                                    "description": "description8",
                                    "enum": ["Yes", "No"],
                                },
                            },
                        },
                    },
                },
            }
        ],
    ),
]


# ---------------------------------------------------------------------------------------------
# pamelafox/openai-messages-token-helper, tests/functions.py @ c9cfddc8c367f93a540651110a5a85b9c6f138a9

_P = (
    "pamelafox/openai-messages-token-helper tests/functions.py"
    "@c9cfddc8c367f93a540651110a5a85b9c6f138a9"
)
_BOT = [{"role": "system", "content": "You are a bot."}]
_SEARCH_DESC = "Retrieve sources from the Azure AI Search index"
_SEARCH = {
    "type": "function",
    "function": {
        "name": "search_sources",
        "description": _SEARCH_DESC,
        "parameters": {
            "type": "object",
            "properties": {
                "search_query": {
                    "type": "string",
                    "description": "Query string to retrieve documents from azure search eg: "
                    "'Health care plan'",
                }
            },
            "required": ["search_query"],
        },
    },
}
_DEMO_DESC = "This is the main function description"
_INTEGER_ENUM = {
    "type": "function",
    "function": {
        "name": "data_demonstration",
        "description": _DEMO_DESC,
        "parameters": {
            "type": "object",
            "properties": {"integer_enum": {"type": "integer", "enum": [-1, 1]}},
        },
    },
}
_NO_PARAMETERS = {
    "type": "function",
    "function": {"name": "search_sources", "description": _SEARCH_DESC},
}


def _fn(name: str, description: str, parameters: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "function",
        "function": {"name": name, "description": description, "parameters": parameters},
    }


def _demo(properties: dict[str, Any]) -> dict[str, Any]:
    return _fn(
        "data_demonstration",
        _DEMO_DESC,
        {"type": "object", "properties": properties, "required": ["object_1"]},
    )


_OBJECT_1 = {"type": "object", "description": "The object data type as a property"}
_STRING_2A = {"type": "string", "enum": ["Happy", "Sad"]}
_STRING_2B = {"type": "string", "description": "Description in a second object is lost"}


def _p(name: str, expected: int, tool: dict[str, Any], tool_choice: Any) -> Vector:
    return Vector(
        name=name,
        model="gpt-35-turbo",
        messages=_BOT,
        expected=expected,
        tools=[tool],
        tool_choice=tool_choice,
        source=_P,
    )


PAMELAFOX: list[Vector] = [
    _p(
        "inner_object",
        65,
        _demo({"object_1": {**_OBJECT_1, "properties": {"string1": {"type": "string"}}}}),
        "none",
    ),
    _p(
        "inner_object_and_string",
        103,
        _demo(
            {
                "object_1": {
                    **_OBJECT_1,
                    "properties": {"string_2a": _STRING_2A, "string_2b": _STRING_2B},
                },
                "string_1": {"type": "string", "description": "Not required gets a question mark"},
            }
        ),
        "none",
    ),
    _p(
        "inner_object_with_enum_only",
        73,
        _demo({"object_1": {**_OBJECT_1, "properties": {"string_2a": _STRING_2A}}}),
        "none",
    ),
    _p(
        "inner_object_with_enum",
        89,
        _demo(
            {
                "object_1": {
                    **_OBJECT_1,
                    "properties": {"string_2a": _STRING_2A, "string_2b": _STRING_2B},
                }
            }
        ),
        "none",
    ),
    _p("search_sources_toolchoice_auto", 66, _SEARCH, "auto"),
    _p("search_sources_toolchoice_none", 67, _SEARCH, "none"),
    _p(
        "search_sources_toolchoice_name",
        75,
        _SEARCH,
        {"type": "function", "function": {"name": "search_sources"}},
    ),
    _p("integer_enum", 54, _INTEGER_ENUM, "none"),
    _p(
        "integer_enum_tool_choice_name",
        64,
        _INTEGER_ENUM,
        {"type": "function", "function": {"name": "data_demonstration"}},
    ),
    _p("no_parameters", 42, _NO_PARAMETERS, "auto"),
    _p(
        "no_parameters_tool_choice_name",
        51,
        _NO_PARAMETERS,
        {"type": "function", "function": {"name": "search_sources"}},
    ),
    _p(
        "no_parameter_description_or_required",
        49,
        _fn(
            "search_sources",
            _SEARCH_DESC,
            {"type": "object", "properties": {"search_query": {"type": "string"}}},
        ),
        "auto",
    ),
    _p(
        "no_parameter_description",
        49,
        _fn(
            "search_sources",
            _SEARCH_DESC,
            {
                "type": "object",
                "properties": {"search_query": {"type": "string"}},
                "required": ["search_query"],
            },
        ),
        "auto",
    ),
    _p(
        "string_enum",
        86,
        _fn(
            "summarize_order",
            "Summarize the customer order request",
            {
                "type": "object",
                "properties": {
                    "product_name": {
                        "type": "string",
                        "description": "Product name ordered by customer",
                    },
                    "quantity": {"type": "integer", "description": "Quantity ordered by customer"},
                    "unit": {
                        "type": "string",
                        "enum": ["meals", "days"],
                        "description": "unit of measurement of the customer order",
                    },
                },
                "required": ["product_name", "quantity", "unit"],
            },
        ),
        "none",
    ),
    _p(
        "boolean",
        89,
        _fn(
            "human_escalation",
            "Check if user wants to escalate to a human",
            {
                "type": "object",
                "properties": {
                    "requires_escalation": {
                        "type": "boolean",
                        "description": "If user is showing signs of frustration or anger in the "
                        "query. Also if the user says they want to talk to a real person and not a "
                        "chat bot.",
                    }
                },
                "required": ["requires_escalation"],
            },
        ),
        "none",
    ),
    _p(
        "array",
        59,
        _fn(
            "get_coordinates",
            "Get the latitude and longitude of multiple mailing addresses",
            {
                "type": "object",
                "properties": {
                    "addresses": {
                        "type": "array",
                        "description": "The mailing addresses to be located",
                        "items": {"type": "string"},
                    }
                },
                "required": ["addresses"],
            },
        ),
        "none",
    ),
    _p(
        "no_type",
        59,
        _fn(
            "get_no_type",
            "Get the no type value",
            {
                "type": "object",
                "properties": {
                    "no_type_value": {"description": "The no type value to be returned"},
                },
                "required": ["no_type_value"],
            },
        ),
        "none",
    ),
    _p(
        "null",
        55,
        _fn(
            "get_null",
            "Get the null value",
            {
                "type": "object",
                "properties": {
                    "null_value": {"type": "null", "description": "The null value to be returned"},
                },
                "required": ["null_value"],
            },
        ),
        "none",
    ),
]


# ---------------------------------------------------------------------------------------------
# Tool-call history: community measurements (no public algorithm is verified for these).

_FW = (
    "forestwanglin/openai-java issue #5 (2024-01-22, gpt-4): "
    "https://github.com/forestwanglin/openai-java/issues/5"
)
_CALC = (
    "community.openai.com 'Strange token cost calculation for tool_calls' (gpt-3.5-turbo): "
    "https://community.openai.com/t/strange-token-cost-calculation-for-tool-calls/538914"
)
_CALC_USER = {"role": "user", "content": [{"type": "text", "text": "How much is 2 plus 2?"}]}


def _calc_calls(n: int) -> list[dict[str, Any]]:
    # The thread repeats "the same tool call and tool message": n calls in one assistant message
    # (the parallel form), then n results. The jump from one call to two (+49, then +25 a call)
    # is the parallel wrapper's cost.
    call = {
        "id": "a",
        "type": "function",
        "function": {"name": "calculator", "arguments": '{"a":2, "b":2}'},
    }
    results = [{"role": "tool", "tool_call_id": "a", "content": "4"} for _ in range(n)]
    return [_CALC_USER, {"role": "assistant", "tool_calls": [call] * n}, *results]


HISTORY: list[Vector] = [
    Vector(
        name="weather call and result",
        model="gpt-4",
        messages=[
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_Id8ycVMsW8gdsf7kSXfgAcf1",
                        "type": "function",
                        "function": {
                            "name": "get_current_weather",
                            "arguments": '{\n  "location": "Boston, MA"\n}',
                        },
                    }
                ],
            },
            {
                "role": "tool",
                "tool_call_id": "call_Id8ycVMsW8gdsf7kSXfgAcf1",
                "name": "get_current_weather",
                "content": "29 degree celcius",
            },
        ],
        expected=35,
        source=_FW,
    ),
    Vector(
        name="calculator, one call",
        model="gpt-3.5-turbo",
        messages=_calc_calls(1),
        expected=40,
        source=_CALC,
    ),
    Vector(
        name="calculator, two parallel calls",
        model="gpt-3.5-turbo",
        messages=_calc_calls(2),
        expected=89,
        source=_CALC,
    ),
    Vector(
        name="calculator, three parallel calls",
        model="gpt-3.5-turbo",
        messages=_calc_calls(3),
        expected=114,
        source=_CALC,
    ),
]
