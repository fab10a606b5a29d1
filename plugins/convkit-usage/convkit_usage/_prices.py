"""Prices per million tokens, where each built-in figure comes from, and the user's overrides.

A price is looked up by exact model name: first the model the server says answered
(``response.model``), then the model that was asked for. A model with no price gets no cost
(NULL in the table, "-" in the report), never a guessed one: no prefix matching, no "close
enough" snapshot.

Overrides, strongest first:

1. the conversation's settings: ``plugin_settings={"usage": {"prices": {...}}}``;
2. :func:`set_prices` in code;
3. the JSON file named by ``$CONVKIT_USAGE_PRICES`` (re-read when it changes);
4. the built-in table :data:`BUILTIN_PRICES`.

Each JSON entry maps a model to ``{"input": ..., "cached_input": ..., "output": ...}`` in US
dollars per million tokens (``cached_input`` may be omitted or null: cached prompt tokens are
then billed at the input price), with an optional ``"source"``.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Mapping
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from attrs import frozen

__all__ = [
    "BUILTIN_PRICES",
    "PRICES_ENV",
    "Price",
    "PriceError",
    "clear_prices",
    "cost_nanousd",
    "find_price",
    "parse_prices",
    "prices",
    "set_prices",
]

#: Environment variable naming a JSON file of prices (see the module docstring).
PRICES_ENV = "CONVKIT_USAGE_PRICES"

_MILLION = Decimal(1_000_000)
_NANO = Decimal(1_000_000_000)


class PriceError(ValueError):
    """A price table (JSON file, settings or :func:`set_prices` argument) is malformed."""


@frozen(kw_only=True)
class Price:
    """What one model costs, in US dollars per million tokens.

    Attributes:
        input: uncached prompt tokens.
        output: completion tokens (reasoning tokens included: they are billed as output).
        cached_input: prompt tokens served from the prompt cache; None bills them at
            ``input`` (the model has no cached-input price).
        source: where the figures come from (a URL and the date it was read).

    Example::

        Price(input=Decimal("0.25"), cached_input=Decimal("0.025"), output=Decimal("2"))
    """

    input: Decimal
    output: Decimal
    cached_input: Decimal | None = None
    source: str = ""


_OPENAI_DOCS = "https://developers.openai.com/api/docs/models"
_READ = "read 2026-12-01"

#: The built-in table: only figures read on OpenAI's own model pages (standard tier, text
#: tokens). Models whose three figures could not be checked there are left out; add them
#: with a price file or :func:`set_prices`.
BUILTIN_PRICES: Mapping[str, Price] = {
    "gpt-5-mini": Price(
        input=Decimal("0.25"),
        cached_input=Decimal("0.025"),
        output=Decimal("2.00"),
        source=f"{_OPENAI_DOCS}/gpt-5-mini ({_READ})",
    ),
    "gpt-5-nano": Price(
        input=Decimal("0.05"),
        cached_input=Decimal("0.005"),
        output=Decimal("0.40"),
        source=f"{_OPENAI_DOCS}/gpt-5-nano ({_READ})",
    ),
    "gpt-4": Price(
        input=Decimal("30"),
        cached_input=None,
        output=Decimal("60"),
        source=f"{_OPENAI_DOCS}/gpt-4 ({_READ})",
    ),
}

_lock = threading.Lock()
_overrides: dict[str, Price] = {}
_file_cache: dict[str, tuple[int, dict[str, Price]]] = {}


def _decimal(value: Any, where: str) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, (int, float, str, Decimal)):
        raise PriceError(f"{where} must be a number, got {type(value).__name__}")
    try:
        number = Decimal(str(value))
    except InvalidOperation as exc:
        raise PriceError(f"{where} must be a number, got {value!r}") from exc
    if not number.is_finite() or number < 0:
        raise PriceError(f"{where} must be a finite number >= 0, got {value!r}")
    return number


def _price(model: str, entry: Any, default_source: str) -> Price:
    if isinstance(entry, Price):
        return entry
    if not isinstance(entry, Mapping):
        raise PriceError(f"the price of {model!r} must be an object, got {type(entry).__name__}")
    unknown = set(entry) - {"input", "cached_input", "output", "source"}
    if unknown:
        raise PriceError(f"the price of {model!r} has unknown keys: {', '.join(sorted(unknown))}")
    for key in ("input", "output"):
        if key not in entry:
            raise PriceError(f"the price of {model!r} has no {key!r}")
    cached = entry.get("cached_input")
    source = entry.get("source", default_source)
    if not isinstance(source, str):
        raise PriceError(f"the source of {model!r} must be text")
    return Price(
        input=_decimal(entry["input"], f"{model}.input"),
        output=_decimal(entry["output"], f"{model}.output"),
        cached_input=None if cached is None else _decimal(cached, f"{model}.cached_input"),
        source=source,
    )


def parse_prices(table: Any, *, source: str = "") -> dict[str, Price]:
    """Check a price table (``{model: {"input", "cached_input", "output", "source"}}``).

    Raises:
        PriceError: not an object of objects, a missing or negative figure, an unknown key.
    """
    if not isinstance(table, Mapping):
        raise PriceError(f"a price table must be an object, got {type(table).__name__}")
    out: dict[str, Price] = {}
    for model, entry in table.items():
        if not isinstance(model, str) or not model:
            raise PriceError(f"model names must be non-empty text, got {model!r}")
        out[model] = _price(model, entry, source)
    return out


def set_prices(table: Mapping[str, Any], *, replace: bool = False) -> None:
    """Override prices for every conversation of the process.

    ``table`` maps model names to :class:`Price` values or ``{"input", "cached_input",
    "output"}`` objects (US dollars per million tokens). ``replace=True`` drops the earlier
    overrides first. Calls recorded earlier keep the cost they were recorded with.

    Example::

        set_prices({"gpt-4o": {"input": 2.5, "cached_input": 1.25, "output": 10}})
    """
    parsed = parse_prices(table, source="set_prices()")
    with _lock:
        if replace:
            _overrides.clear()
        _overrides.update(parsed)


def clear_prices() -> None:
    """Drop every :func:`set_prices` override (the file and built-in prices stay)."""
    with _lock:
        _overrides.clear()


def _file_prices() -> dict[str, Price]:
    path = os.environ.get(PRICES_ENV)
    if not path:
        return {}
    file = Path(path).expanduser()
    try:
        mtime = file.stat().st_mtime_ns
    except OSError as exc:
        raise PriceError(f"${PRICES_ENV} names {path!r}, which cannot be read: {exc}") from exc
    cached = _file_cache.get(path)
    if cached is not None and cached[0] == mtime:
        return cached[1]
    try:
        data = json.loads(file.read_text(encoding="utf-8"), parse_float=Decimal)
    except (OSError, ValueError) as exc:
        raise PriceError(f"the price file {path!r} is not valid JSON: {exc}") from exc
    parsed = parse_prices(data, source=str(file))
    _file_cache[path] = (mtime, parsed)
    return parsed


def prices(settings: Mapping[str, Any] | None = None) -> dict[str, Price]:
    """The price table in force: built-in, file, :func:`set_prices`, then ``settings``.

    ``settings`` is a conversation's ``plugin_settings["usage"]`` (its ``"prices"`` key).
    """
    table = dict(BUILTIN_PRICES)
    table.update(_file_prices())
    with _lock:
        table.update(_overrides)
    own = (settings or {}).get("prices")
    if own is not None:
        table.update(parse_prices(own, source="plugin_settings"))
    return table


def find_price(table: Mapping[str, Price], *models: str | None) -> Price | None:
    """The price of the first of ``models`` the table lists by exact name, or None."""
    for model in models:
        if model and model in table:
            return table[model]
    return None


def cost_nanousd(
    price: Price, *, prompt_tokens: int, cached_tokens: int, completion_tokens: int
) -> int:
    """The cost of one call in billionths of a US dollar (exact decimal arithmetic, rounded
    half-even once)."""
    cached = min(max(cached_tokens, 0), prompt_tokens)
    cached_rate = price.cached_input if price.cached_input is not None else price.input
    dollars = (
        Decimal(prompt_tokens - cached) * price.input
        + Decimal(cached) * cached_rate
        + Decimal(completion_tokens) * price.output
    ) / _MILLION
    return int((dollars * _NANO).quantize(Decimal(1), rounding=ROUND_HALF_EVEN))
