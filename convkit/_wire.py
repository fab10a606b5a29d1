"""Small helpers shared by the modules that read and write the wire format (private).

One frozen-mapping rule, one copy of JSON values, one string check, one reading of an error
body's detail, and the exceptions ``json.loads`` raises on text it cannot decode.

JSON values are copied and checked without recursion (:func:`copy_json`), so a value nested as
deeply as ``json`` itself decodes never raises :class:`RecursionError`; values a frozen object
keeps are checked on entry (:func:`freeze_json`) to be JSON that can be sent and stored.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

from convkit.errors import ResponseFormatError

__all__ = [
    "EMPTY",
    "JSON_ERRORS",
    "MAX_JSON_DEPTH",
    "copy_json",
    "error_detail",
    "freeze",
    "freeze_json",
    "need_str",
    "type_name",
]

#: The empty read-only mapping every frozen value shares as its default.
EMPTY: Mapping[str, Any] = MappingProxyType({})

#: What ``json.loads`` raises on text that is not JSON, or nested too deeply to decode.
JSON_ERRORS = (ValueError, RecursionError)


def freeze(value: Mapping[str, Any] | None) -> Mapping[str, Any]:
    """A read-only copy of ``value`` (the shared :data:`EMPTY` when it is empty or None)."""
    if not value:
        return EMPTY
    return MappingProxyType(dict(value))


#: How deeply the JSON values of a message may nest. ``json`` encodes recursively, with one
#: interpreter frame a level, so a deeper value could not be sent or stored; it is refused on
#: entry instead of failing later.
MAX_JSON_DEPTH = 512

_SCALARS = (str, int, float, type(None))


class JSONValueError(ValueError):
    """A value is not JSON: a set, an object, a cycle, a non-string key, or nested too deeply."""


def copy_json(value: Any, *, strict: bool = False) -> Any:
    """A deep copy of a JSON-like ``value`` as plain dicts and lists, without recursion.

    Mappings become dicts and lists or tuples become lists; other values are kept as they are,
    unless ``strict``, where only ``str``, ``int``, ``float``, ``bool`` and ``None`` leaves
    (``nan`` and ``inf`` included, as Python's ``json`` writes and reads them), string keys
    and nesting up to :data:`MAX_JSON_DEPTH` are accepted. A cycle is refused either way.
    Raises :class:`JSONValueError` naming what is wrong.
    """
    if not isinstance(value, (Mapping, list, tuple)):
        if strict and not isinstance(value, _SCALARS):
            raise JSONValueError(f"{type_name(value)} is not a JSON value")
        return value
    root: Any = {} if isinstance(value, Mapping) else []
    # Each frame: the source container, its copy (a dict or a list), its (key, item) pairs.
    stack: list[tuple[Any, Any, Any]] = [(value, root, _pairs(value))]
    path = {id(value)}
    while stack:
        src, dst, items = stack[-1]
        is_map = type(dst) is dict
        for key, item in items:
            if strict and is_map and not isinstance(key, str):
                raise JSONValueError(f"a JSON object key must be a string, got {type_name(key)}")
            if isinstance(item, (Mapping, list, tuple)):
                if id(item) in path:
                    raise JSONValueError("the value contains itself (a cycle)")
                if strict and len(stack) >= MAX_JSON_DEPTH:
                    raise JSONValueError(f"nested deeper than {MAX_JSON_DEPTH} levels")
                child: Any = {} if isinstance(item, Mapping) else []
                if is_map:
                    dst[key] = child
                else:
                    dst.append(child)
                path.add(id(item))
                stack.append((item, child, _pairs(item)))
                break
            if strict and not isinstance(item, _SCALARS):
                raise JSONValueError(f"{type_name(item)} is not a JSON value")
            if is_map:
                dst[key] = item
            else:
                dst.append(item)
        else:
            stack.pop()
            path.discard(id(src))
    return root


def _pairs(container: Any) -> Any:
    return iter(container.items()) if isinstance(container, Mapping) else enumerate(container)


def freeze_json(
    value: Any,
    where: str,
    error: Callable[..., Exception],
    modeled: frozenset[str] = frozenset(),
) -> Mapping[str, Any]:
    """A read-only, checked deep copy of the mapping ``value`` that a frozen value keeps.

    ``value`` must be a mapping of JSON values (see :func:`copy_json`) holding none of the keys
    in ``modeled``: those belong to the value's own fields, and an extra that held one would be
    sent as one thing and read back as another. Problems raise ``error(reason, field=where)``.
    """
    if not value:
        return EMPTY
    if not isinstance(value, Mapping):
        raise error(f"expected a mapping, got {type_name(value)}", field=where)
    clash = sorted(k for k in value if isinstance(k, str) and k in modeled)
    if clash:
        raise error(
            f"{', '.join(map(repr, clash))} cannot be an extra key: it is a field of its own",
            field=f"{where}.{clash[0]}",
        )
    try:
        return MappingProxyType(copy_json(value, strict=True))
    except JSONValueError as exc:
        raise error(str(exc), field=where) from None


def type_name(value: object) -> str:
    """The name of ``value``'s type, for error messages."""
    return type(value).__name__


def need_str(
    value: Any,
    where: str,
    error: Callable[..., Exception] = ResponseFormatError,
) -> str:
    """``value`` if it is a string; otherwise raise ``error(reason, field=where)``.

    Server data gets the default :class:`~convkit.errors.ResponseFormatError`; input a caller
    wrote (messages) passes :class:`~convkit.errors.InvalidMessageError`.
    """
    if not isinstance(value, str):
        raise error(f"expected a string, got {type_name(value)}", field=where)
    return value


def error_detail(body: Any) -> str | None:
    """The human-readable part of an error body (``{"error": {"message": ...}}``), or None."""
    err = body.get("error") if isinstance(body, dict) else None
    if isinstance(err, dict) and err.get("message"):
        return str(err["message"])
    if isinstance(err, str):
        return err
    return None
