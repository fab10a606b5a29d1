"""Token counts reproduce the API's published figures."""

from __future__ import annotations

import base64
import struct
import zlib

import pytest

import convkit
from convkit import ImagePart, Message, TextPart, ToolCall
from convkit.models import PatchImageCost, TileImageCost
from convkit.tokens import TokenCounter, count_tokens, image_dimensions, image_tokens
from tests import cookbook


@pytest.mark.parametrize(("model", "expected"), sorted(cookbook.API_MESSAGE_FIGURES.items()))
def test_cookbook_message_figures(model: str, expected: int) -> None:
    assert count_tokens(cookbook.EXAMPLE_MESSAGES, model=model) == expected


@pytest.mark.parametrize(("model", "expected"), sorted(cookbook.API_TOOL_FIGURES.items()))
def test_cookbook_tool_figures(model: str, expected: int) -> None:
    got = count_tokens(cookbook.TOOL_MESSAGES, model=model, tools=cookbook.TOOLS)
    assert got == expected


def test_messages_and_dicts_count_the_same() -> None:
    as_values = [Message.from_openai(m) for m in cookbook.EXAMPLE_MESSAGES]
    assert count_tokens(as_values, model="gpt-4o") == 124


def test_count_is_sum_of_message_counts_plus_priming() -> None:
    counter = TokenCounter("gpt-4o")
    msgs = [Message.from_openai(m) for m in cookbook.EXAMPLE_MESSAGES]
    assert counter.count(msgs) == sum(counter.count_message(m) for m in msgs) + 3


def test_dated_snapshot_and_provider_prefix_count_like_the_base_model() -> None:
    for name in ("gpt-4o-2024-08-06", "openai/gpt-4o", "azure/gpt-4o-2024-08-06"):
        assert count_tokens(cookbook.EXAMPLE_MESSAGES, model=name) == 124


def test_tool_description_trailing_period_is_ignored() -> None:
    tools = [dict(cookbook.TOOLS[0])]
    fn = dict(tools[0]["function"])
    fn["description"] += "."
    tools[0] = {"type": "function", "function": fn}
    assert count_tokens(cookbook.TOOL_MESSAGES, model="gpt-4o", tools=tools) == 101


def test_more_tools_cost_more() -> None:
    one = count_tokens(cookbook.TOOL_MESSAGES, model="gpt-4o", tools=cookbook.TOOLS)
    two = count_tokens(cookbook.TOOL_MESSAGES, model="gpt-4o", tools=cookbook.TOOLS * 2)
    # A second function repeats everything but the closing 12 tokens.
    assert two - one == one - count_tokens(cookbook.TOOL_MESSAGES, model="gpt-4o") - 12


def test_special_token_text_counts_as_plain_text() -> None:
    counter = TokenCounter("gpt-4o")
    assert counter.count_text("<|endoftext|>") > 1


def test_assistant_tool_calls_and_refusals_are_counted() -> None:
    counter = TokenCounter("gpt-4o")
    bare = counter.count_message(Message.assistant(""))
    call = Message.assistant(
        tool_calls=[ToolCall(id="c1", name="get_weather", arguments='{"city": "Paris"}')]
    )
    assert counter.count_message(call) > bare + counter.count_text('{"city": "Paris"}')
    refusal = Message.assistant(refusal="I can't help with that.")
    assert counter.count_message(refusal) == bare + counter.count_text("I can't help with that.")


def test_text_parts_cost_one_encode_of_their_joined_text() -> None:
    counter = TokenCounter("gpt-4o")
    parts = Message.user([TextPart(text="Hello "), TextPart(text="world")])
    assert counter.count_message(parts) == counter.count_message(Message.user("Hello world"))


def test_counter_remembers_message_counts(monkeypatch: pytest.MonkeyPatch) -> None:
    counter = TokenCounter("gpt-4o")
    m = Message.user("count me once " * 50)
    first = counter.count_message(m)
    calls = []
    real = counter.count_text
    monkeypatch.setattr(counter, "count_text", lambda t: calls.append(t) or real(t))
    assert counter.count_message(m) == first
    assert calls == []


def test_long_text_is_one_tiktoken_call(monkeypatch: pytest.MonkeyPatch) -> None:
    counter = TokenCounter("gpt-4o")
    enc = counter.encoding
    calls: list[int] = []

    class Spy:
        def encode_ordinary(self, text: str) -> list[int]:
            calls.append(len(text))
            return enc.encode_ordinary(text)

    monkeypatch.setattr(counter, "_encoding", Spy())
    counter.count_message(Message.user(["word " * 20_000, "more " * 20_000]))
    assert len(calls) == 2  # the role once (cached afterwards), the joined text once
    assert max(calls) == 200_000


def test_invalid_input_names_the_index() -> None:
    with pytest.raises(convkit.InvalidMessageError, match="message 1"):
        count_tokens([{"role": "user", "content": "hi"}, {"role": "robot"}], model="gpt-4o")


# ---- images: OpenAI's worked examples


@pytest.mark.parametrize(
    ("size", "detail", "expected"),
    [((1024, 1024), "high", 765), ((2048, 4096), "high", 1105), ((4096, 8192), "low", 85)],
)
def test_tile_worked_examples(size: tuple[int, int], detail: str, expected: int) -> None:
    assert image_tokens(TileImageCost(85, 170), size[0], size[1], detail) == expected


@pytest.mark.parametrize(("size", "patches"), [((1024, 1024), 1024), ((1800, 2400), 1452)])
def test_patch_worked_examples(size: tuple[int, int], patches: int) -> None:
    assert image_tokens(PatchImageCost(1.0), size[0], size[1], None) == patches
    assert image_tokens(PatchImageCost(1.62), size[0], size[1], None) == -(-patches * 162 // 100)


def test_small_images_are_not_upscaled() -> None:
    assert image_tokens(TileImageCost(85, 170), 500, 500, "high") == 255
    assert image_tokens(TileImageCost(85, 170), 513, 500, "high") == 425


def _png(width: int, height: int) -> str:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    data = (
        b"\x89PNG\r\n\x1a\n"
        + struct.pack(">I", len(ihdr))
        + chunk
        + struct.pack(">I", zlib.crc32(chunk))
    )
    return "data:image/png;base64," + base64.b64encode(data).decode()


def _gif(width: int, height: int) -> str:
    data = b"GIF89a" + struct.pack("<HH", width, height) + b"\x00" * 8
    return "data:image/gif;base64," + base64.b64encode(data).decode()


def _jpeg(width: int, height: int) -> str:
    app0 = b"\xff\xe0" + struct.pack(">H", 16) + b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
    sof = b"\xff\xc0" + struct.pack(">HBHHB", 11, 8, height, width, 1) + b"\x01\x11\x00"
    data = b"\xff\xd8" + app0 + sof + b"\xff\xd9"
    return "data:image/jpeg;base64," + base64.b64encode(data).decode()


@pytest.mark.parametrize("make", [_png, _gif, _jpeg])
def test_dimensions_read_from_data_urls(make: object) -> None:
    assert image_dimensions(make(2048, 4096)) == (2048, 4096)  # type: ignore[operator]


def test_image_parts_priced_per_model() -> None:
    msg = Message.user(["What is this?", ImagePart(url=_png(1024, 1024), detail="high")])
    text_only = TokenCounter("gpt-4o").count_message(Message.user("What is this?"))
    assert TokenCounter("gpt-4o").count_message(msg) == text_only + 765
    mini = TokenCounter("gpt-4o-mini")
    assert mini.count_message(msg) == mini.count_message(Message.user("What is this?")) + (
        2833 + 4 * 5667
    )
    nano = TokenCounter("gpt-4.1-nano")
    assert nano.count_message(msg) - nano.count_message(Message.user("What is this?")) == 2520


def test_remote_image_size_is_a_stated_assumption() -> None:
    msg = Message.user([ImagePart(url="https://example.com/cat.png")])
    default = TokenCounter("gpt-4o")
    small = TokenCounter("gpt-4o", remote_image_size=(512, 512))
    base = default.count_message(Message.user(""))
    assert default.count_message(msg) - base == 85 + 170 * 8  # 768x2048: the most tiles
    assert small.count_message(msg) - base == 85 + 170


def test_low_detail_is_base_only() -> None:
    msg = Message.user([ImagePart(url="https://example.com/cat.png", detail="low")])
    counter = TokenCounter("gpt-4o")
    assert counter.count_message(msg) - counter.count_message(Message.user("")) == 85


def test_plain_dicts_count_like_messages() -> None:
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from tests.test_messages import wire_messages

    counter = TokenCounter("gpt-4o")

    @given(st.lists(wire_messages(), max_size=5))
    @settings(max_examples=200, deadline=None)
    def check(msgs: list[dict[str, object]]) -> None:
        as_values = [Message.from_openai(m) for m in msgs]
        assert counter.count(msgs) == TokenCounter("gpt-4o").count(as_values)

    check()


@pytest.mark.parametrize(
    "bad",
    [
        {"role": "user", "content": "x", "name": 3},
        {"role": "tool", "content": "x"},
        {"role": "robot", "content": "x"},
        {"role": "user", "content": None},
    ],
)
def test_plain_path_still_validates(bad: dict[str, object]) -> None:
    with pytest.raises(convkit.InvalidMessageError):
        count_tokens([bad], model="gpt-4o")


def test_zero_size_data_image_counts_as_unknown_size() -> None:
    counter = TokenCounter("gpt-4o")
    zero = Message.user([ImagePart(url=_png(0, 0), detail="high")])
    remote = Message.user([ImagePart(url="https://example.com/x.png", detail="high")])
    assert counter.count_message(zero) == counter.count_message(remote)


def test_remembered_counts_do_not_keep_messages_alive() -> None:
    import gc
    import weakref

    counter = TokenCounter("gpt-4o")
    m = Message.user("a long pasted document " * 1000)
    ref = weakref.ref(m)
    first = counter.count_message(m)
    assert counter.count_message(m) == first
    del m
    gc.collect()
    assert ref() is None
    assert len(counter._cache) == 0
