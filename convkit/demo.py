"""``convkit demo``: the main job, end to end, on the embedded defaults.

No model is reachable from a fresh machine, so the demo starts convkit's OpenAI-protocol server
on loopback (:class:`convkit.testing.FakeChatServer`) as a stand-in model: scripted, protocol-
faithful replies that stream, call a tool and write summaries. Everything else is the real path
an application takes, through one :class:`~convkit.Conversation`:

1. each user message is stored first (SQLite in the user data directory, counted once);
2. the window is read from the store newest-first and fitted by a :class:`~convkit.Summarize`
   policy to a deliberately small model window (a registered model with gpt-4o's counting
   rules and a 480-token context), so older turns are folded into a stored rolling summary;
3. the request goes through the installed plugins (``convkit-redact``, ``convkit-usage`` and
   any other) and streams over HTTP (SSE); tool calls are answered by ``tool_handlers``;
4. each turn shows what convkit did: the window (messages sent, left out), the summary, the
   prompt tokens it predicted next to those the server reported, and what a plugin changed
   between what the user typed and what the server received (the server records requests).

The server computes ``usage.prompt_tokens`` from the body it received, with convkit's counting
rules for the model, so a mismatch would mean the request sent is not the one that was counted.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import IO, Any

from convkit.context import DEFAULT_SUMMARY_PROMPT

__all__ = ["DEMO_MODEL", "SCRIPT", "check_options", "run_demo"]

#: The demo's model: gpt-4o's tokenizer and chat format, with a small window (registered).
DEMO_MODEL = "convkit-demo-4o"
DEMO_CONTEXT_WINDOW = 480
DEMO_MAX_OUTPUT = 150
#: The smallest budget the demo accepts: the system prompt, the tools and one turn must fit.
MIN_BUDGET = 200

SYSTEM = "You are a concise travel assistant. Use the weather tool when asked about weather."
TOOLS: list[dict[str, Any]] = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Get the current weather for a city.",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string", "description": "The city name"}},
                "required": ["city"],
            },
        },
    }
]

#: The user's side of the demo conversation.
SCRIPT: tuple[str, ...] = (
    "Hi! I'm planning three days in Lisbon next spring. What should I not miss?",
    "What's the weather like in Lisbon right now?",
    "Please send the itinerary to ana.silva@example.com when it's ready.",
    "Great. Which neighbourhood is best for staying near the old town?",
    "And how do I get there from the airport?",
    "Any day trip you would suggest?",
    "What should I eat on the last evening?",
    "Remind me: which city am I planning for, and what did you say about the weather?",
)

_WEATHER = {"lisbon": "19°C, sunny, light breeze from the Atlantic"}


def _get_weather(arguments: dict[str, Any]) -> str:
    city = str(arguments.get("city", ""))
    return _WEATHER.get(city.lower(), f"no weather data for {city}")


def _scripted_model(request: Any) -> Any:
    """The loopback server's stand-in for a model: deterministic, protocol-faithful replies."""
    from convkit.testing import Reply

    msgs = request.messages
    if _is_summary_request(request):
        body = str(msgs[-1].get("content", ""))
        topics = [
            line.split(": ", 1)[1][:50] for line in body.splitlines() if line.startswith("user: ")
        ]
        return Reply.text("Planning Lisbon. Asked: " + "; ".join(topics))
    last = msgs[-1]
    if last.get("role") == "tool":
        return Reply.text(
            f"Right now in Lisbon it's {last.get('content')}. Pack a light jacket.", chunk_size=6
        )
    text = str(last.get("content", ""))
    lower = text.lower()
    if "weather" in lower and "remind" not in lower and request.body.get("tools"):
        return Reply.tool_calls([{"name": "get_weather", "arguments": {"city": "Lisbon"}}])
    if "send the itinerary to" in lower:
        # Echo the address as received: a redaction plugin's placeholder comes back as such.
        address = text.split("send the itinerary to", 1)[1].split(" when", 1)[0].strip()
        return Reply.text(f"Noted: I'll send it to {address} once it's ready.", chunk_size=6)
    if "remind" in lower:
        summary = next(
            (
                str(m["content"])
                for m in msgs
                if m.get("role") == "system" and "Summary" in str(m.get("content"))
            ),
            None,
        )
        seen = "From our summary: " + summary.split("\n", 1)[-1] if summary else "It's all in view."
        return Reply.text(f"You're planning Lisbon. {seen}", chunk_size=8)
    answers = {
        "miss": "Alfama's lanes, the Belém tower and pastéis de nata, and a sunset at a miradouro.",
        "neighbourhood": "Baixa or Chiado: flat, central, and a short walk to Alfama.",
        "airport": "Take the red metro line to Alameda, then the green line to Baixa-Chiado.",
        "day trip": "Sintra: palaces in the hills, 40 minutes by train from Rossio.",
        "eat": "Grilled sardines and a glass of vinho verde in a tasca in Mouraria.",
    }
    answer = next((a for k, a in answers.items() if k in lower), "Happy to help with that.")
    return Reply.text(answer, chunk_size=6)


def register_demo_model() -> Any:
    """Register :data:`DEMO_MODEL` (gpt-4o's counting rules, a small window); return its info."""
    import attrs

    from convkit import models

    info = attrs.evolve(
        models.get("gpt-4o"),
        name=DEMO_MODEL,
        context_window=DEMO_CONTEXT_WINDOW,
        max_output_tokens=DEMO_MAX_OUTPUT,
        source="convkit demo: gpt-4o's counting rules with a small window",
    )
    models.register(info)
    return info


def _model_budget() -> int:
    from convkit.context._budget import default_reply_reserve

    return DEMO_CONTEXT_WINDOW - default_reply_reserve(DEMO_CONTEXT_WINDOW, DEMO_MAX_OUTPUT)


def check_options(*, database_url: str | None, max_prompt_tokens: int | None) -> None:
    """Refuse bad options before anything is created (ValueError with one clear line)."""
    top = _model_budget()
    if max_prompt_tokens is not None and not MIN_BUDGET <= max_prompt_tokens <= top:
        raise ValueError(
            f"--budget must be between {MIN_BUDGET} and {top} tokens (the demo model's window "
            f"is {DEMO_CONTEXT_WINDOW}, less {DEMO_CONTEXT_WINDOW - top} for the reply), "
            f"got {max_prompt_tokens}"
        )
    if database_url is not None:
        problem = database_url_problem(database_url)
        if problem is not None:
            raise ValueError(problem)


def database_url_problem(url: str) -> str | None:
    """Why convkit cannot open the database ``url`` (None: it looks usable)."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except ArgumentError:
        return "--db: not a database URL (e.g. sqlite:///chat.db)"
    if parsed.get_backend_name() not in ("sqlite", "postgresql"):
        backend = parsed.get_backend_name()
        return f"--db: convkit stores threads in SQLite or PostgreSQL, not {backend!r}"
    try:
        parsed.get_dialect().import_dbapi()
    except ImportError:
        return (
            f"--db: the database driver for {parsed.drivername!r} is not installed "
            "(PostgreSQL: pip install 'convkit[postgres]')"
        )
    except Exception:
        return f"--db: convkit cannot use databases of kind {parsed.drivername!r}"
    return None


class _Display:
    """The demo's output: styled with rich on a terminal, plain lines otherwise (``--plain``)."""

    def __init__(self, out: IO[str], plain: bool) -> None:
        from convkit.cli._ui import console

        self.out = out
        self.rich = not plain and out.isatty()
        self.console = console(out, plain=not self.rich)

    def line(self, text: str = "", style: str = "") -> None:
        from rich.markup import escape

        if self.rich and style:
            self.console.print(f"[{style}]{escape(text)}[/]")
        else:
            self.out.write(text + "\n")
            self.out.flush()

    def rule(self, title: str) -> None:
        if self.rich:
            self.console.rule(f"[bold]{title}[/]", align="left", style="dim")
        else:
            self.line(f"== {title} ==")

    def label(self, who: str, style: str) -> None:
        text = f"{who:<9} > "
        if self.rich:
            self.console.print(f"[{style}]{text}[/]", end="")
        else:
            self.out.write(text)
        self.out.flush()

    def raw(self, text: str) -> None:
        self.out.write(text)
        self.out.flush()

    def info(self, text: str, *, first: bool = False) -> None:
        prefix = "convkit   · " if first else "          · "
        self.line(prefix + text, "cyan")


def _plugins_in_use() -> tuple[list[str], list[str]]:
    """(lines describing the loaded plugins, the first-party ones that are missing)."""
    from convkit.plugins import load_plugins, plugin_info

    load_plugins()
    infos = plugin_info()
    lines, names = [], set()
    for i in infos:
        names.add(i.name)
        if i.distribution:
            names.add(i.distribution)
        origin = f"{i.distribution} {i.version}" if i.distribution else i.source
        state = "" if i.status == "loaded" else f" ({i.status}: {i.error})"
        lines.append(f"{i.name} ({origin}){state}")
    missing = [
        dist
        for dist, short in (("convkit-redact", "redact"), ("convkit-usage", "usage"))
        if dist not in names and short not in names
    ]
    return lines, missing


def _is_summary_request(request: Any) -> bool:
    msgs = request.messages
    return (
        bool(msgs)
        and isinstance(msgs[0], dict)
        and msgs[0].get("content") == (DEFAULT_SUMMARY_PROMPT)
    )


def _user_text_sent(request: Any) -> str | None:
    for m in reversed(request.messages):
        if isinstance(m, dict) and m.get("role") == "user":
            content = m.get("content")
            return content if isinstance(content, str) else json.dumps(content)
    return None


def run_demo(
    *,
    database_url: str | None = None,
    max_prompt_tokens: int | None = None,
    out: IO[str] | None = None,
    script: Sequence[str] = SCRIPT,
    plain: bool = False,
) -> int:
    """Run the demo conversation; return 0 when every prompt was counted exactly.

    Raises:
        ValueError: a bad option (nothing is created).
    """
    check_options(database_url=database_url, max_prompt_tokens=max_prompt_tokens)
    from convkit.client import ChatClient
    from convkit.context import Summarize
    from convkit.conversation import Conversation
    from convkit.store import Store
    from convkit.testing import FakeChatServer
    from convkit.tokens import TokenCounter

    show = _Display(out or sys.stdout, plain)
    register_demo_model()
    counter = TokenCounter(DEMO_MODEL)
    sent_by_model: list[str] = []

    def model(request: Any) -> Any:
        reply = _scripted_model(request)
        if not _is_summary_request(request):
            sent_by_model.append(reply.content or "")
        return reply

    tool_log: list[str] = []

    def get_weather(arguments: dict[str, Any]) -> str:
        result = _get_weather(arguments)
        tool_log.append(f"[calls get_weather({json.dumps(arguments)}) → {result}]")
        return result

    # The loopback server reports prompt tokens counted from the body it received.
    server = FakeChatServer(
        default_responder=model,
        prompt_tokens_fn=lambda body: counter.count(body["messages"], tools=body.get("tools")),
    )
    plugin_lines, missing = _plugins_in_use()
    mismatches = turns = 0
    with (
        server,
        Store(database_url, model=DEMO_MODEL, create_tables=True) as store,
        ChatClient(base_url=server.base_url, api_key="sk-demo-not-a-real-key") as client,
        Conversation(
            DEMO_MODEL,
            store=store,
            client=client,
            thread=store.create_thread(title="convkit demo", metadata={"demo": True}).id,
            system=SYSTEM,
            policy=Summarize(
                DEMO_MODEL, max_prompt_tokens=max_prompt_tokens, max_summary_tokens=80
            ),
            tools=TOOLS,
            tool_handlers={"get_weather": get_weather},
        ) as conv,
    ):
        budget = max_prompt_tokens or _model_budget()
        show.rule("convkit demo")
        show.line(f"store     {store!r}")
        show.line(
            f"model     {DEMO_MODEL} (gpt-4o's counting, a {DEMO_CONTEXT_WINDOW}-token "
            f"window) served by the loopback server at {server.base_url}"
        )
        show.line(
            f"policy    Summarize: prompt budget {budget} tokens, older turns folded into "
            "a stored summary"
        )
        for line in plugin_lines or ["(none installed)"]:
            show.line(f"plugin    {line}")
        for dist in missing:
            show.line(
                f"plugin    {dist} is not installed: pip install -e plugins/{dist} to see it "
                "at work",
                "yellow",
            )
        for n, user_text in enumerate(script, 1):
            show.rule(f"turn {n}")
            show.label("user", "bold green")
            show.raw(user_text + "\n")
            before = len(server.requests)
            tool_log.clear()
            show.label("assistant", "bold magenta")
            with conv.stream(user_text) as deltas:
                for delta in deltas:
                    if tool_log:
                        show.raw("\n" + "\n".join(f"          {t}" for t in tool_log) + "\n")
                        show.label("assistant", "bold magenta")
                        tool_log.clear()
                    show.raw(delta)
            show.raw("\n")
            reply = deltas.reply
            turns += 1
            w = reply.window
            made = server.requests[before:]
            mine = [r for r in made if not _is_summary_request(r)]
            if w is None:
                show.info("a plugin answered without calling the model", first=True)
                continue
            history = conv.history(limit=2 + 2 * reply.tool_rounds)
            user_row = next((m for m in reversed(history) if m.role == "user"), None)
            stored = (
                f"user message seq {user_row.seq}, {user_row.tokens} tokens; " if user_row else ""
            )
            show.info(f"stored: {stored}reply seq {reply.seq}", first=True)
            show.info(
                f"window: {w.messages} messages sent, {w.dropped} left out"
                + (f", from seq {w.first_seq}" if w.first_seq else "")
                + (f"; summary through seq {w.summary_through} sent" if w.summary_through else "")
            )
            if w.summarized:
                calls = len(made) - len(mine)
                show.info(
                    f"summarized through seq {w.summarized[-1]} after the reply: "
                    f"{len(w.summarized)} messages folded in by {calls} summary "
                    f"call{'s' * (calls != 1)}, stored for the next turn"
                )
            ok = w.reported_prompt_tokens == w.prompt_tokens
            mismatches += not ok
            show.info(
                f"prompt tokens: predicted {w.prompt_tokens}, reported "
                f"{w.reported_prompt_tokens}{'' if ok else '  MISMATCH'} "
                f"({'exact' if w.exact else 'estimated'}; budget {w.budget})"
            )
            if reply.tool_rounds:
                show.info(f"tool rounds: {reply.tool_rounds} (answered by tool_handlers)")
            received = _user_text_sent(mine[0]) if mine else None
            if received is not None and received != user_text:
                show.info(f"a plugin changed the request: the server received {received!r}")
            wrote = sent_by_model[-1] if sent_by_model else ""
            if wrote and wrote != deltas.text:
                show.info(f"a plugin changed the stream: the model wrote {wrote!r}")
            if reply.text != deltas.text:
                show.info(f"a plugin changed the reply: stored as {reply.text!r}")
        total = len(store.messages(conv.thread_id))
        summary = store.get_summary(conv.thread_id)
        show.rule("done")
        show.line(
            f"{total} messages stored in thread {conv.thread_id}"
            + (f"; summary through seq {summary.covers_through_seq}" if summary else "")
        )
        show.line(
            f"every prompt counted exactly: {mismatches == 0}",
            "bold green" if mismatches == 0 else "bold red",
        )
        show.line(f"look inside: convkit threads show {conv.thread_id}")
    return 0 if mismatches == 0 else 1
