"""PII recall and look-alike survival of the clean stage's redactor, on a labelled corpus generated here.

    python benchmarks/pii_recall.py [--n 400] [--seed 0]

Each sample is a sentence (English, German, French or Chinese frame) holding one value. PII
samples count as found when the value is gone and the right placeholder is in its place;
look-alikes (dates, versions, ISBNs, order numbers, ...) count as kept when the text comes
out unchanged. Phone numbers are drawn for every region libphonenumber knows, in its
international, E.164 and (for the US) national formats, and, measuring recall rather than coverage of its
metadata, written in phone form with random digits (unassigned area codes included); cards, IBANs and ISBNs carry valid
check digits, the look-alike IBANs and order numbers invalid ones. Targets on this corpus:
structured-PII recall >= 0.99, look-alikes kept >= 0.95.
"""

from __future__ import annotations

import argparse
import random
import string
from collections import defaultdict
from collections.abc import Callable

import phonenumbers

from tuneline.config.schema import PiiRule
from tuneline.pii import Redactor, isbn13_ok, luhn_ok

FRAMES = (
    "Please contact me at {v} tomorrow.",
    "Meine Angabe: {v}, danke.",
    "Voici la valeur : {v} merci",
    "我的信息是 {v}，谢谢。",
    "{v}",
)


def _luhn_complete(prefix: str, length: int, rng: random.Random) -> str:
    body = prefix + "".join(rng.choice(string.digits) for _ in range(length - len(prefix) - 1))
    return next(body + d for d in string.digits if luhn_ok(body + d))


def _iban(country: str, bban_len: int, rng: random.Random, valid: bool = True) -> str:
    bban = "".join(rng.choice(string.digits) for _ in range(bban_len))
    numeric = "".join(str(int(c, 36)) for c in bban + country + "00")
    check = 98 - int(numeric) % 97
    if not valid:
        check = (check + 1 + rng.randrange(90)) % 97 + 2
    iban = f"{country}{check:02d}{bban}"
    return " ".join(iban[i : i + 4] for i in range(0, len(iban), 4)) if rng.random() < 0.5 else iban


def _phone(rng: random.Random) -> str:
    region = rng.choice(sorted(phonenumbers.SUPPORTED_REGIONS))
    kind = rng.choice((phonenumbers.PhoneNumberType.MOBILE, phonenumbers.PhoneNumberType.FIXED_LINE))
    example = phonenumbers.example_number_for_type(region, kind) or phonenumbers.example_number(region)
    number = example
    for _ in range(20):  # vary the last digits while the number stays valid
        digits = str(example.national_number)
        tail = "".join(rng.choice(string.digits) for _ in range(min(3, len(digits) - 1)))
        candidate = phonenumbers.parse(f"+{example.country_code}{digits[: -len(tail)]}{tail}", None)
        if phonenumbers.is_valid_number(candidate):
            number = candidate
            break
    fmt = rng.choice((phonenumbers.PhoneNumberFormat.INTERNATIONAL, phonenumbers.PhoneNumberFormat.E164))
    return phonenumbers.format_number(number, fmt)


def _digits(rng: random.Random, n: int) -> str:
    return "".join(rng.choice(string.digits) for _ in range(n))


def _phone_shaped(rng: random.Random) -> str:
    """A number written as people write phones, with random digits: not drawn from libphonenumber's metadata,
    so many have area codes no one has been assigned yet (as in synthetic and test data)."""
    nxx = lambda: str(rng.randrange(2, 10)) + _digits(rng, 2)  # noqa: E731 - North American area/exchange codes
    return rng.choice(
        (
            lambda: f"+1 {nxx()} {nxx()} {_digits(rng, 4)}",
            lambda: f"{nxx()}-{nxx()}-{_digits(rng, 4)}",
            lambda: f"({nxx()}) {nxx()}-{_digits(rng, 4)}",
            lambda: f"+44 {rng.randrange(1, 8)}{_digits(rng, 3)} {_digits(rng, 6)}",
            lambda: f"+49 {rng.randrange(2, 10)}{_digits(rng, 2)} {_digits(rng, 7)}",
            lambda: f"+33 {rng.randrange(1, 8)} {' '.join(_digits(rng, 2) for _ in range(4))}",
            lambda: f"+81 {rng.randrange(2, 10)}{_digits(rng, 1)}-{_digits(rng, 4)}-{_digits(rng, 4)}",
        )
    )()


def _us_national(rng: random.Random) -> str:
    while True:
        area, exchange = rng.choice(("415", "212", "617", "312", "206")), f"{rng.randrange(200, 1000)}"
        line = f"{rng.randrange(10000):04d}"
        number = phonenumbers.parse(f"+1{area}{exchange}{line}", None)
        if phonenumbers.is_valid_number(number):
            return rng.choice((f"({area}) {exchange}-{line}", f"{area}-{exchange}-{line}", f"{area}.{exchange}.{line}"))


def _isbn13(rng: random.Random, luhn: bool | None = None) -> str:
    while True:
        body = rng.choice(("978", "979")) + "".join(rng.choice(string.digits) for _ in range(9))
        digits = next(body + d for d in string.digits if isbn13_ok(body + d))
        if luhn is None or luhn_ok(digits) == luhn:
            return (
                f"{digits[:3]}-{digits[3]}-{digits[4:6]}-{digits[6:12]}-{digits[12]}" if rng.random() < 0.5 else digits
            )


def _card(rng: random.Random) -> str:
    prefix, length = rng.choice((("4", 16), ("51", 16), ("55", 16), ("2221", 16), ("34", 15), ("37", 15), ("6011", 16)))
    digits = _luhn_complete(prefix, length, rng)
    sep = rng.choice(("", " ", "-"))
    return sep.join(digits[i : i + 4] for i in range(0, len(digits), 4))


def _ssn(rng: random.Random) -> str:
    area = rng.choice([a for a in range(1, 900) if a != 666])
    return f"{area:03d}-{rng.randrange(1, 100):02d}-{rng.randrange(1, 10000):04d}"


def _order_number(rng: random.Random) -> str:
    digits = _luhn_complete("4", 16, rng)
    return digits[:-1] + str((int(digits[-1]) + 1 + rng.randrange(9)) % 10)  # Luhn broken on purpose


PII: dict[str, tuple[str, Callable[[random.Random], str]]] = {
    "phone (international, every region)": ("[PHONE]", _phone),
    "phone (US national)": ("[PHONE]", _us_national),
    "phone-shaped (random digits, not libphonenumber's)": ("[PHONE]", _phone_shaped),
    "email": (
        "[EMAIL]",
        lambda r: (
            f"{''.join(r.choices(string.ascii_lowercase, k=6))}.{r.randrange(99)}@"
            f"{r.choice(('example.com', 'mail.example.org', 'corp.example.co.uk'))}"
        ),
    ),
    "credit card": ("[CREDIT_CARD]", _card),
    "ssn": ("[SSN]", _ssn),
    "ipv4": ("[IP_ADDRESS]", lambda r: ".".join(str(r.randrange(1, 255)) for _ in range(4))),
    "ipv6": ("[IP_ADDRESS]", lambda r: ":".join(f"{r.randrange(65536):04x}" for _ in range(8))),
    "iban": (
        "[IBAN]",
        lambda r: _iban(*r.choice((("DE", 18), ("GB", 18), ("FR", 23), ("ES", 20), ("NL", 14), ("IT", 23))), r),
    ),
}
LOOK_ALIKES: dict[str, Callable[[random.Random], str]] = {
    "date": lambda r: r.choice(("{y}-{m:02d}-{d:02d}", "{d:02d}.{m:02d}.{y}", "{y}/{m:02d}/{d:02d}")).format(
        y=r.randrange(1990, 2035), m=r.randrange(1, 13), d=r.randrange(1, 29)
    ),
    "version": lambda r: f"v{r.randrange(10)}.{r.randrange(30)}.{r.randrange(100)}",
    "ISBN-13": _isbn13,
    "ISBN-13 passing Luhn": lambda r: _isbn13(r, luhn=True),
    "order number (Luhn fails)": _order_number,
    "IBAN-shaped, bad checksum": lambda r: _iban("DE", 18, r, valid=False),
    "time and port": lambda r: (
        f"{r.randrange(24):02d}:{r.randrange(60):02d}:{r.randrange(60):02d} port {r.randrange(1024, 65536)}"
    ),
    "hyper-parameters": lambda r: f"lr={r.randrange(1, 10)}e-{r.randrange(3, 7)}, batch {2 ** r.randrange(3, 9)}",
    "out-of-range IPv4": lambda r: f"{r.randrange(256, 999)}.{r.randrange(256)}.{r.randrange(256)}.{r.randrange(256)}",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=400, help="samples per kind")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    redactor = Redactor(PiiRule())

    found: dict[str, list[bool]] = defaultdict(list)
    misses: dict[str, list[str]] = defaultdict(list)
    for kind, (label, make) in PII.items():
        for _ in range(args.n):
            value = make(rng)
            text = rng.choice(FRAMES).format(v=value)
            out, _ = redactor.redact(text)
            ok = value not in out and label in out
            found[kind].append(ok)
            if not ok:
                misses[kind].append(value)
    kept: dict[str, list[bool]] = defaultdict(list)
    for kind, make in LOOK_ALIKES.items():
        for _ in range(args.n):
            text = rng.choice(FRAMES).format(v=make(rng))
            same = redactor.redact(text)[0] == text
            kept[kind].append(same)
            if not same:
                misses[kind].append(text)

    print(f"\n{args.n} samples per kind, seed {args.seed}\n")
    print("| PII | samples | recall |\n|---|---:|---:|")
    for kind, hits in found.items():
        print(f"| {kind} | {len(hits)} | {sum(hits) / len(hits):.3f} |")
    every = [h for hits in found.values() for h in hits]
    print(f"| **all structured PII** | {len(every)} | **{sum(every) / len(every):.3f}** |")
    print("\n| look-alike | samples | kept |\n|---|---:|---:|")
    for kind, hits in kept.items():
        print(f"| {kind} | {len(hits)} | {sum(hits) / len(hits):.3f} |")
    every = [h for hits in kept.values() for h in hits]
    print(f"| **all look-alikes** | {len(every)} | **{sum(every) / len(every):.3f}** |")
    for kind, values in misses.items():
        print(f"\nmissed {kind} ({len(values)}), e.g. {values[:3]}")


if __name__ == "__main__":
    main()
