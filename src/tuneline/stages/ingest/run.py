"""The ingest stage: raw sources → canonical ``sft.jsonl`` / ``preference.jsonl`` / ``kto.jsonl`` + quarantine
+ report."""

from __future__ import annotations

import csv
import dataclasses
import glob as _glob
import zlib
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import fsspec
import xxhash

from tuneline.config.schema import Source, TunelineConfig
from tuneline.engine import executor_for
from tuneline.engine.blocks import line_ranges, reachable, read_bytes, remove_tree, write_bytes
from tuneline.errors import TunelineError
from tuneline.io.atomic import OutputRejected, atomic_dir, failed_path, write_json_atomic
from tuneline.io.jsonl import dumps
from tuneline.progress import Rate, log, stage_progress
from tuneline.records import KINDS
from tuneline.redact import redact_text
from tuneline.stages.ingest.formats import RecordError, canonicalize
from tuneline.stages.ingest.readers import read_items
from tuneline.stages.ingest.sources import ResolvedFile, SourceError, resolve

QUARANTINE_FILE, REPORT_FILE = "quarantine.jsonl", "report.json"
SCRATCH = ".parts"
WRITER = "tuneline ingest"


class IngestError(TunelineError, RuntimeError):
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


@dataclass(frozen=True, slots=True)
class PartTask:
    """One file, or one block of lines of an uncompressed JSONL file, and where its outputs go."""

    file: ResolvedFile
    prefix: str
    preview: int


@dataclass(slots=True)
class PartIngested:
    counts: Counter = field(default_factory=Counter)
    by_format: Counter = field(default_factory=Counter)
    by_reason: Counter = field(default_factory=Counter)


def ingest_part(task: PartTask) -> PartIngested:
    """Canonicalize one part into ``<prefix>.{sft,preference,kto,quarantine}`` (written whole: a re-run rewrites)."""
    f, out = task.file, PartIngested()
    counts = out.counts
    buffers: dict[str, list[bytes]] = {k: [] for k in (*KINDS, "quarantine")}
    try:
        for item in read_items(f):
            counts["total"] += 1
            error = item.error
            if error is None:
                rid = record_id(f.uri, item.loc_kind, item.loc)
                try:
                    kind, rec = canonicalize(item.obj, f.format, rid, f.uri, {item.loc_kind: item.loc}, f.field_map)
                except RecordError as exc:
                    error = (exc.code, str(exc))
                else:
                    buffers[kind].append(dumps(rec))
                    counts[kind] += 1
                    out.by_format[rec["meta"]["format"]] += 1
            if error is not None:
                raw = item.raw if item.raw or item.obj is None else _preview(item.obj)
                buffers["quarantine"].append(
                    dumps(
                        {
                            "file": f.uri,
                            item.loc_kind: item.loc,
                            "reason": error[0],
                            "detail": error[1],
                            "raw": raw[: task.preview],
                        }
                    )
                )
                counts["quarantined"] += 1
                out.by_reason[error[0]] += 1
    except (OSError, ValueError, ImportError, EOFError, csv.Error, zlib.error) as exc:
        # The file itself is unreadable (truncated gzip, corrupt parquet, bad HF dir, a CSV cell over
        # the limit): what was read before stays, the rest is reported with where reading stopped.
        read = counts["total"]
        buffers["quarantine"].append(
            dumps(
                {
                    "file": f.uri,
                    "line": None,
                    "reason": "unreadable_file",
                    "detail": redact_text(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)
                    + f" (after {read} record{'s' if read != 1 else ''})",
                    "raw": "",
                }
            )
        )
        counts["quarantined"] += 1
        counts["unreadable"] += 1
        out.by_reason["unreadable_file"] += 1
    for name, lines in buffers.items():
        write_bytes(f"{task.prefix}.{name}", b"".join(lines))
    return out


def _parts(files: list[ResolvedFile], lines_per_block: int) -> list[ResolvedFile]:
    """Every file, with each uncompressed JSONL file cut into blocks of lines (read in parallel)."""
    parts: list[ResolvedFile] = []
    for f in files:
        f = dataclasses.replace(f, open_uri=reachable(f.open_uri))  # what workers open
        if f.kind != "jsonl" or f.compression:
            parts.append(f)
            continue
        try:
            with fsspec.open(f.open_uri, "rb", **f.storage_options) as fh:
                ranges = line_ranges(fh, lines_per_block)
        except OSError:
            parts.append(f)  # unreadable: the part task reports it as the whole file would
            continue
        parts.extend(dataclasses.replace(f, line_range=(lo, hi, first)) for lo, hi, first, _ in ranges)
    return parts


def run_ingest(config: TunelineConfig, sources: list[Source] | None, out: str | Path) -> IngestResult:
    """Read every source, canonicalize each record, quarantine the bad ones with file, location and reason.

    Files (and blocks of JSONL files) are read in parallel by ``data.engine``; outputs keep the order of the
    sources and lines. Fails (after writing its outputs, so the quarantine can be inspected) when the share of
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

    by_source: dict[str, Counter] = defaultdict(Counter)
    by_format: Counter = Counter()
    by_reason: Counter = Counter()
    rate = Rate()
    out = Path(out)
    written = dict.fromkeys((*KINDS, "quarantine"), 0)
    with (
        executor_for(config) as ex,
        atomic_dir(out, WRITER, _local_inputs(sources, files)) as tmp,
        stage_progress("ingest") as progress,
    ):
        task = progress.add_task("records", total=None, rate="")
        parts = _parts(files, config.data.block_records)
        root = reachable(tmp / SCRATCH) + "/"
        prefixes = [f"{root}{i:06d}" for i in range(len(parts))]
        handles = {name: open(tmp / f"{name}.jsonl", "wb") for name in written}  # noqa: SIM115 - closed below
        try:
            tasks = [PartTask(p, pre, config.data.raw_preview_chars) for p, pre in zip(parts, prefixes, strict=True)]
            last_uri = None
            for part, prefix, result in zip(parts, prefixes, ex.imap(ingest_part, tasks), strict=True):
                by_source[part.uri].update(result.counts)
                by_format.update(result.by_format)
                by_reason.update(result.by_reason)
                for name, fh in handles.items():
                    data = read_bytes(f"{prefix}.{name}")
                    fh.write(data)
                    written[name] += data.count(b"\n")
                progress.update(
                    task,
                    advance=result.counts["total"],
                    rate=f"{rate.per_second(sum(written[k] for k in KINDS)):,.0f} rec/s",
                )
                if last_uri is not None and part.uri != last_uri:
                    _log_source(last_uri, by_source[last_uri])
                last_uri = part.uri
            if last_uri is not None:
                _log_source(last_uri, by_source[last_uri])
        finally:
            for fh in handles.values():
                fh.close()
            remove_tree(root)

        total = sum(c["total"] + c["unreadable"] for c in by_source.values())
        bad = sum(c["quarantined"] for c in by_source.values())
        report = {
            "stage": "ingest",
            "files": len(files),
            "skipped_files": skipped,
            "records": total,
            "sft": written["sft"],
            "preference": written["preference"],
            "kto": written["kto"],
            "quarantined": bad,
            "bad_fraction": round(bad / total, 6) if total else 0.0,
            "by_source": {k: dict(v) for k, v in sorted(by_source.items())},
            "by_format": dict(sorted(by_format.items())),
            "by_reason": dict(by_reason.most_common()),
            "engine": ex.name,
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


def _log_source(uri: str, counts: Counter) -> None:
    log.info(
        "ingest %s: %d sft, %d preference, %d kto, %d quarantined",
        uri,
        counts["sft"],
        counts["preference"],
        counts["kto"],
        counts["quarantined"],
    )


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
