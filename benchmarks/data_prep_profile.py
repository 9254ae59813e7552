"""Where the data stages spend their time: seconds per 1k records for each phase, on one core.

    python benchmarks/data_prep_profile.py --n 200000

Generates N records with benchmarks/data_prep.py's generator, then runs ingest → clean → split in this process
with one worker (``clean.workers=1``: the local engine runs its tasks inline), with a timer
around each phase's function. Timers are exclusive: a phase's time excludes the phases it calls, so the rows add
up to the stage's wall time, and "other" is what no timer covers (reading blocks, the driver's bookkeeping,
progress). The timers cost about a microsecond per call, a few per record: the figures are within a few percent
of an untimed run, whose wall time the table prints beside them.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

#: (stage, phase, module, attribute): the function whose exclusive time is the phase's (``Class.method`` for a
#: method), and the stage that owns it; a shared one (parse, append) is counted in whichever stage calls it.
PHASES = [
    ("ingest", "read lines + parse JSON + loop", "tuneline.stages.ingest.run", "ingest_part"),
    ("ingest", "detect format + canonicalize", "tuneline.stages.ingest.run", "canonicalize"),
    ("ingest", "record id", "tuneline.stages.ingest.run", "record_id"),
    ("ingest", "serialize", "tuneline.stages.ingest.run", "_dumps"),
    ("clean", "parse", "tuneline.stages.clean.rules", "parse_canonical"),
    ("clean", "screen a chunk's texts (numpy: normalization, PII shapes)", "tuneline.textscan", "TextScan.__init__"),
    ("clean", "screen a chunk's texts (numpy: normalization, PII shapes)", "tuneline.pii", "_shapes"),
    (
        "clean",
        "screen a chunk's texts (numpy: normalization, PII shapes)",
        "tuneline.stages.clean.text",
        "normalize_candidates",
    ),
    ("clean", "loops over the screened texts", "tuneline.stages.clean.rules", "RecordCleaner._clean_texts"),
    ("clean", "loops over the screened texts", "tuneline.stages.clean.rules", "RecordCleaner._normalize_screened"),
    ("clean", "normalise", "tuneline.stages.clean.rules", "RecordCleaner._normalize"),
    ("clean", "normalise", "tuneline.stages.clean.text", "normalize_text"),
    (
        "clean",
        "PII (the detectors, on the texts the screen passed)",
        "tuneline.stages.clean.rules",
        "RecordCleaner._redact",
    ),
    ("clean", "words of a chunk's plain records (one array)", "tuneline.stages.clean.words", "PlainRecords.of"),
    ("clean", "quality filters", "tuneline.stages.clean.words", "PlainRecords.passed"),
    ("clean", "quality filters", "tuneline.stages.clean.rules", "RecordCleaner._quality"),
    ("clean", "token filter", "tuneline.stages.clean.rules", "RecordCleaner._filter"),
    ("clean", "token filter", "tuneline.stages.clean.rules", "RecordCleaner._tokens"),
    ("clean", "exact key", "tuneline.stages.clean.rules", "canonical_text"),
    ("clean", "exact key", "tuneline.stages.clean.rules", "folded_text"),
    ("clean", "exact key", "tuneline.stages.clean.words", "ChunkWords.folded"),
    ("clean", "exact key", "tuneline.stages.clean.words", "PlainRecords.canonical"),
    ("clean", "MinHash + band keys", "tuneline.stages.clean.rules", "batch_near_keys"),
    ("clean", "MinHash + band keys", "tuneline.stages.clean.rules", "near_keys"),
    ("clean", "scratch keys write", "tuneline.stages.clean.blocks", "_BlockKeys.write"),
    ("clean", "bucket grouping", "tuneline.engine.cluster_tasks", "bucket_pairs"),
    ("clean", "verification", "tuneline.engine.cluster_tasks", "verify_pairs"),
    ("clean", "components", "tuneline.stages.clean.run", "components"),
    ("clean", "record ids", "tuneline.stages.clean.run", "record_ids"),
    ("clean", "write (removed records; kept ones as byte spans)", "tuneline.stages.clean.run", "write_block"),
    ("clean", "append outputs (kernel copy)", "tuneline.engine.blocks", "append_file"),
    ("split", "parse + hash + leakage keys (block tasks)", "tuneline.stages.split.run", "split_block"),
    ("split", "write splits (block tasks)", "tuneline.stages.split.run", "write_split_block"),
]


class Timers:
    """Exclusive time per phase: a stack of open timers; a child's time is taken out of its parent's."""

    def __init__(self) -> None:
        self.seconds: dict[tuple[str, str], float] = defaultdict(float)
        self.calls: dict[tuple[str, str], int] = defaultdict(int)
        self._stack: list[list[float]] = []  # [start, time of children]
        self.stage = ""  # the stage running now: a function two stages share (parse_canonical) counts for each

    def wrap(self, phase: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        clock, stack, seconds, calls = time.perf_counter, self._stack, self.seconds, self.calls

        def timed(*args: Any, **kwargs: Any) -> Any:
            key = (self.stage, phase)
            frame = [clock(), 0.0]
            stack.append(frame)
            try:
                return fn(*args, **kwargs)
            finally:
                stack.pop()
                elapsed = clock() - frame[0]
                seconds[key] += elapsed - frame[1]
                calls[key] += 1
                if stack:
                    stack[-1][1] += elapsed

        return timed


def install(timers: Timers) -> list[str]:
    """Wrap every phase's function where it is looked up (each module that imported it too); the phases not
    found in this version of the code are returned, so the table says so instead of showing a zero."""
    import importlib

    missing = []
    for stage, phase, module_name, attr in PHASES:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError:  # an older commit, measured for the table's "before" columns
            module = None
        owner_name, _, name = attr.rpartition(".")
        owner = getattr(module, owner_name, None) if owner_name else module
        original = getattr(owner, name, None)
        if original is None:
            missing.append(f"{stage}/{phase} ({module_name}.{attr})")
            continue
        timed = timers.wrap(phase, original)
        if owner_name:
            setattr(owner, name, timed)
            continue
        for mod in list(sys.modules.values()):
            if (mod.__name__ or "").startswith("tuneline") and getattr(mod, name, None) is original:
                setattr(mod, name, timed)
    return missing


def run_stages(work: Path, timers: Timers | None) -> dict[str, float]:
    from tuneline.config import load_config
    from tuneline.stages.clean.run import run_clean
    from tuneline.stages.ingest.run import run_ingest
    from tuneline.stages.split.run import run_split

    config = load_config(None, ["clean.workers=1", f"paths.raw={work / 'raw'}"])
    tag = "timed" if timers else "plain"
    walls = {}
    for stage, call in (
        ("ingest", lambda: run_ingest(config, None, work / f"{tag}-ingested")),
        ("clean", lambda: run_clean(config, work / f"{tag}-ingested", work / f"{tag}-cleaned")),
        ("split", lambda: run_split(config, work / f"{tag}-cleaned", work / f"{tag}-split")),
    ):
        if timers:
            timers.stage = stage
        start = time.perf_counter()
        call()
        walls[stage] = time.perf_counter() - start
    return walls


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=200_000, help="synthetic records")
    ap.add_argument("--workdir", type=Path, default=None, help="where to write data (default: a temp dir)")
    args = ap.parse_args()

    import logging

    import data_prep

    logging.disable(logging.INFO)
    work = args.workdir or Path(tempfile.mkdtemp(prefix="tuneline-profile-"))
    (work / "raw").mkdir(parents=True, exist_ok=True)
    data_prep.generate(work / "raw" / "chats.jsonl", args.n)
    plain = run_stages(work, None)
    timers = Timers()
    missing = install(timers)
    walls = run_stages(work, timers)

    per_k = 1000 / args.n
    print(f"\nData stages, one core, {args.n:,} records: seconds per 1k records per phase (exclusive)\n")
    print("| stage | phase | calls | seconds | s per 1k records | share of stage |")
    print("|---|---|---:|---:|---:|---:|")
    for stage in ("ingest", "clean", "split"):
        rows = [(phase, secs) for (st, phase), secs in timers.seconds.items() if st == stage]
        covered = sum(s for _, s in rows)
        rows.append(("other (reading blocks, driver, progress)", walls[stage] - covered))
        for phase, secs in sorted(rows, key=lambda r: -r[1]):
            calls = timers.calls.get((stage, phase), "")
            share = secs / walls[stage]
            print(f"| {stage} | {phase} | {calls} | {secs:.2f} | {secs * per_k:.4f} | {share:.0%} |")
        print(f"| **{stage}** | **total, timed (untimed)** | | **{walls[stage]:.2f}** ({plain[stage]:.2f}) | "
              f"{walls[stage] * per_k:.4f} | |")  # fmt: skip
    total = sum(plain.values())
    print(f"\nuntimed chain: {total:.1f} s = {60 * args.n / total:,.0f} records/min on one core")
    if missing:
        print("not timed (not in this version of the code): " + ", ".join(missing))


if __name__ == "__main__":
    main()
