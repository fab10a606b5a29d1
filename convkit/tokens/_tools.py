"""Tool definitions as the API renders them, and what ``tool_choice`` adds.

The API does not bill the JSON of ``tools`` (or the legacy ``functions``): it turns them into a
TypeScript-like declaration inside the system message, which the model reads::

    namespace functions {

    // Get the current weather in a given location
    type get_current_weather = (_: {
    // The city and state, e.g. San Francisco, CA
    location: string,
    unit?: "celsius" | "fahrenheit",
    }) => any;

    } // namespace functions

This module renders that text from the JSON schemas (the rendering hmarr/openai-chat-tokens and
pamelafox/openai-messages-token-helper reverse-engineered from API figures) under a
:class:`~convkit.models.ToolProfile`, and notes every construct no published figure covers
(``anyOf``, ``$ref``, nesting deeper than one level, keywords the rendering has no place for).
Such schemas are counted on the safe side: the larger of the indented and flat renderings, any
keyword it has no place for added as a ``// key: value`` line, and no measured discount.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from convkit._wire import JSONValueError, copy_json
from convkit.errors import InvalidRequestError
from convkit.models import ToolProfile

# Keys of a property schema that the published vectors cover.
_COVERED = frozenset({"type", "description", "enum", "properties", "required", "items"})
# Keys that describe a schema without shaping its type: not rendered, but not verified either.
_METADATA = frozenset({"additionalProperties", "title", "$schema", "$id", "$comment"})
_FUNCTION_KEYS = frozenset({"name", "description", "parameters"})
_PARAMETER_KEYS = frozenset({"type", "properties", "required"})
_DEFS = ("$defs", "definitions")
# Nested objects one level down are covered by the vectors; deeper ones are not.
_COVERED_DEPTH = 1
_MAX_REF_DEPTH = 8


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def _literal(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


class _Renderer:
    """Renders one request's functions; remembers what it met beyond the published vectors."""

    def __init__(self, profile: ToolProfile, *, indent: bool) -> None:
        self.profile = profile
        self.indent = indent
        self.beyond: list[str] = []
        self.inexact = False
        self.extras: list[str] = []
        self._defs: Mapping[str, Any] = {}
        self._refs: list[str] = []

    def note(self, what: str) -> None:
        if what not in self.beyond:
            self.beyond.append(what)

    def extra(self, key: str, value: Any) -> None:
        self.note(f"keyword {key!r}")
        self.extras.append(f"// {key}: {_json(value)}")

    # ---- the namespace

    def namespace(self, functions: Sequence[Mapping[str, Any]]) -> str:
        lines = ["namespace functions {", ""]
        for fn in functions:
            lines.extend(self.function(fn))
            lines.append("")
        lines.append("} // namespace functions")
        return "\n".join(lines)

    def function(self, fn: Mapping[str, Any]) -> list[str]:
        for key, value in fn.items():
            if key == "strict":
                self.note("keyword 'strict'")
            elif key not in _FUNCTION_KEYS:
                self.extra(key, value)
        lines = []
        desc = fn.get("description")
        if desc:
            lines.append(f"// {desc if isinstance(desc, str) else _json(desc)}")
        name = str(fn.get("name", ""))
        params = fn.get("parameters")
        self._defs = {}
        if isinstance(params, Mapping):
            for key in _DEFS:
                if isinstance(params.get(key), Mapping):
                    self._defs = params[key]
            self._parameter_keys(params)
            props = params.get("properties")
            if isinstance(props, Mapping) and props:
                lines.append(f"type {name} = (_: {{")
                lines.append(self.object_lines(params, 0))
                lines.append("}) => any;")
                return lines
        elif params is not None:
            self.extra("parameters", params)
        lines.append(f"type {name} = () => any;")
        return lines

    def _parameter_keys(self, params: Mapping[str, Any]) -> None:
        for key, value in params.items():
            if key in _PARAMETER_KEYS or key in _DEFS:
                continue
            if key == "description" and not self.profile.nested_descriptions:
                continue  # the 2023 figures show a schema-level description is not billed
            if key in _METADATA:
                self.note(f"keyword {key!r}")
            else:
                self.extra(key, value)

    # ---- properties and types

    def object_lines(self, schema: Mapping[str, Any], depth: int) -> str:
        if depth > _COVERED_DEPTH:
            self.note("objects nested more than one level deep")
        elif depth and not self.profile.nested_exact:
            self.inexact = True
        required = schema.get("required")
        required = required if isinstance(required, list) else []
        pad = "  " * depth if self.indent else ""
        lines = []
        for key, sub in schema["properties"].items():
            sub = self.resolve(sub)
            mark = "" if key in required else "?"
            if not isinstance(sub, Mapping):
                self.note("a property schema that is not an object")
                lines.append(f"{pad}{key}{mark}: any,")
                continue
            desc = sub.get("description")
            if desc and (depth == 0 or self.profile.nested_descriptions):
                lines.append(f"{pad}// {desc if isinstance(desc, str) else _json(desc)}")
            lines.append(f"{pad}{key}{mark}: {self.type(sub, depth)},")
        return "\n".join(lines)

    def resolve(self, sub: Any) -> Any:
        """Follow a local ``$ref`` (``#/$defs/X``, ``#/definitions/X``) one step."""
        if not isinstance(sub, Mapping) or "$ref" not in sub:
            return sub
        self.note("'$ref'")
        ref = sub["$ref"]
        target = None
        if isinstance(ref, str):
            for prefix in ("#/$defs/", "#/definitions/"):
                if ref.startswith(prefix):
                    target = self._defs.get(ref[len(prefix) :])
        if not isinstance(target, Mapping) or ref in self._refs or len(self._refs) > _MAX_REF_DEPTH:
            self.extra("$ref", ref)
            return {k: v for k, v in sub.items() if k != "$ref"}
        merged = {**target, **{k: v for k, v in sub.items() if k != "$ref"}}
        return {"$convkit_ref": ref, **merged}

    def type(self, sub: Mapping[str, Any], depth: int) -> str:
        ref = sub.get("$convkit_ref")
        if ref is not None:
            self._refs.append(ref)
            try:
                return self._type(sub, depth)
            finally:
                self._refs.pop()
        return self._type(sub, depth)

    def _type(self, sub: Mapping[str, Any], depth: int) -> str:
        for key, value in sub.items():
            if key in _COVERED or key == "$convkit_ref":
                continue
            if key in ("anyOf", "oneOf", "allOf", "const"):
                self.note(f"'{key}'")
            elif key in _METADATA:
                self.note(f"keyword {key!r}")
            else:
                self.extra(key, value)
        enum = sub.get("enum")
        if isinstance(enum, list) and enum:
            if not all(isinstance(v, str) or type(v) is int for v in enum):
                self.note("enum values other than strings and integers")
            return " | ".join(_literal(v) for v in enum)
        if "const" in sub:
            return _literal(sub["const"])
        for key, sep in (("anyOf", " | "), ("oneOf", " | "), ("allOf", " & ")):
            alts = sub.get(key)
            if isinstance(alts, list) and alts:
                parts = [self._alt(self.resolve(a), depth) for a in alts]
                return sep.join(f"({p})" if (" | " in p or " & " in p) else p for p in parts)
        t = sub.get("type")
        if isinstance(t, list):
            self.note("a list of types")
            return " | ".join(self._scalar(str(x), sub, depth) for x in t) or "any"
        if t is None and isinstance(sub.get("properties"), Mapping):
            self.note("an object schema without 'type'")
            t = "object"
        if t is not None and not isinstance(t, str):
            self.note("a 'type' that is not a string")
            return "any"
        return self._scalar(t, sub, depth)

    def _alt(self, alt: Any, depth: int) -> str:
        if not isinstance(alt, Mapping):
            return "any"
        return self.type(alt, depth)

    def _scalar(self, t: str | None, sub: Mapping[str, Any], depth: int) -> str:
        if t == "string":
            return "string"
        if t in ("number", "integer"):
            return "number"
        if t == "boolean":
            return "boolean"
        if t == "null":
            return "null"
        if t is None:
            return "any"
        if t == "object":
            props = sub.get("properties")
            if isinstance(props, Mapping) and props:
                return "{\n" + self.object_lines(sub, depth + 1) + "\n}"
            self.note("an object without properties")
            return "{\n\n}"
        if t == "array":
            items = self.resolve(sub.get("items"))
            if isinstance(items, Mapping):
                inner = self.type(items, depth)
                return f"({inner})[]" if " | " in inner else f"{inner}[]"
            self.note("an array without 'items'")
            return "any[]"
        self.note(f"type {t!r}")
        return "any"


def _first_property_undescribed(fn: Mapping[str, Any]) -> bool:
    params = fn.get("parameters")
    props = params.get("properties") if isinstance(params, Mapping) else None
    if not isinstance(props, Mapping) or not props:
        return False
    first = next(iter(props.values()))
    return isinstance(first, Mapping) and not first.get("description")


def functions_of(
    tools: Sequence[Mapping[str, Any]] | None, functions: Sequence[Mapping[str, Any]] | None
) -> tuple[list[Mapping[str, Any]], list[str]]:
    """The function definitions a request declares, and notes on tools that are not functions.

    ``tools`` entries are ``{"type": "function", "function": {...}}``; other tool types (custom
    tools, vendor tools) have no published rendering and are declared by their JSON text.
    """
    out: list[Mapping[str, Any]] = []
    other: list[str] = []
    _check_json(tools, "tools")
    _check_json(functions, "functions")
    for i, tool in enumerate(tools or ()):
        if not isinstance(tool, Mapping):
            raise InvalidRequestError(
                f"tools[{i}] must be an object, got {type(tool).__name__}", param="tools"
            )
        kind = tool.get("type", "function")
        fn = tool.get(kind) if isinstance(kind, str) else None
        if kind == "function" and isinstance(fn, Mapping):
            out.append(fn)
        else:
            other.append(_json(dict(tool)))
    for i, fn in enumerate(functions or ()):
        if not isinstance(fn, Mapping):
            raise InvalidRequestError(
                f"functions[{i}] must be an object, got {type(fn).__name__}", param="functions"
            )
        out.append(fn)
    return out, other


def _check_json(value: Any, param: str, *, listed: bool = True) -> None:
    """Refuse a parameter that is not JSON (or, when ``listed``, not a list) as a request would."""
    if value is None:
        return
    if listed and not isinstance(value, (list, tuple)):
        raise InvalidRequestError(
            f"{param} must be a list, got {type(value).__name__}", param=param
        )
    try:
        copy_json(value, strict=True)
    except JSONValueError as exc:
        raise InvalidRequestError(f"{param}: {exc}", param=param) from None


def check_choice(tool_choice: Any, function_call: Any) -> None:
    """Refuse a ``tool_choice`` / ``function_call`` that is not JSON (InvalidRequestError)."""
    _check_json(tool_choice, "tool_choice", listed=False)
    _check_json(function_call, "function_call", listed=False)


def render(functions: Sequence[Mapping[str, Any]], profile: ToolProfile) -> str:
    """The ``namespace functions`` text the API builds from ``functions`` under ``profile``."""
    return _Renderer(profile, indent=profile.indent_nested).namespace(functions)


def definitions_cost(
    functions: Sequence[Mapping[str, Any]],
    other_tools: Sequence[str],
    profile: ToolProfile,
    count: Callable[[str], int],
) -> tuple[int, list[str], bool]:
    """Tokens of the tools block (without the system-message offset), and how far to trust it.

    Returns the tokens, what the schemas hold beyond the published figures (counted on the safe
    side), and whether the rest is covered by figures it does not reproduce exactly.
    """
    r = _Renderer(profile, indent=profile.indent_nested)
    n = count(r.namespace(functions))
    beyond = r.beyond
    if other_tools:
        beyond.append("tools that are not functions")
    if beyond:
        # Beyond the vectors: the larger of both indentation rules, every unplaced keyword as a
        # comment line, non-function tools as their JSON text, and no measured discount.
        alt = _Renderer(profile, indent=not profile.indent_nested)
        n = max(n, count(alt.namespace(functions)))
        n += sum(count("\n" + line) for line in r.extras)
        n += sum(count("\n// " + text) + 2 for text in other_tools)
    else:
        n -= profile.first_property_discount * sum(map(_first_property_undescribed, functions))
    return n + profile.block_overhead, beyond, r.inexact


def choice_cost(
    tool_choice: Any,
    function_call: Any,
    names: Sequence[str],
    profile: ToolProfile,
    count: Callable[[str], int],
) -> tuple[int, list[str]]:
    """Tokens ``tool_choice`` and the legacy ``function_call`` add, and their estimate notes."""
    n = 0
    notes: list[str] = []
    if tool_choice is not None and tool_choice != "auto":
        verified = profile.verified_tool_choice
        if tool_choice == "none":
            n += profile.choice_none
        elif tool_choice == "required":
            # No published figure: as much as naming the longest tool.
            verified = False
            n += profile.named_tool_choice + max((count(x) for x in names), default=0)
        elif (
            isinstance(tool_choice, Mapping)
            and tool_choice.get("type", "function") == "function"
            and isinstance(tool_choice.get("function"), Mapping)
        ):
            n += profile.named_tool_choice + count(str(tool_choice["function"].get("name", "")))
        else:
            verified = False
            n += profile.named_tool_choice + count(_json(tool_choice))
        if not verified:
            notes.append(
                f"tool_choice {_json(tool_choice)} unmeasured under profile {profile.name}"
            )
    if function_call is not None and function_call != "auto":
        verified = profile.verified_function_call
        if function_call == "none":
            n += profile.choice_none
        elif isinstance(function_call, Mapping):
            n += profile.named_function_call + count(str(function_call.get("name", "")))
        else:
            verified = False
            n += profile.named_function_call + count(_json(function_call))
        if not verified:
            notes.append(
                f"function_call {_json(function_call)} unmeasured under profile {profile.name}"
            )
    return n, notes
