"""The model registry: context windows, output limits, encodings and prompt-format overheads.

Every request convkit fits is sized from a :class:`ModelInfo`. The built-in table covers
OpenAI's current and legacy chat models; each figure cites its source in the ``source`` field.
Names resolve forgivingly: ``gpt-4o-2024-08-06`` (dated snapshot), ``openai/gpt-4o`` (gateway
provider prefix) and ``gpt-4o-mini-search-preview`` (a family variant) all find an entry.

Models the registry does not know (other vendors behind a gateway, local models) still work:
they resolve to a fallback entry counted with ``o200k_base``, flagged ``exact=False``, with a
10% safety margin that context fitting holds back. Teach convkit the real figures with
:func:`register` or a JSON file named by ``CONVKIT_MODELS``::

    import convkit.models
    convkit.models.register("llama-3.1-70b", context_window=131_072, max_output_tokens=8_192)

Such an entry is still counted with ``o200k_base`` and flagged as an estimate (it keeps the 10%
margin): only ``exact=True`` claims that the model's tokenizer and chat format are OpenAI's.
The file form is a JSON list of objects with the same keyword names (``name`` required).
"""

from __future__ import annotations

import json
import os
import re
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Union

import attrs
from attrs import field, frozen

from convkit.errors import ModelsFileError, UnknownModelError

__all__ = [
    "DEFAULT_FALLBACK",
    "ModelInfo",
    "ModelRegistry",
    "PatchImageCost",
    "TOOL_PROFILES",
    "TileImageCost",
    "ToolProfile",
    "get",
    "register",
    "registry",
    "resolve",
]


@frozen
class TileImageCost:
    """Image pricing by 512px tiles: ``base`` tokens plus ``tile`` tokens per tile at high detail.

    ``short_side`` is the length the shortest side is scaled down to before tiling (768).
    """

    base: int
    tile: int
    short_side: int = 768


@frozen
class PatchImageCost:
    """Image pricing by 32px patches (capped at ``max_patches``), times a per-model multiplier."""

    multiplier: float
    max_patches: int = 1536


ImageCost = Union[TileImageCost, PatchImageCost]


@frozen(kw_only=True)
class ToolProfile:
    """How the API renders and bills tool definitions for a family of models.

    The API turns ``tools`` (and the legacy ``functions``) into a TypeScript-like
    ``namespace functions { ... }`` text inside the system message; :mod:`convkit.tokens` renders
    the same text and adds these offsets. The rules changed between 2023 and 2024 (nested
    descriptions, nested indentation, named choices), so each model names the profile its
    figures were measured under.

    Attributes:
        name: the profile's name (``"2023"``, ``"2024"``).
        nested_descriptions: whether descriptions of nested properties are rendered (billed).
        indent_nested: whether nested object properties are indented two spaces per level.
        nested_exact: whether the published figures reproduce exactly for nested objects (if
            not, counts with nested objects are flagged as estimates).
        first_property_discount: tokens the API charges less than the rendering when a function's
            first parameter has no description (a measured quirk, applied only to schemas the
            published vectors cover).
        block_overhead: tokens added once when any tools are present (framing of the namespace).
        system_offset: added when the request has a system message (the tools join it instead
            of opening a message of their own).
        choice_none: tokens ``tool_choice="none"`` / ``function_call="none"`` adds.
        named_tool_choice: tokens a named ``tool_choice`` adds, plus the name's tokens.
        named_function_call: tokens a named legacy ``function_call`` adds, plus the name's.
        verified_tool_choice: whether ``tool_choice`` figures were measured under this profile.
        verified_function_call: whether ``function_call`` figures were measured under it.
        source: the published figures the profile reproduces.
    """

    name: str
    nested_descriptions: bool
    indent_nested: bool
    nested_exact: bool = True
    first_property_discount: int = 0
    block_overhead: int = 9
    system_offset: int = -4
    choice_none: int = 1
    named_tool_choice: int = 7
    named_function_call: int = 7
    verified_tool_choice: bool = False
    verified_function_call: bool = False
    source: str = ""


_TOOLS_2023 = ToolProfile(
    name="2023",
    nested_descriptions=False,
    indent_nested=True,
    named_function_call=4,
    verified_function_call=True,
    source="hmarr/openai-chat-tokens tests (2023, gpt-3.5-turbo, functions and function_call)",
)
_TOOLS_2024 = ToolProfile(
    name="2024",
    nested_descriptions=True,
    indent_nested=False,
    # One of the four nested-object figures is 1 token under this rendering.
    nested_exact=False,
    first_property_discount=1,
    verified_tool_choice=True,
    source="pamelafox/openai-messages-token-helper tests (2024, gpt-35-turbo, tools and "
    "tool_choice); OpenAI cookbook tool example (gpt-3.5-turbo, gpt-4, gpt-4o, gpt-4o-mini)",
)

#: The named tool-rendering profiles (``ModelInfo.tool_profile`` accepts these names).
TOOL_PROFILES: Mapping[str, ToolProfile] = {"2023": _TOOLS_2023, "2024": _TOOLS_2024}


def _tool_profile(value: Any) -> ToolProfile:
    if isinstance(value, ToolProfile):
        return value
    if isinstance(value, str) and value in TOOL_PROFILES:
        return TOOL_PROFILES[value]
    raise ValueError(f"unknown tool profile {value!r}; known: {', '.join(sorted(TOOL_PROFILES))}")


_OPENAI_VISION = "https://platform.openai.com/docs/guides/images-vision#calculating-costs"
_TILE_4O = TileImageCost(85, 170)


def _nonneg(_: Any, a: attrs.Attribute[Any], value: int) -> None:
    if value < 0:
        raise ValueError(f"{a.name} must be >= 0, got {value}")


def _positive(_: Any, a: attrs.Attribute[Any], value: int) -> None:
    if value <= 0:
        raise ValueError(f"{a.name} must be > 0, got {value}")


def _margin(_: Any, a: attrs.Attribute[Any], value: float) -> None:
    if not 0.0 <= value < 0.5:
        raise ValueError(f"{a.name} must be in [0, 0.5), got {value}")


@frozen(kw_only=True)
class ModelInfo:
    """What convkit needs to know about a model to count and fit its prompts.

    Attributes:
        name: the model id as the API takes it.
        context_window: prompt plus completion tokens the model accepts.
        max_output_tokens: the most completion tokens it may produce.
        encoding: the tiktoken encoding its prompts are counted with.
        tokens_per_message: tokens each message adds around its content (the chat format).
        tokens_per_name: tokens a ``name`` field adds beyond its own text.
        reply_priming: tokens added once per request for the assistant reply's header.
        tool_profile: how tool definitions are rendered and billed (a :class:`ToolProfile`,
            or its name in :data:`TOOL_PROFILES`; default: the current ``"2024"`` rules).
        exact: True where counts for this model reproduce the API's ``prompt_tokens``.
        safety_margin: fraction of the prompt budget held back when counts are estimates.
        image_cost: how image inputs are priced for this model.
        source: where the figures come from.
    """

    name: str
    context_window: int = field(validator=_positive)
    max_output_tokens: int = field(validator=_positive)
    encoding: str = "o200k_base"
    tokens_per_message: int = 3
    tokens_per_name: int = 1
    reply_priming: int = 3
    tool_profile: ToolProfile = field(default=_TOOLS_2024, converter=_tool_profile)
    exact: bool = True
    safety_margin: float = field(default=0.0, validator=_margin)
    image_cost: TileImageCost | PatchImageCost = _TILE_4O
    source: str = ""

    def __attrs_post_init__(self) -> None:
        _nonneg(self, attrs.fields(ModelInfo).reply_priming, self.reply_priming)


def _m(name: str, ctx: int, out: int, **kw: Any) -> ModelInfo:
    kw.setdefault("source", f"https://platform.openai.com/docs/models/{name}")
    return ModelInfo(name=name, context_window=ctx, max_output_tokens=out, **kw)


_CL100K: dict[str, Any] = {"encoding": "cl100k_base"}
# The 2023 tool figures were measured on gpt-3.5-turbo while it pointed at the 0613 snapshots.
_TOOLS_0613: dict[str, Any] = {"tool_profile": "2023"}
_AZURE = "https://learn.microsoft.com/azure/ai-services/openai/concepts/models"
_COOKBOOK = "https://cookbook.openai.com/examples/how_to_count_tokens_with_tiktoken"
# Reasoning models and the gpt-5 family: the chat format is the o200k one, but no API-reported
# figure has been published to check it against, so counts are flagged as estimates and fitting
# keeps 2% in hand.
_EST: dict[str, Any] = {"exact": False, "safety_margin": 0.02}

_BUILTIN: list[ModelInfo] = [
    # --- gpt-3.5: context/output from the model page; message overheads from the cookbook.
    _m("gpt-3.5-turbo", 16_385, 4_096, **_CL100K),
    _m("gpt-3.5-turbo-0125", 16_385, 4_096, **_CL100K),
    _m("gpt-3.5-turbo-1106", 16_385, 4_096, **_CL100K),
    _m("gpt-3.5-turbo-0613", 4_096, 4_096, **_CL100K, **_TOOLS_0613),
    _m("gpt-3.5-turbo-16k", 16_385, 4_096, **_CL100K, **_TOOLS_0613),
    _m(
        "gpt-3.5-turbo-0301",
        4_096,
        4_096,
        tokens_per_message=4,
        tokens_per_name=-1,
        source=_COOKBOOK + " (legacy revision: 4 tokens per message, -1 per name)",
        **_CL100K,
    ),
    # Azure OpenAI spells the family without the dot (its model names, not deployment names).
    _m("gpt-35-turbo", 16_385, 4_096, source=_AZURE, **_CL100K),
    _m("gpt-35-turbo-16k", 16_385, 4_096, source=_AZURE, **_CL100K, **_TOOLS_0613),
    # --- gpt-4 and gpt-4-turbo.
    _m("gpt-4", 8_192, 8_192, **_CL100K),
    _m("gpt-4-32k", 32_768, 8_192, **_CL100K),
    _m("gpt-4-turbo", 128_000, 4_096, **_CL100K),
    _m("gpt-4-turbo-preview", 128_000, 4_096, **_CL100K),
    _m("gpt-4-1106-preview", 128_000, 4_096, **_CL100K),
    _m("gpt-4-0125-preview", 128_000, 4_096, **_CL100K),
    _m("gpt-4-vision-preview", 128_000, 4_096, **_CL100K),
    # --- gpt-4o family (o200k_base; overheads checked against API figures in the cookbook).
    _m("gpt-4o", 128_000, 16_384),
    _m("gpt-4o-2024-05-13", 128_000, 4_096),
    _m("chatgpt-4o-latest", 128_000, 16_384),
    _m("gpt-4o-mini", 128_000, 16_384, image_cost=TileImageCost(2833, 5667)),
    _m("gpt-4.5-preview", 128_000, 16_384),
    # --- gpt-4.1 family: 1,047,576-token window, 32,768 output.
    _m("gpt-4.1", 1_047_576, 32_768),
    _m("gpt-4.1-mini", 1_047_576, 32_768, image_cost=PatchImageCost(1.62)),
    _m("gpt-4.1-nano", 1_047_576, 32_768, image_cost=PatchImageCost(2.46)),
    # --- o-series reasoning models.
    _m("o1", 200_000, 100_000, image_cost=TileImageCost(75, 150), **_EST),
    _m("o1-pro", 200_000, 100_000, image_cost=TileImageCost(75, 150), **_EST),
    _m("o1-mini", 128_000, 65_536, **_EST),
    _m("o1-preview", 128_000, 32_768, **_EST),
    _m("o3", 200_000, 100_000, image_cost=TileImageCost(75, 150), **_EST),
    _m("o3-pro", 200_000, 100_000, image_cost=TileImageCost(75, 150), **_EST),
    _m("o3-mini", 200_000, 100_000, **_EST),
    _m("o4-mini", 200_000, 100_000, image_cost=PatchImageCost(1.72), **_EST),
    # --- gpt-5 family: 400,000-token window, 128,000 output (the chat alias: 128,000/16,384).
    _m("gpt-5", 400_000, 128_000, image_cost=TileImageCost(70, 140), **_EST),
    _m("gpt-5-mini", 400_000, 128_000, image_cost=PatchImageCost(1.62), **_EST),
    _m("gpt-5-nano", 400_000, 128_000, image_cost=PatchImageCost(2.46), **_EST),
    _m("gpt-5-chat-latest", 128_000, 16_384, image_cost=TileImageCost(70, 140), **_EST),
    _m("gpt-5.1", 400_000, 128_000, image_cost=TileImageCost(70, 140), **_EST),
    # --- gpt-oss (open weights, served by vLLM/Ollama/gateways): 131,072-token context per the
    # model card; prompts use the harmony format, whose ranks are o200k_base's.
    _m(
        "gpt-oss-120b",
        131_072,
        131_072,
        source="https://openai.com/index/gpt-oss-model-card/",
        **_EST,
    ),
    _m(
        "gpt-oss-20b",
        131_072,
        131_072,
        source="https://openai.com/index/gpt-oss-model-card/",
        **_EST,
    ),
]

#: The entry unknown models are counted with (renamed to the model asked for).
DEFAULT_FALLBACK = ModelInfo(
    name="<unknown>",
    context_window=8_192,
    max_output_tokens=4_096,
    encoding="o200k_base",
    exact=False,
    safety_margin=0.10,
    source="convkit fallback: o200k_base counts, 8,192-token window, 10% safety margin",
)

_DATED = re.compile(r"-(\d{4}-\d{2}-\d{2}|\d{4})$")


class ModelRegistry:
    """A table of :class:`ModelInfo` keyed by model name, with forgiving lookups.

    ``resolve(name)`` never raises: it tries the exact name, then without a provider prefix
    (``openai/``) or a ``:tag`` suffix, then without a dated-snapshot suffix (``-2024-08-06``,
    ``-0613``), then the longest known family prefix (``gpt-4o-mini-…``), and finally the
    fallback entry (flagged estimated). ``get(name)`` is the strict form and raises
    :class:`~convkit.UnknownModelError`.

    Example::

        reg = ModelRegistry()
        reg.resolve("openai/gpt-4o-2024-08-06").context_window   # 128000
    """

    def __init__(self, models: Iterable[ModelInfo] = (), *, fallback: ModelInfo = DEFAULT_FALLBACK):
        self._models: dict[str, ModelInfo] = {}
        self._fallback = fallback
        self._lock = threading.Lock()
        self._cache: dict[str, ModelInfo] = {}
        self._version = 0
        # Entries to load on first use (the CONVKIT_MODELS file of the process-wide registry).
        self._deferred: Callable[[ModelRegistry], None] | None = None
        self._load_lock = threading.RLock()
        self._loading = False
        for m in models:
            self.add(m)

    @property
    def version(self) -> int:
        """Bumped on every change, so that counters built from old entries can notice."""
        self._ensure()
        return self._version

    def _defer(self, loader: Callable[[ModelRegistry], None]) -> None:
        """Run ``loader(self)`` on first use, before any lookup or change (once it succeeds)."""
        self._deferred = loader

    def _ensure(self) -> None:
        if self._deferred is None:
            return
        with self._load_lock:
            loader = self._deferred
            if loader is None or self._loading:
                return  # loaded meanwhile, or this thread is the one loading
            self._loading = True
            try:
                loader(self)
                self._deferred = None
            finally:
                self._loading = False

    def add(self, info: ModelInfo) -> None:
        """Add or replace an entry."""
        self._ensure()
        with self._lock:
            self._models[info.name.lower()] = info
            self._cache.clear()
            self._version += 1

    def register(self, name: str | ModelInfo, **figures: Any) -> ModelInfo:
        """Add a model by name and figures (see :class:`ModelInfo`), or an existing ModelInfo.

        Unspecified figures come from the entry ``name`` currently resolves to (so registering
        ``"my-gpt-4o-proxy", context_window=64_000`` keeps gpt-4o's overheads if the name
        resolves to it), or from the fallback. ``exact`` and ``safety_margin`` also default to
        that entry's: a model convkit does not know stays an estimate (10% margin) until you
        pass ``exact=True`` — do so only when its tokenizer and chat format are OpenAI's.
        """
        if isinstance(name, ModelInfo):
            if figures:
                raise TypeError("pass either a ModelInfo or a name with figures, not both")
            self.add(name)
            return name
        if not isinstance(name, str) or not name:
            raise ValueError("a model name must be a non-empty string")
        base = self.resolve(name)
        # Counts are only as exact as the tokenizer and format behind them: a name that resolves
        # to a known exact entry (an alias of gpt-4o, say) stays exact; a model convkit does not
        # know keeps the fallback's estimate flag and margin unless the caller says otherwise.
        figures.setdefault("exact", base.exact)
        figures.setdefault("safety_margin", 0.0 if figures["exact"] else base.safety_margin)
        figures.setdefault("source", "registered at run time")
        info = attrs.evolve(base, name=name, **figures)
        self.add(info)
        return info

    def set_fallback(self, info: ModelInfo) -> None:
        """Replace the entry unknown models resolve to."""
        self._ensure()
        with self._lock:
            self._fallback = info
            self._cache.clear()
            self._version += 1

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self._lookup(name) is not None

    def __iter__(self) -> Any:
        self._ensure()
        return iter(sorted(self._models.values(), key=lambda m: m.name))

    def get(self, name: str) -> ModelInfo:
        """Return the entry for ``name`` or raise :class:`~convkit.UnknownModelError`."""
        found = self._lookup(name)
        if found is None:
            raise UnknownModelError(name)
        return found

    def resolve(self, name: str) -> ModelInfo:
        """Return the entry for ``name``; unknown names get the (estimated) fallback entry."""
        if not isinstance(name, str) or not name:
            raise ValueError(f"a model name must be a non-empty string, got {name!r}")
        self._ensure()
        cached = self._cache.get(name)
        if cached is not None:
            return cached
        found = self._lookup(name)
        if found is None:
            found = attrs.evolve(self._fallback, name=name)
        self._cache[name] = found
        return found

    def _lookup(self, name: str) -> ModelInfo | None:
        self._ensure()
        models = self._models
        key = name.lower()
        if key in models:
            return _renamed(models[key], name)
        if key.startswith("ft:"):
            key = key[3:]  # fine-tuned: ft:<base>:<org>:<suffix>:<id>
        bare = key.rsplit("/", 1)[-1].split(":", 1)[0]
        if bare in models:
            return _renamed(models[bare], name)
        undated = _DATED.sub("", bare)
        if undated in models:
            return _renamed(models[undated], name)
        # A family variant (gpt-4o-mini-search-preview, gpt-5-codex): the longest known name that
        # prefixes it. Same tokenizer and format, but figures are a guess: flag it estimated.
        best: ModelInfo | None = None
        for known, info in models.items():
            if undated.startswith(known + "-") and (best is None or len(known) > len(best.name)):
                best = info
        if best is not None:
            return attrs.evolve(
                best,
                name=name,
                exact=False,
                safety_margin=max(best.safety_margin, 0.02),
                source=f"family of {best.name}: {best.source}",
            )
        return None


def _renamed(info: ModelInfo, name: str) -> ModelInfo:
    return info if info.name == name else attrs.evolve(info, name=name)


def _load_env_file(reg: ModelRegistry) -> None:
    """Register the models of the file named by ``CONVKIT_MODELS`` (run on first use).

    Raises:
        ModelsFileError: the file cannot be read or holds an invalid entry; every lookup
            raises it until the file is fixed (``import convkit`` never does).
    """
    path = os.environ.get("CONVKIT_MODELS")
    if not path:
        return
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except OSError as exc:
        raise ModelsFileError(path, f"cannot be read ({exc.strerror or exc})") from None
    except (ValueError, RecursionError) as exc:
        raise ModelsFileError(path, f"is not JSON ({exc})") from None
    if isinstance(data, Mapping):
        if not all(isinstance(v, Mapping) for v in data.values()):
            raise ModelsFileError(path, "expected model objects")
        data = [{"name": k, **v} for k, v in data.items()]
    if not isinstance(data, list):
        raise ModelsFileError(path, "expected a JSON list of model objects")
    for i, entry in enumerate(data):
        if not isinstance(entry, Mapping) or not isinstance(entry.get("name"), str):
            raise ModelsFileError(path, f"entry {i} needs a string 'name'")
        figures = {k: v for k, v in entry.items() if k != "name"}
        if "image_cost" in figures:
            raise ModelsFileError(path, f"entry {i}: image_cost cannot be set from a file")
        try:
            reg.register(entry["name"], **figures)
        except (TypeError, ValueError) as exc:
            raise ModelsFileError(path, f"entry {i} ({entry['name']}): {exc}") from None


#: The process-wide registry used by convkit's functions. The ``CONVKIT_MODELS`` file is read
#: on its first use, so that a missing or broken file cannot break ``import convkit``.
registry = ModelRegistry(_BUILTIN)
registry._defer(_load_env_file)


def register(name: str | ModelInfo, **figures: Any) -> ModelInfo:
    """Add a model to the process-wide registry (see :meth:`ModelRegistry.register`)."""
    return registry.register(name, **figures)


def resolve(name: str) -> ModelInfo:
    """Look a model up in the process-wide registry; unknown models get the fallback entry."""
    return registry.resolve(name)


def get(name: str) -> ModelInfo:
    """Strict lookup in the process-wide registry; raises :class:`~convkit.UnknownModelError`."""
    return registry.get(name)
