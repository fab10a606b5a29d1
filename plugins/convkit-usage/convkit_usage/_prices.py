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
from types import MappingProxyType
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
# Two public, dated price tables that cite OpenAI's pricing page; a figure is built in only
# where both (or a third) agree on all three numbers.
_GENAI_PRICES = "github.com/pydantic/genai-prices prices/providers/openai.yml"
_OPENAI_PRICING_JSON = "github.com/outl1ne/openai-pricing pricing.json"
_LLM_PRICES = "github.com/simonw/llm-prices data/openai.json"


def _official(model: str, uncached: str, cached: str | None, output: str) -> Price:
    return Price(
        input=Decimal(uncached),
        cached_input=None if cached is None else Decimal(cached),
        output=Decimal(output),
        source=f"{_OPENAI_DOCS}/{model} ({_READ})",
    )


def _agreed(uncached: str, cached: str | None, output: str, *tables: str) -> Price:
    return Price(
        input=Decimal(uncached),
        cached_input=None if cached is None else Decimal(cached),
        output=Decimal(output),
        source=f"agreed by {' and '.join(tables)} ({_READ}); not read on OpenAI's own pages",
    )


#: The built-in table (standard tier, text tokens). Figures read on OpenAI's own model pages
#: say so; the others are where two independent public price tables agree on all three
#: figures, and their source says which. Models on which they disagree, or that only one
#: table lists, are left out: add them with a price file or :func:`set_prices`.
_BY_ALIAS: dict[str, Price] = {
    "gpt-5-mini": _official("gpt-5-mini", "0.25", "0.025", "2.00"),
    "gpt-5-nano": _official("gpt-5-nano", "0.05", "0.005", "0.40"),
    "gpt-4": _official("gpt-4", "30", None, "60"),
    "gpt-5": _agreed("1.25", "0.125", "10", _GENAI_PRICES, _OPENAI_PRICING_JSON),
    "gpt-4.1": _agreed("2.00", "0.50", "8.00", _GENAI_PRICES, _OPENAI_PRICING_JSON),
    "gpt-4.1-mini": _agreed("0.40", "0.10", "1.60", _GENAI_PRICES, _OPENAI_PRICING_JSON),
    "gpt-4.1-nano": _agreed("0.10", "0.025", "0.40", _GENAI_PRICES, _OPENAI_PRICING_JSON),
    "gpt-4o": _agreed("2.50", "1.25", "10", _GENAI_PRICES, _OPENAI_PRICING_JSON, _LLM_PRICES),
    "gpt-4o-mini": _agreed(
        "0.15", "0.075", "0.60", _GENAI_PRICES, _OPENAI_PRICING_JSON, _LLM_PRICES
    ),
    "o1": _agreed("15", "7.50", "60", _GENAI_PRICES, _OPENAI_PRICING_JSON, _LLM_PRICES),
    "o3-mini": _agreed("1.10", "0.55", "4.40", _GENAI_PRICES, _LLM_PRICES),
    "o4-mini": _agreed("1.10", "0.275", "4.40", _GENAI_PRICES, _OPENAI_PRICING_JSON),
}
# Dated snapshots the server names in response.model, priced as their alias (the tables list
# them under it).
BUILTIN_PRICES: Mapping[str, Price] = MappingProxyType(
    {
        **_BY_ALIAS,
        **{
            snapshot: _BY_ALIAS[alias]
            for snapshot, alias in (
                ("gpt-5-2025-08-07", "gpt-5"),
                ("gpt-5-mini-2025-08-07", "gpt-5-mini"),
                ("gpt-5-nano-2025-08-07", "gpt-5-nano"),
                ("gpt-4.1-2025-04-14", "gpt-4.1"),
                ("gpt-4.1-mini-2025-04-14", "gpt-4.1-mini"),
                ("gpt-4.1-nano-2025-04-14", "gpt-4.1-nano"),
                ("gpt-4o-2024-08-06", "gpt-4o"),
                ("gpt-4o-2024-11-20", "gpt-4o"),
                ("gpt-4o-mini-2024-07-18", "gpt-4o-mini"),
                ("o1-2024-12-17", "o1"),
                ("o3-mini-2025-01-31", "o3-mini"),
                ("o4-mini-2025-04-16", "o4-mini"),
            )
        },
    }
)

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
