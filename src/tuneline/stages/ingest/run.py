"""The ingest stage: raw sources → canonical ``sft.jsonl`` / ``preference.jsonl`` / ``kto.jsonl`` + quarantine
+ report."""

from __future__ import annotations

import csv
import glob as _glob
import zlib
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import xxhash

from tuneline.config.schema import Source, TunelineConfig
from tuneline.io.atomic import OutputRejected, atomic_dir, failed_path, write_json_atomic
from tuneline.io.jsonl import JsonlWriter
from tuneline.progress import Rate, log, stage_progress
from tuneline.records import KINDS
from tuneline.redact import redact_text
from tuneline.stages.ingest.formats import RecordError, canonicalize
from tuneline.stages.ingest.readers import read_items
from tuneline.stages.ingest.sources import ResolvedFile, SourceError, resolve

QUARANTINE_FILE, REPORT_FILE = "quarantine.jsonl", "report.json"
WRITER = "tuneline ingest"


class IngestError(RuntimeError):
    """The ingest cannot produce a trustworthy output (no readable source, too many bad records)."""


class IngestRejected(IngestError, OutputRejected):
    """The ingest ran but its output is not trustworthy: the previous output stays, this one is kept beside it."""


@dataclass(frozen=True)
class IngestResult:
    out: Path
    sft: int
    preference: int
    kto: int
    quarantined: int
    report: dict[str, Any]


def default_sources(config: TunelineConfig) -> list[Source]:
    return list(config.data.sources) or [Source(uri=config.paths.raw)]


def record_id(uri: str, loc_kind: str, loc: int) -> str:
    """Stable id from where the record came from: re-ingesting the same file gives the same ids."""
    return xxhash.xxh3_64_hexdigest(f"{uri}\0{loc_kind}\0{loc}".encode())


def run_ingest(config: TunelineConfig, sources: list[Source] | None, out: str | Path) -> IngestResult:
    """Read every source, canonicalize each record, quarantine the bad ones with file, location and reason.

    Fails (after writing its outputs, so the quarantine can be inspected) when the share of
    bad records exceeds ``data.max_bad_fraction`` or when nothing at all could be ingested.
    """
    sources = sources if sources else default_sources(config)
    files: list[ResolvedFile] = []
    skipped: list[str] = []
    for src in sources:
        try:
            found, skip = resolve(src, config.data.source_options)
        except SourceError as exc:
            raise IngestError(str(exc)) from None
        files.extend(found)
        skipped.extend(skip)
    for s in skipped:
        log.warning("skipping %s", s)

    preview = config.data.raw_preview_chars
    by_source: dict[str, Counter] = defaultdict(Counter)
    by_format: Counter = Counter()
    by_reason: Counter = Counter()
    rate = Rate()
    out = Path(out)
    with (
        atomic_dir(out, WRITER, _local_inputs(sources, files)) as tmp,
        JsonlWriter(tmp / "sft.jsonl") as sft,
        JsonlWriter(tmp / "preference.jsonl") as pref,
        JsonlWriter(tmp / "kto.jsonl") as kto,
        JsonlWriter(tmp / QUARANTINE_FILE) as quarantine,
        stage_progress("ingest") as progress,
    ):
        task = progress.add_task("records", total=None, rate="")
        writers = {"sft": sft, "preference": pref, "kto": kto}
        assert set(writers) == set(KINDS)
        for f in files:
            counts = by_source[f.uri]
            try:
                for item in read_items(f):
                    counts["total"] += 1
                    error = item.error
                    if error is None:
                        rid = record_id(f.uri, item.loc_kind, item.loc)
                        try:
                            kind, rec = canonicalize(
                                item.obj, f.format, rid, f.uri, {item.loc_kind: item.loc}, f.field_map
                            )
                        except RecordError as exc:
                            error = (exc.code, str(exc))
                        else:
                            writers[kind].write(rec)
                            counts[kind] += 1
                            by_format[rec["meta"]["format"]] += 1
                    if error is not None:
                        raw = item.raw if item.raw or item.obj is None else _preview(item.obj)
                        quarantine.write(
                            {
                                "file": f.uri,
                                item.loc_kind: item.loc,
                                "reason": error[0],
                                "detail": error[1],
                                "raw": raw[:preview],
                            }
                        )
                        counts["quarantined"] += 1
                        by_reason[error[0]] += 1
                    if counts["total"] % 8192 == 0:
                        progress.update(
                            task,
                            advance=8192,
                            rate=f"{rate.per_second(sum(w.count for w in writers.values())):,.0f} rec/s",
                        )
            except (OSError, ValueError, ImportError, EOFError, csv.Error, zlib.error) as exc:
                # The file itself is unreadable (truncated gzip, corrupt parquet, bad HF dir, a CSV cell over
                # the limit): what was read before stays, the rest is reported with where reading stopped.
                read = counts["total"]
                quarantine.write(
                    {
                        "file": f.uri,
                        "line": None,
                        "reason": "unreadable_file",
                        "detail": redact_text(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)
                        + f" (after {read} record{'s' if read != 1 else ''})",
                        "raw": "",
                    }
                )
                counts["quarantined"] += 1
                counts["unreadable"] += 1
                by_reason["unreadable_file"] += 1
            log.info(
                "ingest %s: %d sft, %d preference, %d kto, %d quarantined",
                f.uri,
                counts["sft"],
                counts["preference"],
                counts["kto"],
                counts["quarantined"],
            )

        total = sum(c["total"] + c["unreadable"] for c in by_source.values())
        bad = sum(c["quarantined"] for c in by_source.values())
        report = {
            "stage": "ingest",
            "files": len(files),
            "skipped_files": skipped,
            "records": total,
            "sft": sft.count,
            "preference": pref.count,
            "kto": kto.count,
            "quarantined": bad,
            "bad_fraction": round(bad / total, 6) if total else 0.0,
            "by_source": {k: dict(v) for k, v in sorted(by_source.items())},
            "by_format": dict(sorted(by_format.items())),
            "by_reason": dict(by_reason.most_common()),
            "seconds": round(rate.elapsed(), 3),
            "records_per_second": round(rate.per_second(total), 1),
        }
        write_json_atomic(tmp / REPORT_FILE, report)
        log.info(
            "ingest: %d records → %d sft, %d preference, %d kto, %d quarantined (%.1f%%) in %.1fs",
            total,
            report["sft"],
            report["preference"],
            report["kto"],
            bad,
            100 * report["bad_fraction"],
            report["seconds"],
        )
        kept = failed_path(out) / QUARANTINE_FILE
        if report["sft"] + report["preference"] + report["kto"] == 0:
            raise IngestRejected(f"no valid records in {len(files)} file(s); {out} is unchanged, see {kept}")
        if report["bad_fraction"] > config.data.max_bad_fraction:
            raise IngestRejected(
                f"{bad} of {total} records ({report['bad_fraction']:.1%}) were quarantined, more than "
                f"data.max_bad_fraction={config.data.max_bad_fraction:g}; {out} is unchanged, see {kept} "
                "(reasons: " + ", ".join(f"{k}={v}" for k, v in by_reason.most_common(5)) + ")"
            )
    return IngestResult(out, report["sft"], report["preference"], report["kto"], bad, report)


def _local_inputs(sources: list[Source], files: list[ResolvedFile]) -> list[str]:
    """Local paths the output must not overlap: every file read, and each local source that is a directory."""
    paths = [f.uri for f in files if "://" not in f.uri and not f.uri.startswith("hf:")]
    paths += [
        s.uri for s in sources if "://" not in s.uri and not s.uri.startswith("hf:") and not _glob.has_magic(s.uri)
    ]
    return paths


def _preview(obj: Any) -> str:
    import json

    return json.dumps(obj, ensure_ascii=False, default=str)
