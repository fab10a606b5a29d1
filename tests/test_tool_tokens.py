"""Tool definitions, tool_choice and tool-call history against the published API figures."""

from __future__ import annotations

import json
from typing import Any

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import convkit.models
from convkit import Message, ToolCall
from convkit.models import TOOL_PROFILES, ToolProfile
from convkit.tokens import (
    TokenCount,
    TokenCounter,
    _counter_for,
    _tools,
    count_tokens,
    counter_for,
    measure_tokens,
)
from tests import cookbook
from tests.tool_vectors import HISTORY, HMARR, PAMELAFOX, Vector


def measure(v: Vector, profile: str | None = None) -> TokenCount:
    counter = TokenCounter(v.model, tool_profile=profile)
    return counter.measure(
        v.messages,
        tools=v.tools,
        tool_choice=v.tool_choice,
        functions=v.functions,
        function_call=v.function_call,
    )


# ---- the published vectors


@pytest.mark.parametrize("v", HMARR, ids=lambda v: v.name)
def test_hmarr_2023_figures_exact_under_the_2023_profile(v: Vector) -> None:
    got = measure(v, "2023")
    assert got.tokens == v.expected
    assert got.exact, got.reasons


def test_the_0613_snapshots_use_the_2023_profile() -> None:
    assert TokenCounter("gpt-3.5-turbo-0613").tool_profile.name == "2023"
    assert TokenCounter("gpt-3.5-turbo").tool_profile.name == "2024"
    v = next(v for v in HMARR if v.name == "nested descriptions everywhere")
    assert count_tokens(v.messages, model="gpt-3.5-turbo-0613", functions=v.functions) == 96
    # The current rules bill nested descriptions: more than the 2023 figure.
    assert count_tokens(v.messages, model="gpt-3.5-turbo", functions=v.functions) > 96


@pytest.mark.parametrize("v", PAMELAFOX, ids=lambda v: v.name)
def test_pamelafox_2024_figures_never_under_and_at_most_one_over(v: Vector) -> None:
    got = measure(v)
    assert v.expected <= got.tokens <= v.expected + 1


def test_pamelafox_2024_figures_mostly_exact() -> None:
    results = [(measure(v), v) for v in PAMELAFOX]
    exact = [v.name for got, v in results if got.tokens == v.expected]
    assert len(exact) >= 13, exact
    # A figure that is off is never flagged exact.
    assert all(not got.exact for got, v in results if got.tokens != v.expected)
    # Flat schemas (no nested objects) are verified: flagged exact.
    flat = [got for got, v in results if not v.name.startswith("inner_object")]
    assert all(got.exact for got in flat), [got.reasons for got in flat]


@pytest.mark.parametrize(("model", "expected"), sorted(cookbook.API_TOOL_FIGURES.items()))
def test_cookbook_tool_figures_are_exact(model: str, expected: int) -> None:
    got = measure_tokens(cookbook.TOOL_MESSAGES, model=model, tools=cookbook.TOOLS)
    assert got == TokenCount(expected)


@pytest.mark.parametrize("v", HISTORY, ids=lambda v: v.name)
def test_tool_call_history_never_under_and_flagged(v: Vector) -> None:
    got = measure(v)
    assert got.tokens >= v.expected
    assert not got.exact
    assert any("tool-call history" in r for r in got.reasons)


def test_a_single_call_and_result_matches_the_community_figure() -> None:
    v = next(v for v in HISTORY if v.name == "calculator, one call")
    assert measure(v).tokens == v.expected


# ---- tool_choice and the legacy parameters

SEARCH = PAMELAFOX[4].tools  # search_sources, one described string parameter


def test_tool_choice_offsets() -> None:
    counter = TokenCounter("gpt-4o")
    auto = counter.count_tools(SEARCH, "auto")
    assert counter.count_tools(SEARCH) == auto
    assert counter.count_tools(SEARCH, "none") == auto + 1
    named = {"type": "function", "function": {"name": "search_sources"}}
    assert counter.count_tools(SEARCH, named) == auto + 7 + counter.count_text("search_sources")
    required = counter.measure_tools(SEARCH, "required")
    assert required.tokens >= counter.count_tools(SEARCH, named)
    assert not required.exact


def test_named_function_call_costs_four_under_2023_and_seven_under_2024() -> None:
    fns = [{"name": "foo", "parameters": {"type": "object", "properties": {}}}]
    old = TokenCounter("gpt-3.5-turbo", tool_profile="2023")
    new = TokenCounter("gpt-3.5-turbo")
    assert old.count_tools(None, functions=fns, function_call={"name": "foo"}) == (
        old.count_tools(None, functions=fns) + 4 + 1
    )
    got = new.measure_tools(None, functions=fns, function_call={"name": "foo"})
    assert got.tokens == new.count_tools(None, functions=fns) + 7 + 1
    assert not got.exact  # no 2024 figure for function_call


def test_legacy_functions_count_like_tools() -> None:
    counter = TokenCounter("gpt-4o")
    fn = cookbook.TOOLS[0]["function"]
    as_tools = counter.count(cookbook.TOOL_MESSAGES, tools=cookbook.TOOLS)
    assert counter.count(cookbook.TOOL_MESSAGES, functions=[fn]) == as_tools == 101


def test_count_is_messages_plus_tools_with_the_first_system_message() -> None:
    counter = TokenCounter("gpt-4o")
    msgs = [
        {"role": "user", "content": "hi"},
        {"role": "system", "content": "Rules:"},
        {"role": "system", "content": "More."},
    ]
    whole = counter.count(msgs, tools=SEARCH, tool_choice="none")
    assert whole == counter.count_messages(msgs) + counter.count_tools(
        SEARCH, "none", system=msgs[1]
    )
    # The newline the tools add merges into ":\n" and ".\n", but is a token of its own after a
    # word.
    assert counter.count_tools(SEARCH, system=msgs[1]) == counter.count_tools(
        SEARCH, system=msgs[2]
    )
    assert counter.count_tools(SEARCH, system={"role": "system", "content": "Rules"}) == (
        counter.count_tools(SEARCH, system=msgs[2]) + 1
    )


def test_fixed_cost_without_a_system_message_is_the_safe_one() -> None:
    counter = TokenCounter("gpt-4o")
    for text in ("Be brief.", "Rules:", "x" * 5000, ""):
        system = Message.system(text)
        assert counter.count_tools(SEARCH, "auto") >= counter.count_tools(
            SEARCH, "auto", system=system
        )


def test_no_tools_cost_nothing_whatever_the_choice() -> None:
    counter = TokenCounter("gpt-4o")
    assert counter.measure_tools(None, "none") == TokenCount(0)
    assert counter.count([{"role": "user", "content": "hi"}], tool_choice="none") == 8


def test_non_function_tools_are_estimated_from_their_json() -> None:
    counter = TokenCounter("gpt-4o")
    custom = [{"type": "custom", "custom": {"name": "run", "description": "Run " * 50}}]
    got = counter.measure_tools(custom)
    assert got.tokens > counter.count_text("Run " * 50)
    assert not got.exact


# ---- schemas beyond the published vectors


def _tool(parameters: dict[str, Any], description: str = "Do it") -> list[dict[str, Any]]:
    return [
        {
            "type": "function",
            "function": {"name": "act", "description": description, "parameters": parameters},
        }
    ]


DEEP = {
    "type": "object",
    "properties": {
        "a": {
            "type": "object",
            "description": "level one",
            "properties": {
                "b": {
                    "type": "object",
                    "description": "level two",
                    "properties": {"c": {"type": "string", "description": "level three"}},
                }
            },
        }
    },
}
ANY_OF = {
    "type": "object",
    "properties": {"v": {"anyOf": [{"type": "string"}, {"type": "integer"}], "description": "x"}},
}
REF = {
    "type": "object",
    "$defs": {
        "Node": {
            "type": "object",
            "properties": {
                "label": {"type": "string"},
                "children": {"type": "array", "items": {"$ref": "#/$defs/Node"}},
            },
        }
    },
    "properties": {"root": {"$ref": "#/$defs/Node", "description": "the tree"}},
}
KEYWORDS = {
    "type": "object",
    "properties": {
        "n": {"type": "integer", "description": "count", "minimum": 1, "default": 3},
    },
}


def _renderings(counter: TokenCounter, tools: list[dict[str, Any]]) -> int:
    fns, _ = _tools.functions_of(tools, None)
    profile = counter.tool_profile
    flip = attrs.evolve(profile, indent_nested=not profile.indent_nested)
    return max(
        counter.count_text(_tools.render(fns, profile)),
        counter.count_text(_tools.render(fns, flip)),
    )


@pytest.mark.parametrize(
    ("schema", "what"),
    [(DEEP, "nested more than one level"), (ANY_OF, "anyOf"), (REF, "$ref"), (KEYWORDS, "minimum")],
    ids=["deep", "anyOf", "$ref", "keywords"],
)
@pytest.mark.parametrize("profile", sorted(TOOL_PROFILES))
def test_beyond_the_vectors_is_conservative_and_flagged(
    schema: dict[str, Any], what: str, profile: str
) -> None:
    counter = TokenCounter("gpt-4o", tool_profile=profile)
    tools = _tool(schema)
    got = counter.measure_tools(tools)
    assert not got.exact
    assert any(what in r for r in got.reasons), got.reasons
    assert got.tokens >= _renderings(counter, tools) + counter.tool_profile.block_overhead


def test_keywords_the_rendering_has_no_place_for_still_cost_tokens() -> None:
    counter = TokenCounter("gpt-4o")
    plain = {"type": "object", "properties": {"n": {"type": "integer", "description": "count"}}}
    assert counter.count_tools(_tool(KEYWORDS)) > counter.count_tools(_tool(plain))


def test_recursive_refs_terminate() -> None:
    text = _tools.render(_tools.functions_of(_tool(REF), None)[0], TOOL_PROFILES["2024"])
    assert "label?: string" in text


def test_the_rendering_matches_the_published_shape() -> None:
    fns, _ = _tools.functions_of(cookbook.TOOLS, None)
    assert _tools.render(fns, TOOL_PROFILES["2024"]) == (
        "namespace functions {\n\n"
        "// Get the current weather in a given location\n"
        "type get_current_weather = (_: {\n"
        "// The city and state, e.g. San Francisco, CA\n"
        "location: string,\n"
        "// The unit of temperature to return\n"
        'unit?: "celsius" | "fahrenheit",\n'
        "}) => any;\n\n"
        "} // namespace functions"
    )


_scalars = st.sampled_from(
    [
        {"type": "string"},
        {"type": "integer"},
        {"type": "boolean"},
        {"type": "null"},
        {},
        {"type": "string", "enum": ["a", "b"]},
        {"type": "array", "items": {"type": "number"}},
    ]
)


def _schemas() -> st.SearchStrategy[dict[str, Any]]:
    def extend(children: st.SearchStrategy[dict[str, Any]]) -> st.SearchStrategy[dict[str, Any]]:
        props = st.dictionaries(st.sampled_from(["a", "b", "c", "d"]), children, min_size=1)
        return st.one_of(
            props.map(lambda p: {"type": "object", "properties": p}),
            st.lists(children, min_size=1, max_size=3).map(lambda alts: {"anyOf": alts}),
            children.map(lambda c: {"type": "array", "items": c}),
        )

    described = st.tuples(st.recursive(_scalars, extend, max_leaves=8), st.booleans()).map(
        lambda t: {**t[0], "description": "about it"} if t[1] else t[0]
    )
    return st.dictionaries(st.sampled_from(["x", "y", "z"]), described, min_size=1).map(
        lambda p: {"type": "object", "properties": p}
    )


@given(_schemas(), st.sampled_from(sorted(TOOL_PROFILES)))
@settings(max_examples=150, deadline=None)
def test_never_under_the_rendering(schema: dict[str, Any], profile: str) -> None:
    counter = TokenCounter("gpt-4o", tool_profile=profile)
    tools = _tool(schema)
    got = counter.measure_tools(tools)
    fns, _ = _tools.functions_of(tools, None)
    own = counter.count_text(_tools.render(fns, counter.tool_profile))
    floor = own + counter.tool_profile.block_overhead - counter.tool_profile.first_property_discount
    assert got.tokens >= floor
    if not got.exact and any("beyond" in r for r in got.reasons):
        assert got.tokens >= _renderings(counter, tools) + counter.tool_profile.block_overhead


# ---- history details


def test_tool_call_id_is_counted() -> None:
    counter = TokenCounter("gpt-4o")
    short = counter.count_message(Message.tool("4", tool_call_id="a"))
    long = counter.count_message(Message.tool("4", tool_call_id="call_" + "x1Y2" * 6))
    assert long > short


def test_parallel_calls_pay_the_wrapper() -> None:
    counter = TokenCounter("gpt-4o")
    call = ToolCall(id="c", name="calculator", arguments='{"a":2}')
    one = counter.count_message(Message.assistant(tool_calls=[call]))
    two = counter.count_message(Message.assistant(tool_calls=[call, call]))
    bare = counter.count_message(Message.assistant(""))
    once, each = counter._parallel_wrapper()
    assert two - bare == 2 * (one - bare) + once + 2 * each


def test_plain_messages_are_exact_and_history_is_not() -> None:
    counter = TokenCounter("gpt-4o")
    plain = counter.measure(cookbook.EXAMPLE_MESSAGES)
    assert plain == TokenCount(124)
    call = Message.assistant(tool_calls=[ToolCall(id="c", name="f", arguments="{}")])
    assert not counter.measure_message(call).exact
    assert counter.measure_message(call).tokens == counter.count_message(call)


def test_unknown_models_are_flagged() -> None:
    got = TokenCounter("some-local-model").measure([{"role": "user", "content": "hi"}])
    assert not got.exact
    assert "some-local-model" in got.reasons[0]


# ---- values and names


def test_token_count_is_a_frozen_value_that_adds() -> None:
    a = TokenCount(3)
    b = TokenCount(4, ("x",))
    assert a.exact and not b.exact
    assert a + b == TokenCount(7, ("x",))
    assert int(b) == 4
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        a.tokens = 5  # type: ignore[misc]
    assert attrs.asdict(b) == {"tokens": 4, "reasons": ("x",), "exact": False}


def test_counter_for_is_public_and_shared() -> None:
    assert counter_for("gpt-4o") is counter_for("gpt-4o") is _counter_for("gpt-4o")


def test_tool_profile_by_name_and_unknown_names_rejected() -> None:
    info = convkit.models.ModelInfo(
        name="m", context_window=10, max_output_tokens=5, tool_profile="2023"
    )
    assert isinstance(info.tool_profile, ToolProfile)
    assert info.tool_profile is TOOL_PROFILES["2023"]
    with pytest.raises(ValueError, match="unknown tool profile"):
        convkit.models.ModelInfo(name="m", context_window=10, max_output_tokens=5, tool_profile="x")


def test_vectors_name_their_source_commit() -> None:
    for v in [*HMARR, *PAMELAFOX]:
        assert "@" in v.source and len(v.source.rsplit("@", 1)[1]) == 40
    for v in HISTORY:
        assert "https://" in v.source
    assert len(PAMELAFOX) == 18
    assert json.dumps([attrs.asdict(v) for v in HISTORY])
