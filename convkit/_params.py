"""The standard chat-completions parameters and how each is checked (private).

:func:`validate_params` (re-exported by :mod:`convkit.chat`) walks a request's parameters
against one table, ``_CHECKS``: a name the table lists must have the type and range the API
documents; any other name is a vendor field and passes through untouched.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from convkit._wire import type_name as _type_name
from convkit.errors import InvalidRequestError

__all__ = ["validate_params"]


def _is_number(v: object) -> bool:
    # bool is an int subclass; ``temperature=True`` is a caller bug, not 1.0.
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _fail(param: str, problem: str) -> InvalidRequestError:
    return InvalidRequestError(f"invalid {param!r}: {problem}", param=param)


def _check_range(lo: float, hi: float) -> Callable[[str, Any], None]:
    def check(name: str, v: Any) -> None:
        if not _is_number(v):
            raise _fail(name, f"expected a number between {lo:g} and {hi:g}, got {_type_name(v)}")
        # ``not lo <= v <= hi`` is also true for NaN, which must not slip through.
        if not lo <= v <= hi:
            raise _fail(name, f"must be between {lo:g} and {hi:g}, got {v!r}")

    return check


def _check_int(
    minimum: int | None = None, maximum: int | None = None
) -> Callable[[str, Any], None]:
    def check(name: str, v: Any) -> None:
        if not _is_int(v):
            raise _fail(name, f"expected an integer, got {_type_name(v)}")
        if minimum is not None and v < minimum:
            raise _fail(name, f"must be at least {minimum}, got {v}")
        if maximum is not None and v > maximum:
            raise _fail(name, f"must be at most {maximum}, got {v}")

    return check


def _check_type(kind: type, label: str) -> Callable[[str, Any], None]:
    def check(name: str, v: Any) -> None:
        if not isinstance(v, kind) or (kind is not bool and isinstance(v, bool)):
            raise _fail(name, f"expected {label}, got {_type_name(v)}")

    return check


def _check_stop(name: str, v: Any) -> None:
    if isinstance(v, str):
        return
    if not isinstance(v, (list, tuple)):
        raise _fail(name, f"expected a string or a list of strings, got {_type_name(v)}")
    if len(v) > 4:
        raise _fail(name, f"at most 4 stop sequences are allowed, got {len(v)}")
    for i, s in enumerate(v):
        if not isinstance(s, str):
            raise _fail(name, f"item {i} must be a string, got {_type_name(s)}")


def _check_list_of_dicts(name: str, v: Any) -> None:
    if not isinstance(v, (list, tuple)):
        raise _fail(name, f"expected a list of objects, got {_type_name(v)}")
    for i, item in enumerate(v):
        if not isinstance(item, Mapping):
            raise _fail(name, f"item {i} must be an object, got {_type_name(item)}")


def _check_tools(name: str, v: Any) -> None:
    _check_list_of_dicts(name, v)
    for i, tool in enumerate(v):
        if not isinstance(tool.get("type"), str):
            raise _fail(name, f"item {i} needs a string 'type' (usually 'function')")


def _check_str_or_dict(name: str, v: Any) -> None:
    if not isinstance(v, (str, Mapping)):
        raise _fail(name, f"expected a string or an object, got {_type_name(v)}")


def _check_response_format(name: str, v: Any) -> None:
    if not isinstance(v, Mapping):
        raise _fail(name, f"expected an object like {{'type': 'json_object'}}, got {_type_name(v)}")
    if not isinstance(v.get("type"), str):
        raise _fail(name, "needs a string 'type' ('text', 'json_object' or 'json_schema')")


def _check_stream_options(name: str, v: Any) -> None:
    if not isinstance(v, Mapping):
        raise _fail(name, f"expected an object, got {_type_name(v)}")
    include = v.get("include_usage")
    if include is not None and not isinstance(include, bool):
        raise _fail(name, f"'include_usage' must be a boolean, got {_type_name(include)}")


def _check_logit_bias(name: str, v: Any) -> None:
    if not isinstance(v, Mapping):
        raise _fail(name, f"expected an object mapping token ids to biases, got {_type_name(v)}")
    for token, bias in v.items():
        if not (isinstance(token, str) or _is_int(token)):
            raise _fail(name, f"token ids must be strings or integers, got {_type_name(token)}")
        if not _is_number(bias) or not -100 <= bias <= 100:
            raise _fail(
                name, f"bias for token {token!r} must be a number in -100..100, got {bias!r}"
            )


def _check_metadata(name: str, v: Any) -> None:
    if not isinstance(v, Mapping):
        raise _fail(name, f"expected an object of strings, got {_type_name(v)}")
    for key, value in v.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise _fail(name, "keys and values must be strings")


def _check_str_list(name: str, v: Any) -> None:
    if not isinstance(v, (list, tuple)) or not all(isinstance(s, str) for s in v):
        raise _fail(name, "expected a list of strings")


_BOOL = _check_type(bool, "a boolean")
_STR = _check_type(str, "a string")
_DICT = _check_type(Mapping, "an object")

#: The standard chat-completions parameters and how each is checked. Anything not listed is a
#: vendor field and passes through untouched.
_CHECKS: dict[str, Callable[[str, Any], None]] = {
    "temperature": _check_range(0, 2),
    "top_p": _check_range(0, 1),
    "frequency_penalty": _check_range(-2, 2),
    "presence_penalty": _check_range(-2, 2),
    "max_tokens": _check_int(minimum=1),
    "max_completion_tokens": _check_int(minimum=1),
    "n": _check_int(minimum=1),
    "seed": _check_int(),
    "top_logprobs": _check_int(minimum=0, maximum=20),
    "stop": _check_stop,
    "tools": _check_tools,
    "functions": _check_list_of_dicts,
    "tool_choice": _check_str_or_dict,
    "function_call": _check_str_or_dict,
    "response_format": _check_response_format,
    "stream": _BOOL,
    "stream_options": _check_stream_options,
    "logprobs": _BOOL,
    "parallel_tool_calls": _BOOL,
    "store": _BOOL,
    "logit_bias": _check_logit_bias,
    "metadata": _check_metadata,
    "modalities": _check_str_list,
    "user": _STR,
    "reasoning_effort": _STR,
    "service_tier": _STR,
    "verbosity": _STR,
    "safety_identifier": _STR,
    "prompt_cache_key": _STR,
    "audio": _DICT,
    "prediction": _DICT,
    "web_search_options": _DICT,
}

_RESERVED = frozenset({"model", "messages"})


def validate_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """Check standard request parameters and return them as a new dict.

    Standard parameters (``temperature``, ``max_tokens``, ``tools``, ...) must have the type and
    range the API documents; ``None`` is accepted for any of them and sent as ``null``. Unknown
    keys are vendor fields and pass through untouched.

    Raises:
        InvalidRequestError: naming the offending parameter in ``param``.

    Example::

        >>> validate_params({"temperature": 0.2, "top_k": 40})
        {'temperature': 0.2, 'top_k': 40}
        >>> validate_params({"temperature": 3})
        Traceback (most recent call last):
        ...
        convkit.errors.InvalidRequestError: invalid 'temperature': must be between 0 and 2, got 3
    """
    if not isinstance(params, Mapping):
        raise InvalidRequestError(f"params must be a mapping, got {_type_name(params)}")
    out: dict[str, Any] = {}
    for name, value in params.items():
        if not isinstance(name, str):
            raise InvalidRequestError(f"parameter names must be strings, got {name!r}")
        if name in _RESERVED:
            raise InvalidRequestError(
                f"{name!r} is not a parameter: pass it as its own argument", param=name
            )
        if value is not None:
            check = _CHECKS.get(name)
            if check is not None:
                check(name, value)
        out[name] = value
    return out
