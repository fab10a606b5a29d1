"""Frozen values the store hands out, and the checks every value passes before it is written.

Nothing here touches a database: these are the attrs values of the public API
(:class:`Thread`, :class:`StoredMessage`, :class:`Summary`, :class:`ThreadPage`) and the pure
validation that runs *before* a transaction starts, so a rejected call writes nothing.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from datetime import datetime, timezone
from types import MappingProxyType
from typing import Any, Literal

from attrs import field, frozen

from convkit.context._fit import TRUSTED_ENTRIES
from convkit.context._values import Summary
from convkit.errors import StoreValueError
from convkit.messages import Message, Usage

__all__ = [
    "MAX_ENCODING_LENGTH",
    "MAX_INTEGER",
    "MAX_METADATA_BYTES",
    "MAX_MODEL_LENGTH",
    "MAX_ROLE_LENGTH",
    "MAX_THREAD_ID_LENGTH",
    "Status",
    "StoreValueError",
    "StoredMessage",
    "Summary",
    "Thread",
    "ThreadPage",
]

#: Largest accepted metadata object (thread or message), as compact UTF-8 JSON.
MAX_METADATA_BYTES = 64 * 1024
#: Longest accepted thread id (generated ids are 32 hex characters).
MAX_THREAD_ID_LENGTH = 64
#: Largest accepted token count or ``seq``: the integer columns are 32-bit on PostgreSQL.
MAX_INTEGER = 2**31 - 1
#: Longest stored role name (``convkit_messages.role``).
MAX_ROLE_LENGTH = 32
#: Longest stored encoding name (``convkit_messages.encoding``).
MAX_ENCODING_LENGTH = 64
#: Longest stored summary model name (``convkit_summaries.model``).
MAX_MODEL_LENGTH = 200

Status = Literal["complete", "incomplete"]
_STATUSES: frozenset[str] = frozenset({"complete", "incomplete"})

_EMPTY: Mapping[str, Any] = MappingProxyType({})
#: The empty metadata mapping values share.
EMPTY_MAPPING = _EMPTY


# --------------------------------------------------------------------------- values


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value


def _mapping(value: Mapping[str, Any] | None) -> Mapping[str, Any]:
    return MappingProxyType(dict(value)) if value else _EMPTY


@frozen(kw_only=True)
class Thread:
    """A conversation thread as stored: identity, title, metadata, times and fork lineage.

    Example::

        thread = store.create_thread(title="Support #42", metadata={"customer": "acme"})
        thread.last_seq  # 0: no messages yet

    Attributes:
        last_seq: ``seq`` of the newest message visible in this thread (0 when empty). Sequences
            are gap-free, so this is also the number of messages, forked history included.
        parent_id: the thread this one was forked from, or None.
        fork_seq: the parent's ``seq`` at the fork point (messages up to it are shared), or None.
    """

    id: str
    title: str | None = None
    metadata: Mapping[str, Any] = field(default=_EMPTY, converter=_mapping)
    created_at: datetime = field(converter=_utc)
    updated_at: datetime = field(converter=_utc)
    parent_id: str | None = None
    fork_seq: int | None = None
    last_seq: int = 0

    @property
    def message_count(self) -> int:
        """How many messages the thread shows (its own and those shared with its ancestors)."""
        return self.last_seq


@frozen(kw_only=True)
class StoredMessage:
    """A message as stored in a thread: the wire message plus what the store knows about it.

    Example::

        stored = store.append(thread.id, {"role": "user", "content": "hi"})
        stored.seq, stored.tokens, stored.message.to_openai()

    Attributes:
        thread_id: the thread it was read from (for a fork, the fork's id even for shared history).
        seq: its 1-based position in the thread, gap-free.
        tokens: prompt tokens it adds (per-message overhead included), counted once at append.
        encoding: the tokenizer encoding ``tokens`` was counted with (``"o200k_base"``).
        status: ``"complete"``, or ``"incomplete"`` for what a broken stream left behind.
        counted_with: the counting rules ``tokens`` was made with, encoding and per-message
            overheads (:func:`convkit.context.counting_key`, ``"cl100k_base/3/1"``); None when
            unknown (a row stored by an older convkit). A count is reused only under the same
            rules; policies and :meth:`~convkit.store.Store.window` recount the others.
    """

    thread_id: str
    seq: int
    message: Message
    tokens: int
    encoding: str
    status: Status = "complete"
    usage: Usage | None = None
    created_at: datetime = field(converter=_utc)
    metadata: Mapping[str, Any] = field(default=_EMPTY, converter=_mapping)
    counted_with: str | None = None

    @property
    def role(self) -> str:
        """The message's role."""
        return self.message.role

    def to_openai(self) -> dict[str, Any]:
        """Return the wire-format dict of the message (what goes into a request)."""
        return self.message.to_openai()


# Built only from checked values (appends) or trusted rows (reads): a policy takes one counted
# under its own rules as it is.
TRUSTED_ENTRIES.add(StoredMessage)


@frozen(kw_only=True)
class ThreadPage:
    """One page of :meth:`Store.list_threads`: the threads and the cursor of the next page.

    Example::

        page = store.list_threads(limit=20)
        while page.next_cursor:
            page = store.list_threads(limit=20, cursor=page.next_cursor)
    """

    threads: tuple[Thread, ...]
    next_cursor: str | None = None

    def __iter__(self) -> Any:
        return iter(self.threads)

    def __len__(self) -> int:
        return len(self.threads)


# --------------------------------------------------------------------------- validation

# Lone surrogates cannot be encoded as UTF-8, so no database driver can store them.
_SURROGATE = re.compile("[\ud800-\udfff]")
_THREAD_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:\-]*")

# Credential detection. Keys are compared after lower-casing and removing everything but
# letters and digits, so "API-Key", "api_key" and "apiKey" are all caught.
_SECRET_KEY_SUFFIXES = (
    "apikey",
    "authorization",
    "password",
    "passwd",
    "secret",
    "secretkey",
    "privatekey",
    "accesstoken",
    "refreshtoken",
    "authtoken",
    "bearertoken",
    "sessiontoken",
    "subscriptionkey",  # Azure's Ocp-Apim-Subscription-Key
    "cookie",  # Cookie, Set-Cookie: session credentials
)
# Anywhere in a value ("Authorization: Bearer ...", "key=sk-..."), not only at its start; a
# key must begin at a word boundary, so "task-..." or "desk-..." are not one.
_SECRET_VALUE = re.compile(
    r"""(?<![A-Za-z0-9])(?:
        (?:sk|rk)[-_][A-Za-z0-9_\-]{16,}      # OpenAI / Anthropic style secret keys
      | (?:gsk|xai|hf)[-_][A-Za-z0-9_\-]{16,}  # Groq, xAI, Hugging Face
      | AIza[0-9A-Za-z_\-]{30,}              # Google API keys
      | Bearer\s+\S{8,}                      # an Authorization header value
    )""",
    re.VERBOSE,
)


def looks_like_secret_key(key: str) -> bool:
    """Tell whether a metadata key names a credential (``api_key``, ``Authorization``...)."""
    norm = re.sub(r"[^a-z0-9]", "", key.lower())
    return norm.endswith(_SECRET_KEY_SUFFIXES)


def looks_like_secret_value(value: str) -> bool:
    """Tell whether a string holds something that looks like an API key or a bearer token."""
    return _SECRET_VALUE.search(value) is not None


def check_thread_id(value: object, where: str = "thread_id") -> str:
    """Return ``value`` if it is a well-formed thread id, else raise :class:`StoreValueError`."""
    if not isinstance(value, str):
        raise StoreValueError(f"a thread id is a string, got {type(value).__name__}", field=where)
    if len(value) > MAX_THREAD_ID_LENGTH or not _THREAD_ID.fullmatch(value):
        raise StoreValueError(
            f"a thread id has 1-{MAX_THREAD_ID_LENGTH} characters from A-Z a-z 0-9 . _ : - "
            "and starts with a letter or digit",
            field=where,
        )
    return value


def check_seq(
    value: object, where: str, *, minimum: int = 0, maximum: int | None = MAX_INTEGER
) -> int:
    """Return ``value`` if it is an int in ``[minimum, maximum]``, else raise StoreValueError.

    The default ``maximum`` is :data:`MAX_INTEGER`, the largest value every backend's integer
    columns hold, so token counts and ``seq`` values are refused the same way on each.
    """
    if isinstance(value, bool) or not isinstance(value, int):
        raise StoreValueError(f"expected an integer, got {type(value).__name__}", field=where)
    if value < minimum:
        raise StoreValueError(f"must be >= {minimum}, got {value}", field=where)
    if maximum is not None and value > maximum:
        raise StoreValueError(f"must be <= {maximum}, got {value}", field=where)
    return value


def check_status(value: object) -> Status:
    """Return ``value`` if it is a message status, else raise :class:`StoreValueError`."""
    if value not in _STATUSES:
        raise StoreValueError(
            f"status must be 'complete' or 'incomplete', got {value!r}", field="status"
        )
    return value  # type: ignore[return-value]  # narrowed by the membership test


def check_text(
    value: object, where: str, *, optional: bool = False, max_length: int | None = None
) -> str | None:
    """Return a storable string (no NUL, valid Unicode), or None when ``optional`` allows it.

    ``max_length`` is the column's limit in characters (the unit PostgreSQL's ``varchar(n)``
    counts); SQLite would store a longer string, so the check is made here for both.
    """
    if value is None and optional:
        return None
    if not isinstance(value, str):
        raise StoreValueError(f"expected a string, got {type(value).__name__}", field=where)
    _check_str(value, where, no_nul=True)
    if max_length is not None and len(value) > max_length:
        raise StoreValueError(
            f"is {len(value)} characters long; the limit is {max_length}", field=where
        )
    return value


def check_name(value: object, where: str, max_length: int) -> str:
    """Return a non-empty storable string of at most ``max_length`` characters (role, encoding)."""
    name = check_text(value, where, max_length=max_length)
    if not name:
        raise StoreValueError("must be a non-empty string", field=where)
    return name


def check_time(value: datetime, where: str) -> datetime:
    """Return an aware timestamp in UTC; refuse a naive one or one UTC cannot represent."""
    if value.tzinfo is None:
        raise StoreValueError("timestamp has no UTC offset", field=where)
    try:
        return value.astimezone(timezone.utc)
    except (OverflowError, ValueError):
        raise StoreValueError(
            "timestamp is out of range once converted to UTC", field=where
        ) from None


def _check_str(value: str, where: str, *, no_nul: bool) -> None:
    if _SURROGATE.search(value):
        raise StoreValueError("string is not valid Unicode (lone surrogate)", field=where)
    # PostgreSQL text and jsonb cannot hold NUL; refuse it everywhere so both backends agree.
    if no_nul and "\x00" in value:
        raise StoreValueError("string contains a NUL character", field=where)


def check_json(value: Any, where: str, *, metadata: bool = False) -> Any:
    """Return ``value`` as plain JSON data (dicts, lists, str, int, finite float, bool, None).

    Raises :class:`StoreValueError` naming the path of the first value that is not JSON (a
    ``datetime``, a set, a non-string key, NaN...). With ``metadata`` set, strings may not hold
    NUL and keys or values that look like credentials are refused.
    """
    try:
        return _json(value, where, metadata)
    except RecursionError:
        raise StoreValueError("nested too deeply", field=where) from None


def _json(value: Any, where: str, metadata: bool) -> Any:
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        # Python refuses to write an int of more than sys.get_int_max_str_digits() digits
        # (4300 by default): the JSON serializer would fail in the middle of the insert.
        if value.bit_length() > 64:
            try:
                str(value)
            except ValueError:
                raise StoreValueError("integer has too many digits for JSON", field=where) from None
        return value
    if isinstance(value, str):
        _check_str(value, where, no_nul=metadata)
        if metadata and looks_like_secret_value(value):
            raise StoreValueError(
                "value looks like an API key or bearer token; credentials are never stored",
                field=where,
            )
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise StoreValueError(f"{value!r} is not a JSON number", field=where)
        return value
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise StoreValueError(
                    f"object keys must be strings, got {type(key).__name__} {key!r}", field=where
                )
            sub = f"{where}.{key}"
            _check_str(key, sub, no_nul=metadata)
            if metadata and looks_like_secret_key(key):
                raise StoreValueError(
                    "key names a credential; API keys and tokens are never stored", field=sub
                )
            out[key] = _json(item, sub, metadata)
        return out
    if isinstance(value, (list, tuple)):
        return [_json(item, f"{where}[{i}]", metadata) for i, item in enumerate(value)]
    raise StoreValueError(f"{type(value).__name__} is not a JSON value", field=where)


def dump_json(value: Any) -> str:
    """Serialize checked JSON data compactly (the form sizes are measured and stored in)."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def check_metadata(value: object, where: str = "metadata") -> dict[str, Any]:
    """Return metadata as a plain dict after every check; None means ``{}``.

    Metadata must be a JSON object of at most :data:`MAX_METADATA_BYTES` bytes (compact UTF-8)
    and may not contain credentials (see :func:`looks_like_secret_key`).
    """
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise StoreValueError(
            f"metadata must be a JSON object (a mapping), got {type(value).__name__}", field=where
        )
    data: dict[str, Any] = check_json(value, where, metadata=True)
    size = len(dump_json(data).encode("utf-8"))
    if size > MAX_METADATA_BYTES:
        raise StoreValueError(
            f"metadata is {size} bytes of JSON; the limit is {MAX_METADATA_BYTES}", field=where
        )
    return data


def message_payload(message: Message, where: str = "message") -> dict[str, Any]:
    """Return the wire dict of ``message`` after checking it is storable JSON."""
    payload: dict[str, Any] = check_json(message.to_openai(), where)
    return payload
