"""The plugin manager, entry-point loading, per-conversation plugin hosts, the stream pipeline.

* :data:`pm` is the process-wide :class:`pluggy.PluginManager` for project ``"convkit"``, with
  the specs of :mod:`convkit.hookspecs`. :func:`load_plugins` fills it (lazily, once) from the
  ``convkit`` entry-point group, restricted by ``CONVKIT_PLUGINS``.
* A :class:`PluginHost` is what a conversation calls hooks through: the global plugins plus
  the conversation's own (``Conversation(..., plugins=[...])``), with one sync and one async
  way to call each kind of hook and a :class:`~convkit.PluginError` naming any plugin that
  fails.
* :class:`StreamPipeline` nests the middleware returned by ``wrap_stream``.

Example::

    from convkit import hookimpl
    from convkit.plugins import PluginHost

    class Shout:
        @hookimpl
        def process_response(self, response):
            ...

    host = PluginHost([Shout()])
    host.process_response(response=resp, request=req, context=ctx)
"""

from __future__ import annotations

import importlib
import importlib.metadata
import inspect
import logging
import operator
import os
import sys
import threading
import weakref
from collections.abc import Awaitable, Callable, Generator, Iterable, Sequence
from typing import Any, Literal, cast

import pluggy
from attrs import frozen

from convkit import hookspecs
from convkit._replay import chunks_from_response, response_from_chunks, text_chunk, with_text
from convkit.chat import ChatChunk, ChatResponse, StreamAccumulator
from convkit.errors import PluginError
from convkit.hookspecs import PROJECT, StreamMiddleware

__all__ = [
    "DEFAULT_PLUGINS",
    "PluginHost",
    "PluginInfo",
    "StreamPipeline",
    "chunks_from_response",
    "load_plugins",
    "plugin_info",
    "pm",
    "register_plugin",
    "response_from_chunks",
    "text_chunk",
    "unregister_plugin",
    "with_text",
]

logger = logging.getLogger("convkit.plugins")

#: Environment variable naming the entry-point plugins to load (``name,name``; empty: none).
ALLOWLIST_ENV = "CONVKIT_PLUGINS"
#: Environment variable that, when set to anything but ``""`` or ``"0"``, traces hook calls.
TRACE_ENV = "CONVKIT_TRACE_PLUGINS"

#: Modules convkit registers as plugins after the entry points (its own default behaviour).
DEFAULT_PLUGINS: tuple[str, ...] = ()


# --------------------------------------------------------------------------- the manager


class _Manager(pluggy.PluginManager):
    """A PluginManager that counts its changes, so hosts know when to refresh their impls."""

    def __init__(self) -> None:
        super().__init__(PROJECT)
        self.add_hookspecs(hookspecs)
        self.generation = 0

    def register(self, plugin: object, name: str | None = None) -> str | None:
        registered = super().register(plugin, name)
        if registered is not None:
            self.generation += 1
            for caller in self.get_hookcallers(plugin) or ():
                for impl in caller.get_hookimpls():
                    if impl.plugin is plugin and impl.hookwrapper:
                        self.unregister(plugin)
                        raise PluginError(
                            registered,
                            caller.name,
                            message=(
                                f"plugin {registered!r}: old-style hookwrapper=True on "
                                f"{caller.name!r} is not supported; use @hookimpl(wrapper=True)"
                            ),
                        )
        return registered

    def unregister(self, plugin: object | None = None, name: str | None = None) -> Any:
        removed = super().unregister(plugin, name)
        self.generation += 1
        return removed


#: The process-wide plugin manager.
pm = _Manager()

#: Each hook's argument names and whether it stops at the first answer, in the order the
#: hooks are declared in :mod:`convkit.hookspecs`.
_SPECS: dict[str, tuple[frozenset[str], bool]] = {}
for _name, _obj in vars(hookspecs).items():
    if hasattr(_obj, f"{PROJECT}_spec"):
        _spec = getattr(pm.hook, _name).spec
        _SPECS[_name] = (frozenset(_spec.argnames), bool(_spec.opts.get("firstresult")))


# --------------------------------------------------------------------------- loading


@frozen(kw_only=True)
class PluginInfo:
    """One line of ``convkit plugins``: a plugin that loaded, failed, or was left out.

    Attributes:
        name: the registered (or entry-point) name.
        status: ``"loaded"``, ``"failed"`` (import or setup raised) or ``"excluded"`` (not in
            ``CONVKIT_PLUGINS``; never imported).
        source: ``"entry point"``, ``"default"`` or ``"registered in code"``.
        distribution: the distribution that declares the entry point, or None.
        version: that distribution's version, or None.
        module: the entry point's target (``"convkit_redact"``) or the plugin's module.
        hooks: the hooks it implements, in the order of :mod:`convkit.hookspecs`.
        error: why it failed (one line), or None.
    """

    name: str
    status: Literal["loaded", "failed", "excluded"]
    source: str
    distribution: str | None = None
    version: str | None = None
    module: str | None = None
    hooks: tuple[str, ...] = ()
    error: str | None = None


_lock = threading.RLock()
_loaded = False
_sources: dict[str, PluginInfo] = {}
_failures: dict[str, PluginInfo] = {}
_models_done: weakref.WeakSet[Any] = weakref.WeakSet()
_trace = False


def _entry_points() -> Iterable[importlib.metadata.EntryPoint]:
    return importlib.metadata.entry_points(group=PROJECT)


def _allowlist(only: Iterable[str] | None) -> frozenset[str] | None:
    if only is not None:
        return frozenset(only)
    raw = os.environ.get(ALLOWLIST_ENV)
    if raw is None:
        return None
    return frozenset(n.strip() for n in raw.split(",") if n.strip())


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def _fail(info: PluginInfo, exc: BaseException) -> None:
    failed = PluginInfo(
        name=info.name,
        status="failed",
        source=info.source,
        distribution=info.distribution,
        version=info.version,
        module=info.module,
        error=_one_line(exc),
    )
    _failures[info.name] = failed
    where = f" from {info.distribution} {info.version}" if info.distribution else ""
    logger.warning("convkit plugin %r%s failed to load: %s", info.name, where, failed.error)


def _run_register_models(plugin: object, impls: Sequence[pluggy.HookImpl]) -> None:
    """Call ``register_models`` of one plugin (``impls`` are its own), once per plugin object."""
    if not impls:
        return
    try:
        if plugin in _models_done:
            return
        _models_done.add(plugin)
    except TypeError:  # not weak-referenceable: registering the same models twice is harmless
        pass
    from convkit import models

    def register(info: Any) -> None:
        if not isinstance(info, models.ModelInfo):
            raise TypeError(f"register() takes a ModelInfo, got {type(info).__name__}")
        models.registry.add(info)

    steps = _steps("register_models", _entries(impls), {"register": register}, _ALL)
    _drive_sync("register_models", steps)


def _register_models_of(plugin: object, manager: pluggy.PluginManager) -> None:
    impls = [i for i in manager.hook.register_models.get_hookimpls() if i.plugin is plugin]
    _run_register_models(plugin, impls)


def _add(plugin: object, info: PluginInfo) -> bool:
    """Register one plugin globally and run its setup; record a failure instead of raising."""
    try:
        pm.register(plugin, name=info.name)
        _register_models_of(plugin, pm)
    except Exception as exc:
        if pm.get_plugin(info.name) is plugin:
            pm.unregister(plugin)
        _fail(info, exc)
        return False
    _sources[info.name] = info
    _failures.pop(info.name, None)
    return True


def _load_entry_points(allowed: frozenset[str] | None) -> None:
    for ep in _entry_points():
        dist = getattr(ep, "dist", None)
        info = PluginInfo(
            name=ep.name,
            status="loaded",
            source="entry point",
            distribution=dist.metadata["Name"] if dist is not None else None,
            version=dist.version if dist is not None else None,
            module=ep.value,
        )
        if allowed is not None and ep.name not in allowed:
            # Checked before ``load()``: an excluded plugin is never imported.
            _failures[ep.name] = PluginInfo(
                name=ep.name,
                status="excluded",
                source=info.source,
                distribution=info.distribution,
                version=info.version,
                module=info.module,
                error=f"not listed in {ALLOWLIST_ENV}",
            )
            continue
        if pm.has_plugin(ep.name) or pm.is_blocked(ep.name):
            if ep.name in _sources and _sources[ep.name].module != ep.value:
                _fail(info, ValueError(f"the name is taken by {_sources[ep.name].module}"))
            continue
        try:
            plugin = ep.load()
        except Exception as exc:
            _fail(info, exc)
            continue
        _add(plugin, info)


def load_plugins(only: Iterable[str] | None = None) -> None:
    """Load the plugins: entry points of group ``convkit``, then :data:`DEFAULT_PLUGINS`.

    Lazy and idempotent: conversations call it on first use; only the first call loads. Which
    entry points load: those named in ``only`` if given (``only=()`` loads none at all), else
    those named in ``CONVKIT_PLUGINS`` (comma-separated; set but empty: none), else all. A
    plugin left out is never imported. A plugin that fails to import or to set up is logged
    by name (logger ``convkit.plugins``) and listed by ``convkit plugins``; the others still
    load. Entry points are skipped while convkit's own tests run (``sys._called_from_test``).
    ``CONVKIT_TRACE_PLUGINS=1`` prints every hook call to stderr.
    """
    global _loaded
    if _loaded:
        return
    with _lock:
        if _loaded:
            return
        _loaded = True  # before loading: a plugin that imports convkit must not re-enter
        if os.environ.get(TRACE_ENV, "") not in ("", "0"):
            _enable_tracing()
        if not getattr(sys, "_called_from_test", False):
            _load_entry_points(_allowlist(only))
        for module_name in DEFAULT_PLUGINS:
            info = PluginInfo(
                name=module_name, status="loaded", source="default", module=module_name
            )
            if pm.has_plugin(module_name):
                continue
            try:
                module = importlib.import_module(module_name)
            except Exception as exc:
                _fail(info, exc)
                continue
            _add(module, info)


def register_plugin(plugin: object, name: str | None = None) -> str:
    """Register a plugin for every conversation of this process; return its name.

    The name defaults to the plugin's ``__name__`` (a module or class) or its class name. Its
    ``register_models`` runs now.

    Raises:
        ValueError: the name is taken.
        PluginError: its ``register_models`` failed (the plugin is not registered).
        pluggy.PluginValidationError: a hook implementation does not match its spec.
    """
    load_plugins()
    chosen = name or _default_name(plugin)
    with _lock:
        registered = pm.register(plugin, name=chosen)
        assert registered is not None
        try:
            _register_models_of(plugin, pm)
        except BaseException:
            pm.unregister(plugin)
            raise
        _sources[registered] = PluginInfo(
            name=registered,
            status="loaded",
            source="registered in code",
            module=getattr(plugin, "__module__", None) or getattr(plugin, "__name__", None),
        )
    return registered


def unregister_plugin(plugin: object | str) -> None:
    """Remove a globally registered plugin, by name or by the object itself."""
    with _lock:
        if isinstance(plugin, str):
            obj = pm.get_plugin(plugin)
            name: str | None = plugin
        else:
            obj, name = plugin, pm.get_name(plugin)
        if obj is None or name is None:
            raise ValueError(f"no plugin {plugin!r} is registered")
        pm.unregister(obj)
        _sources.pop(name, None)


def _hooks_of(plugin: object, manager: pluggy.PluginManager) -> tuple[str, ...]:
    names = {c.name for c in manager.get_hookcallers(plugin) or ()}
    return tuple(h for h in _SPECS if h in names)


def plugin_info() -> list[PluginInfo]:
    """What ``convkit plugins`` lists: loaded plugins, then failed and excluded ones, by name."""
    load_plugins()
    out = []
    with _lock:
        for name, plugin in sorted(pm.list_name_plugin()):
            known = _sources.get(name)
            hooks = _hooks_of(plugin, pm)
            if known is None:
                module = getattr(plugin, "__module__", None) or getattr(plugin, "__name__", None)
                known = PluginInfo(
                    name=name, status="loaded", source="registered in code", module=module
                )
            out.append(
                PluginInfo(
                    name=name,
                    status="loaded",
                    source=known.source,
                    distribution=known.distribution,
                    version=known.version,
                    module=known.module,
                    hooks=hooks,
                )
            )
        out.extend(_failures[n] for n in sorted(_failures) if not pm.has_plugin(n))
    return out


# --------------------------------------------------------------------------- tracing


def _enable_tracing() -> None:
    global _trace
    if _trace:
        return
    _trace = True

    def before(hook_name: str, impls: Sequence[pluggy.HookImpl], kwargs: Any) -> None:
        _trace_call(hook_name, impls)

    def after(outcome: Any, hook_name: str, impls: Sequence[Any], kwargs: Any) -> None:
        _trace_result(hook_name, outcome.exception, None)

    pm.add_hookcall_monitoring(before, after)


def _trace_call(hook: str, impls: Sequence[pluggy.HookImpl]) -> None:
    names = ", ".join(i.plugin_name for i in impls) or "no plugins"
    print(f"convkit: hook {hook}({names})", file=sys.stderr)


def _trace_result(hook: str, error: BaseException | None, result: Any) -> None:
    if error is not None:
        print(f"convkit: hook {hook} raised {_one_line(error)}", file=sys.stderr)
    else:
        print(f"convkit: hook {hook} -> {result!r:.200}", file=sys.stderr)


# --------------------------------------------------------------------------- dispatch

# How the results of one hook call combine.
_ALL = 0  # every non-None result, in call order
_FIRST = 1  # stop at the first non-None result
_CHAIN = 2  # a non-None result replaces the argument named ``key`` for the next impl
_PAIRS = 3  # (plugin name, result) for every non-None result
_OBSERVE = 4  # run every impl whatever happens; the result is the list of PluginErrors

_Step = Generator[tuple[pluggy.HookImpl, Awaitable[Any]], Any, Any]
# An implementation and the function that picks its arguments out of the call's keywords.
_Entry = tuple[pluggy.HookImpl, Callable[[dict[str, Any]], Sequence[Any]]]
_GETTERS: dict[tuple[str, ...], Callable[[dict[str, Any]], Sequence[Any]]] = {}


def _no_args(kwargs: dict[str, Any]) -> tuple[()]:
    return ()


def _one_arg(name: str) -> Callable[[dict[str, Any]], tuple[Any]]:
    def pick(kwargs: dict[str, Any]) -> tuple[Any]:
        return (kwargs[name],)

    return pick


def _entries(impls: Iterable[pluggy.HookImpl]) -> list[_Entry]:
    """Pair each implementation with its argument picker (``itemgetter``: no per-call loop)."""
    out = []
    for impl in impls:
        names = tuple(impl.argnames)
        getter = _GETTERS.get(names)
        if getter is None:
            if not names:
                getter = _no_args
            elif len(names) == 1:
                getter = _one_arg(names[0])
            else:
                getter = operator.itemgetter(*names)
            _GETTERS[names] = getter
        out.append((impl, getter))
    return out


def _blame(impl: pluggy.HookImpl, hook: str, exc: Exception) -> PluginError:
    if isinstance(exc, PluginError) and exc.plugin == impl.plugin_name and exc.hook == hook:
        return exc
    return PluginError(impl.plugin_name, hook, exc)


def _steps(
    hook: str,
    impls: Sequence[_Entry],
    kwargs: dict[str, Any],
    mode: int,
    key: str = "",
) -> _Step:
    """Call ``impls`` in order as pluggy would, yielding each awaitable result to the driver.

    Kept beside pluggy's own caller because convkit needs what that one cannot give: the name
    of the plugin that raised, async results awaited one by one (so a ``firstresult`` hook
    whose ``async def`` returns None does not stop the chain), chaining, and global plus
    per-conversation plugins in one order. New-style ``wrapper=True`` implementations work as
    in pluggy: they run first and see the result (or the error) of the others.
    """
    teardowns: list[tuple[pluggy.HookImpl, Generator[Any, Any, Any]]] = []
    results: list[Any] = []
    outcome: Any = None
    error: BaseException | None = None
    try:
        for impl, pick in impls:
            try:
                args = pick(kwargs)
                if impl.wrapper:
                    gen = cast("Generator[Any, Any, Any]", impl.function(*args))
                    try:
                        next(gen)
                    except StopIteration:
                        raise PluginError(
                            impl.plugin_name,
                            hook,
                            message=f"plugin {impl.plugin_name!r}: wrapper of {hook!r} "
                            "returned without yielding",
                        ) from None
                    teardowns.append((impl, gen))
                    continue
                res = impl.function(*args)
                if res is not None and inspect.isawaitable(res):
                    res = yield impl, res
            except Exception as exc:
                if mode == _OBSERVE:
                    err = _blame(impl, hook, exc)
                    logger.error("%s", err, exc_info=err)
                    results.append(err)
                    continue
                err = _blame(impl, hook, exc)
                raise err  # noqa: B904 - PluginError sets the original as __cause__
            if res is None or mode == _OBSERVE:
                continue
            if mode == _FIRST:
                outcome = res
                break
            if mode == _CHAIN:
                kwargs[key] = res
            elif mode == _PAIRS:
                results.append((impl.plugin_name, res))
            else:
                results.append(res)
        if mode == _CHAIN:
            outcome = kwargs[key]
        elif mode != _FIRST:
            outcome = results
    except BaseException as exc:
        error = exc
    for impl, gen in reversed(teardowns):
        try:
            if error is not None:
                gen.throw(error)
            else:
                gen.send(outcome)
        except StopIteration as stop:
            outcome, error = stop.value, None
        except Exception as exc:
            if exc is not error:
                error = _blame(impl, hook, exc)
        except BaseException as exc:
            error = exc
        else:
            gen.close()
            error = PluginError(
                impl.plugin_name,
                hook,
                message=f"plugin {impl.plugin_name!r}: wrapper of {hook!r} yielded twice",
            )
    if error is not None:
        raise error
    return outcome


def _refuse(aw: Awaitable[Any]) -> None:
    close = getattr(aw, "close", None)  # a coroutine: close it so it never warns unawaited
    if close is not None:
        close()
    else:
        cancel = getattr(aw, "cancel", None)
        if cancel is not None:
            cancel()


def _drive_sync(hook: str, steps: _Step) -> Any:
    try:
        impl, aw = next(steps)
        while True:
            _refuse(aw)
            name = impl.plugin_name
            refusal = PluginError(
                name,
                hook,
                message=(
                    f"plugin {name!r} implements {hook!r} asynchronously (it returned an "
                    "awaitable), which a synchronous conversation cannot await: use "
                    "AsyncConversation, or make the implementation a plain function"
                ),
            )
            impl, aw = steps.throw(refusal)
    except StopIteration as stop:
        return stop.value


async def _drive_async(steps: _Step) -> Any:
    try:
        _, aw = next(steps)
        while True:
            try:
                value = await aw
            except Exception as exc:
                _, aw = steps.throw(exc)
            else:
                _, aw = steps.send(value)
    except StopIteration as stop:
        return stop.value


def _default_name(plugin: object) -> str:
    name = getattr(plugin, "__name__", None)
    if isinstance(name, str) and name:
        return name
    return type(plugin).__name__


def _kind(impl: pluggy.HookImpl) -> int:
    return 0 if impl.tryfirst else 2 if impl.trylast else 1


def _merge(own: list[pluggy.HookImpl], glob: list[pluggy.HookImpl]) -> list[pluggy.HookImpl]:
    """Both lists in call order, merged as if ``own`` had been registered after ``glob``.

    Call order: wrappers, then tryfirst, plain and trylast implementations. pluggy calls
    later-registered implementations first, except among ``trylast`` ones, where a later one
    runs last.
    """
    if not own or not glob:
        return own or glob
    out: list[pluggy.HookImpl] = []
    for wrapper in (True, False):
        for kind in (0, 1, 2):
            mine = [i for i in own if bool(i.wrapper) is wrapper and _kind(i) == kind]
            theirs = [i for i in glob if bool(i.wrapper) is wrapper and _kind(i) == kind]
            out += theirs + mine if kind == 2 else mine + theirs
    return out


class PluginHost:
    """The plugins one conversation calls: the global ones plus its own.

    ``plugins`` are registered for this host only (named after their ``__name__`` or class,
    ``#2`` added on a clash); ``global_plugins=False`` leaves out everything registered in
    :data:`pm`. Call order is pluggy's: ``wrapper=True`` implementations first, then
    ``tryfirst``, plain and ``trylast`` ones; the conversation's own plugins are ordered as if
    registered after the global ones (pluggy calls later-registered implementations first,
    except among ``trylast`` ones, where the later one runs last).

    Every method takes the hook's arguments as keywords, exactly the spec's. Each sync method
    has an ``a``-prefixed async twin that awaits ``async def`` implementations; the sync one
    raises :class:`~convkit.PluginError` for them. A plugin that raises is named in a
    :class:`~convkit.PluginError` (``__cause__``: the original). A call with no implementing
    plugin costs a dictionary lookup.

    Example::

        host = PluginHost([MyPlugin()])
        answer = host.first_answer("prepare_request", draft=draft, context=ctx)
        pipeline = host.middleware(request=req, context=ctx)
    """

    def __init__(self, plugins: Iterable[object] = (), *, global_plugins: bool = True) -> None:
        load_plugins()
        self._global = global_plugins
        self._own: _Manager | None = None
        self._impls: dict[str, list[_Entry]] = {}
        self._seen = (-1, -1)
        for plugin in plugins:
            self.register(plugin)

    def register(self, plugin: object, name: str | None = None) -> str:
        """Add a plugin to this host only; return the name it got.

        Raises:
            PluginError: its ``register_models`` failed.
            pluggy.PluginValidationError: a hook implementation does not match its spec.
        """
        if self._own is None:
            self._own = _Manager()
        base = name or _default_name(plugin)
        chosen, n = base, 1
        while self._own.has_plugin(chosen):
            n += 1
            chosen = f"{base}#{n}"
        registered = self._own.register(plugin, name=chosen)
        assert registered is not None
        try:
            _register_models_of(plugin, self._own)
        except BaseException:
            self._own.unregister(plugin)
            raise
        return registered

    @property
    def plugins(self) -> list[tuple[str, object]]:
        """``(name, plugin)`` of every plugin this host calls: its own, then the global ones."""
        own = self._own.list_name_plugin() if self._own is not None else []
        glob = pm.list_name_plugin() if self._global else []
        return list(own) + list(glob)

    def _impls_for(self, hook: str) -> list[_Entry]:
        seen = (pm.generation, self._own.generation if self._own is not None else 0)
        if seen != self._seen:
            self._impls.clear()
            self._seen = seen
        impls = self._impls.get(hook)
        if impls is None:
            if hook not in _SPECS:
                raise AttributeError(f"convkit has no hook {hook!r}")
            own = (
                list(reversed(getattr(self._own.hook, hook).get_hookimpls()))
                if self._own is not None
                else []
            )
            glob = list(reversed(getattr(pm.hook, hook).get_hookimpls())) if self._global else []
            impls = self._impls[hook] = _entries(_merge(own, glob))
        return impls

    def has(self, hook: str) -> bool:
        """True when at least one plugin implements ``hook`` (skip building its arguments)."""
        return bool(self._impls_for(hook))

    def _start(self, hook: str, kwargs: dict[str, Any]) -> list[_Entry]:
        impls = self._impls_for(hook)
        names = _SPECS[hook][0]
        if kwargs.keys() != names:
            missing = sorted(names - kwargs.keys())
            extra = sorted(kwargs.keys() - names)
            raise TypeError(f"hook {hook!r} called without {missing} / with unknown {extra}")
        if _trace:
            _trace_call(hook, [impl for impl, _ in impls])
        return impls

    def _sync(self, hook: str, kwargs: dict[str, Any], mode: int, key: str = "") -> Any:
        impls = self._start(hook, kwargs)
        if not impls:
            return kwargs[key] if mode == _CHAIN else None if mode == _FIRST else []
        if not _trace:
            return _drive_sync(hook, _steps(hook, impls, kwargs, mode, key))
        try:
            result = _drive_sync(hook, _steps(hook, impls, kwargs, mode, key))
        except BaseException as exc:
            _trace_result(hook, exc, None)
            raise
        _trace_result(hook, None, result)
        return result

    async def _async(self, hook: str, kwargs: dict[str, Any], mode: int, key: str = "") -> Any:
        impls = self._start(hook, kwargs)
        if not impls:
            return kwargs[key] if mode == _CHAIN else None if mode == _FIRST else []
        try:
            result = await _drive_async(_steps(hook, impls, kwargs, mode, key))
        except BaseException as exc:
            if _trace:
                _trace_result(hook, exc, None)
            raise
        if _trace:
            _trace_result(hook, None, result)
        return result

    # ---- the ways to call a hook

    def call(self, hook: str, **kwargs: Any) -> list[Any]:
        """Call every implementation; return the non-None results in call order.

        For a ``firstresult`` hook the list holds at most the first answer.
        """
        mode = _FIRST if _SPECS.get(hook, (frozenset(), False))[1] else _ALL
        result = self._sync(hook, kwargs, mode)
        return result if mode == _ALL else [] if result is None else [result]

    async def acall(self, hook: str, **kwargs: Any) -> list[Any]:
        """Async :meth:`call`: awaitable results are awaited in call order."""
        mode = _FIRST if _SPECS.get(hook, (frozenset(), False))[1] else _ALL
        result = await self._async(hook, kwargs, mode)
        return result if mode == _ALL else [] if result is None else [result]

    def first_answer(self, hook: str, **kwargs: Any) -> Any:
        """Call implementations until one returns something other than None; return it.

        For ``prepare_request`` / ``finalize_request`` (an answer instead of an API call),
        ``count_tokens`` and ``summarizer``. None when no plugin answers.
        """
        return self._sync(hook, kwargs, _FIRST)

    async def afirst_answer(self, hook: str, **kwargs: Any) -> Any:
        """Async :meth:`first_answer`."""
        return await self._async(hook, kwargs, _FIRST)

    def process_response(self, **kwargs: Any) -> Any:
        """Chain ``process_response``: each non-None result replaces ``response`` for the next.

        Returns the final response (the one passed in when no plugin replaced it).
        """
        return self._sync("process_response", kwargs, _CHAIN, "response")

    async def aprocess_response(self, **kwargs: Any) -> Any:
        """Async :meth:`process_response`."""
        return await self._async("process_response", kwargs, _CHAIN, "response")

    def notify(self, hook: str, **kwargs: Any) -> list[PluginError]:
        """Call an observer hook: every implementation runs even if one raises.

        Returns the :class:`~convkit.PluginError` of each one that raised (already logged to
        ``convkit.plugins``), for the host to report; an empty list when all went well.
        """
        return self._sync(hook, kwargs, _OBSERVE)  # type: ignore[no-any-return]

    async def anotify(self, hook: str, **kwargs: Any) -> list[PluginError]:
        """Async :meth:`notify`."""
        return await self._async(hook, kwargs, _OBSERVE)  # type: ignore[no-any-return]

    def middleware(self, **kwargs: Any) -> StreamPipeline:
        """Call ``wrap_stream`` and nest what it returns into a :class:`StreamPipeline`."""
        return StreamPipeline(self._sync("wrap_stream", kwargs, _PAIRS))

    async def amiddleware(self, **kwargs: Any) -> StreamPipeline:
        """Async :meth:`middleware`."""
        return StreamPipeline(await self._async("wrap_stream", kwargs, _PAIRS))


# --------------------------------------------------------------------------- stream pipeline


def _check_chunks(items: Sequence[Any], method: str) -> None:
    for chunk in items:
        if not isinstance(chunk, ChatChunk):
            raise TypeError(f"{method}() returned a {type(chunk).__name__}, not a ChatChunk")


class StreamPipeline:
    """Middleware nested over one stream: the first is fed the raw chunks, each feeds the next.

    With middleware ``[a, b]``: every chunk from the server goes to ``a.feed``; each chunk ``a``
    returns goes to ``b.feed``; what ``b`` returns is the pipeline's output. At the end,
    :meth:`close` closes ``a`` first and feeds what it flushes through ``b``, then closes ``b``.
    A :class:`PluginHost` builds the list in hook call order, so ``tryfirst`` plugins see the
    raw chunks first (a redaction plugin marked ``tryfirst`` restores its placeholders before
    any other middleware looks).

    :meth:`response` gives what the output adds up to (what a conversation stores): with
    ``accumulate=True`` (the default) the pipeline accumulates its output as it goes, and
    reports a malformed chunk a middleware made as a :class:`~convkit.PluginError`. A host
    that accumulates the output itself passes ``accumulate=False``.

    Pure: no I/O, so one pipeline serves sync and async streams. A middleware that raises (or
    returns something other than chunks) raises :class:`~convkit.PluginError` naming it, and
    the pipeline is closed.

    Example::

        pipeline = StreamPipeline([("upper", Upper())])
        out = [c for chunk in chunks for c in pipeline.feed(chunk)] + pipeline.close()
        final = pipeline.response(stream.response)
    """

    __slots__ = ("_acc", "_closed", "_stages")

    def __init__(
        self,
        middlewares: Iterable[StreamMiddleware | tuple[str, StreamMiddleware]] = (),
        *,
        accumulate: bool = True,
    ) -> None:
        stages: list[tuple[str, Callable[[ChatChunk], Iterable[ChatChunk]], Any]] = []
        for item in middlewares:
            if isinstance(item, tuple):
                name, mw = item
            else:
                name, mw = type(item).__name__, item
            feed, close = getattr(mw, "feed", None), getattr(mw, "close", None)
            if not callable(feed) or not callable(close):
                raise PluginError(
                    name,
                    "wrap_stream",
                    message=f"plugin {name!r}: wrap_stream returned {type(mw).__name__}, "
                    "which has no feed(chunk) and close() methods",
                )
            stages.append((name, feed, close))
        self._stages = stages
        self._closed = False
        self._acc = StreamAccumulator() if accumulate and stages else None

    def __len__(self) -> int:
        return len(self._stages)

    @property
    def names(self) -> list[str]:
        """The middleware's plugin names, in nesting order (outermost, raw chunks, first)."""
        return [s[0] for s in self._stages]

    @property
    def closed(self) -> bool:
        """True after :meth:`close`, or after a middleware raised."""
        return self._closed

    def feed(self, chunk: ChatChunk) -> list[ChatChunk]:
        """Push one chunk through every middleware; return what comes out (possibly nothing)."""
        if self._closed:
            raise RuntimeError("the stream pipeline is closed")
        if not self._stages:
            return [chunk]
        items = self._run((chunk,), self._stages)
        if self._acc is not None and items:
            self._accumulate(items, self._acc)
        return items

    def _run(self, items: Sequence[ChatChunk], stages: Sequence[Any]) -> list[ChatChunk]:
        for name, feed, _ in stages:
            try:
                if len(items) == 1:
                    out = feed(items[0])
                    kind = type(out)
                    if kind is not list and kind is not tuple:
                        out = list(out)
                else:
                    out = []
                    for chunk in items:
                        out.extend(feed(chunk))
                if len(out) != 1 or type(out[0]) is not ChatChunk:
                    _check_chunks(out, "feed")
            except Exception as exc:
                self._closed = True
                raise PluginError(name, "wrap_stream", exc) from exc
            if not out:
                return []
            items = out
        return items if type(items) is list else list(items)

    def _accumulate(self, items: list[ChatChunk], acc: StreamAccumulator) -> None:
        try:
            for chunk in items:
                acc.feed(chunk)
        except ValueError as exc:
            self._closed = True
            names = ", ".join(self.names)
            raise PluginError(
                names,
                "wrap_stream",
                exc,
                message=f"a chunk the stream middleware ({names}) returned is malformed: {exc}",
            ) from exc

    def close(self) -> list[ChatChunk]:
        """End of stream: close each middleware in order, flushing through the later ones.

        Returns the chunks that come out; an empty list on a second call.
        """
        if self._closed:
            return []
        self._closed = True
        out: list[ChatChunk] = []
        stages = self._stages
        for i, (name, _, close) in enumerate(stages):
            try:
                flushed = list(close())
                _check_chunks(flushed, "close")
            except Exception as exc:
                raise PluginError(name, "wrap_stream", exc) from exc
            if flushed:
                out.extend(self._run(flushed, stages[i + 1 :]))
        if out and self._acc is not None:
            self._accumulate(out, self._acc)
        return out

    def response(self, upstream: ChatResponse | None = None) -> ChatResponse:
        """The response the pipeline's output so far adds up to (safe after a failure too).

        With no middleware the output is the input: ``upstream`` (the accumulation of the
        chunks fed in, such as a client stream's ``response`` or ``partial``) is returned.

        Raises:
            RuntimeError: the pipeline was built with ``accumulate=False``, or has no
                middleware and no ``upstream`` was given.
        """
        if self._acc is not None:
            return self._acc.response()
        if not self._stages and upstream is not None:
            return upstream
        raise RuntimeError("this pipeline does not accumulate its output")
