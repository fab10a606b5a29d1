"""``convkit demo``: a real end-to-end conversation on the embedded defaults.

No model is reachable from a test machine, so the demo starts convkit's OpenAI-protocol server
on loopback (:class:`convkit.testing.FakeChatServer`) with a small scripted "model" that
answers, calls a tool and writes summaries. Everything else is the real path a chatbot takes:

1. each user message is stored in the default SQLite database (counted once, on append);
2. the store reads the thread's recent window newest-first; a :class:`~convkit.Summarize`
   policy fits it to the prompt budget, folding older turns into a rolling summary through
   the completions client;
3. the request streams over HTTP (SSE) through :class:`~convkit.ChatClient`; tool calls are
   run and their results stored; the reply is stored with the usage the server reported;
4. the window's predicted prompt tokens are printed next to the figure the server reported.
   The loopback server computes that figure from the request body it actually received (with
   convkit's counting rules, the ones the cookbook figures check), so a mismatch would mean the
   window sent over HTTP is not the one that was counted.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import IO, Any

from convkit.context import DEFAULT_SUMMARY_PROMPT, Summarize, SummaryRequest
from convkit.messages import Message
from convkit.tokens import TokenCounter

__all__ = ["SCRIPT", "run_demo"]

MODEL = "gpt-4o"
SYSTEM = "You are a concise travel assistant. Use the weather tool when asked about weather."
TOOLS: list[dict[str, Any]] = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Get the current weather for a city.",
            "parameters": {
                "type": "object",
                "properties": {
                    "city": {"type": "string", "description": "The city name"},
                },
                "required": ["city"],
            },
        },
    }
]

#: The user's side of the demo conversation.
SCRIPT: tuple[str, ...] = (
    "Hi! I'm planning three days in Lisbon next spring. What should I not miss?",
    "What's the weather like in Lisbon right now?",
    "Great. Which neighbourhood is best for staying near the old town?",
    "And how do I get there from the airport?",
    "Any day trip you would suggest?",
    "Remind me: which city am I planning for, and what did you say about the weather?",
)

_WEATHER = {"lisbon": "19°C, sunny, light breeze from the Atlantic"}


def _get_weather(arguments: str) -> str:
    try:
        city = str(json.loads(arguments).get("city", ""))
    except (ValueError, AttributeError):
        return "error: arguments must be a JSON object with a 'city'"
    return _WEATHER.get(city.lower(), f"no weather data for {city}")


def _scripted_model(request: Any) -> Any:
    """The loopback server's stand-in for a model: deterministic, protocol-faithful replies."""
    from convkit.testing import Reply

    msgs = request.messages
    first = msgs[0].get("content") if msgs else None
    if first == DEFAULT_SUMMARY_PROMPT:
        body = str(msgs[-1].get("content", ""))
        topics = [
            line.split(": ", 1)[1][:60] for line in body.splitlines() if line.startswith("user: ")
        ]
        return Reply.text(
            "The user is planning a trip to Lisbon. Earlier they asked: " + "; ".join(topics)
        )
    last = msgs[-1]
    if last.get("role") == "tool":
        return Reply.text(
            f"Right now in Lisbon it's {last.get('content')}. Pack a light jacket.", chunk_size=6
        )
    text = str(last.get("content", "")).lower()
    if "weather" in text and "remind" not in text and request.body.get("tools"):
        return Reply.tool_calls([{"name": "get_weather", "arguments": {"city": "Lisbon"}}])
    if "remind" in text:
        summary = next(
            (
                m["content"]
                for m in msgs
                if m.get("role") == "system" and "Summary" in str(m.get("content"))
            ),
            None,
        )
        seen = (
            "I can see our summary: " + summary.split("\n", 1)[1]
            if summary
            else "It's all in view."
        )
        return Reply.text(f"You're planning Lisbon. {seen}", chunk_size=8)
    answers = {
        "miss": "Alfama's lanes, the Belém tower and pastéis de nata, and a sunset at a miradouro.",
        "neighbourhood": "Baixa or Chiado: flat, central, and a short walk to Alfama.",
        "airport": "Take the red metro line to Alameda, then the green line to Baixa-Chiado.",
        "day trip": "Sintra: palaces in the hills, 40 minutes by train from Rossio.",
    }
    answer = next((a for k, a in answers.items() if k in text), "Happy to help with that.")
    return Reply.text(answer, chunk_size=6)


def run_demo(
    *,
    database_url: str | None = None,
    max_prompt_tokens: int = 300,
    out: IO[str] | None = None,
    script: Sequence[str] = SCRIPT,
) -> int:
    """Run the demo conversation; return 0 when every reply was stored and counted exactly."""
    from convkit.client import ChatClient
    from convkit.store import Store
    from convkit.testing import FakeChatServer

    out = out or sys.stdout
    counter = TokenCounter(MODEL)
    # The loopback server reports prompt_tokens the way the API counts them.
    server = FakeChatServer(
        default_responder=_scripted_model,
        prompt_tokens_fn=lambda body: counter.count(body["messages"], tools=body.get("tools")),
    )
    mismatches = 0
    with (
        server,
        Store(database_url, counter=counter, create_tables=True) as store,
        ChatClient(
            base_url=server.base_url, api_key="sk-demo-not-a-real-key", max_retries=2
        ) as client,
    ):

        def summarizer(req: SummaryRequest) -> str:
            reply = client.complete(
                model=MODEL, messages=req.as_messages(), max_tokens=req.max_tokens
            )
            return reply.text

        policy = Summarize(
            MODEL,
            summarizer=summarizer,
            max_prompt_tokens=max_prompt_tokens,
            max_summary_tokens=120,
            counter=counter,
        )
        system = [Message.system(SYSTEM)]
        thread = store.create_thread(title="convkit demo", metadata={"demo": True})
        print(f"thread {thread.id} in {store!r}", file=out)
        print(
            f"model {MODEL} via {server.base_url}; prompt budget {max_prompt_tokens} tokens",
            file=out,
        )
        print("(the server reports prompt tokens counted from the body it received)\n", file=out)
        for user_text in script:
            stored = store.append(thread.id, Message.user(user_text))
            print(f"user      > {user_text}   [{stored.tokens} tokens, seq {stored.seq}]", file=out)
            for _round in range(4):  # a bounded tool loop
                summary = store.get_summary(thread.id)
                plan = policy.read_plan(system=system, summary=summary, tools=TOOLS)
                history = store.window(thread.id, plan)
                window = policy.fit(history, system=system, summary=summary, tools=TOOLS)
                if window.error is not None:
                    print(
                        f"          (summarizer failed, trimmed instead: {window.error})", file=out
                    )
                if window.summarized and window.summary is not None:
                    # A new summary: store it, so every process on the thread shares it.
                    store.put_summary(thread.id, window.summary)
                    print(
                        f"          (summarized through seq {window.summary.covers_through_seq})",
                        file=out,
                    )
                print("assistant > ", end="", file=out, flush=True)
                with client.stream(
                    model=MODEL, messages=window.messages, tools=TOOLS, max_tokens=300
                ) as stream:
                    for chunk in stream:
                        print(chunk.text or "", end="", file=out, flush=True)
                    response = stream.response
                reported = response.usage.prompt_tokens if response.usage else None
                ok = reported == window.prompt_tokens
                mismatches += not ok
                store.append(thread.id, response.message, usage=response.usage)
                if response.message.tool_calls:
                    for call in response.message.tool_calls:
                        result = _get_weather(call.arguments)
                        print(f"[calls {call.name}({call.arguments}) → {result}]", file=out)
                        store.append(thread.id, Message.tool(result, tool_call_id=call.id))
                    continue
                print(
                    f"\n          [prompt tokens: predicted {window.prompt_tokens}, "
                    f"reported {reported}{'' if ok else '  MISMATCH'}; "
                    f"sent {len(window.messages)} messages]",
                    file=out,
                )
                break
        total = len(store.messages(thread.id))
        print(
            f"\n{total} messages stored; every prompt counted exactly: {mismatches == 0}", file=out
        )
    return 0 if mismatches == 0 else 1
