"""Prompt-token counting that matches the ``prompt_tokens`` the API reports.

The count of a request is the sum of its messages' counts, plus the reply priming, plus the
tool definitions and ``tool_choice``. Each part follows a published rule or published figures:

* **Messages** (OpenAI cookbook, "How to count tokens with tiktoken"): every message adds
  ``tokens_per_message`` (3) plus the tokens of its role and its text; a ``name`` adds its text
  plus ``tokens_per_name`` (1); every request adds ``reply_priming`` (3).
* **Tools** (:mod:`convkit.tokens._tools`): the definitions are rendered as the TypeScript-like
  ``namespace functions { ... }`` text the API builds, under the model's
  :class:`~convkit.models.ToolProfile`; the block adds 9 tokens, 4 fewer when the request has a
  system message (the first of which gains a newline), ``tool_choice="none"`` 1 and a named
  choice 7 plus the name. The legacy ``functions`` / ``function_call`` count the same way.
* **Images** (OpenAI vision guide, "calculating costs"): ``detail: low`` costs the model's base
  tokens; high detail scales the image to fit 2048x2048, then its shortest side down to 768, and
  charges base + tile tokens per 512px tile; patch-priced models (gpt-4.1-mini/nano, o4-mini,
  gpt-5-mini/nano) charge 32px patches capped at 1536, times a multiplier (rounded up).
  ``auto`` is counted as ``high`` (the API may pick low; over-counting is the safe side).
  Sizes come from ``data:`` URLs (PNG, JPEG, GIF, WebP headers); a remote image's size is
  unknown and is assumed to be :attr:`TokenCounter.remote_image_size` (default 768x2048, the
  most tiles a high-detail image can cost).
* **Estimates**, always on the high side and named in :attr:`TokenCount.reasons`: tool-call
  history (assistant ``tool_calls``: name + arguments + 3 per call, plus the parallel-call
  wrapper for two or more; ``tool`` results: their ``tool_call_id`` as well as their text),
  tool schemas beyond the published figures, audio parts (10 tokens a second, from the WAV header
  or at 128 kbit/s otherwise), file parts (``file_part_tokens``), content parts of unknown type
  (their JSON text), and models flagged ``ModelInfo.exact=False``.

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

import attrs

from convkit import models as _models
from convkit._encodings import get_encoding
from convkit.errors import InvalidMessageError, InvalidRequestError
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
from convkit.tokens import _tools

if TYPE_CHECKING:
    import tiktoken

__all__ = [
    "TokenCount",
    "TokenCounter",
    "count_tokens",
    "counter_for",
    "image_dimensions",
    "image_tokens",
    "measure_tokens",
]

Tools = Sequence[Mapping[str, Any]]

_TOOL_CALL_OVERHEAD = 3
_PLAIN_ROLES = frozenset({"system", "developer", "user", "assistant"})
_SYSTEM_ROLES = frozenset({"system", "developer"})
# Appending a newline can only change how a text's last pre-token splits: a long tail suffices.
_PAD_TAIL = 512

#: Why a count is an estimate (:attr:`TokenCount.reasons` holds these texts, or longer ones
#: that start with them).
HISTORY = "tool-call history is estimated (no published rule)"
LEGACY_HISTORY = "function-call history is verified only under tool profile 2023"
IMAGE_SIZE = "remote image size assumed"
IMAGE_AUTO = "image detail 'auto' counted as 'high'"
AUDIO = "audio tokens estimated"
FILE = "file part tokens assumed"
RAW_PART = "unknown content part counted as its JSON text"
TOOL_SCHEMA = "tool schema beyond the published figures"
NESTED = "nested tool parameters: within +1 of the published figures under tool profile "


def _reasons(value: Iterable[str]) -> tuple[str, ...]:
    return tuple(value)


@attrs.frozen
class TokenCount:
    """A token count, and whether it reproduces the API's figure.

    ``exact`` is True when every part of the count follows a rule that published API figures
    verify; otherwise ``reasons`` says which parts are estimates (each estimate errs high, so
    an inexact count is an upper bound as far as the published figures tell). Counts add::

        counter = TokenCounter("gpt-4o")
        result = counter.measure(messages, tools=tools)
        result.tokens, result.exact, result.reasons

    Attributes:
        tokens: the count.
        reasons: why the count is not exact, one text per estimated part (empty when exact).
        exact: ``not reasons``.
    """

    tokens: int
    reasons: tuple[str, ...] = attrs.field(default=(), converter=_reasons)
    exact: bool = attrs.field(init=False)

    @exact.default
    def _exact(self) -> bool:
        return not self.reasons

    def __add__(self, other: TokenCount) -> TokenCount:
        if not isinstance(other, TokenCount):
            return NotImplemented
        return TokenCount(self.tokens + other.tokens, _merge(self.reasons, other.reasons))

    def __int__(self) -> int:
        return self.tokens


def _merge(a: Sequence[str], b: Sequence[str]) -> tuple[str, ...]:
    if not b:
        return tuple(a)
    if not a:
        return tuple(b)
    return tuple(dict.fromkeys([*a, *b]))


class TokenCounter:
    """Counts prompt tokens for one model, remembering each message's count.

    ``count_message`` is what a store keeps on a message's row: a message is tokenized once, and
    fitting a window only adds cached figures. Counting a text costs one tiktoken call. The
    ``measure*`` methods return the same counts as a :class:`TokenCount` that says whether the
    figure is exact or an estimate, and why.

    Example::

        counter = TokenCounter("gpt-4o")
        counter.count([Message.system("Be brief."), Message.user("Hi")])   # prompt_tokens
        counter.count_message(Message.user("Hi"))                          # one message's share
        counter.count_tools(tools, "auto", system=Message.system("Be brief."))  # tools' share
        counter.measure(messages, tools=tools).exact                       # verified or not

    Args:
        model: the model name (resolved through :mod:`convkit.models`; unknown models count with
            the fallback encoding and are flagged ``exact=False``).
        registry: the registry to resolve in (default: the process-wide one).
        remote_image_size: the (width, height) assumed for images given by URL.
        file_part_tokens: the tokens assumed for a ``file`` content part.
        cache_size: how many message counts to remember.
        tool_profile: the tool-rendering profile (a :class:`~convkit.models.ToolProfile` or its
            name; default: the model's ``ModelInfo.tool_profile``).
    """

    def __init__(
        self,
        model: str = "gpt-4o",
        *,
        registry: _models.ModelRegistry | None = None,
        remote_image_size: tuple[int, int] = (768, 2048),
        file_part_tokens: int = 1_000,
        cache_size: int = 65_536,
        tool_profile: str | _models.ToolProfile | None = None,
    ) -> None:
        reg = registry if registry is not None else _models.registry
        self.model = model
        self.info: _models.ModelInfo = reg.resolve(model)
        if tool_profile is not None:
            self.info = attrs.evolve(self.info, tool_profile=tool_profile)
        self.remote_image_size = remote_image_size
        self.file_part_tokens = file_part_tokens
        self._encoding: tiktoken.Encoding | None = None
        # id(message) -> (weak reference, count, estimate reasons). Weak, so that remembering a
        # count never keeps a message (a pasted document, a base64 image) alive.
        self._cache: OrderedDict[int, tuple[weakref.ref[Message], int, tuple[str, ...]]] = (
            OrderedDict()
        )
        self._cache_size = cache_size
        self._lock = threading.Lock()
        self._small: dict[str, int] = {}
        self._parallel: tuple[int, int] | None = None
        self._model_reasons: tuple[str, ...] = (
            () if self.info.exact else (f"no published API figures verify {model}'s counts",)
        )

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
    def tool_profile(self) -> _models.ToolProfile:
        """How this counter renders and bills tool definitions."""
        return self.info.tool_profile

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
        return self._message(message)[0]

    def measure_message(self, message: MessageLike) -> TokenCount:
        """:meth:`count_message` as a :class:`TokenCount` (exact, or why not)."""
        n, why = self._message(message)
        return TokenCount(n, _merge(self._model_reasons, why))

    def _message(
        self, message: MessageLike, index: int | None = None
    ) -> tuple[int, tuple[str, ...]]:
        if isinstance(message, Message):
            key = id(message)
            hit = self._cache.get(key)
            if hit is not None and hit[0]() is message:
                return hit[1], hit[2]
            n, why = self._count_message(message)
            cache = self._cache

            def forget(_: object, key: int = key) -> None:
                cache.pop(key, None)

            with self._lock:
                cache[key] = (weakref.ref(message, forget), n, why)
                if len(cache) > self._cache_size:
                    cache.popitem(last=False)
            return n, why
        fast = self._count_plain(message)
        if fast is not None:
            return fast, ()
        return self._count_message(
            as_message(message) if index is None else as_message(message, index)
        )

    def _count_plain(self, d: Any) -> int | None:
        """Count the commonest wire shape, ``{"role", "content": str[, "name": str]}``, directly.

        Such a dict is valid exactly when these checks pass, so building a Message for it would
        only cost time; anything else returns None and takes the general path.
        """
        if type(d) is not dict or len(d) > 3:
            return None
        role = d.get("role")
        content = d.get("content")
        if type(role) is not str or role not in _PLAIN_ROLES or type(content) is not str:
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

    def _count_message(self, m: Message) -> tuple[int, tuple[str, ...]]:
        info = self.info
        why: tuple[str, ...] = ()
        legacy = self.tool_profile.verified_function_call
        if m.role == "function":
            # A function result is rendered under the function's name instead of a role
            # (hmarr/openai-chat-tokens' 2023 figures).
            n = info.tokens_per_message + self._short(m.name or m.role)
            if not legacy:
                why = (LEGACY_HISTORY,)
        else:
            n = info.tokens_per_message + self._short(m.role)
            if m.name is not None:
                n += self._short(m.name) + info.tokens_per_name
        content = m.content
        if isinstance(content, str):
            n += self.count_text(content)
        elif content:
            k, parts_why = self._count_parts(content)
            n += k
            why = _merge(why, parts_why)
        if m.refusal:
            n += self.count_text(m.refusal)
        if m.tool_call_id is not None:
            n += self.count_text(m.tool_call_id)  # on the safe side: the API may not bill it
            why = _merge(why, (HISTORY,))
        if m.tool_calls:
            calls = m.tool_calls
            for call in calls:
                n += _TOOL_CALL_OVERHEAD + self._short(call.name) + self.count_text(call.arguments)
            if len(calls) > 1:
                once, each = self._parallel_wrapper()
                n += once + each * len(calls)
            why = _merge(why, (HISTORY,))
        fc = m.extra.get("function_call") if m.extra else None
        if isinstance(fc, Mapping):
            n += _TOOL_CALL_OVERHEAD + self.count_text(str(fc.get("name", "")))
            n += self.count_text(str(fc.get("arguments", "")))
            if not legacy:
                why = _merge(why, (LEGACY_HISTORY,))
        return n, why

    def _parallel_wrapper(self) -> tuple[int, int]:
        """Tokens of the wrapper the model writes around parallel calls: once, and per call.

        Two or more calls in one assistant message are emitted as one call of
        ``multi_tool_use.parallel`` whose JSON lists each call's recipient and parameters;
        community measurements (two calls cost far more than twice one) match this wrapper.
        """
        if self._parallel is None:
            c = self.count_text
            once = c(' to=multi_tool_use.parallel\n{"tool_uses": [') + c("]}")
            each = c('{"recipient_name": "functions.') + c('", "parameters": ') + c("}, ")
            self._parallel = (once, each)
        return self._parallel

    def _count_parts(self, parts: Sequence[Any]) -> tuple[int, tuple[str, ...]]:
        texts: list[str] = []
        n = 0
        why: list[str] = []
        for p in parts:
            if isinstance(p, TextPart):
                texts.append(p.text)
            elif isinstance(p, ImagePart):
                n += self.count_image(p)
                if p.detail in (None, "auto"):
                    why.append(IMAGE_AUTO)
                if p.detail != "low" and image_dimensions(p.url) is None:
                    why.append(IMAGE_SIZE)
            elif isinstance(p, AudioPart):
                n += _audio_tokens(p)
                why.append(AUDIO)
            elif isinstance(p, FilePart):
                n += self.file_part_tokens
                why.append(FILE)
            elif isinstance(p, RawPart):
                value = p.data.get(p.type)
                texts.append(value if isinstance(value, str) else json.dumps(dict(p.data)))
                why.append(RAW_PART)
        if texts:
            # One tiktoken call for all the message's text, however many parts it came in.
            n += self.count_text("".join(texts))
        return n, tuple(dict.fromkeys(why))

    def count_messages(self, messages: Iterable[MessageLike]) -> int:
        """Prompt tokens of ``messages`` alone (with reply priming, without tools)."""
        total = self.info.reply_priming
        for i, m in enumerate(_message_list(messages)):
            if isinstance(m, Message):
                total += self.count_message(m)
                continue
            fast = self._count_plain(m)
            total += fast if fast is not None else self._count_message(as_message(m, i))[0]
        return total

    def count(
        self,
        messages: Iterable[MessageLike],
        *,
        tools: Tools | None = None,
        tool_choice: Any = None,
        functions: Tools | None = None,
        function_call: Any = None,
    ) -> int:
        """The ``prompt_tokens`` a request with these messages (and tools) is charged.

        Equals ``count_messages(messages) + count_tools(tools, tool_choice, system=...)`` with the
        request's first system (or developer) message as ``system``.
        """
        if not tools and not functions:
            return self.count_messages(messages)
        return self.measure(
            messages,
            tools=tools,
            tool_choice=tool_choice,
            functions=functions,
            function_call=function_call,
        ).tokens

    def measure(
        self,
        messages: Iterable[MessageLike],
        *,
        tools: Tools | None = None,
        tool_choice: Any = None,
        functions: Tools | None = None,
        function_call: Any = None,
    ) -> TokenCount:
        """:meth:`count` as a :class:`TokenCount`: the same figure, and whether it is exact."""
        total = self.info.reply_priming
        why: tuple[str, ...] = self._model_reasons
        system: MessageLike | None = None
        for i, m in enumerate(_message_list(messages)):
            n, w = self._message(m, i)
            total += n
            if w:
                why = _merge(why, w)
            if system is None and _role(m) in _SYSTEM_ROLES:
                system = m
        t = self.measure_tools(
            tools, tool_choice, system=system, functions=functions, function_call=function_call
        )
        return TokenCount(total + t.tokens, _merge(why, t.reasons))

    # ---- tools

    def count_tools(
        self,
        tools: Tools | None,
        tool_choice: Any = None,
        *,
        system: MessageLike | None = None,
        functions: Tools | None = None,
        function_call: Any = None,
    ) -> int:
        """Tokens ``tools`` (or legacy ``functions``) and the choice add to a prompt (0 for none).

        ``system`` is the request's first system (or developer) message, or None when it has
        none. With a system message the tools join it (4 tokens fewer, plus the newline its text
        gains); without one, the figure is the larger, so ``count_tools(tools, tool_choice)`` is
        a safe fixed cost before the window's messages are known.
        """
        return self.measure_tools(
            tools, tool_choice, system=system, functions=functions, function_call=function_call
        ).tokens

    def measure_tools(
        self,
        tools: Tools | None,
        tool_choice: Any = None,
        *,
        system: MessageLike | None = None,
        functions: Tools | None = None,
        function_call: Any = None,
    ) -> TokenCount:
        """:meth:`count_tools` as a :class:`TokenCount`: the figure, and whether it is exact."""
        if not tools and not functions:
            return TokenCount(0)
        profile = self.tool_profile
        fns, other = _tools.functions_of(tools, functions)
        _tools.check_choice(tool_choice, function_call)
        try:
            n, beyond, inexact = _tools.definitions_cost(fns, other, profile, self.count_text)
        except RecursionError:
            raise InvalidRequestError(
                "tool schemas nest too deeply to render", param="tools"
            ) from None
        names = [str(f.get("name", "")) for f in fns]
        k, notes = _tools.choice_cost(tool_choice, function_call, names, profile, self.count_text)
        n += k
        if system is not None:
            n += profile.system_offset + self._newline_gain(system)
        why = list(self._model_reasons)
        if beyond:
            why.append(f"{TOOL_SCHEMA}: {', '.join(beyond)}")
        elif inexact:
            why.append(f"{NESTED}{profile.name}")
        why.extend(notes)
        return TokenCount(n, tuple(why))

    def _newline_gain(self, system: MessageLike) -> int:
        """Tokens the system message's text gains when the tools block follows it."""
        content = system.content if isinstance(system, Message) else _get(system, "content")
        if isinstance(content, str):
            text = content
        elif isinstance(content, Sequence):
            text = "".join(
                p.text if isinstance(p, TextPart) else str(_get(p, "text") or "") for p in content
            )
        else:
            text = ""
        tail = text[-_PAD_TAIL:]
        return max(0, self.count_text(tail + "\n") - self.count_text(tail))

    # ---- images

    def count_image(self, part: ImagePart) -> int:
        """Tokens an image part costs for this model (see the module docs for the rules)."""
        size = image_dimensions(part.url) or self.remote_image_size
        return image_tokens(self.info.image_cost, size[0], size[1], part.detail)


def _message_list(messages: Any) -> Iterable[MessageLike]:
    """``messages`` if it can be a list of messages; else an InvalidMessageError."""
    if isinstance(messages, (str, bytes, Mapping, Message)) or not isinstance(messages, Iterable):
        raise InvalidMessageError(f"expected a list of messages, got {type(messages).__name__}")
    return messages


def _get(d: Any, key: str) -> Any:
    return d.get(key) if isinstance(d, Mapping) else None


def _role(m: MessageLike) -> Any:
    return m.role if isinstance(m, Message) else _get(m, "role")


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
    return cost.base + cost.tile * _units(w, 512) * _units(h, 512)


def _units(length: float, size: int) -> int:
    """How many ``size``-pixel tiles (or patches) cover ``length`` pixels: at least one.

    Scaling an extreme aspect ratio can leave a side a fraction of a pixel long; it is still
    one row of tiles, never zero. A tiny epsilon keeps float noise (1056.0000000001) from
    costing a whole extra unit.
    """
    return max(1, math.ceil(length / size - 1e-9))


def _patches(width: int, height: int, cap: int) -> int:
    raw = -(-width // 32) * -(-height // 32)
    if raw <= cap:
        return raw
    r = math.sqrt(32 * 32 * cap / (width * height))
    pw, ph = width * r / 32, height * r / 32
    # Shrink so whole patches fit each side; a side under one patch stays one patch wide.
    r *= min(max(1, math.floor(pw)) / pw, max(1, math.floor(ph)) / ph)
    return min(cap, _units(width * r, 32) * _units(height * r, 32))


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


def counter_for(model: str) -> TokenCounter:
    """The shared :class:`TokenCounter` for ``model`` in the process-wide registry.

    One counter per model (and registry version), so that its remembered message counts serve
    every caller; registering or changing a model gives later calls a fresh counter.
    """
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


_counter_for = counter_for


def count_tokens(
    messages: Iterable[MessageLike],
    *,
    model: str,
    tools: Tools | None = None,
    tool_choice: Any = None,
    functions: Tools | None = None,
    function_call: Any = None,
) -> int:
    """The ``prompt_tokens`` the API reports for ``messages`` (and tools) sent to ``model``.

    ``tools`` / ``tool_choice`` and the legacy ``functions`` / ``function_call`` are the request
    parameters of the same names. Messages may be :class:`~convkit.Message` values or OpenAI
    wire dicts; invalid input raises :class:`~convkit.InvalidMessageError` naming the message
    index and field. :func:`measure_tokens` says whether the figure is exact.
    """
    return counter_for(model).count(
        messages,
        tools=tools,
        tool_choice=tool_choice,
        functions=functions,
        function_call=function_call,
    )


def measure_tokens(
    messages: Iterable[MessageLike],
    *,
    model: str,
    tools: Tools | None = None,
    tool_choice: Any = None,
    functions: Tools | None = None,
    function_call: Any = None,
) -> TokenCount:
    """:func:`count_tokens` as a :class:`TokenCount`: the figure, and whether it is exact."""
    return counter_for(model).measure(
        messages,
        tools=tools,
        tool_choice=tool_choice,
        functions=functions,
        function_call=function_call,
    )
