"""PII and secret redaction with typed placeholders.

Detectors are precise rather than greedy: card numbers must pass the Luhn check, IBANs
the ISO 13616 mod-97 check, IPv4 octets must be ≤ 255, SSNs follow the SSA's reserved
ranges, and phone numbers must be valid numbers by Google's libphonenumber (the
``phonenumbers`` package: international ``+49 30 …`` numbers of every country, national
ones of ``clean.pii.phone_region``). That is what lets look-alikes (versions, dates, order
numbers, hyper-parameters such as ``lr=3e-4``) survive. Book numbers are shielded first: a
valid ISBN-13 (978/979, ISBN check digit) is never taken for a card, even when it also
passes the Luhn check, nor for a phone number.
Cheap pre-checks skip regexes that cannot match, which keeps the stage fast: per text (``Detector.precheck``),
and before that per chunk (:meth:`Redactor.candidates`: one numpy pass tells which detectors each text needs).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from tuneline.config.schema import PiiRule
from tuneline.textscan import ByteClass, Needles, TextScan


def luhn_ok(digits: str) -> bool:
    total, parity = 0, len(digits) % 2
    for i, ch in enumerate(digits):
        d = ord(ch) - 48
        if i % 2 == parity:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def iban_ok(candidate: str) -> bool:
    s = candidate.replace(" ", "")
    if not 15 <= len(s) <= 34:
        return False
    rotated = s[4:] + s[:4]
    try:
        return int("".join(str(int(ch, 36)) for ch in rotated)) % 97 == 1
    except ValueError:
        return False


_IBAN_HEAD = re.compile(r"[A-Z]{2}\d{2} ?$")


def _card_ok(m: re.Match[str]) -> bool:
    digits = re.sub(r"[ -]", "", m.group(0))
    if _IBAN_HEAD.search(m.string[max(0, m.start() - 5) : m.start()]):
        return False  # the account digits of an IBAN-shaped code (one in ten passes Luhn by chance)
    return 13 <= len(digits) <= 19 and len(set(digits)) > 1 and luhn_ok(digits)


def _ipv4_ok(m: re.Match[str]) -> bool:
    return all(int(p) <= 255 and (p == "0" or not p.startswith("0")) for p in m.group(0).split("."))


# What a text must show for a detector to match in it, a bit each (Redactor.candidates finds them per chunk).
SECRET, EMAIL, IBAN, CARD, SSN, IP, PHONE = (1 << i for i in range(7))
ALL_SHAPES = (1 << 7) - 1


@dataclass(frozen=True)
class Detector:
    name: str  # config switch and report key
    label: str  # placeholder text
    pattern: re.Pattern[str] | None  # None: ``find`` locates the spans
    precheck: Callable[[str], object]
    validate: Callable[[re.Match[str]], bool] | None = None
    find: Callable[[str, str], list[tuple[int, int]]] | None = None  # (text, region) -> spans
    shape: int = 0  # the bit of the shape a text must show for the detector to match (see _shapes)
    # where in a text the first match can start, at the earliest: the pattern is tried from there (its
    # look-behinds still see the text before); a pattern led by a look-behind is otherwise tried at every character
    first: Callable[[str], int] | None = None


# Broad candidates (C regex), then libphonenumber decides: the full PhoneNumberMatcher scans every text in
# Python and made the clean stage 2.5x slower on text with numbers in it.
_PHONE_CANDIDATE = re.compile(
    r"(?<![\w+])\+\d[\d ().-]{5,22}\d(?![\w-]|\.\d)"
    r"|(?<![\w+.-])\(?\d{2,5}\)?(?:[ .-]?\d{2,5}){1,3}(?![\w-]|\.\d)"
)
_GROUP_TAIL = re.compile(r"[ ().-]+\d+$")


# Written the way people write phone numbers: international with a "+", or national in three groups or with
# the area code in parentheses. A bare run of digits is left to libphonenumber's stricter "valid".
_PHONE_FORM = re.compile(
    r"\+\d.*|\(\d{2,5}\)[ .-]?\d{2,5}(?:[ .-]\d{2,5})*|\d{2,5}[ .-]\d{2,5}[ .-]\d{2,5}(?:[ .-]\d{2,5})*"
)


@lru_cache(maxsize=1 << 16)  # a pure function, and libphonenumber is slow: the same numbers recur in a corpus
def _valid_phone(candidate: str, region: str, by_form: bool = True) -> bool:
    """A phone number: one libphonenumber calls valid, or, written in phone form, one it calls possible for
    its region (the right length: numbers with unassigned area codes, common in synthetic data and assigned
    tomorrow, are still redacted; privacy errs towards redaction)."""
    import phonenumbers

    try:
        number = phonenumbers.parse(candidate, region)
    except phonenumbers.NumberParseException:
        return False
    if phonenumbers.is_valid_number(number):
        return True
    return by_form and bool(_PHONE_FORM.fullmatch(candidate)) and phonenumbers.is_possible_number(number)


# Where a phone candidate can start: a "+", a "(" or a digit (both alternatives of _PHONE_CANDIDATE begin so).
_PHONE_START = re.compile(r"[+(\d]")


def _phone_candidates(text: str) -> Iterator[re.Match[str]]:
    """``_PHONE_CANDIDATE.finditer(text)``, tried only where a candidate can start. The pattern opens with a
    look-behind, so the regex engine would try it at every character (15 µs for a 300-character message);
    a search for its first character skips the rest in C. A match tried at ``pos`` still looks behind it
    into the text, so the matches are finditer's: leftmost, each search resuming where the last one ended."""
    pos = 0
    while (start := _PHONE_START.search(text, pos)) is not None:
        m = _PHONE_CANDIDATE.match(text, start.start())
        if m is None:
            pos = start.start() + 1
            continue
        yield m
        pos = m.end()


def _phone_spans(text: str, region: str) -> list[tuple[int, int]]:
    """Spans of phone numbers: a candidate (or it without up to two trailing digit groups) that is a phone by
    :func:`_valid_phone`, international or in ``region``, and that is not a date or a dotted quad."""
    spans = []
    for m in _phone_candidates(text):
        if _IBAN_HEAD.search(text[max(0, m.start() - 5) : m.start()]):
            continue  # the account digits of an IBAN-shaped code
        candidate = m.group(0)
        if _NOT_A_PHONE.fullmatch(candidate):
            continue  # a date or a dotted quad, and so is no prefix of it
        for attempt in range(3):
            if sum(c.isdigit() for c in candidate) < 7:
                break
            # phone form is judged on what was written: a shortened candidate must be a valid number
            if not _NOT_A_PHONE.fullmatch(candidate) and _valid_phone(candidate, region, by_form=attempt == 0):
                spans.append((m.start(), m.start() + len(candidate)))
                break
            shorter = _GROUP_TAIL.sub("", candidate)
            if shorter == candidate:
                break
            candidate = shorter
    return spans


# Shapes the matcher accepts as numbers but people write for something else: dotted quads (IPv4-like, also
# out of range) and dates (ISO and day-first).
_NOT_A_PHONE = re.compile(r"\d{1,3}(?:\.\d{1,3}){3}|\d{4}[-/.]\d{1,2}[-/.]\d{1,2}|\d{1,2}[-/.]\d{1,2}[-/.]\d{4}")


def isbn13_ok(digits: str) -> bool:
    return (
        len(digits) == 13
        and digits[:3] in ("978", "979")
        and sum(int(c) * (3 if i % 2 else 1) for i, c in enumerate(digits)) % 10 == 0
    )


_ISBN = re.compile(r"(?<![\w-])97[89](?:[ -]?\d){10}(?![\w-])")
_SHIELD_OPEN, _SHIELD_CLOSE = "\ue000", "\ue001"  # private-use code points: no detector matches them
_SHIELDED = re.compile(_SHIELD_OPEN + r"(\d+)" + _SHIELD_CLOSE)


# Pre-checks run in C (one regex search) and skip detectors that cannot match: most text has no secrets.
# Cards, phones, SSNs and IBANs all hold 7+ digits with at most short separators between them.
_has_long_number = re.compile(r"\d(?:[ .()/+-]{0,2}\d){6}").search
_ANY_DIGIT = re.compile(r"\d")


def _first_digit(text: str, back: int = 0) -> int:
    """Where a match led by ``back`` characters before a digit can start, at the earliest."""
    m = _ANY_DIGIT.search(text)
    return max(0, m.start() - back) if m else len(text)


def _before_first_at(text: str) -> int:
    """An email's local part is at most 64 characters before its "@"."""
    at = text.find("@")
    return max(0, at - 64) if at >= 0 else len(text)


# Token prefixes, grouped by a character each group needs, so typical text is ruled out by 3-4 substring scans
# (which run in C; a regex alternation over all prefixes was 3x slower).
_SECRET_MARKERS = (
    ("A", ("AKIA", "ASIA", "AGPA", "AIDA", "AROA", "AIza")),
    ("_", ("ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_", "hf_", "sk_live_", "rk_live_")),
    ("-", ("sk-", "xox", "glpat-")),
    ("eyJ", ("eyJ",)),
)


def _has_secret_marker(text: str) -> bool:
    return any(gate in text and any(m in text for m in markers) for gate, markers in _SECRET_MARKERS)


_ipv4_shape = re.compile(r"\d\.\d{1,3}\.\d{1,3}\.\d").search
_ipv6_shape = re.compile(r"[0-9A-Fa-f]{1,4}:[0-9A-Fa-f]{1,4}:[0-9A-Fa-f]{1,4}").search


def _has_ip_shape(text: str) -> object:
    return ("." in text and _ipv4_shape(text)) or (":" in text and _ipv6_shape(text))


DETECTORS: tuple[Detector, ...] = (
    # Secrets first: their bodies contain digits that other detectors would otherwise nibble at.
    Detector(
        "secrets",
        "[PRIVATE_KEY]",
        re.compile(r"-----BEGIN (?:[A-Z]+ )?PRIVATE KEY-----[\s\S]*?-----END (?:[A-Z]+ )?PRIVATE KEY-----"),
        lambda t: "PRIVATE KEY" in t,
        shape=SECRET,
    ),
    Detector(
        "secrets",
        "[AWS_SECRET_KEY]",
        re.compile(r"(?i)(?<=aws_secret_access_key)(\s*[:=]\s*[\"']?)[A-Za-z0-9/+=]{40}(?![A-Za-z0-9/+=])"),
        lambda t: "aws_secret" in t.lower(),
        shape=SECRET,
    ),
    Detector(
        "secrets",
        "[AWS_ACCESS_KEY]",
        re.compile(r"\b(?:AKIA|ASIA|AGPA|AIDA|AROA)[A-Z0-9]{16}\b"),
        _has_secret_marker,
        shape=SECRET,
    ),
    Detector(
        "secrets",
        "[API_TOKEN]",
        re.compile(
            r"\b(?:gh[pousr]_[A-Za-z0-9]{36,255}|github_pat_[A-Za-z0-9_]{40,255}|glpat-[A-Za-z0-9_-]{20,}"
            r"|xox[abposr]-[A-Za-z0-9-]{10,}|AIza[0-9A-Za-z_-]{35}|hf_[A-Za-z0-9]{30,}"
            r"|(?:sk|rk)_live_[A-Za-z0-9]{20,})\b"
            r"|(?<![A-Za-z0-9_-])sk-(?:proj-|ant-)?[A-Za-z0-9_-]{20,}"
            r"|\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}"
        ),
        _has_secret_marker,
        shape=SECRET,
    ),
    Detector(
        "email",
        "[EMAIL]",
        re.compile(
            r"(?<![\w.+-])[A-Za-z0-9][A-Za-z0-9._%+-]{0,63}@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,24}\b"
        ),
        lambda t: "@" in t,
        shape=EMAIL,
        first=_before_first_at,
    ),
    Detector(
        "iban",
        "[IBAN]",
        re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?\b"),
        _has_long_number,
        lambda m: iban_ok(m.group(0)),
        shape=IBAN,
        first=lambda t: _first_digit(t, back=2),
    ),
    Detector(
        "credit_card",
        "[CREDIT_CARD]",
        re.compile(r"(?<![\w.-])\d(?:[ -]?\d){12,18}(?![\w-]|\.\d)"),
        _has_long_number,
        _card_ok,
        shape=CARD,
        first=_first_digit,
    ),
    Detector(
        "ssn",
        "[SSN]",
        re.compile(r"(?<![\w-])(?!000|666|9\d\d)\d{3}-(?!00)\d{2}-(?!0000)\d{4}(?![\w-])"),
        _has_long_number,
        shape=SSN,
        first=_first_digit,
    ),
    Detector(
        "ip_address",
        "[IP_ADDRESS]",
        re.compile(
            r"(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?![\w]|\.\d)"
            r"|(?<![\w:])(?:[0-9A-Fa-f]{1,4}:){7}[0-9A-Fa-f]{1,4}(?![\w:])"
        ),
        _has_ip_shape,
        lambda m: ":" in m.group(0) or _ipv4_ok(m),
        shape=IP,
    ),
    Detector("phone", "[PHONE]", None, _has_long_number, find=_phone_spans, shape=PHONE),
)


# The pre-checks above, asked of a whole chunk at once (:meth:`Redactor.candidates`).
_DIGIT, _HEX = ByteClass(b"0123456789"), ByteClass(b"0123456789abcdefABCDEF")
_NUMBER_LINK, _AT = ByteClass(b" .()/+-"), ByteClass(b"@")
_MARKERS = Needles((b"PRIVATE KEY", *(m.encode() for _, markers in _SECRET_MARKERS for m in markers)))


_UPPER = ByteClass(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ")
_CARD_LINK, _SSN_LINK = ByteClass(b" -"), ByteClass(b"-")


def _shapes(scan: TextScan) -> np.ndarray:
    """Per text, the bits of the shapes it shows (:mod:`tuneline.textscan`'s contract: a bit may be set where
    its detector finds nothing, never clear where it would find something). Each shape is what its detector's
    regex cannot match without: 13 digits apart by at most one space or dash for a card (and an ISBN-13, so the
    shield runs only then), 9 digits apart by at most one dash for an SSN, two capitals and two digits for an
    IBAN; a phone needs the pre-check ``_has_long_number``, the secrets their markers, an email an "@", an IP
    address a digit, a dot and a digit (or a hex digit, a colon and a hex digit). A placeholder has no digit
    and is bracketed, so what one detector replaces never makes a shape for a later one."""
    lowered = scan.raw.lower()  # ASCII only: "aws_secret" in text.lower() is this on ASCII text
    found = {
        SECRET: [scan.find_all(b"aws_secret", lowered), scan.find_any(_MARKERS)],
        EMAIL: [scan.having(_AT)],
        IBAN: [scan.sequence((_UPPER, _UPPER, _DIGIT, _DIGIT))],
        CARD: [scan.runs_of(_DIGIT, _CARD_LINK, 13, 1)],
        SSN: [scan.runs_of(_DIGIT, _SSN_LINK, 9, 1)],
        IP: [scan.flanked(b".", _DIGIT), scan.flanked(b":", _HEX)],
        PHONE: [scan.runs_of(_DIGIT, _NUMBER_LINK, 7, 2)],
    }
    out = np.zeros(scan.size, dtype=np.uint8)
    for bit, positions in found.items():
        out[scan.answer(positions)] |= bit
    return out


class Redactor:
    """Applies the enabled detectors; returns redacted text and counts per placeholder."""

    def __init__(self, rule: PiiRule) -> None:
        self.detectors = [d for d in DETECTORS if getattr(rule, d.name)]
        self.region = rule.phone_region
        self.ner = _PresidioNames() if rule.names else None

    def candidates(self, scan: TextScan) -> np.ndarray:
        """Per text of ``scan``, the shapes :meth:`redact` needs to look for (pass them as ``shapes``); 0 where
        it would leave the text as it is, with no counts. One vectorized pass over a chunk, where a pre-check per
        text and detector cost more than the detectors on the few texts that hold PII."""
        if self.ner is not None:
            return np.full(scan.size, ALL_SHAPES, dtype=np.uint8)
        return _shapes(scan)

    def redact(self, text: str, shapes: int = ALL_SHAPES) -> tuple[str, dict[str, int]]:
        """``text`` redacted, and the count per placeholder; only detectors whose shape is in ``shapes`` run."""
        counts: dict[str, int] = {}
        prechecked: dict[Callable[[str], object], bool] = {}
        shielded: list[str] = []
        if shapes & CARD and _has_long_number(text):
            text, shielded = _shield_isbns(text)
        for det in self.detectors:
            if not det.shape & shapes:
                continue
            ok = prechecked.get(det.precheck)
            if ok is None:
                ok = prechecked[det.precheck] = bool(det.precheck(text))
            if not ok:
                continue
            text, hits = self._apply(det, text)
            if hits:
                key = det.label.strip("[]").lower()
                counts[key] = counts.get(key, 0) + hits
        if shielded:  # one pass, however many ISBNs (a replace per ISBN would be quadratic)
            text = _SHIELDED.sub(lambda m: shielded[int(m.group(1))], text)
        if self.ner is not None:
            text, n = self.ner.redact(text)
            if n:
                counts["person"] = n
        return text, counts

    def _apply(self, det: Detector, text: str) -> tuple[str, int]:
        """``text`` with what ``det`` finds replaced by its placeholder, and how many it replaced."""
        if det.find is not None:
            spans = det.find(text, self.region)
            return _replace_spans(text, spans, det.label), len(spans)
        assert det.pattern is not None
        hits = 0

        def sub(m: re.Match[str]) -> str:
            nonlocal hits
            if det.validate is not None and not det.validate(m):
                return m.group(0)
            hits += 1
            # AWS secret: keep the "key = " part the look-behind/group matched.
            prefix = m.group(1) if det.label == "[AWS_SECRET_KEY]" else ""
            return prefix + det.label

        # pattern.sub, from the first place a match can start (no pattern here matches the empty string)
        pieces, last = [], 0
        for m in det.pattern.finditer(text, det.first(text) if det.first is not None else 0):
            pieces += [text[last : m.start()], sub(m)]
            last = m.end()
        if not pieces:
            return text, 0
        pieces.append(text[last:])
        return "".join(pieces), hits


def _replace_spans(text: str, spans: list[tuple[int, int]], label: str) -> str:
    """``text`` with each (sorted, disjoint) span replaced by ``label``, built in one pass."""
    if not spans:
        return text
    pieces, last = [], 0
    for start, end in spans:
        pieces += [text[last:start], label]
        last = end
    pieces.append(text[last:])
    return "".join(pieces)


def _shield_isbns(text: str) -> tuple[str, list[str]]:
    """Valid ISBN-13s replaced by numbered private-use markers (restored after the detectors ran)."""
    found: list[str] = []

    def keep(m: re.Match[str]) -> str:
        if not isbn13_ok(re.sub(r"[ -]", "", m.group(0))):
            return m.group(0)
        found.append(m.group(0))
        return f"{_SHIELD_OPEN}{len(found) - 1}{_SHIELD_CLOSE}"

    return _ISBN.sub(keep, text), found


class _PresidioNames:
    """Optional person-name redaction with Presidio's NER (``pip install 'tuneline[ner]'``)."""

    def __init__(self) -> None:
        try:
            from presidio_analyzer import AnalyzerEngine
        except ImportError as exc:
            raise ImportError("clean.pii.names needs Presidio: pip install 'tuneline[ner]'") from exc
        self.engine = AnalyzerEngine()

    def redact(self, text: str) -> tuple[str, int]:
        spans = sorted(self.engine.analyze(text=text, entities=["PERSON"], language="en"), key=lambda r: -r.start)
        for r in spans:
            text = text[: r.start] + "[PERSON]" + text[r.end :]
        return text, len(spans)
