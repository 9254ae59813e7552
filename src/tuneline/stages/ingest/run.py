"""The ingest stage: raw sources → canonical ``sft.jsonl`` / ``preference.jsonl`` / ``kto.jsonl`` + quarantine
+ report."""

from __future__ import annotations

import csv
import dataclasses
import glob as _glob
import os
import zlib
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import fsspec
import xxhash

from tuneline.config.schema import GENERATED_RECORDS, PiiRule, Source, TunelineConfig
from tuneline.engine import Executor, executor_for
from tuneline.engine.blocks import Discard, append_file, line_ranges, reachable, remove_tree, write_bytes
from tuneline.errors import TunelineError
from tuneline.io.atomic import OutputRejected, atomic_dir, failed_path
from tuneline.io.jsonl import dumps
from tuneline.pii import Redactor
from tuneline.progress import Rate, log, stage_progress
from tuneline.records import KINDS
from tuneline.redact import redact_text
from tuneline.results import DATA_REPORT, IngestReport
from tuneline.stages.ingest.formats import RecordError, canonicalize
from tuneline.stages.ingest.readers import read_items
from tuneline.stages.ingest.sources import ResolvedFile, SourceError, resolve

QUARANTINE_FILE, REPORT_FILE = "quarantine.jsonl", DATA_REPORT
SCRATCH = ".parts"
WRITER = "tuneline ingest"


class IngestError(TunelineError, RuntimeError):
    """The ingest cannot produce a trustworthy output (no readable source, too many bad records)."""


class IngestRejected(IngestError, OutputRejected):
    """The ingest ran but its output is not trustworthy: the previous output stays, this one is kept beside it."""


def default_sources(config: TunelineConfig) -> list[Source]:
    """data.sources (empty: paths.raw), and with generate.enabled the generate stage's records."""
    sources = list(config.data.sources) or [Source(uri=config.paths.raw)]
    if config.generate.enabled:
        sources.append(Source(uri=str(Path(config.paths.generated) / GENERATED_RECORDS)))
    return sources


def record_id(uri: str, loc_kind: str, loc: int) -> str:
    """Stable id from where the record came from: re-ingesting the same file gives the same ids."""
    return xxhash.xxh3_64_hexdigest(f"{uri}\0{loc_kind}\0{loc}".encode())


@dataclass(frozen=True, slots=True)
class PartTask:
    """What one worker call reads: one block of lines of a large JSONL file, one file of another kind, or a batch
    of small files (about a block's worth of lines: 20,000 one-line files are not 20,000 calls); and where its
    outputs go."""

    parts: tuple[ResolvedFile, ...]
    prefix: str
    preview: int
    max_bytes: int = 32 * 1024 * 1024  # data.max_record_bytes


@dataclass(slots=True)
class PartIngested:
    counts: Counter = field(default_factory=Counter)
    by_format: Counter = field(default_factory=Counter)
    by_reason: Counter = field(default_factory=Counter)


def ingest_part(task: PartTask) -> list[PartIngested]:
    """Canonicalize the task's parts, in order, into ``<prefix>.{sft,preference,kto,quarantine}`` (written whole: a
    re-run rewrites); one result per part."""
    buffers: dict[str, list[bytes]] = {k: [] for k in (*KINDS, "quarantine")}
    results = [_ingest_one(f, task, buffers) for f in task.parts]
    for name, lines in buffers.items():
        write_bytes(f"{task.prefix}.{name}", b"".join(lines))
    return results


def _ingest_one(f: ResolvedFile, task: PartTask, buffers: dict[str, list[bytes]]) -> PartIngested:
    out = PartIngested()
    counts = out.counts
    try:
        for item in read_items(f, task.max_bytes):
            counts["total"] += 1
            error = item.error
            if error is None:
                rid = record_id(f.uri, item.loc_kind, item.loc)
                try:
                    kind, rec = canonicalize(item.obj, f.format, rid, f.uri, {item.loc_kind: item.loc}, f.field_map)
                    line = _dumps(rec)
                except RecordError as exc:
                    error = (exc.code, str(exc))
                else:
                    buffers[kind].append(line)
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
                            "raw": _quarantined_text(raw, task.preview),
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
    return out


#: What a quarantined record's raw text goes through: the credentials clean would remove (a record that failed
#: to parse never reaches clean, and the quarantine is a file people share).
_SECRETS = Redactor(
    PiiRule(email=False, phone=False, credit_card=False, ssn=False, ip_address=False, iban=False, secrets=True)
)


def _quarantined_text(raw: str, keep: int) -> str:
    """The start of a bad record's raw text, credentials redacted before it is cut (so a secret across the cut
    is never half kept), and writable as JSON."""
    return _writable(_SECRETS.redact(raw[: keep + 4096])[0][:keep])


def _writable(text: str) -> str:
    """Raw text as JSON can hold it: lone surrogates (bytes that were not UTF-8, or a ``\\ud800`` escape) shown
    as ``\\udNNN`` instead of failing the write."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def _dumps(rec: Any) -> bytes:
    """A canonical record as a JSONL line; a record JSON cannot write back (a field nested deeper than 255 levels,
    which orjson reads but does not write) is a bad record, not a crash."""
    try:
        return dumps(rec)
    except (TypeError, RecursionError) as exc:
        if "surrogate" in str(exc):
            raise RecordError("invalid_utf8", "a string holds a lone surrogate (not valid Unicode)") from None
        raise RecordError(
            "too_deep", "a field is nested deeper than 255 levels; it cannot be written as JSON"
        ) from None


#: A batch of small files is cut at this many files even when their lines are fewer than a block's.
MAX_BATCH_FILES = 4096


def _parts(files: list[ResolvedFile], lines_per_block: int) -> list[tuple[ResolvedFile, ...]]:
    """What each worker call reads, in source order: each uncompressed JSONL file is cut into blocks of lines (read
    in parallel), and consecutive small JSONL files are batched up to a block's worth of lines; any other file
    (compressed, JSON, CSV, Parquet: its lines unknown up front) is read by a call of its own."""
    tasks: list[tuple[ResolvedFile, ...]] = []
    batch: list[ResolvedFile] = []
    lines = 0

    def flush() -> None:
        nonlocal batch, lines
        if batch:
            tasks.append(tuple(batch))
        batch, lines = [], 0

    for f in files:
        f = dataclasses.replace(f, open_uri=reachable(f.open_uri))  # what workers open
        ranges = _line_ranges(f, lines_per_block)
        if ranges is None:
            flush()
            tasks.append((f,))
            continue
        if len(ranges) > 1:
            flush()
            tasks.extend((dataclasses.replace(f, line_range=r[:3]),) for r in ranges)
            continue
        if not ranges:  # an empty file: nothing to read
            continue
        [(lo, hi, first, n)] = ranges  # a small file: batched with its neighbours
        if lines + n > lines_per_block or len(batch) >= MAX_BATCH_FILES:
            flush()
        batch.append(dataclasses.replace(f, line_range=(lo, hi, first)))
        lines += n
    flush()
    return tasks


def _line_ranges(f: ResolvedFile, lines_per_block: int) -> list[tuple[int, int, int, int]] | None:
    """The blocks of an uncompressed JSONL file; None for any other file, or one that cannot be opened (its task
    reports it as the whole file would)."""
    if f.kind != "jsonl" or f.compression:
        return None
    local = "://" not in f.open_uri  # no filesystem layer per local file (20,000 small files add up)
    try:
        with open(f.open_uri, "rb") if local else fsspec.open(f.open_uri, "rb", **f.storage_options) as fh:
            return line_ranges(fh, lines_per_block)
    except OSError:
        return None


def run_ingest(config: TunelineConfig, sources: list[Source] | None, out: str | Path) -> IngestReport:
    """Read every source, canonicalize each record, quarantine the bad ones with file, location and reason.

    Files (and blocks of JSONL files) are read in parallel by ``data.engine``; outputs keep the order of the
    sources and lines. Fails (after writing its outputs, so the quarantine can be inspected) when the share of
    bad records exceeds ``data.max_bad_fraction`` or when nothing at all could be ingested.
    """
    sources = sources if sources else default_sources(config)
    files, skipped = _resolve_sources(sources, config)
    out = Path(out)
    with (
        executor_for(config) as ex,
        atomic_dir(out, WRITER, _local_inputs(sources, files)) as tmp,
        stage_progress("ingest") as progress,
    ):
        tally = _ingest_parts(config, ex, _parts(files, config.data.block_records), tmp, progress)
        report = tally.report(files, skipped, ex.name)
        report.write(tmp / REPORT_FILE)
        log.info(
            "ingest: %d records → %d sft, %d preference, %d kto, %d quarantined (%.1f%%) in %.1fs",
            report.records, report.sft, report.preference, report.kto, report.quarantined,
            100 * report.bad_fraction, report.seconds,
        )  # fmt: skip
        _refuse_untrustworthy(report, config, out)
    return report


def _resolve_sources(sources: list[Source], config: TunelineConfig) -> tuple[list[ResolvedFile], list[str]]:
    """The files the sources name, and the ones skipped (with why), in the order given."""
    files: list[ResolvedFile] = []
    skipped: list[str] = []
    for src in sources:
        try:
            found, skip = resolve(src, config.data.source_options, config.data.allow_insecure_sources)
        except SourceError as exc:
            raise IngestError(str(exc)) from None
        files.extend(found)
        skipped.extend(skip)
    for s in skipped:
        log.warning("skipping %s", s)
    return files, skipped


@dataclass
class _Tally:
    """What the parts ingested so far: counts per source, format and quarantine reason, lines written."""

    by_source: dict[str, Counter] = field(default_factory=lambda: defaultdict(Counter))
    by_format: Counter = field(default_factory=Counter)
    by_reason: Counter = field(default_factory=Counter)
    written: dict[str, int] = field(default_factory=lambda: dict.fromkeys((*KINDS, "quarantine"), 0))
    rate: Rate = field(default_factory=Rate)

    def add(self, uri: str, part: PartIngested) -> None:
        self.by_source[uri].update(part.counts)
        self.by_format.update(part.by_format)
        self.by_reason.update(part.by_reason)

    def report(self, files: list[ResolvedFile], skipped: list[str], engine: str) -> IngestReport:
        total = sum(c["total"] + c["unreadable"] for c in self.by_source.values())
        bad = sum(c["quarantined"] for c in self.by_source.values())
        return IngestReport(
            files=len(files),
            skipped_files=skipped,
            records=total,
            sft=self.written["sft"],
            preference=self.written["preference"],
            kto=self.written["kto"],
            quarantined=bad,
            bad_fraction=round(bad / total, 6) if total else 0.0,
            by_source={k: dict(v) for k, v in sorted(self.by_source.items())},
            by_format=dict(sorted(self.by_format.items())),
            by_reason=dict(self.by_reason.most_common()),
            engine=engine,
            seconds=round(self.rate.elapsed(), 3),
            records_per_second=round(self.rate.per_second(total), 1),
        )


#: Up to this many files, ingest logs each one's counts; beyond, a summary (every file's counts are in the report).
LOG_EACH_FILE = 20


def _ingest_parts(
    config: TunelineConfig, ex: Any, parts: list[tuple[ResolvedFile, ...]], tmp: Path, progress: Any
) -> _Tally:
    """Ingest the parts in parallel into scratch, and append each task's files to the outputs in source order."""
    tally = _Tally()
    task = progress.add_task("records", total=None, rate="")
    root = reachable(tmp / SCRATCH) + "/"
    prefixes = [f"{root}{i:06d}" for i in range(len(parts))]
    handles = {name: open(tmp / f"{name}.jsonl", "wb") for name in tally.written}  # noqa: SIM115 - closed below
    try:
        d = config.data
        tasks = [
            PartTask(p, pre, d.raw_preview_chars, d.max_record_bytes) for p, pre in zip(parts, prefixes, strict=True)
        ]
        with Discard() as done:
            _append_parts(ex, tasks, parts, tally, handles, done, progress, task)
    finally:
        for fh in handles.values():
            fh.close()
        remove_tree(root)
    _log_sources(tally.by_source)
    return tally


def _append_parts(
    ex: Executor, tasks: list[PartTask], parts: list[list[ResolvedFile]], tally: _Tally,
    handles: dict[str, BinaryIO], done: Discard, progress: Any, task: Any,
) -> None:  # fmt: skip
    """Run the part tasks; append each one's files to the outputs as it returns, in source order."""
    for batch, pt, results in zip(parts, tasks, ex.imap(ingest_part, tasks), strict=True):
        for part, result in zip(batch, results, strict=True):
            tally.add(part.uri, result)
        for name, fh in handles.items():
            part = f"{pt.prefix}.{name}"
            append_file(fh, part)
            done.drop(part)
            tally.written[name] += sum(r.counts["quarantined" if name == "quarantine" else name] for r in results)
        kept = sum(tally.written[k] for k in KINDS)
        progress.update(
            task, advance=sum(r.counts["total"] for r in results), rate=f"{tally.rate.per_second(kept):,.0f} rec/s"
        )


def _refuse_untrustworthy(report: IngestReport, config: TunelineConfig, out: Path) -> None:
    kept = failed_path(out) / QUARANTINE_FILE
    if report.kept == 0:
        raise IngestRejected(f"no valid records in {report.files} file(s); {out} is unchanged, see {kept}")
    if report.bad_fraction > config.data.max_bad_fraction:
        reasons = ", ".join(f"{k}={v}" for k, v in list(report.by_reason.items())[:5])
        raise IngestRejected(
            f"{report.quarantined} of {report.records} records ({report.bad_fraction:.1%}) were quarantined, more "
            f"than data.max_bad_fraction={config.data.max_bad_fraction:g}; {out} is unchanged, see {kept} "
            f"(reasons: {reasons})"
        )


def _log_sources(by_source: dict[str, Counter]) -> None:
    """Each file's counts when there are few; otherwise how many files, and the first ones with quarantined records."""
    line = "ingest %s: %d sft, %d preference, %d kto, %d quarantined"
    if len(by_source) <= LOG_EACH_FILE:
        for uri, c in by_source.items():
            log.info(line, uri, c["sft"], c["preference"], c["kto"], c["quarantined"])
        return
    bad = [(uri, c) for uri, c in by_source.items() if c["quarantined"]]
    log.info(
        "ingest: %d files (each one's counts: by_source in the report), %d with quarantined records",
        len(by_source),
        len(bad),
    )
    for uri, c in bad[:5]:
        log.info(line, uri, c["sft"], c["preference"], c["kto"], c["quarantined"])
    if len(bad) > 5:
        log.info("ingest: … and %d more files with quarantined records (see quarantine.jsonl)", len(bad) - 5)


def _local_inputs(sources: list[Source], files: list[ResolvedFile]) -> list[str]:
    """Local paths the output must not overlap: each local source that is a directory, and every file read outside
    those (an output that overlaps a file inside a source directory overlaps the directory: checked once)."""
    local = [
        s.uri for s in sources if "://" not in s.uri and not s.uri.startswith("hf:") and not _glob.has_magic(s.uri)
    ]
    dirs = tuple(os.path.join(os.path.abspath(d), "") for d in local if os.path.isdir(d))
    files_outside = [
        f.uri
        for f in files
        if "://" not in f.uri and not f.uri.startswith("hf:") and not os.path.abspath(f.uri).startswith(dirs)
    ]
    return files_outside + local


def _preview(obj: Any) -> str:
    import json

    return json.dumps(obj, ensure_ascii=False, default=str)
