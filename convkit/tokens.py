"""Prompt-token counting that matches the ``prompt_tokens`` the API reports.

The count of a request is the sum of its messages' counts, plus the reply priming, plus the
tool definitions. Each part follows OpenAI's published rules:

* **Messages** (OpenAI cookbook, "How to count tokens with tiktoken"): every message adds
  ``tokens_per_message`` (3) plus the tokens of its role and its text; a ``name`` adds its text
  plus ``tokens_per_name`` (1); every request adds ``reply_priming`` (3).
* **Tools** (same cookbook, "counting tokens for chat completions with tool calls"): each
  function adds ``tool_func_init`` (7 for o200k models, 10 for cl100k ones) and the tokens of
  ``name:description``; a non-empty parameter list adds 3, each property 3 plus
  ``name:type:description``; an enum adds -3 plus 3 and the item's tokens per item; the tool
  list closes with 12. One trailing period is dropped from descriptions. Nested objects
  recurse with the same rules (the cookbook's figures cover flat schemas; nesting is an
  extrapolation).
* **Images** (OpenAI vision guide, "calculating costs"): ``detail: low`` costs the model's base
  tokens; high detail scales the image to fit 2048x2048, then its shortest side down to 768, and
  charges base + tile tokens per 512px tile; patch-priced models (gpt-4.1-mini/nano, o4-mini,
  gpt-5-mini/nano) charge 32px patches capped at 1536, times a multiplier (rounded up).
  ``auto`` is counted as ``high`` (the API may pick low; over-counting is the safe side).
  Sizes come from ``data:`` URLs (PNG, JPEG, GIF, WebP headers); a remote image's size is
  unknown and is assumed to be :attr:`TokenCounter.remote_image_size` (default 768x2048, the
  most tiles a high-detail image can cost).
* **Estimates**, flagged by ``ModelInfo.exact=False`` or documented here: assistant tool calls
  (name + arguments + 3 per call), audio parts (10 tokens a second, from the WAV header or at
  128 kbit/s otherwise), file parts (``file_part_tokens``), and content parts of unknown type
  (their JSON text).

Example::

    >>> import convkit
    >>> convkit.count_tokens([{"role": "user", "content": "Hello!"}], model="gpt-4o")
    9
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import struct
import threading
import weakref
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from convkit import models as _models
from convkit._encodings import get_encoding
from convkit.messages import (
    AudioPart,
    FilePart,
    ImagePart,
    Message,
    MessageLike,
    RawPart,
    TextPart,
    as_message,
)

if TYPE_CHECKING:
    import tiktoken

__all__ = ["TokenCounter", "count_tokens", "image_dimensions"]

# Tool-definition format constants (cookbook). func_init varies by model and lives in ModelInfo.
_PROP_INIT = 3
_PROP_KEY = 3
_ENUM_INIT = -3
_ENUM_ITEM = 3
_FUNC_END = 12
_TOOL_CALL_OVERHEAD = 3
_PLAIN_ROLES = frozenset({"system", "developer", "user", "assistant"})


class TokenCounter:
    """Counts prompt tokens for one model, remembering each message's count.

    ``count_message`` is what a store keeps on a message's row: a message is tokenized once, and
    fitting a window only adds cached figures. Counting a text costs one tiktoken call.

    Example::

        counter = TokenCounter("gpt-4o")
        counter.count([Message.system("Be brief."), Message.user("Hi")])   # prompt_tokens
        counter.count_message(Message.user("Hi"))                          # one message's share

    Args:
        model: the model name (resolved through :mod:`convkit.models`; unknown models count with
            the fallback encoding and are flagged ``exact=False``).
        registry: the registry to resolve in (default: the process-wide one).
        remote_image_size: the (width, height) assumed for images given by URL.
        file_part_tokens: the tokens assumed for a ``file`` content part.
        cache_size: how many message counts to remember.
    """

    def __init__(
        self,
        model: str = "gpt-4o",
        *,
        registry: _models.ModelRegistry | None = None,
        remote_image_size: tuple[int, int] = (768, 2048),
        file_part_tokens: int = 1_000,
        cache_size: int = 65_536,
    ) -> None:
        reg = registry if registry is not None else _models.registry
        self.model = model
        self.info: _models.ModelInfo = reg.resolve(model)
        self.remote_image_size = remote_image_size
        self.file_part_tokens = file_part_tokens
        self._encoding: tiktoken.Encoding | None = None
        # id(message) -> (weak reference, count). Weak, so that remembering a count never keeps
        # a message (a pasted document, a base64 image) alive.
        self._cache: OrderedDict[int, tuple[weakref.ref[Message], int]] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()
        self._small: dict[str, int] = {}

    def __repr__(self) -> str:
        return f"TokenCounter(model={self.model!r}, encoding={self.encoding_name!r})"

    # ---- basics

    @property
    def encoding_name(self) -> str:
        """The tiktoken encoding this counter uses (stored next to cached counts)."""
        return self.info.encoding

    @property
    def exact(self) -> bool:
        """Whether counts for this model reproduce the API's figures (else they are estimates)."""
        return self.info.exact

    @property
    def encoding(self) -> tiktoken.Encoding:
        """The tiktoken encoding, loaded on first use (without a download; see ``_encodings``)."""
        enc = self._encoding
        if enc is None:
            enc = self._encoding = get_encoding(self.info.encoding)
        return enc

    def count_text(self, text: str) -> int:
        """Tokens in ``text`` (special-token strings count as ordinary text, as in the API)."""
        if not text:
            return 0
        return len(self.encoding.encode_ordinary(text))

    def _short(self, text: str) -> int:
        # Roles and names repeat endlessly; remember their counts.
        n = self._small.get(text)
        if n is None:
            n = self.count_text(text)
            if len(self._small) < 4096:
                self._small[text] = n
        return n

    # ---- messages

    def count_message(self, message: MessageLike) -> int:
        """Tokens ``message`` adds to a prompt: format overhead included, reply priming excluded."""
        if isinstance(message, Message):
            key = id(message)
            hit = self._cache.get(key)
            if hit is not None and hit[0]() is message:
                return hit[1]
            n = self._count_message(message)
            cache = self._cache

            def forget(_: object, key: int = key) -> None:
                cache.pop(key, None)

            with self._lock:
                cache[key] = (weakref.ref(message, forget), n)
                if len(cache) > self._cache_size:
                    cache.popitem(last=False)
            return n
        fast = self._count_plain(message)
        if fast is not None:
            return fast
        return self._count_message(as_message(message))

    def _count_plain(self, d: Any) -> int | None:
        """Count the commonest wire shape, ``{"role", "content": str[, "name": str]}``, directly.

        Such a dict is valid exactly when these checks pass, so building a Message for it would
        only cost time; anything else returns None and takes the general path.
        """
        if type(d) is not dict or len(d) > 3:
            return None
        role = d.get("role")
        content = d.get("content")
        if role not in _PLAIN_ROLES or type(content) is not str:
            return None
        info = self.info
        n = info.tokens_per_message + self._short(role) + self.count_text(content)
        if len(d) == 3:
            name = d.get("name")
            if type(name) is not str:
                return None
            n += self._short(name) + info.tokens_per_name
        elif len(d) != 2:
            return None
        return n

    def _count_message(self, m: Message) -> int:
        info = self.info
        n = info.tokens_per_message + self._short(m.role)
        if m.name is not None:
            n += self._short(m.name) + info.tokens_per_name
        content = m.content
        if isinstance(content, str):
            n += self.count_text(content)
        elif content:
            n += self._count_parts(content)
        if m.refusal:
            n += self.count_text(m.refusal)
        if m.tool_calls:
            for call in m.tool_calls:
                n += _TOOL_CALL_OVERHEAD + self._short(call.name) + self.count_text(call.arguments)
        fc = m.extra.get("function_call") if m.extra else None
        if isinstance(fc, Mapping):
            n += _TOOL_CALL_OVERHEAD + self.count_text(str(fc.get("name", "")))
            n += self.count_text(str(fc.get("arguments", "")))
        return n

    def _count_parts(self, parts: Sequence[Any]) -> int:
        texts: list[str] = []
        n = 0
        for p in parts:
            if isinstance(p, TextPart):
                texts.append(p.text)
            elif isinstance(p, ImagePart):
                n += self.count_image(p)
            elif isinstance(p, AudioPart):
                n += _audio_tokens(p)
            elif isinstance(p, FilePart):
                n += self.file_part_tokens
            elif isinstance(p, RawPart):
                value = p.data.get(p.type)
                texts.append(value if isinstance(value, str) else json.dumps(dict(p.data)))
        if texts:
            # One tiktoken call for all the message's text, however many parts it came in.
            n += self.count_text("".join(texts))
        return n

    def count_messages(self, messages: Iterable[MessageLike]) -> int:
        """Prompt tokens of ``messages`` alone (with reply priming, without tools)."""
        total = self.info.reply_priming
        for i, m in enumerate(messages):
            if isinstance(m, Message):
                total += self.count_message(m)
                continue
            fast = self._count_plain(m)
            total += fast if fast is not None else self._count_message(as_message(m, i))
        return total

    def count(
        self, messages: Iterable[MessageLike], *, tools: Sequence[Mapping[str, Any]] | None = None
    ) -> int:
        """The ``prompt_tokens`` a request with these messages (and tools) is charged."""
        return self.count_messages(messages) + self.count_tools(tools)

    # ---- tools

    def count_tools(self, tools: Sequence[Mapping[str, Any]] | None) -> int:
        """Tokens the ``tools`` parameter adds to a prompt (0 for none)."""
        if not tools:
            return 0
        n = 0
        for i, tool in enumerate(tools):
            if not isinstance(tool, Mapping):
                raise TypeError(f"tools[{i}] must be an object, got {type(tool).__name__}")
            fn = tool.get("function") if tool.get("type", "function") == "function" else None
            if not isinstance(fn, Mapping):
                # Custom or vendor tools: no published rule; count their JSON text.
                n += self.info.tool_func_init + self.count_text(json.dumps(tool, sort_keys=True))
                continue
            n += self.info.tool_func_init
            name = str(fn.get("name", ""))
            n += self.count_text(f"{name}:{_strip_period(fn.get('description'))}")
            params = fn.get("parameters")
            if isinstance(params, Mapping):
                n += self._count_properties(params.get("properties"))
        return n + _FUNC_END

    def _count_properties(self, props: Any) -> int:
        if not isinstance(props, Mapping) or not props:
            return 0
        n = _PROP_INIT
        for pname, spec in props.items():
            n += _PROP_KEY
            if not isinstance(spec, Mapping):
                n += self.count_text(f"{pname}:{json.dumps(spec)}")
                continue
            enum = spec.get("enum")
            if isinstance(enum, list):
                n += _ENUM_INIT
                for item in enum:
                    n += _ENUM_ITEM + self.count_text(
                        item if isinstance(item, str) else json.dumps(item)
                    )
            ptype = spec.get("type", "")
            if isinstance(ptype, list):
                ptype = "|".join(str(t) for t in ptype)
            n += self.count_text(f"{pname}:{ptype}:{_strip_period(spec.get('description'))}")
            n += self._count_properties(spec.get("properties"))
            items = spec.get("items")
            if isinstance(items, Mapping):
                n += self._count_properties(items.get("properties"))
        return n

    # ---- images

    def count_image(self, part: ImagePart) -> int:
        """Tokens an image part costs for this model (see the module docs for the rules)."""
        size = image_dimensions(part.url) or self.remote_image_size
        return image_tokens(self.info.image_cost, size[0], size[1], part.detail)


def _strip_period(text: Any) -> str:
    s = "" if text is None else str(text)
    return s[:-1] if s.endswith(".") else s


def image_tokens(
    cost: _models.TileImageCost | _models.PatchImageCost,
    width: int,
    height: int,
    detail: str | None,
) -> int:
    """Tokens for a ``width`` x ``height`` image under ``cost``'s rules at ``detail``."""
    if width <= 0 or height <= 0:
        raise ValueError(f"image dimensions must be positive, got {width}x{height}")
    if isinstance(cost, _models.PatchImageCost):
        return math.ceil(_patches(width, height, cost.max_patches) * cost.multiplier)
    if detail == "low":
        return cost.base
    w, h = float(width), float(height)
    if max(w, h) > 2048:
        scale = 2048 / max(w, h)
        w, h = w * scale, h * scale
    if min(w, h) > cost.short_side:
        scale = cost.short_side / min(w, h)
        w, h = w * scale, h * scale
    tiles = math.ceil(w / 512 - 1e-9) * math.ceil(h / 512 - 1e-9)
    return cost.base + cost.tile * tiles


def _patches(width: int, height: int, cap: int) -> int:
    raw = -(-width // 32) * -(-height // 32)
    if raw <= cap:
        return raw
    r = math.sqrt(32 * 32 * cap / (width * height))
    pw, ph = width * r / 32, height * r / 32
    r *= min(math.floor(pw) / pw, math.floor(ph) / ph)
    # A tiny epsilon keeps float noise (1056.0000000001) from costing a whole extra patch.
    return min(cap, math.ceil(width * r / 32 - 1e-9) * math.ceil(height * r / 32 - 1e-9))


def image_dimensions(url: str) -> tuple[int, int] | None:
    """Width and height of a ``data:`` URL image (PNG, JPEG, GIF, WebP), or None if unknown."""
    if not url.startswith("data:"):
        return None
    header, sep, payload = url.partition(",")
    if not sep or ";base64" not in header:
        return None
    try:
        # Dimensions sit in the first bytes for PNG/GIF/WebP; JPEG may need to scan further.
        head = base64.b64decode(payload[:4096] + "=" * (-len(payload[:4096]) % 4))
        dims = _sniff(head)
        if dims is None and head[:2] == b"\xff\xd8":
            dims = _sniff(base64.b64decode(payload))
    except (binascii.Error, ValueError, struct.error):
        return None
    if dims is None or dims[0] <= 0 or dims[1] <= 0:
        return None  # a header that claims no pixels tells nothing: treat the size as unknown
    return dims


def _sniff(b: bytes) -> tuple[int, int] | None:
    if b[:8] == b"\x89PNG\r\n\x1a\n" and len(b) >= 24:
        w, h = struct.unpack(">II", b[16:24])
        return int(w), int(h)
    if b[:6] in (b"GIF87a", b"GIF89a") and len(b) >= 10:
        w, h = struct.unpack("<HH", b[6:10])
        return int(w), int(h)
    if b[:4] == b"RIFF" and b[8:12] == b"WEBP" and len(b) >= 30:
        kind = b[12:16]
        if kind == b"VP8 ":
            w, h = struct.unpack("<HH", b[26:30])
            return int(w) & 0x3FFF, int(h) & 0x3FFF
        if kind == b"VP8L":
            bits = int.from_bytes(b[21:25], "little")
            return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
        if kind == b"VP8X":
            return int.from_bytes(b[24:27], "little") + 1, int.from_bytes(b[27:30], "little") + 1
        return None
    if b[:2] == b"\xff\xd8":
        i = 2
        while i + 9 < len(b):
            if b[i] != 0xFF:
                i += 1
                continue
            marker = b[i + 1]
            if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
                i += 2
                continue
            length = struct.unpack(">H", b[i + 2 : i + 4])[0]
            if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
                h, w = struct.unpack(">HH", b[i + 5 : i + 9])
                return int(w), int(h)
            i += 2 + length
    return None


def _audio_tokens(part: AudioPart) -> int:
    # Estimate: 10 tokens per second of audio. WAV headers give the byte rate; other formats
    # are assumed to be 128 kbit/s.
    try:
        raw_len = len(part.data) * 3 // 4
        head = base64.b64decode(part.data[:64] + "=" * (-len(part.data[:64]) % 4))
    except (binascii.Error, ValueError):
        return 0
    byte_rate = 16_000
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE" and len(head) >= 32:
        byte_rate = struct.unpack("<I", head[28:32])[0] or byte_rate
    return math.ceil(raw_len / byte_rate * 10)


_counters: dict[tuple[str, int], TokenCounter] = {}
_counters_lock = threading.Lock()


def _counter_for(model: str) -> TokenCounter:
    key = (model, _models.registry.version)
    counter = _counters.get(key)
    if counter is None:
        with _counters_lock:
            counter = _counters.get(key)
            if counter is None:
                if len(_counters) > 256:
                    _counters.clear()
                counter = _counters[key] = TokenCounter(model)
    return counter


def count_tokens(
    messages: Iterable[MessageLike],
    *,
    model: str,
    tools: Sequence[Mapping[str, Any]] | None = None,
) -> int:
    """The ``prompt_tokens`` the API reports for ``messages`` (and ``tools``) sent to ``model``.

    Messages may be :class:`~convkit.Message` values or OpenAI wire dicts; invalid input raises
    :class:`~convkit.InvalidMessageError` naming the message index and field.
    """
    return _counter_for(model).count(messages, tools=tools)
