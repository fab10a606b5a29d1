"""The turn's decisions: :class:`TurnCore`, a sans-IO generator per public operation."""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Generator, Mapping, Sequence
from typing import Any, Literal

import attrs
from attrs import define

from convkit._replay import chunks_from_response
from convkit.chat import ChatRequest, ChatResponse, validate_params
from convkit.context import (
    ContextPolicy,
    Summary,
    SummaryRequest,
    TrimOldest,
    Window,
    prompt_budget,
)
from convkit.context import Summarize as SummarizePolicy
from convkit.context._groups import PREFIX_ROLES
from convkit.errors import (
    ContextLengthExceededError,
    ContextOverflowError,
    ConvkitError,
    InvalidMessageError,
    InvalidRequestError,
    PluginError,
    SummarizationError,
    TransportError,
)
from convkit.hookspecs import CallContext, OutgoingRequest, RequestDraft
from convkit.messages import Message, ToolCall, as_message
from convkit.store._values import check_metadata
from convkit.tokens import TokenCounter, counter_for
from convkit.turn._content import (
    _check_answer,
    _overshoot,
    _reply_tokens,
    _storable_partial,
    _tool_content,
    _with_budget,
    user_message,
)
from convkit.turn._effects import (
    CloseStream,
    Complete,
    Emit,
    HookCall,
    NextChunk,
    OpenStream,
    RunTool,
    StoreCall,
    StreamAbandoned,
    StreamResult,
    Summarize,
)
from convkit.turn._values import Calibration, Reply, WindowReport, tools_key

__all__ = ["META_KEY", "Purpose", "TurnCore"]

log = logging.getLogger("convkit.conversation")

Purpose = Literal["turn", "summary", "tool_followup"]

#: Where a conversation keeps its own data in a thread's metadata.
META_KEY = "convkit"


@define
class _Call:
    """What one completions call produced."""

    response: ChatResponse
    window: Window | None
    predicted: int
    budget: int
    incomplete: bool = False
    answered: bool = False
    #: ``seq`` of the newest row the window read (0: none), for the dropped count.
    read_newest: int = 0
    #: The calibration factor the budget was divided by.
    scale: float = 1.0
    #: ``seq`` of the rows folded into a new summary after the reply, and a failure doing it.
    summarized: tuple[int, ...] = ()
    summary_error: SummarizationError | None = None
    #: What summarizing after the reply needs: (rows, draft, summary, reply_tokens, budget).
    after: tuple[Any, ...] | None = None
    #: What the call's hooks put in ``context.reply_metadata``, for the stored reply.
    plugin_metadata: Mapping[str, Any] = attrs.field(factory=dict)


class TurnCore:
    """The state and decisions of a conversation, shared by the sync and async shells.

    Each public generator method (:meth:`turn`, :meth:`regenerate`, :meth:`edit`,
    :meth:`add_tool_result`, :meth:`history`) is driven by a shell that performs its effects.
    """

    def __init__(
        self,
        model: str,
        *,
        thread_id: str,
        resume: bool,
        system: str | None,
        policy: ContextPolicy | None,
        tools: Sequence[Mapping[str, Any]] | None,
        tool_handlers: Mapping[str, Callable[[dict[str, Any]], Any]] | None,
        params: Mapping[str, Any],
        max_tool_rounds: int,
        summarize_after_reply: bool,
        plugin_settings: Mapping[str, Any] | None,
        counter: TokenCounter | None = None,
    ) -> None:
        if not isinstance(model, str) or not model:
            raise InvalidRequestError("model must be a non-empty string", param="model")
        if system is not None and not isinstance(system, str):
            raise InvalidRequestError("system must be text", param="system")
        if isinstance(max_tool_rounds, bool) or not isinstance(max_tool_rounds, int):
            raise InvalidRequestError(
                "max_tool_rounds must be a whole number", param="max_tool_rounds"
            )
        if max_tool_rounds < 0:
            raise InvalidRequestError("max_tool_rounds must be >= 0", param="max_tool_rounds")
        if tool_handlers is not None:
            for name, handler in tool_handlers.items():
                if not callable(handler):
                    raise InvalidRequestError(
                        f"the handler of tool {name!r} is not callable", param="tool_handlers"
                    )
        checked = validate_params({**params, **({"tools": list(tools)} if tools else {})})
        checked.pop("tools", None)
        for reserved in ("model", "messages", "stream"):
            if reserved in checked:
                raise InvalidRequestError(
                    f"{reserved!r} is set by the conversation, not a request parameter",
                    param=reserved,
                )
        self.model = model
        self.thread_id = thread_id
        self._resume = resume
        self._thread_ready = False
        self.system = system
        self._system_given = system is not None
        self.counter = counter or TokenCounter(model)
        self.policy: ContextPolicy = (
            policy if policy is not None else TrimOldest(model, counter=self.counter)
        )
        self.tools = [dict(t) for t in tools] if tools else None
        self.tool_handlers = dict(tool_handlers or {})
        self.params = checked
        self.max_tool_rounds = max_tool_rounds
        self.summarize_after_reply = summarize_after_reply
        self.plugin_settings = dict(plugin_settings or {})
        self.plugin_state: dict[str, Any] = {}
        self.calibration = Calibration()
        self.store: Any = None
        self.shell: Any = None
        self.plugin_errors = []

    # ---- context

    #: Observer failures of the current turn (each already logged), put on the reply.
    plugin_errors: list[Any]

    def _observe(self, hook: str, kwargs: dict[str, Any]) -> Generator[Any, Any, None]:
        errors = yield HookCall(hook, kwargs, mode="observe")
        if errors:
            self.plugin_errors.extend(errors)

    def context(self, purpose: Purpose, model: str | None = None) -> CallContext:
        """The hook context of a call made for ``purpose``."""
        return CallContext(
            thread_id=self.thread_id,
            model=model or self.model,
            purpose=purpose,
            store=self.store,
            settings=self.plugin_settings,
            state=self.plugin_state,
            conversation=self.shell,
        )

    # ---- the thread

    def ensure_thread(self) -> Generator[Any, Any, None]:
        """Create the thread (new) or load its system prompt (resumed), once."""
        if self._thread_ready:
            return
        meta: dict[str, Any] = {"model": self.model}
        if self.system is not None:
            meta["system"] = self.system
        if not self._resume:
            yield StoreCall(
                "create_thread", (), {"thread_id": self.thread_id, "metadata": {META_KEY: meta}}
            )
        else:
            thread = yield StoreCall("get_thread", (self.thread_id,))
            stored = thread.metadata.get(META_KEY)
            stored = dict(stored) if isinstance(stored, Mapping) else {}
            if self._system_given and stored.get("system") != self.system:
                yield from self._save_thread_meta(thread.metadata, {"system": self.system})
            elif not self._system_given:
                system = stored.get("system")
                self.system = system if isinstance(system, str) else None
        self._thread_ready = True

    def _save_thread_meta(
        self, metadata: Mapping[str, Any], changes: Mapping[str, Any]
    ) -> Generator[Any, Any, None]:
        own = metadata.get(META_KEY)
        merged = {**(dict(own) if isinstance(own, Mapping) else {}), **changes}
        yield StoreCall(
            "update_thread", (self.thread_id,), {"metadata": {**metadata, META_KEY: merged}}
        )

    def set_system(self, system: str | None) -> Generator[Any, Any, None]:
        """Change the system prompt (stored with the thread, so a resume keeps it)."""
        if system is not None and not isinstance(system, str):
            raise InvalidRequestError("system must be text", param="system")
        yield from self.ensure_thread()
        thread = yield StoreCall("get_thread", (self.thread_id,))
        self.system = system
        self._system_given = True
        yield from self._save_thread_meta(thread.metadata, {"system": system})

    # ---- public turns

    def turn(
        self, content: Any, params: Mapping[str, Any], *, stream: bool
    ) -> Generator[Any, Any, Reply]:
        """Store ``content`` (if any) as the user's message and answer it."""
        call_params = yield from self.accept(content, params)
        return (yield from self.respond(call_params, stream=stream))

    def check(
        self, content: Any, params: Mapping[str, Any]
    ) -> tuple[Message | None, dict[str, Any]]:
        """Check a turn's content and parameters (no I/O): raises before anything is stored."""
        message = None if content is None else user_message(content)
        call_params = self._call_params(params)
        self._full_budget(_reply_tokens(call_params))  # a reply reserve that leaves no room
        return message, call_params

    def accept(
        self, content: Any, params: Mapping[str, Any]
    ) -> Generator[Any, Any, dict[str, Any]]:
        """The first half of a turn: check, then store the user's message (or check there is
        something to answer). Returns the turn's request parameters."""
        message, call_params = self.check(content, params)
        yield from self.ensure_thread()
        if message is not None:
            yield StoreCall("append", (self.thread_id, message))
        else:
            newest = yield StoreCall("messages", (self.thread_id,), {"last": 1})
            if not newest:
                raise InvalidRequestError("the thread has no message to answer yet")
        return call_params

    def respond(self, params: dict[str, Any], *, stream: bool) -> Generator[Any, Any, Reply]:
        """The second half of a turn: answer the thread as it stands."""
        self.plugin_errors = []
        return (yield from self._respond(params, stream=stream))

    def regenerate(self, params: Mapping[str, Any], *, stream: bool) -> Generator[Any, Any, Reply]:
        """Answer the newest user message again, on a fork (the old answer stays reachable)."""
        call_params = self._call_params(params)
        yield from self.ensure_thread()
        user_seq = yield from self._newest_user_seq()
        if user_seq is None:
            raise InvalidRequestError("the thread has no user message to answer again")
        yield from self._move_to_fork(user_seq, {"regenerated_from": self.thread_id})
        return (yield from self._respond(call_params, stream=stream))

    def edit(
        self, seq: Any, content: Any, params: Mapping[str, Any], *, stream: bool
    ) -> Generator[Any, Any, Reply]:
        """Fork before user message ``seq``, put ``content`` in its place, and answer it."""
        if isinstance(seq, bool) or not isinstance(seq, int) or seq < 1:
            raise InvalidRequestError(f"seq must be a positive whole number, got {seq!r}")
        message = user_message(content)
        call_params = self._call_params(params)
        yield from self.ensure_thread()
        found = yield StoreCall("messages", (self.thread_id,), {"after_seq": seq - 1, "limit": 1})
        if not found or found[0].seq != seq:
            raise InvalidRequestError(f"the thread has no message {seq}")
        if found[0].message.role != "user":
            raise InvalidRequestError(
                f"message {seq} is a {found[0].message.role} message; only user messages "
                "can be edited"
            )
        yield from self._move_to_fork(seq - 1, {"edited_from": self.thread_id, "edited_seq": seq})
        yield StoreCall("append", (self.thread_id, message))
        return (yield from self._respond(call_params, stream=stream))

    def add_tool_result(self, tool_call_id: Any, content: Any) -> Generator[Any, Any, Any]:
        """Store the result of a pending tool call (checked against the thread first)."""
        if not isinstance(tool_call_id, str) or not tool_call_id:
            raise InvalidRequestError("tool_call_id must be a non-empty string")
        text = _tool_content(content)
        yield from self.ensure_thread()
        pending = yield from self._pending_calls()
        if tool_call_id not in pending:
            known = ", ".join(sorted(pending)) or "none"
            raise InvalidRequestError(
                f"no pending tool call {tool_call_id!r} in this thread (pending: {known})"
            )
        stored = yield StoreCall(
            "append", (self.thread_id, Message.tool(text, tool_call_id=tool_call_id))
        )
        return stored

    def history(self, limit: int | None) -> Generator[Any, Any, Any]:
        """The stored messages: the newest ``limit`` (None: all of them)."""
        if limit is not None and (
            isinstance(limit, bool) or not isinstance(limit, int) or limit < 0
        ):
            raise InvalidRequestError(f"limit must be a whole number >= 0 or None, got {limit!r}")
        yield from self.ensure_thread()
        if limit is None:
            return (yield StoreCall("messages", (self.thread_id,)))
        return (yield StoreCall("messages", (self.thread_id,), {"last": limit}))

    # ---- helpers of the public turns

    def _call_params(self, params: Mapping[str, Any]) -> dict[str, Any]:
        merged = validate_params({**self.params, **params})
        for reserved in ("model", "messages", "stream", "tools"):
            if reserved in params:
                raise InvalidRequestError(
                    f"{reserved!r} is set by the conversation, not a request parameter",
                    param=reserved,
                )
        return merged

    def _newest_user_seq(self) -> Generator[Any, Any, int | None]:
        last = 16
        while True:
            rows = yield StoreCall("messages", (self.thread_id,), {"last": last})
            for r in reversed(rows):
                if r.message.role == "user":
                    return int(r.seq)
            if len(rows) < last:
                return None
            last *= 4

    def _pending_calls(self) -> Generator[Any, Any, set[str]]:
        rows = yield StoreCall("messages", (self.thread_id,), {"last": 64})
        answered: set[str] = set()
        for r in reversed(rows):
            m = r.message
            if m.role == "tool" and m.tool_call_id:
                answered.add(m.tool_call_id)
                continue
            if m.role == "assistant" and m.tool_calls and r.status == "complete":
                return {c.id for c in m.tool_calls} - answered
            return set()
        return set()

    def _move_to_fork(self, at_seq: int, why: Mapping[str, Any]) -> Generator[Any, Any, None]:
        thread = yield StoreCall("get_thread", (self.thread_id,))
        own = thread.metadata.get(META_KEY)
        meta = {
            **thread.metadata,
            META_KEY: {**(dict(own) if isinstance(own, Mapping) else {}), **why},
        }
        fork = yield StoreCall("fork", (self.thread_id, at_seq), {"metadata": meta})
        self.thread_id = fork.id

    # ---- answering

    def _respond(self, params: dict[str, Any], *, stream: bool) -> Generator[Any, Any, Reply]:
        rounds = 0
        purpose: Purpose = "turn"
        while True:
            call, stored = yield from self._call_and_store(purpose, params, stream=stream)
            message = call.response.message
            calls = message.tool_calls or ()
            runnable = (
                bool(calls)
                and not call.incomplete
                and rounds < self.max_tool_rounds
                and all(c.name in self.tool_handlers for c in calls)
            )
            if not runnable:
                return self._reply(call, stored, rounds)
            results = []
            for c in calls:
                result = yield from self._run_tool(c)
                results.append(
                    (
                        yield StoreCall(
                            "append", (self.thread_id, Message.tool(result, tool_call_id=c.id))
                        )
                    )
                )
            yield from self._observe(
                "turn_stored",
                {"messages": results, "usage": None, "context": self.context("tool_followup")},
            )
            rounds += 1
            purpose = "tool_followup"

    def _run_tool(self, call: ToolCall) -> Generator[Any, Any, str]:
        try:
            arguments = json.loads(call.arguments) if call.arguments.strip() else {}
        except ValueError as exc:
            return json.dumps({"error": f"the arguments are not valid JSON: {exc}"})
        if not isinstance(arguments, dict):
            return json.dumps({"error": "the arguments are not a JSON object"})
        try:
            result = yield RunTool(self.tool_handlers[call.name], arguments)
        except Exception as exc:  # a failing handler is the model's to hear about
            log.warning("tool handler %r raised %s: %s", call.name, type(exc).__name__, exc)
            return json.dumps({"error": f"{type(exc).__name__}: {exc}"}, ensure_ascii=False)
        try:
            return _tool_content(result)
        except InvalidMessageError as exc:
            return json.dumps({"error": str(exc)})

    def _reply(self, call: _Call, stored: Any, rounds: int) -> Reply:
        window = call.window
        report = None
        if window is not None or call.answered:
            report = self._report(call)
        return Reply(
            message=stored.message if stored is not None else call.response.message,
            usage=call.response.usage,
            window=report,
            incomplete=call.incomplete,
            seq=None if stored is None else stored.seq,
            finish_reason=call.response.finish_reason,
            tool_rounds=rounds,
            thread_id=self.thread_id,
            plugin_errors=tuple(self.plugin_errors),
        )

    def _report(self, call: _Call) -> WindowReport:
        w = call.window
        usage = call.response.usage
        reported = usage.prompt_tokens if usage is not None and not call.answered else None
        if w is None:
            return WindowReport(
                prompt_tokens=0,
                reported_prompt_tokens=None,
                budget=call.budget,
                messages=0,
                dropped=0,
                first_seq=None,
                summary_through=None,
                answered_by_plugin=True,
            )
        history = list(w.messages)
        covered = w.summary.covers_through_seq if w.summary is not None else 0
        prefix = 0  # the system prompt and summary lead the window
        while prefix < len(history) and history[prefix].role in PREFIX_ROLES:
            prefix += 1
        sent_history = len(history) - prefix
        newest = call.read_newest
        dropped = max(0, newest - covered - sent_history) if newest else len(w.dropped)
        return WindowReport(
            prompt_tokens=call.predicted,
            reported_prompt_tokens=reported,
            budget=call.budget,
            messages=len(history),
            dropped=dropped,
            first_seq=w.first_seq,
            summary_through=covered or None,
            summarized=call.summarized,
            truncated=w.truncated,
            exact=w.exact,
            calibration=call.scale,
            summary_error=call.summary_error or w.error,
            answered_by_plugin=call.answered,
        )

    #: The calibration factor of the call in progress (set when a call starts).
    _scale = 1.0

    def _call_and_store(
        self, purpose: Purpose, params: dict[str, Any], *, stream: bool
    ) -> Generator[Any, Any, tuple[_Call, Any]]:
        call = yield from self._call(purpose, params, stream=stream)
        response = call.response
        stored = None
        message: Message | None = response.message
        if call.incomplete and message is not None:
            message = _storable_partial(message)
        if message is not None:
            metadata: dict[str, Any] = {"model": response.model or self.model, "purpose": purpose}
            if response.finish_reason is not None:
                metadata["finish_reason"] = response.finish_reason
            if call.answered:
                metadata["answered_by_plugin"] = True
            self._add_plugin_metadata(metadata, call.plugin_metadata)
            stored = yield StoreCall(
                "append",
                (self.thread_id, message),
                {
                    "status": "incomplete" if call.incomplete else "complete",
                    "usage": response.usage,
                    "metadata": metadata,
                },
            )
            yield from self._observe(
                "turn_stored",
                {"messages": [stored], "usage": response.usage, "context": self.context(purpose)},
            )
        if call.after is not None:
            # The reply is safe: now fold old turns into the summary, for the next turn.
            call.summarized, call.summary_error = yield from self._summarize_after(*call.after)
        return call, stored

    def _call(
        self, purpose: Purpose, params: dict[str, Any], *, stream: bool
    ) -> Generator[Any, Any, _Call]:
        ctx = self.context(purpose)
        draft = RequestDraft(
            model=self.model,
            system=[Message.system(self.system)] if self.system else [],
            tools=[dict(t) for t in self.tools] if self.tools else None,
            params=dict(params),
            headers={},
        )
        answer = _check_answer(
            (yield HookCall("prepare_request", {"draft": draft, "context": ctx}, mode="first")),
            "prepare_request",
        )
        if answer is not None:
            return (yield from self._answered(answer, draft, ctx, stream))
        reply_tokens = _reply_tokens(draft.params)
        summary = yield StoreCall("get_summary", (self.thread_id,))
        key = tools_key(draft.tools)
        self._scale = self.calibration.scale(draft.model, key)
        tighten: int | None = None
        for attempt in range(2):
            budget = self._budget(reply_tokens, tighten)
            if draft.model != self.model:  # prepare_request sent the call to another model
                budget = min(budget, self._model_budget(draft.model, reply_tokens))
            plan = self.policy.read_plan(
                system=draft.system,
                summary=summary,
                tools=draft.tools,
                reply_tokens=reply_tokens,
                tool_choice=draft.params.get("tool_choice"),
            )
            plan = attrs.evolve(
                plan, budget=max(0, plan.budget - (self._full_budget(reply_tokens) - budget))
            )
            rows = yield StoreCall("window", (self.thread_id, plan))
            read_newest = rows[-1].seq if rows else 0
            window = yield from self._fit(rows, draft, summary, reply_tokens, budget)
            yield from self._observe("window_fitted", {"window": window, "context": ctx})
            request, predicted, window, answer = yield from self._finalize(
                window, rows, draft, summary, reply_tokens, budget, ctx, stream
            )
            if answer is not None:
                call = yield from self._answered(answer, draft, ctx, stream, request)
                call.window, call.predicted, call.budget = window, predicted, budget
                call.read_newest, call.scale = read_newest, self._scale
                return call
            try:
                response, incomplete = yield from self._send(request, ctx, stream)
            except ContextLengthExceededError as exc:
                yield from self._observe(
                    "request_failed",
                    {"error": exc, "attempts": attempt + 1, "request": request, "context": ctx},
                )
                if attempt == 1:
                    raise
                over = _overshoot(exc)
                # Tighten by what the API says was too much (plus a margin), or by 10%.
                cut = (over + 16) if over is not None else max(1, predicted // 10)
                tighten = max(1, predicted - cut)
                log.info("context_length_exceeded: refitting to %d prompt tokens", tighten)
                continue
            except (TransportError, PluginError) as exc:
                yield from self._observe(
                    "request_failed",
                    {"error": exc, "attempts": attempt + 1, "request": request, "context": ctx},
                )
                raise
            if response.usage is not None and response.usage.prompt_tokens:
                self.calibration.record(
                    draft.model, key, predicted, response.usage.prompt_tokens, exact=window.exact
                )
            call = _Call(
                response,
                window,
                predicted,
                budget,
                incomplete=incomplete,
                read_newest=read_newest,
                scale=self._scale,
                plugin_metadata=ctx.reply_metadata,
            )
            if purpose != "summary":
                call.after = (rows, draft, summary, reply_tokens, budget)
            return call
        raise AssertionError("unreachable")  # pragma: no cover

    def _full_budget(self, reply_tokens: int | None) -> int:
        budget_of = getattr(self.policy, "budget", None)
        if budget_of is None:
            raise InvalidRequestError("the context policy has no budget() method")
        return int(budget_of(reply_tokens))

    def _budget(self, reply_tokens: int | None, tighten: int | None) -> int:
        full = self._full_budget(reply_tokens)
        budget = math.floor(full / self._scale) if self._scale > 1.0 else full
        if tighten is not None:
            budget = min(budget, tighten)
        return max(1, budget)

    def _model_budget(self, model: str, reply_tokens: int | None) -> int:
        """The prompt budget for ``model`` (calibrated), when a hook sends to another model."""
        if model == self.model:
            return self._budget(reply_tokens, None)
        explicit = getattr(self.policy, "max_prompt_tokens", None)
        full = prompt_budget(counter_for(model), reply_tokens=reply_tokens)
        if explicit is not None:
            full = min(full, explicit)
        return max(1, math.floor(full / self._scale) if self._scale > 1.0 else full)

    def _policy_for(
        self, draft: Any, summary: Summary | None, reply_tokens: int | None, budget: int
    ) -> tuple[Any, dict[str, Any]]:
        """The policy fitted to ``budget`` and the keyword arguments of its steps."""
        kwargs: dict[str, Any] = {
            "system": draft.system,
            "summary": summary,
            "tools": draft.tools,
            "tool_choice": draft.params.get("tool_choice"),
        }
        if budget != self._full_budget(reply_tokens):
            return _with_budget(self.policy, budget), kwargs  # calibrated or tightened
        kwargs["reply_tokens"] = reply_tokens
        return self.policy, kwargs

    def _fit(
        self,
        rows: Sequence[Any],
        draft: Any,
        summary: Summary | None,
        reply_tokens: int | None,
        budget: int,
    ) -> Generator[Any, Any, Window]:
        policy, kwargs = self._policy_for(draft, summary, reply_tokens, budget)
        if isinstance(policy, SummarizePolicy) and self.summarize_after_reply:
            steps = policy.trim_steps(rows, **kwargs)
        else:
            steps = policy.steps(rows, **kwargs)
        window: Window = yield from self._answer_summaries(steps)
        return window

    def _answer_summaries(self, steps: Generator[Any, Any, Any]) -> Generator[Any, Any, Any]:
        """Drive a policy's steps inside the turn, answering each summary request."""
        try:
            effect = next(steps)
            while True:
                try:
                    text = yield from self._summary_text(effect)
                except Exception as exc:
                    effect = steps.throw(exc)
                else:
                    effect = steps.send(text)
        except StopIteration as stop:
            return stop.value

    def _summary_text(self, request: SummaryRequest) -> Generator[Any, Any, str]:
        ctx = self.context("summary", request.model or self.model)
        summarizer = yield HookCall(
            "summarizer", {"model": ctx.model, "context": ctx}, mode="first"
        )
        if summarizer is None:
            summarizer = getattr(self.policy, "summarizer", None)
        if summarizer is not None:
            text = yield Summarize(summarizer, request)
            return str(text) if not isinstance(text, str) else text
        # The default: ask the conversation's own model (or the policy's summary_model),
        # with a request that fits that model's window like any other.
        model = request.model or self.model
        counter = counter_for(model)
        info = counter.info
        reply = max(1, min(request.max_tokens, info.max_output_tokens, info.context_window // 4))
        outgoing = OutgoingRequest(
            model=model,
            messages=list(request.as_messages()),
            tools=None,
            params={"max_tokens": reply},
            headers={},
        )
        answer = _check_answer(
            (
                yield HookCall(
                    "finalize_request", {"request": outgoing, "context": ctx}, mode="first"
                )
            ),
            "finalize_request",
        )
        chat = ChatRequest(
            model=outgoing.model, messages=outgoing.messages, params=dict(outgoing.params)
        )
        if answer is None:
            final = counter_for(chat.model)
            needed = final.count(chat.messages) + (_reply_tokens(chat.params) or 0)
            if needed > final.info.context_window:
                raise SummarizationError(
                    f"the summary request needs {needed} tokens, over {chat.model}'s "
                    f"{final.info.context_window}-token window; lower the policy's "
                    "max_summarizer_input_tokens or max_summary_tokens"
                )
            try:
                answer = yield Complete(chat)
            except (TransportError, PluginError) as exc:
                yield from self._observe(
                    "request_failed",
                    {"error": exc, "attempts": 1, "request": chat, "context": ctx},
                )
                raise
        answer = yield from self._through_middleware(answer, chat, ctx)
        answer = yield HookCall(
            "process_response",
            {"response": answer, "request": chat, "context": ctx},
            mode="chain",
        )
        if not answer.text.strip():
            raise SummarizationError("the summary call returned no text")
        summary_text: str = answer.text
        return summary_text

    def _summarize_after(
        self,
        rows: Sequence[Any],
        draft: Any,
        summary: Summary | None,
        reply_tokens: int | None,
        budget: int,
    ) -> Generator[Any, Any, tuple[tuple[int, ...], SummarizationError | None]]:
        """Fold old turns into the summary for the next turn: (folded seqs, failure)."""
        if not (isinstance(self.policy, SummarizePolicy) and self.summarize_after_reply):
            return (), None
        policy, kwargs = self._policy_for(draft, summary, reply_tokens, budget)
        try:
            new, error = yield from self._answer_summaries(policy.update_steps(rows, **kwargs))
        except ConvkitError as exc:  # pragma: no cover - update_steps reports, not raises
            new, error = None, SummarizationError(str(exc))
        if new is None:
            return (), error
        try:
            stored = yield StoreCall("put_summary", (self.thread_id, new))
        except ConvkitError as exc:
            log.warning("the new summary could not be stored: %s", exc)
            return (), SummarizationError(f"the new summary was not stored: {exc}")
        previous = summary.covers_through_seq if summary is not None else 0
        folded = tuple(r.seq for r in rows if previous < r.seq <= stored.covers_through_seq)
        return folded, error

    def _finalize(
        self,
        window: Window,
        rows: Sequence[Any],
        draft: Any,
        summary: Summary | None,
        reply_tokens: int | None,
        budget: int,
        ctx: CallContext,
        stream: bool,
    ) -> Generator[Any, Any, tuple[ChatRequest, int, Window, ChatResponse | None]]:
        for attempt in range(2):
            outgoing = OutgoingRequest(
                model=draft.model,
                messages=list(window.messages),
                tools=[dict(t) for t in draft.tools] if draft.tools else None,
                params=dict(draft.params),
                headers=dict(draft.headers),
            )
            answer = _check_answer(
                (
                    yield HookCall(
                        "finalize_request", {"request": outgoing, "context": ctx}, mode="first"
                    )
                ),
                "finalize_request",
            )
            messages = [as_message(m, i) for i, m in enumerate(outgoing.messages)]
            final_reply = _reply_tokens(outgoing.params)
            retargeted = outgoing.model != draft.model or final_reply != reply_tokens
            changed = (
                retargeted
                or len(messages) != len(window.messages)
                or any(a is not b for a, b in zip(messages, window.messages, strict=False))
                or outgoing.tools != draft.tools
                or outgoing.params.get("tool_choice") != draft.params.get("tool_choice")
            )
            counter = self.counter if outgoing.model == self.model else counter_for(outgoing.model)
            predicted = (
                counter.count(
                    messages, tools=outgoing.tools, tool_choice=outgoing.params.get("tool_choice")
                )
                if changed
                else window.prompt_tokens
            )
            if retargeted:
                # A hook changed the model or the reply's reserve: hold the request against
                # the budget of what will actually be sent.
                budget = min(budget, self._model_budget(outgoing.model, final_reply))
            if not window.exact:
                # A model tiktoken does not know: a plugin may count it exactly; its figure is
                # the one held against the budget.
                counted = yield HookCall(
                    "count_tokens",
                    {"model": outgoing.model, "messages": messages, "tools": outgoing.tools},
                    mode="first",
                )
                if counted is not None:
                    if isinstance(counted, bool) or not isinstance(counted, int) or counted < 0:
                        raise InvalidRequestError(
                            f"a count_tokens hook returned {counted!r}; expected a whole number"
                        )
                    predicted = counted
            params = dict(outgoing.params)
            if outgoing.tools:
                params["tools"] = outgoing.tools
            if stream:
                params["stream"] = True
                options = dict(params.get("stream_options") or {})
                options.setdefault("include_usage", True)
                params["stream_options"] = options
            request = ChatRequest(model=outgoing.model, messages=messages, params=params)
            if predicted <= budget or answer is not None:
                return request, predicted, window, answer
            if attempt == 1:
                raise ContextOverflowError(
                    predicted,
                    budget,
                    "the finalize_request hooks made the request larger than the budget",
                )
            # A hook grew the request: refit with the growth taken out of the budget.
            smaller = max(1, budget - (predicted - window.prompt_tokens))
            try:
                window = yield from self._fit(rows, draft, summary, reply_tokens, smaller)
            except ContextOverflowError as exc:
                raise ContextOverflowError(
                    predicted,
                    budget,
                    "the finalize_request hooks made the request larger than the budget, "
                    "and no smaller window leaves them room",
                ) from exc
            window = attrs.evolve(window, budget=budget)
        raise AssertionError("unreachable")  # pragma: no cover

    def _answered(
        self,
        answer: ChatResponse,
        draft: Any,
        ctx: CallContext,
        stream: bool,
        request: ChatRequest | None = None,
    ) -> Generator[Any, Any, _Call]:
        if request is None:  # answered by prepare_request: nothing was fitted yet
            request = ChatRequest(
                model=draft.model, messages=[Message.user("(answered by a plugin)")]
            )
        response = yield from self._through_middleware(answer, request, ctx, emit=stream)
        response = yield HookCall(
            "process_response",
            {"response": response, "request": request, "context": ctx},
            mode="chain",
        )
        return _Call(response, None, 0, 0, answered=True, plugin_metadata=ctx.reply_metadata)

    def _add_plugin_metadata(self, metadata: dict[str, Any], extra: Mapping[str, Any]) -> None:
        """Add the entries hooks put in ``context.reply_metadata`` (convkit's keys stay)."""
        for key, value in extra.items():
            if key in metadata:
                continue
            try:  # what the store would refuse (not JSON, a credential, too big in all)
                merged = check_metadata({**metadata, key: value}, "context.reply_metadata")
            except Exception as exc:
                log.warning("reply metadata %r left out: %s", key, exc)
                self.plugin_errors.append(
                    PluginError(str(key), "reply_metadata", exc, message=f"{exc}")
                )
                continue
            metadata[key] = merged[key]

    def _through_middleware(
        self,
        response: ChatResponse,
        request: ChatRequest,
        ctx: CallContext,
        *,
        emit: bool = False,
    ) -> Generator[Any, Any, ChatResponse]:
        """Replay a whole response through the stream middleware (and to the caller)."""
        pipeline = yield HookCall(
            "wrap_stream", {"request": request, "context": ctx}, mode="middleware"
        )
        if not len(pipeline) and not emit:
            return response
        for chunk in chunks_from_response(response):
            for out in pipeline.feed(chunk):
                if emit and out.text:
                    yield Emit(out.text)
        for out in pipeline.close():
            if emit and out.text:
                yield Emit(out.text)
        if not len(pipeline):
            return response
        replayed: ChatResponse = pipeline.response()
        return attrs.evolve(replayed, usage=response.usage or replayed.usage)

    def _send(
        self, request: ChatRequest, ctx: CallContext, stream: bool
    ) -> Generator[Any, Any, tuple[ChatResponse, bool]]:
        if not stream:
            arrived = yield Complete(request)
            try:
                response = yield from self._through_middleware(arrived, request, ctx)
            except PluginError:
                yield from self._store_partial(arrived, ctx)  # what arrived, marked incomplete
                raise
        else:
            response, _, error = yield from self._stream(request, ctx)
            if error is not None:
                raise error
        try:
            replaced = yield HookCall(
                "process_response",
                {"response": response, "request": request, "context": ctx},
                mode="chain",
            )
        except PluginError:
            yield from self._store_partial(response, ctx)
            raise
        return replaced, False

    def _stream(
        self, request: ChatRequest, ctx: CallContext
    ) -> Generator[Any, Any, tuple[ChatResponse, bool, BaseException | None]]:
        pipeline = yield HookCall(
            "wrap_stream", {"request": request, "context": ctx}, mode="middleware"
        )
        # Without middleware the chunks are the output and the stream accumulates them; with
        # middleware the pipeline accumulates its output (what is stored is what the caller
        # saw) and the stream need not merge its chunks as well.
        plain = not len(pipeline)
        handle = yield OpenStream(request, accumulate=plain)
        failure: BaseException | None = None
        try:
            while True:
                chunk = yield NextChunk(handle)
                if chunk is None:
                    break
                for out in pipeline.feed(chunk):
                    if out.text:
                        yield Emit(out.text)
            for out in pipeline.close():
                if out.text:
                    yield Emit(out.text)
        except (TransportError, PluginError, StreamAbandoned) as exc:
            failure = exc
            try:
                pipeline.close()  # flush what middleware holds into the partial
            except ConvkitError:
                log.warning("stream middleware failed while flushing a broken stream")
        response = (yield StreamResult(handle)) if plain else pipeline.response()
        # (on any other failure the shell closes the stream: it tracks every one it opened)
        yield CloseStream(handle)
        if failure is None:
            return response, False, None
        yield from self._store_partial(response, ctx)
        return response, True, failure

    def _store_partial(self, response: ChatResponse, ctx: CallContext) -> Generator[Any, Any, None]:
        message = _storable_partial(response.message)
        if message is None:
            return
        metadata: dict[str, Any] = {"model": response.model or self.model, "purpose": ctx.purpose}
        self._add_plugin_metadata(metadata, ctx.reply_metadata)
        stored = yield StoreCall(
            "append",
            (self.thread_id, message),
            {"status": "incomplete", "usage": response.usage, "metadata": metadata},
        )
        yield from self._observe(
            "turn_stored", {"messages": [stored], "usage": response.usage, "context": ctx}
        )
