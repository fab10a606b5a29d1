"""What counts as a secret: the built-in detectors, their checks, and finding matches in text.

A :class:`Detector` is a regular expression plus an optional check that confirms (and may
shorten) each candidate: card numbers must pass the Luhn check, IBANs the ISO 7064 mod-97
check at their country's length, high-entropy tokens must look random. :func:`find` runs a
set of detectors over a text and returns the spans to mask, without overlaps.

Example::

    >>> from convkit_redact.detectors import BUILTIN, find
    >>> [(s.detector.label, s.value) for s in find("mail me: ann@example.org", BUILTIN)]
    [('EMAIL', 'ann@example.org')]
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from attrs import frozen

__all__ = [
    "BUILTIN",
    "Detector",
    "Span",
    "custom_detector",
    "find",
    "iban_length",
    "looks_random",
    "luhn_ok",
]

#: A check gets the matched text and returns how many of its characters to mask (the whole
#: match, or a prefix of it), or None to reject the candidate.
Check = Callable[[str], "int | None"]


@frozen
class Detector:
    """One kind of secret.

    Attributes:
        name: how settings refer to it (``"email"``, ``"card"``; ``disable=["phone"]``).
        label: the placeholder's prefix (``"EMAIL"`` gives ``[EMAIL_1]``).
        pattern: where candidates are; the group named ``secret``, if any, is what is masked
            (``Bearer <token>`` masks only the token).
        check: confirms a candidate (see :data:`Check`), or None to accept every match.
        priority: which detector wins when two find the same span (lower wins).
    """

    name: str
    label: str
    pattern: re.Pattern[str]
    check: Check | None = None
    priority: int = 50


@frozen
class Span:
    """A secret found in a text: ``text[start:end] == value``."""

    start: int
    end: int
    value: str
    detector: Detector


# --------------------------------------------------------------------------- checks


def luhn_ok(digits: str) -> bool:
    """True when the digit string passes the Luhn check (card numbers).

    >>> luhn_ok("4111111111111111"), luhn_ok("4111111111111112")
    (True, False)
    """
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


# Issuer prefixes of the major card networks (Visa, Mastercard, Amex, Discover, JCB, Diners,
# UnionPay, Maestro): a Luhn-valid number with another first digit is more likely an id.
_CARD_PREFIX = re.compile(r"4|5[1-5]|2[2-7]|3[47]|3[0689]|6|50|5[6-9]")
_CARD_GROUPS = re.compile(r"\d{4}(?:[ -]\d{4}){3}(?:[ -]\d{3})?|\d{4}[ -]\d{6}[ -]\d{4,5}")


def _card(candidate: str) -> int | None:
    digits = candidate.replace(" ", "").replace("-", "")
    if not 13 <= len(digits) <= 19 or not _CARD_PREFIX.match(digits):
        return None
    if len(digits) != len(candidate) and not _CARD_GROUPS.fullmatch(candidate):
        return None  # separated, but not in the groups cards are printed in
    return len(candidate) if luhn_ok(digits) else None


# IBAN length by country (ISO 13616 registry, the SEPA countries and the most common others).
_IBAN_LENGTHS: Mapping[str, int] = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22,
    "BR": 29, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DK": 18, "DO": 28, "EE": 20,
    "EG": 29, "ES": 24, "FI": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23, "GL": 18,
    "GR": 27, "GT": 28, "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IS": 26, "IT": 27, "JO": 30,
    "KW": 30, "KZ": 20, "LB": 28, "LI": 21, "LT": 20, "LU": 20, "LV": 21, "MC": 27, "MD": 24,
    "ME": 22, "MK": 19, "MR": 27, "MT": 31, "MU": 30, "NL": 18, "NO": 15, "PK": 24, "PL": 28,
    "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "SA": 24, "SE": 24, "SI": 19, "SK": 24,
    "SM": 27, "TN": 24, "TR": 26, "UA": 29, "VG": 24, "XK": 20,
}  # fmt: skip


def iban_length(country: str) -> int | None:
    """The IBAN length of a country code, or None for countries not in the table."""
    return _IBAN_LENGTHS.get(country)


def _mod97(compact: str) -> int:
    rearranged = compact[4:] + compact[:4]
    number = "".join(str(int(ch, 36)) for ch in rearranged)
    return int(number) % 97


def _iban(candidate: str) -> int | None:
    length = _IBAN_LENGTHS.get(candidate[:2])
    if length is None:
        return None
    # Walk the candidate until the country's length of letters and digits is reached (the
    # pattern may have run on into a following word written in capitals).
    seen, end = 0, 0
    for ch in candidate:
        end += 1
        if ch != " ":
            seen += 1
        if seen == length:
            break
    else:
        return None
    compact = candidate[:end].replace(" ", "")
    if end < len(candidate) and candidate[end] != " ":
        return None  # the number goes on: not an IBAN of this country
    return end if _mod97(compact) == 1 else None


def _classes(token: str) -> tuple[int, float]:
    """(how many of upper/lower/digit the token has, class changes per character pair)."""
    kinds = []
    for ch in token:
        kinds.append(0 if ch.isupper() else 1 if ch.islower() else 2 if ch.isdigit() else 3)
    changes = sum(1 for a, b in itertools.pairwise(kinds) if a != b)
    present = len({k for k in kinds if k < 3})
    return present, changes / max(1, len(token) - 1)


def _entropy(token: str) -> float:
    counts: dict[str, int] = {}
    for ch in token:
        counts[ch] = counts.get(ch, 0) + 1
    n = len(token)
    return -sum(c / n * math.log2(c / n) for c in counts.values())


_WORDS = re.compile(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])")
_VOWEL = re.compile(r"[aeiouyAEIOUY]")


def _wordy(token: str) -> float:
    """The share of the token's letters that are in word-like pieces (``Class``, ``name``).

    Identifiers are made of words (``getUserAccount2``: nearly all letters); random tokens
    have short letter runs without vowels (about 0.3 on average).
    """
    letters = sum(ch.isalpha() for ch in token)
    inside = sum(
        len(w) for w in _WORDS.findall(token) if len(w) >= 3 and _VOWEL.search(w) is not None
    )
    return inside / max(1, letters)


def looks_random(token: str) -> bool:
    """True when a long token looks like a random secret rather than a word, id or hash.

    It must mix upper case, lower case and digits, switch between them often, have high
    Shannon entropy, and not be made of words (CamelCase or snake_case identifiers). Hex
    strings (git SHAs, UUIDs, digests) have no upper case and are left alone.

    >>> looks_random("Zx9Qw3Lm7Rt2Vb8Kp4Hs6Jd1"), looks_random("ThisIsAVeryLongClassName2024")
    (True, False)
    """
    present, switching = _classes(token)
    return present == 3 and switching >= 0.35 and _entropy(token) >= 3.8 and _wordy(token) < 0.6


def _high_entropy(candidate: str) -> int | None:
    return len(candidate) if looks_random(candidate) else None


def _digits_between(low: int, high: int) -> Check:
    def check(candidate: str) -> int | None:
        n = sum(ch.isdigit() for ch in candidate)
        return len(candidate) if low <= n <= high else None

    return check


# --------------------------------------------------------------------------- the built-ins

_B = r"(?<![A-Za-z0-9_])"  # not inside a longer word
_E = r"(?![A-Za-z0-9_])"

_API_KEY = re.compile(
    _B
    + r"(?:"
    + r"sk-(?:proj-|ant-|svcacct-|admin-)?[A-Za-z0-9_-]{20,}"  # OpenAI, Anthropic
    + r"|gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{22,}"  # GitHub
    + r"|xox[abposr]-[A-Za-z0-9-]{10,}"  # Slack
    + r"|AIza[0-9A-Za-z_-]{35}"  # Google
    + r"|(?:sk|rk|pk)_(?:live|test)_[0-9A-Za-z]{16,}"  # Stripe
    + r"|glpat-[0-9A-Za-z_-]{20,}"  # GitLab
    + r"|hf_[A-Za-z0-9]{30,}"  # Hugging Face
    + r")"
    + r"(?![A-Za-z0-9_-])"
)
_AWS_KEY = re.compile(_B + r"(?:AKIA|ASIA|AGPA|AIDA|AROA|ANPA|ANVA|AIPA)[0-9A-Z]{16}" + _E)
_JWT = re.compile(_B + r"eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}")
_BEARER = re.compile(
    r"(?i:\b(?:bearer|token|basic))\s+(?P<secret>[A-Za-z0-9._~+/-]{16,}=*)(?![A-Za-z0-9._~+/=-])"
)
_PRIVATE_KEY = re.compile(
    r"-----BEGIN (?:[A-Z]+ )*PRIVATE KEY-----[\s\S]*?-----END (?:[A-Z]+ )*PRIVATE KEY-----"
)
_HIGH_ENTROPY = re.compile(r"(?<![A-Za-z0-9_+=-])[A-Za-z0-9_+-]{24,}={0,2}(?![A-Za-z0-9_+=-])")
_EMAIL = re.compile(
    r"(?<![A-Za-z0-9._%+-])[A-Za-z0-9][A-Za-z0-9._%+-]*@"
    r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*"
    r"\.[A-Za-z]{2,24}(?![A-Za-z0-9-])"
)
# Phone numbers: international (+country), North American 3-3-4, and national numbers
# starting with 0 written in groups (030 1234 5678, 06 12 34 56 78). Not: dates, times,
# versions, IP addresses, prices, numbers inside longer digit runs or ids.
_PHONE_INTL = re.compile(
    r"(?<![A-Za-z0-9_+.-])\+[1-9]\d{0,2}(?:[ .-]?\(?\d{1,4}\)?){2,6}(?![A-Za-z0-9_]|[.-]?\d)"
)
_PHONE_NANP = re.compile(
    r"(?<![A-Za-z0-9_+.(-])(?:\(\d{3}\) ?|\d{3}[ .-])\d{3}[ .-]\d{4}(?![A-Za-z0-9_]|[.-]?\d)"
)
_PHONE_NATIONAL = re.compile(
    r"(?<![A-Za-z0-9_+.-])0\d{1,4}(?:[ -]\d{2,8}){1,4}(?![A-Za-z0-9_]|[.:-]?\d)"
)
_CARD = re.compile(r"(?<![A-Za-z0-9_.-])\d(?:[ -]?\d){12,18}(?![A-Za-z0-9_]|[.-]?\d)")
_IBAN = re.compile(r"(?<![A-Za-z0-9])[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}(?![A-Za-z0-9])")

#: The detectors a conversation uses unless settings disable some, in priority order.
BUILTIN: tuple[Detector, ...] = (
    Detector("private_key", "PRIVATE_KEY", _PRIVATE_KEY, priority=0),
    Detector("api_key", "API_KEY", _API_KEY, priority=1),
    Detector("aws_key", "API_KEY", _AWS_KEY, priority=1),
    Detector("jwt", "TOKEN", _JWT, priority=2),
    Detector("bearer", "TOKEN", _BEARER, priority=3),
    Detector("email", "EMAIL", _EMAIL, priority=10),
    Detector("iban", "IBAN", _IBAN, _iban, priority=11),
    Detector("card", "CARD", _CARD, _card, priority=12),
    Detector("phone", "PHONE", _PHONE_INTL, _digits_between(8, 15), priority=13),
    Detector("phone", "PHONE", _PHONE_NANP, priority=14),
    Detector("phone", "PHONE", _PHONE_NATIONAL, _digits_between(9, 12), priority=15),
    Detector("high_entropy", "SECRET", _HIGH_ENTROPY, _high_entropy, priority=40),
)

#: The names settings can disable.
BUILTIN_NAMES: frozenset[str] = frozenset(d.name for d in BUILTIN)

_LABEL = re.compile(r"[A-Z][A-Z0-9_]*")


def custom_detector(name: str, spec: str | re.Pattern[str] | Mapping[str, Any]) -> Detector:
    """A detector from settings: a regex (text or compiled), or ``{"pattern": ..., "label": ...}``.

    The label defaults to the name in capitals (``employee_id`` gives ``[EMPLOYEE_ID_1]``). A
    group named ``secret`` in the pattern masks only that part of the match.

    Raises:
        ValueError: the pattern does not compile, matches the empty string, or the label is
            not capitals, digits and underscores.
    """
    label: Any = name.upper().replace("-", "_")
    pattern: Any = spec
    if isinstance(spec, Mapping):
        pattern = spec.get("pattern")
        label = spec.get("label", label)
    if not isinstance(label, str) or not _LABEL.fullmatch(label):
        raise ValueError(f"redact pattern {name!r}: the label {label!r} must be like 'EMPLOYEE_ID'")
    if isinstance(pattern, str):
        try:
            pattern = re.compile(pattern)
        except re.error as exc:
            raise ValueError(f"redact pattern {name!r} does not compile: {exc}") from exc
    if not isinstance(pattern, re.Pattern):
        raise ValueError(f"redact pattern {name!r} must be a regular expression")
    if pattern.fullmatch(""):
        raise ValueError(f"redact pattern {name!r} matches the empty string")
    return Detector(name, label, pattern, priority=5)


# --------------------------------------------------------------------------- finding


def _candidates(text: str, detectors: Iterable[Detector]) -> list[Span]:
    found = []
    for det in detectors:
        has_secret = "secret" in det.pattern.groupindex
        for m in det.pattern.finditer(text):
            start, end = m.span("secret") if has_secret else m.span()
            if start < 0 or end <= start:
                continue
            if det.check is not None:
                keep = det.check(text[start:end])
                if keep is None or keep <= 0:
                    continue
                end = start + keep
            found.append(Span(start, end, text[start:end], det))
    return found


def find(text: str, detectors: Sequence[Detector]) -> list[Span]:
    """The secrets in ``text``, in order and without overlaps.

    Where two candidates overlap, the one starting first wins; at the same start, the longer
    one; at the same span, the detector with the lower priority.
    """
    found = _candidates(text, detectors)
    if len(found) <= 1:
        return found
    found.sort(key=lambda s: (s.start, -(s.end - s.start), s.detector.priority))
    out: list[Span] = []
    for span in found:
        if out and span.start < out[-1].end:
            continue
        out.append(span)
    return out
