"""Each PII type is redacted with its placeholder; look-alikes survive untouched."""

from __future__ import annotations

import random

import pytest

from tuneline.config.schema import PiiRule
from tuneline.pii import Redactor, iban_ok, isbn13_ok, luhn_ok

REDACT = Redactor(PiiRule())


PII_CASES = [
    ("write to jane.roe+ml@example.co.uk today", "write to [EMAIL] today", "email"),
    ("call 415-555-2671 now", "call [PHONE] now", "phone"),
    ("call (415) 555-2671 now", "call [PHONE] now", "phone"),
    ("call +44 20 7946 0958 now", "call [PHONE] now", "phone"),
    ("ruf +49 30 98820959 an", "ruf [PHONE] an", "phone"),
    ("appelez le +33 1 42 68 53 00", "appelez le [PHONE]", "phone"),
    ("电话 +86 138 0013 8000。", "电话 [PHONE]。", "phone"),
    ("tel +81 3-1234-5678", "tel [PHONE]", "phone"),
    ("card 4111 1111 1111 1111 ok", "card [CREDIT_CARD] ok", "credit_card"),
    ("card 5500-0000-0000-0004 ok", "card [CREDIT_CARD] ok", "credit_card"),
    ("ssn 123-45-6789.", "ssn [SSN].", "ssn"),
    ("host 10.0.12.7 up", "host [IP_ADDRESS] up", "ip_address"),
    ("v6 2001:0db8:85a3:0000:0000:8a2e:0370:7334 up", "v6 [IP_ADDRESS] up", "ip_address"),
    ("iban DE89 3704 0044 0532 0130 00 ok", "iban [IBAN] ok", "iban"),
    ("iban GB82WEST12345698765432 ok", "iban [IBAN] ok", "iban"),
    ("key AKIAIOSFODNN7EXAMPLE ok", "key [AWS_ACCESS_KEY] ok", "aws_access_key"),
    (
        "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        "aws_secret_access_key = [AWS_SECRET_KEY]",
        "aws_secret_key",
    ),
    ("token ghp_" + "a" * 36 + " ok", "token [API_TOKEN] ok", "api_token"),
    ("token sk-proj-" + "Ab1" * 10 + " ok", "token [API_TOKEN] ok", "api_token"),
    ("token hf_" + "x" * 34 + " ok", "token [API_TOKEN] ok", "api_token"),
    ("slack xoxb-1234567890-abcdefghij ok", "slack [API_TOKEN] ok", "api_token"),
    (
        "jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U ok",
        "jwt [API_TOKEN] ok",
        "api_token",
    ),
    ("-----BEGIN RSA PRIVATE KEY-----\nMIIEow\n-----END RSA PRIVATE KEY-----", "[PRIVATE_KEY]", "private_key"),
]


@pytest.mark.parametrize(("text", "expected", "label"), PII_CASES)
def test_pii_is_redacted_with_typed_placeholder(text: str, expected: str, label: str):
    out, counts = REDACT.redact(text)
    assert out == expected
    assert counts == {label: 1}


LOOK_ALIKES = [
    "upgrade from v2.4.1 to 3.0.0 or 10.0.19041.1",  # versions (not IPs)
    "released 2026-01-15, due 15.01.2026 or 2026/01/15",  # dates (not phones/SSNs)
    "order #4111111111111112 and ref 1234567890123456",  # order numbers failing Luhn
    "lr=3e-4, batch 32, warmup 0.03, eps 1e-8, seed 1234",  # hyper-parameters
    "at 12:30:45, port 8080, PID 4242, 999.1.1.1",  # times, ports, out-of-range IPs
    "ISBN 978-3-16-148410-0 and part 123-456-78",  # codes with dashes
    "see 9783161484193 or 978-3-16-148419-3",  # an ISBN-13 that also passes the Luhn check: a book, not a card
    "call 555-0100 for a quote, ext. 12",  # too short to be a whole number
    "Termin am 13.10.2026, Adresse 268.46.131.37",  # a day-first date and a dotted quad, not phones
    "code DE85 1605 1030 6464 1299 60 is IBAN-shaped",  # bad IBAN checksum; its digits pass Luhn: no card
    "code DE12 3456 7890 1234 5678 90 is not an IBAN",  # IBAN-shaped, bad checksum
    "user@localhost and @handle and a@b",  # not routable emails
    "skip sk-short and ghp_tooShort",  # too short for tokens
]


@pytest.mark.parametrize("text", LOOK_ALIKES)
def test_look_alikes_survive(text: str):
    assert REDACT.redact(text) == (text, {})


def test_checksums():
    assert luhn_ok("4111111111111111") and not luhn_ok("4111111111111112")
    assert luhn_ok("9783161484193") and isbn13_ok("9783161484193") and not isbn13_ok("9783161484194")
    assert iban_ok("DE89370400440532013000") and not iban_ok("DE12345678901234567890")


def test_rules_can_be_switched_off():
    r = Redactor(PiiRule(email=False, phone=False))
    assert r.redact("a@example.com 415-555-2671 10.0.0.1") == (
        "a@example.com 415-555-2671 [IP_ADDRESS]",
        {"ip_address": 1},
    )


def test_national_numbers_follow_the_configured_region():
    german = "Tel. 030 98820959"
    assert Redactor(PiiRule()).redact(german) == (german, {})  # not a valid US number
    assert Redactor(PiiRule(phone_region="DE")).redact(german) == ("Tel. [PHONE]", {"phone": 1})


@pytest.mark.parametrize(
    "text",
    [
        "call +1 596 715 5916 today",  # +1 596: no such area code (yet)
        "call 569-990-9739 today",
        "call (569) 990-9739 today",
        "ruf +49 123 4567890 an",
    ],
)
def test_phone_shaped_numbers_libphonenumber_calls_invalid_are_still_redacted(text: str):
    out, counts = REDACT.redact(text)
    assert counts == {"phone": 1} and "[PHONE]" in out and not any(c.isdigit() for c in out), out


@pytest.mark.parametrize(
    "text",
    ["order 5699909739 shipped", "build 569.990", "at 12:30:45 port 8080", "ip 310.63.70.36", "v5.69.990"],
)
def test_digit_runs_and_dotted_numbers_are_not_taken_for_phones(text: str):
    assert REDACT.redact(text) == (text, {})


def _hostile_texts(n: int, seed: int = 7) -> list[str]:
    """Random texts over digits, number separators, markers, controls and non-ASCII: where screens go wrong."""
    rng = random.Random(seed)
    atoms = [*"0123456789", " ", ".", "-", "(", ")", "/", "+", ":", "a", "F", "x", "\r", "\n", "\x00", "\x07",
             "\x7f", "é", "٣", "３", "@", "AKIA", "sk-", "xox", "eyJ", "hf_", "PRIVATE KEY", "AWS_Secret", "ghp_"]  # fmt: skip
    texts = ["".join(rng.choices(atoms, k=rng.randint(0, 40))) for _ in range(n)]
    return [*texts, *(text for text, _, _ in PII_CASES), *LOOK_ALIKES, ""]


def test_the_chunk_screen_runs_every_detector_that_would_match():
    """The vectorized screen (one pass per chunk) tells, per text, which detectors may match; redacting with only
    those gives exactly what all of them give, PII cases embedded in noise included. Normalization's screen never
    skips a text it changes."""
    from tuneline.stages.clean.text import normalize_candidates, normalize_text
    from tuneline.textscan import TextScan

    rng = random.Random(11)
    noise = _hostile_texts(3000)
    texts = [*noise, *(f"{rng.choice(noise)} {text} {rng.choice(noise)}" for text, _, _ in PII_CASES * 5)]
    scan = TextScan(texts)
    shapes, to_normalize = REDACT.candidates(scan), normalize_candidates(scan)
    for i, text in enumerate(texts):
        assert REDACT.redact(text, int(shapes[i])) == REDACT.redact(text), repr(text)
        if any(normalize_text(text, form) != text for form in ("NFC", "NFKC")):
            assert to_normalize[i], repr(text)
    redacted = [REDACT.redact(t)[1] != {} for t in texts]
    assert sum(redacted) > len(PII_CASES) * 5 and 0 < (shapes == 0).sum() < len(texts)
    assert len({int(s) for s in shapes}) > 8, "the screen must tell detectors apart, not pass all or nothing"
    assert 0 < to_normalize.sum() < len(texts)


def test_phone_candidates_are_the_patterns_matches():
    """_phone_candidates tries the candidate pattern only where one can start; it must yield exactly the
    matches of finditer, look-behinds included, on random text of digits, separators and letters."""
    from tuneline.pii import _PHONE_CANDIDATE, _phone_candidates

    rng = random.Random(11)
    alphabet = "0123456789 +().-/ab_\u0663x\n"
    for _ in range(20000):
        text = "".join(rng.choices(alphabet, k=rng.randint(0, 40)))
        assert [m.span() for m in _phone_candidates(text)] == [m.span() for m in _PHONE_CANDIDATE.finditer(text)]


def test_detectors_tried_from_their_first_possible_start_replace_what_sub_replaces():
    """A detector with ``first`` is tried from there, not from the start of the text; each must replace exactly
    what ``pattern.sub`` over the whole text does, on hostile noise with PII cases embedded, and long local parts
    of emails (up to 64 characters before the "@")."""
    from tuneline.pii import DETECTORS

    rng = random.Random(13)
    noise = _hostile_texts(2000, seed=3)
    texts = [*noise, *(f"{rng.choice(noise)}{text}{rng.choice(noise)}" for text, _, _ in PII_CASES * 5)]
    texts += [f"x{'a' * n}@example.com b{'9' * n}" for n in range(0, 70, 3)]
    hinted = [d for d in DETECTORS if d.first is not None]
    assert {d.name for d in hinted} >= {"email", "ssn", "credit_card", "iban"}
    changed = 0
    for det in hinted:
        for text in texts:

            def reference(m, det=det):
                return m.group(0) if det.validate is not None and not det.validate(m) else det.label

            expected = det.pattern.sub(reference, text)
            assert REDACT._apply(det, text)[0] == expected, (det.name, text)
            changed += expected != text
    assert changed > 50
