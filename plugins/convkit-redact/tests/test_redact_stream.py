"""The stream middleware restores placeholders split at every possible chunk boundary."""

from __future__ import annotations

import pytest
from convkit.plugins import StreamPipeline, text_chunk, with_text
from convkit.testing.plugins import run_middleware, run_middleware_text, text_chunks

from convkit_redact import Restorer
from convkit_redact.restore import restore_text

ORIGINALS = {
    "[EMAIL_1]": "ann@example.org",
    "[EMAIL_12]": "zed@example.org",
    "[CARD_1]": "4111111111111111",
}
TEXT = "Hi [EMAIL_1], your card [CARD_1] and [EMAIL_12]; see [1] or [EMAIL_3] or [EMAIL_1"
RESTORED = "Hi ann@example.org, your card 4111111111111111 and zed@example.org; see [1] or [EMAIL_3] or [EMAIL_1"


def pieces(text: str, size: int) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)]


@pytest.mark.parametrize("size", range(1, len(TEXT) + 1))
def test_every_chunk_size(size: int) -> None:
    assert run_middleware_text(Restorer(ORIGINALS), pieces(TEXT, size)) == RESTORED


@pytest.mark.parametrize("cut", range(1, len(TEXT)))
def test_every_single_cut(cut: int) -> None:
    assert run_middleware_text(Restorer(ORIGINALS), [TEXT[:cut], TEXT[cut:]]) == RESTORED


def test_every_pair_of_cuts_through_one_placeholder() -> None:
    text = "x[EMAIL_12]y"
    for i in range(1, len(text)):
        for j in range(i + 1, len(text)):
            out = run_middleware_text(Restorer(ORIGINALS), [text[:i], text[i:j], text[j:]])
            assert out == "xzed@example.orgy", (i, j)


def test_held_text_is_flushed_into_the_finishing_chunk() -> None:
    chunks = [text_chunk("mail [EMA"), text_chunk("", finish_reason="stop")]
    out = run_middleware(Restorer(ORIGINALS), chunks, close=False)
    assert [c.text for c in out] == ["mail ", "[EMA"]
    assert out[-1].choices[0].finish_reason == "stop"


def test_chunks_without_brackets_pass_through_untouched() -> None:
    chunk = text_chunk("plain text", id="c1")
    assert list(Restorer(ORIGINALS).feed(chunk)) == [chunk]


def test_a_held_chunk_is_dropped_and_its_text_rides_on_the_next() -> None:
    first = with_text(text_chunk("", id="c9"), "[CA")
    out = run_middleware(Restorer(ORIGINALS), [first, "RD_1] done"])
    assert [(c.id, c.text) for c in out] == [("chatcmpl-test", "4111111111111111 done")]


def test_nested_after_another_middleware_it_sees_raw_chunks_first() -> None:
    class Upper:
        def feed(self, chunk):  # type: ignore[no-untyped-def]
            return [with_text(chunk, chunk.text.upper())] if chunk.text else [chunk]

        def close(self):  # type: ignore[no-untyped-def]
            return []

    pipeline = StreamPipeline([Restorer(ORIGINALS), Upper()])
    out = run_middleware(pipeline, text_chunks(["to [EMA", "IL_1]!"]))
    assert "".join(c.text for c in out) == "TO ANN@EXAMPLE.ORG!"


def test_restore_text() -> None:
    assert restore_text("a [EMAIL_1] b [NOPE_1]", ORIGINALS) == "a ann@example.org b [NOPE_1]"
    assert restore_text("nothing here", ORIGINALS) == "nothing here"
