"""Turning a :class:`~convkit.testing.Reply` into response bodies and chunks (private; pure)."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from convkit.testing._replies import Reply, ceil4

__all__ = ["Render"]


class Render:
    """Turns a reply into response bodies for one request (pure; no sockets)."""

    def __init__(
        self,
        prompt_tokens_fn: Callable[[Mapping[str, Any]], int],
        reply: Reply,
        body: Mapping[str, Any],
        n: int,
    ) -> None:
        self.reply = reply
        self.body = body
        self.id = f"chatcmpl-fake-{n}"
        self.created = 1_700_000_000 + n
        self.model = reply.model or str(body.get("model") or "fake-model")
        choices = body.get("n")
        self.n = 1
        if isinstance(choices, int) and not isinstance(choices, bool) and choices > 0:
            self.n = choices
        self._prompt_tokens = prompt_tokens_fn

    def usage(self) -> dict[str, Any] | None:
        usage = self.reply.usage
        if usage is False or usage is None:
            return None
        if usage is True:
            r = self.reply
            text = (r.content or "") + (r.refusal_text or "")
            text += "".join(
                str(c["function"]["name"] or "") + str(c["function"]["arguments"]) for c in r.calls
            )
            prompt = int(self._prompt_tokens(self.body))
            completion = ceil4(len(text)) * self.n
            return {
                "prompt_tokens": prompt,
                "completion_tokens": completion,
                "total_tokens": prompt + completion,
            }
        if hasattr(usage, "to_openai"):
            return dict(usage.to_openai())
        return dict(usage)

    def completion(self) -> dict[str, Any]:
        r = self.reply
        message: dict[str, Any] = {
            "role": "assistant",
            "content": r.content,
            "refusal": r.refusal_text,
        }
        if r.calls:
            message["tool_calls"] = [json.loads(json.dumps(c)) for c in r.calls]
        message.update(r.extra_delta)
        out: dict[str, Any] = {
            "id": self.id,
            "object": "chat.completion",
            "created": self.created,
            "model": self.model,
            "choices": [
                {"index": i, "message": message, "logprobs": None, "finish_reason": r.finish_reason}
                for i in range(self.n)
            ],
            "system_fingerprint": "fp_fake",
        }
        usage = self.usage()
        if usage is not None:
            out["usage"] = usage
        return out

    def chunks(self) -> list[dict[str, Any]]:
        r = self.reply
        opts = self.body.get("stream_options")
        asked = isinstance(opts, Mapping) and opts.get("include_usage") is True
        with_usage = asked if r.usage_in_stream is None else r.usage_in_stream
        usage = self.usage() if with_usage else None
        size = r.chunk_size
        out: list[dict[str, Any]] = []

        def chunk(index: int, delta: dict[str, Any], finish: str | None = None) -> None:
            c: dict[str, Any] = {
                "id": self.id,
                "object": "chat.completion.chunk",
                "created": self.created,
                "model": self.model,
                "system_fingerprint": "fp_fake",
                "choices": [
                    {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}
                ],
            }
            if with_usage:
                c["usage"] = None  # as OpenAI does: null on every chunk but the last
            out.append(c)

        for index in range(self.n):
            first: dict[str, Any] = {
                "role": "assistant",
                "content": None if r.content is None else "",
                "refusal": None,
            }
            first.update(r.extra_delta)
            chunk(index, first)
            text = r.content or ""
            for i in range(0, len(text), size):
                chunk(index, {"content": text[i : i + size]})
            refusal = r.refusal_text or ""
            for i in range(0, len(refusal), size):
                chunk(index, {"refusal": refusal[i : i + size]})
            for k, call in enumerate(r.calls):
                fn = call["function"]
                head = {
                    "index": k,
                    "id": call["id"],
                    "type": "function",
                    "function": {"name": fn["name"], "arguments": ""},
                }
                chunk(index, {"tool_calls": [head]})
                args = str(fn["arguments"])
                for i in range(0, len(args), size):
                    piece = {"index": k, "function": {"arguments": args[i : i + size]}}
                    chunk(index, {"tool_calls": [piece]})
            chunk(index, {}, r.finish_reason)
        if usage is not None:
            out.append(
                {
                    "id": self.id,
                    "object": "chat.completion.chunk",
                    "created": self.created,
                    "model": self.model,
                    "system_fingerprint": "fp_fake",
                    "choices": [],
                    "usage": usage,
                }
            )
        return out
