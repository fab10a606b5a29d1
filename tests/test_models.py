"""The model registry: figures, forgiving resolution, registration, unknown models."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import convkit
from convkit import models
from convkit.models import ModelInfo, ModelRegistry

REQUIRED = [
    "gpt-3.5-turbo",
    "gpt-4",
    "gpt-4-turbo",
    "gpt-4o",
    "gpt-4o-mini",
    "gpt-4.1",
    "gpt-4.1-mini",
    "gpt-4.1-nano",
    "o1",
    "o3",
    "o3-mini",
    "o4-mini",
    "gpt-5",
    "gpt-5-mini",
    "gpt-5-nano",
    "gpt-oss-120b",
    "gpt-oss-20b",
]


@pytest.mark.parametrize("name", REQUIRED)
def test_builtin_models_are_sourced(name: str) -> None:
    info = models.get(name)
    assert info.name == name
    assert info.source.startswith("http")
    assert info.max_output_tokens <= info.context_window
    assert info.encoding in ("cl100k_base", "o200k_base")


@pytest.mark.parametrize(
    ("asked", "base"),
    [
        ("gpt-4o-2024-08-06", "gpt-4o"),
        ("openai/gpt-4o", "gpt-4o"),
        ("openai/gpt-4o-mini-2024-07-18", "gpt-4o-mini"),
        ("gpt-4-0613", "gpt-4"),
        ("gpt-4-32k-0613", "gpt-4-32k"),
        ("gpt-3.5-turbo-16k-0613", "gpt-3.5-turbo-16k"),
        ("GPT-4o", "gpt-4o"),
        ("gpt-4o:free", "gpt-4o"),
    ],
)
def test_snapshots_and_prefixes_resolve(asked: str, base: str) -> None:
    info = models.resolve(asked)
    ref = models.get(base)
    assert info.name == asked
    assert (info.context_window, info.encoding, info.exact) == (
        ref.context_window,
        ref.encoding,
        ref.exact,
    )


def test_specific_snapshots_keep_their_own_figures() -> None:
    assert models.resolve("gpt-4o-2024-05-13").max_output_tokens == 4_096
    assert models.resolve("gpt-3.5-turbo-0301").tokens_per_message == 4


def test_family_variants_resolve_as_estimates() -> None:
    info = models.resolve("gpt-4o-mini-search-preview")
    assert info.context_window == 128_000
    assert info.exact is False
    assert info.safety_margin > 0


def test_unknown_models_fall_back_flagged() -> None:
    info = models.resolve("mistral-large-latest")
    assert info.name == "mistral-large-latest"
    assert info.exact is False
    assert info.encoding == "o200k_base"
    assert info.safety_margin == pytest.approx(0.10)
    # Counting still works, with the fallback encoding.
    assert (
        convkit.count_tokens([{"role": "user", "content": "hi"}], model="mistral-large-latest") > 0
    )


def test_strict_lookup_raises_a_named_error_not_a_bare_keyerror() -> None:
    with pytest.raises(convkit.UnknownModelError) as info:
        models.get("no-such-model")
    assert isinstance(info.value, KeyError)
    assert "register" in str(info.value)


def test_register_on_a_private_registry() -> None:
    reg = ModelRegistry()
    info = reg.register("llama-3.1-70b", context_window=131_072, max_output_tokens=8_192)
    assert reg.resolve("llama-3.1-70b") == info
    # still counted with the fallback tokenizer: still an estimate, with its margin
    assert info.exact is False
    assert info.safety_margin == pytest.approx(0.10)
    assert reg.resolve("vendor/llama-3.1-70b").context_window == 131_072
    sure = reg.register(
        "my-openai-clone", context_window=8_000, max_output_tokens=1_000, exact=True
    )
    assert sure.exact is True
    assert sure.safety_margin == 0


def test_fine_tuned_ids_resolve_to_their_base() -> None:
    info = models.resolve("ft:gpt-3.5-turbo-0125:acme::8xYz")
    assert info.encoding == "cl100k_base"
    assert info.context_window == 16_385
    assert models.resolve("ft:gpt-4o-mini-2024-07-18:acme:custom:abc").context_window == 128_000


def test_register_inherits_from_what_the_name_resolves_to() -> None:
    reg = ModelRegistry([models.get("gpt-4o")])
    info = reg.register("gpt-4o-proxy", context_window=64_000)
    assert info.encoding == "o200k_base" and info.context_window == 64_000
    assert info.exact is False  # a family guess stays a guess
    routed = reg.register("mygateway/gpt-4o", context_window=64_000)
    assert routed.exact is True  # the same model behind a gateway prefix stays exact


def test_register_validates_figures() -> None:
    reg = ModelRegistry()
    with pytest.raises(ValueError, match="context_window"):
        reg.register("bad", context_window=0, max_output_tokens=1)
    with pytest.raises(ValueError, match="safety_margin"):
        reg.register("bad", context_window=10, max_output_tokens=1, safety_margin=0.9)


def test_registering_changes_counts_immediately() -> None:
    before = convkit.count_tokens([{"role": "user", "content": "hi"}], model="tmp-model-xyz")
    models.register(
        "tmp-model-xyz",
        context_window=4096,
        max_output_tokens=512,
        encoding="cl100k_base",
        tokens_per_message=10,
    )
    after = convkit.count_tokens([{"role": "user", "content": "hi"}], model="tmp-model-xyz")
    assert after == before + 7


def test_models_file_from_the_environment(tmp_path: Path) -> None:
    spec = [{"name": "my-gateway-model", "context_window": 32_000, "max_output_tokens": 2_000}]
    path = tmp_path / "models.json"
    path.write_text(json.dumps(spec))
    code = (
        "import convkit.models as m; i = m.get('my-gateway-model'); "
        "print(i.context_window, i.max_output_tokens, i.exact)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        env={"CONVKIT_MODELS": str(path), "PATH": ""},
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.split() == ["32000", "2000", "False"]


def test_model_info_is_frozen() -> None:
    info = models.get("gpt-4o")
    assert isinstance(info, ModelInfo)
    with pytest.raises(AttributeError):
        info.context_window = 1  # type: ignore[misc]
