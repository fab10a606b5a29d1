"""What is masked and what is left alone: every built-in detector, its checks, and look-alikes."""

from __future__ import annotations

import re

import pytest

from convkit_redact import Redact, Vault
from convkit_redact.detectors import BUILTIN, find, iban_length, looks_random, luhn_ok

SECRETS = [
    ("email", "write to ann.lee+work@example.co.uk today", "ann.lee+work@example.co.uk"),
    (
        "api_key",
        "key sk-proj-AbCdEfGhIjKlMnOpQrStUvWx0123456789 ok",
        "sk-proj-AbCdEfGhIjKlMnOpQrStUvWx0123456789",
    ),
    ("api_key", "old key sk-0123456789abcdefghijABCDEFGHIJ", "sk-0123456789abcdefghijABCDEFGHIJ"),
    (
        "api_key",
        "gh token ghp_0123456789abcdefghijABCDEFGHIJklmnop",
        "ghp_0123456789abcdefghijABCDEFGHIJklmnop",
    ),
    (
        "api_key",
        "slack xoxb-1234567890-0987654321-AbCdEfGhIj",
        "xoxb-1234567890-0987654321-AbCdEfGhIj",
    ),
    ("api_key", "stripe sk_live_4eC39HqLyjWDarjtT1zdp7dc", "sk_live_4eC39HqLyjWDarjtT1zdp7dc"),
    ("aws_key", "aws AKIAIOSFODNN7EXAMPLE here", "AKIAIOSFODNN7EXAMPLE"),
    ("bearer", "Authorization: Bearer abc123DEF456ghi789JKL", "abc123DEF456ghi789JKL"),
    (
        "jwt",
        "jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
    ),
    ("card", "card 4111 1111 1111 1111 expires", "4111 1111 1111 1111"),
    ("card", "card 5500-0000-0000-0004.", "5500-0000-0000-0004"),
    ("card", "amex 378282246310005", "378282246310005"),
    ("iban", "iban DE89 3704 0044 0532 0130 00 please", "DE89 3704 0044 0532 0130 00"),
    ("iban", "GB82WEST12345698765432 is mine", "GB82WEST12345698765432"),
    ("phone", "call +44 20 7946 0958 now", "+44 20 7946 0958"),
    ("phone", "US: +1 (555) 123-4567.", "+1 (555) 123-4567"),
    ("phone", "office (555) 123-4567", "(555) 123-4567"),
    ("phone", "mobile 06 12 34 56 78", "06 12 34 56 78"),
    ("phone", "Berlin 030 12345678", "030 12345678"),
    ("high_entropy", "secret Zx9Qw3Lm7Rt2Vb8Kp4Hs6Jd1Np5 end", "Zx9Qw3Lm7Rt2Vb8Kp4Hs6Jd1Np5"),
    (
        "private_key",
        "-----BEGIN RSA PRIVATE KEY-----\nMIIEow\n-----END RSA PRIVATE KEY-----",
        "-----BEGIN RSA PRIVATE KEY-----\nMIIEow\n-----END RSA PRIVATE KEY-----",
    ),
]


@pytest.mark.parametrize(
    ("name", "text", "secret"), SECRETS, ids=[f"{s[0]}-{i}" for i, s in enumerate(SECRETS)]
)
def test_each_kind_of_secret_is_found_exactly(name: str, text: str, secret: str) -> None:
    spans = find(text, BUILTIN)
    assert [(s.detector.name, s.value) for s in spans] == [(name, secret)]
    assert text[spans[0].start : spans[0].end] == secret


LOOK_ALIKES = [
    "version 1.2.3, python 3.11.4, build 10.0.19045.3693",
    "order #123456789 and order ORD-2024-000123, invoice INV/2024/0042",
    "dates 2024-01-15, 15/01/2024, 01.02.2024 and 2024-01-15T10:30:00Z or 2024-01-15 10:30:00+02:00",
    "uuid 123e4567-e89b-12d3-a456-426614174000 and 550e8400e29b41d4a716446655440000",
    "commit 9fceb02d0ae598e95dc970b74767f19372d61af8 (short 9fceb02), hex 0xdeadbeef",
    "prices $1,234.56, 1.299,00 EUR, 12 x 49.99",
    "ip 192.168.1.100, port 8080, 10.0.0.1:5432",
    "epoch ms 1700000000000, count 1234567890123456 (not a card: fails the checks)",
    "identifiers ThisIsAVeryLongClassName2024Handler getUserAccountBalance2ForId3",
    "snake_case_function_name_v2_2024 and CONSTANT_NAME_WITH_DIGITS_123",
    "the path /usr/local/lib/python3.11/site-packages/convkit/__init__.py",
    "a sha256 e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "user@localhost, @decorator, npm pkg@1.2.3, email me at ann at example dot org",
    "card-like 4111 1111 1111 1112 (bad Luhn), iban DE89 3704 0044 0532 0130 01 (bad checksum)",
    "phone-like 12:30:45, 2024 01 15, +5, 555-1234, 3.14159265358979",
    "placeholders [EMAIL_1] and [CARD_2] stay as they are",
    "base64 of words: aGVsbG8gd29ybGQ= and Basic auth is spelled out",
]


@pytest.mark.parametrize("text", LOOK_ALIKES)
def test_look_alikes_are_left_alone(text: str) -> None:
    assert find(text, BUILTIN) == []


def test_checks() -> None:
    assert luhn_ok("4111111111111111") and not luhn_ok("4111111111111112")
    assert iban_length("DE") == 22 and iban_length("ZZ") is None
    assert looks_random("Zx9Qw3Lm7Rt2Vb8Kp4Hs6Jd1") and not looks_random("a" * 30)
    assert not looks_random("MyComponent42PropsWithChildren")


def test_an_iban_followed_by_capitals_is_cut_at_its_country_length() -> None:
    [span] = find("pay GB82WEST12345698765432 NOW", BUILTIN)
    assert span.value == "GB82WEST12345698765432"


def test_overlaps_keep_the_most_specific_detector() -> None:
    # The bearer token is also an API key: one placeholder, labelled as the key.
    vault = Vault()
    masked = vault.mask(
        "Authorization: Bearer sk-proj-AbCdEfGhIjKlMnOpQrStUvWx01", Redact().detectors()
    )
    assert masked == "Authorization: Bearer [API_KEY_1]"


def test_the_vault_gives_one_placeholder_per_value_numbered_per_label() -> None:
    vault = Vault()
    detectors = Redact().detectors()
    text = "ann@example.org, bob@example.org, ann@example.org, card 4111111111111111"
    assert vault.mask(text, detectors) == "[EMAIL_1], [EMAIL_2], [EMAIL_1], card [CARD_1]"
    assert vault.originals == {
        "[EMAIL_1]": "ann@example.org",
        "[EMAIL_2]": "bob@example.org",
        "[CARD_1]": "4111111111111111",
    }


def test_patterns_can_be_added_and_disabled() -> None:
    plugin = Redact(
        patterns={
            "employee_id": r"EMP-\d{6}",
            "pin": {"pattern": re.compile(r"PIN:? (?P<secret>\d{4})\b"), "label": "PIN"},
        },
        disable=["phone"],
    )
    vault = Vault()
    text = "EMP-123456 has PIN 4321 and phone +44 20 7946 0958"
    assert (
        vault.mask(text, plugin.detectors())
        == "[EMPLOYEE_ID_1] has PIN [PIN_1] and phone +44 20 7946 0958"
    )
    assert {d.name for d in plugin.detectors()} >= {"email", "card", "employee_id", "pin"}
    assert "phone" not in {d.name for d in plugin.detectors()}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"disable": ["phones"]}, "no detector named phones"),
        ({"patterns": {"x": "("}}, "does not compile"),
        ({"patterns": {"x": "a*"}}, "matches the empty string"),
        ({"patterns": {"x": {"pattern": "abc", "label": "lower"}}}, "label"),
    ],
)
def test_bad_configuration_is_refused(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Redact(**kwargs)  # type: ignore[arg-type]
