"""Small helpers shared by the modules that read and write the wire format (private).

One frozen-mapping rule, one string check, one reading of an error body's detail, and the
exceptions ``json.loads`` raises on text it cannot decode.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

from convkit.errors import ResponseFormatError

__all__ = ["EMPTY", "JSON_ERRORS", "error_detail", "freeze", "need_str", "type_name"]

#: The empty read-only mapping every frozen value shares as its default.
EMPTY: Mapping[str, Any] = MappingProxyType({})

#: What ``json.loads`` raises on text that is not JSON, or nested too deeply to decode.
JSON_ERRORS = (ValueError, RecursionError)


def freeze(value: Mapping[str, Any] | None) -> Mapping[str, Any]:
    """A read-only copy of ``value`` (the shared :data:`EMPTY` when it is empty or None)."""
    if not value:
        return EMPTY
    return MappingProxyType(dict(value))


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
