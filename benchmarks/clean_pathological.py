"""The clean stage on hostile records: is every rule linear in the text's size?

    python benchmarks/clean_pathological.py [--mb 1 2 4 8] [--seed 0]

Each row is one record whose assistant turn is N MB of a single pathological pattern, dense with what the
rules look for (a match every few dozen bytes): phone numbers, valid ISBN-13s (which also pass the card checks'
first filter), valid card numbers, emails, credential-shaped tokens, long digit runs, one unbroken "word", and
a near-duplicate-heavy text of one repeated sentence. The record goes through `tuneline ingest` (in process),
then `run_clean` is timed alone. The table shows seconds per MB at each size: for a linear rule it stays flat as
the size doubles (the last column is the growth of seconds-per-MB from the smallest to the largest size; a
quadratic rule doubles it with every doubling of the input). This is a benchmark, not a timed test: the numbers
depend on the machine; the ratio does not.
"""

from __future__ import annotations

import argparse
import json
import random
import string
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from tuneline.config import load_config
from tuneline.config.schema import Source
from tuneline.pii import isbn13_ok, luhn_ok
from tuneline.results import DATA_REPORT, CleanReport
from tuneline.stages.clean import run_clean
from tuneline.stages.clean.run import CleanRejected
from tuneline.stages.ingest import run_ingest


def _digits(rng: random.Random, n: int) -> str:
    return "".join(rng.choice(string.digits) for _ in range(n))


def _complete(body: str, ok: Callable[[str], bool]) -> str:
    return next(body + d for d in string.digits if ok(body + d))


PATTERNS: dict[str, Callable[[random.Random], str]] = {
    "phone numbers": lambda r: f"call +1 {r.randrange(201, 990)} {r.randrange(200, 999)} {_digits(r, 4)} or ",
    "ISBN-13s": lambda r: f"see {_complete('978' + _digits(r, 9), isbn13_ok)} and ",
    "card numbers": lambda r: f"card {_complete('4' + _digits(r, 14), luhn_ok)} then ",
    "emails": lambda r: f"mail user{r.randrange(10**6)}@example{r.randrange(99)}.com, ",
    "credentials": lambda r: f"key AKIA{''.join(r.choice(string.ascii_uppercase + string.digits) for _ in range(16))} ",
    "digit runs": lambda r: _digits(r, 40) + " ",
    "one long word": lambda r: "".join(r.choice(string.ascii_letters) for _ in range(64)),
    "repeated sentence": lambda r: "The quick brown fox jumps over the lazy dog. ",
}


def text_of(pattern: Callable[[random.Random], str], size: int, seed: int) -> str:
    rng, parts, n = random.Random(seed), [], 0
    while n < size:
        parts.append(pattern(rng))
        n += len(parts[-1])
    return "".join(parts)[:size]


def clean_seconds(text: str, root: Path) -> tuple[float, int]:
    """Seconds `run_clean` takes on one record holding ``text`` as the answer, and the redactions it made."""
    raw = root / "raw.jsonl"
    record = {"messages": [{"role": "user", "content": "Tell me."}, {"role": "assistant", "content": text}]}
    raw.write_text(json.dumps(record) + "\n")
    config = load_config(None, ("data.max_record_bytes=67108864", "clean.quality.max_chars=100000000"))
    run_ingest(config, [Source(uri=str(raw))], root / "ingested")
    started = time.perf_counter()
    try:
        run_clean(config, root / "ingested", root / "cleaned")
        out = root / "cleaned"
    except CleanRejected:  # a quality rule removed the record: it still went through every rule before
        out = root / "cleaned.failed"
    seconds = time.perf_counter() - started
    return seconds, sum(CleanReport.read(out / DATA_REPORT).redactions.values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mb", type=float, nargs="+", default=[1, 2, 4, 8], help="record sizes, in MB")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", nargs="+", choices=list(PATTERNS), help="these patterns only")
    args = parser.parse_args()
    sizes = sorted(args.mb)
    head = " | ".join(f"{mb:g} MB: s (s/MB)" for mb in sizes)
    print(f"| pattern | {head} | redactions at {sizes[-1]:g} MB | s/MB growth |")
    print("|---|" + "---:|" * (len(sizes) + 2))
    for name, pattern in PATTERNS.items():
        if args.only and name not in args.only:
            continue
        cells, per_mb, redactions = [], [], 0
        for mb in sizes:
            with tempfile.TemporaryDirectory() as tmp:
                seconds, redactions = clean_seconds(text_of(pattern, int(mb * 1e6), args.seed), Path(tmp))
            per_mb.append(seconds / mb)
            cells.append(f"{seconds:.2f} ({per_mb[-1]:.2f})")
        print(f"| {name} | {' | '.join(cells)} | {redactions:,} | {per_mb[-1] / per_mb[0]:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
