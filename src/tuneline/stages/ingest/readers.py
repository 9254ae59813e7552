"""Per-file-kind readers yielding ``RawItem``s: a parsed object or the reason it could not be parsed.

Readers never raise on a bad record: invalid UTF-8, invalid JSON and the like become
items with an ``error`` so that the records around them survive. BOM, CRLF and blank
lines are tolerated. Locations are 1-based physical lines for JSONL/CSV and 0-based
row indices for JSON arrays, Parquet and HF datasets.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import fsspec
import orjson
from fsspec.implementations.local import LocalFileOpener

from tuneline.stages.ingest.sources import ResolvedFile

_SURROGATE = re.compile(r"[\ud800-\udfff]")  # bytes that were not UTF-8, or a lone surrogate escape
# CSV cells that hold JSON (a conversation, tools, history) when they start like it
_JSON_FIELDS = frozenset(
    {
        "messages",
        "conversations",
        "chosen",
        "rejected",
        "chosen_messages",
        "rejected_messages",
        "prompt",
        "completion",
        "history",
        "tools",
        "functions",
        "preferred_output",
        "non_preferred_output",
        "meta",
        "metadata",
    }
)


@dataclass(slots=True)
class RawItem:
    loc_kind: str  # "line" or "row"
    loc: int
    obj: Any = None
    error: tuple[str, str] | None = None
    raw: str = ""


def _open(f: ResolvedFile, mode: str = "rb"):
    return fsspec.open(f.open_uri, mode, compression=f.compression, **f.storage_options)


_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")


def _require_utf8(head: bytes) -> None:
    """A file in UTF-16 (a BOM, or NULs between its first characters) is named as such, once, instead of every
    line being quarantined as invalid JSON; the ingest reports it as an unreadable file."""
    if head.startswith(_UTF16_BOMS) or (len(head) >= 4 and head[1:4:2] == b"\0\0" and head[0:1] != b"\0"):
        raise ValueError("the file is UTF-16 encoded; save it as UTF-8")


def _utf8_error(line: bytes) -> str:
    try:
        line.decode("utf-8")
    except UnicodeDecodeError as exc:
        return f"invalid UTF-8 at byte {exc.start}"
    return ""


# 20+ digits in a row: maybe an integer beyond 64 bits, which orjson would turn into a float without a word
_LONG_DIGITS = re.compile(rb"[0-9]{20}")
_DIGITS = b"0123456789"  # counted first (bytes.translate, ~20x cheaper than the regex): most lines have few
MAX_INT = 2**63


def _exact_int(text: str) -> int:
    value = int(text)
    if abs(value) >= MAX_INT:
        raise OverflowError(f"the integer {text[:24]}{'…' if len(text) > 24 else ''} does not fit in 64 bits")
    return value


def _loads_exact(data: bytes | str) -> Any:
    """JSON with every integer exact: one beyond 64 bits is an error (quote it as a string), never a rounded float."""
    return json.loads(data, parse_int=_exact_int)


class _TooLong(bytes):
    """Stands in for a line longer than the limit: its content was skipped, ``size`` says how long it was."""

    size: int


def _bounded_lines(fh: Any, limit: int, end: float = float("inf")) -> Iterator[bytes]:
    """The lines of ``fh`` up to byte ``end``, none held in memory beyond ``limit`` bytes: a longer line is
    read past in chunks and yielded as a :class:`_TooLong`."""
    pos = 0
    while pos < end:
        line = fh.readline(limit + 1)
        if not line:
            return
        pos += len(line)
        if len(line) > limit and not line.endswith(b"\n"):
            size = len(line)
            while chunk := fh.readline(1 << 20):
                size += len(chunk)
                if chunk.endswith(b"\n"):
                    break
            pos += size - len(line)
            line = _TooLong()
            line.size = size
        yield line


def _line_reader(fh: Any) -> Any:
    """``fh`` when its ``readline`` takes a size limit, else a buffer over it that does (fsspec's remote files and
    zstandard's reader have no size-limited ``readline`` of their own). A local file is read through the file
    fsspec opened: its wrapper's ``readline`` cost 0.5 µs a line, a third of reading a line."""
    if isinstance(fh, LocalFileOpener):
        fh = fh.f
    try:
        fh.readline(0)
        return fh
    except (TypeError, OSError, ValueError):  # io.UnsupportedOperation is both an OSError and a ValueError
        return io.BufferedReader(fh)


def _jsonl_lines(f: ResolvedFile, limit: int) -> Iterator[tuple[int, bytes]]:
    with _open(f) as fh:
        stream = _line_reader(fh)
        if f.line_range is None:
            yield from enumerate(_bounded_lines(stream, limit), start=1)
            return
        start, end, first = f.line_range
        stream.seek(start)
        yield from enumerate(_bounded_lines(stream, limit, end - start), start=first)


def read_jsonl(f: ResolvedFile, max_bytes: int = 32 * 1024 * 1024) -> Iterator[RawItem]:
    for lineno, line in _jsonl_lines(f, max_bytes):
        if isinstance(line, _TooLong):
            detail = f"the line is {line.size:,} bytes, over data.max_record_bytes={max_bytes:,}"
            yield RawItem("line", lineno, error=("record_too_large", detail))
            continue
        if lineno == 1:
            _require_utf8(line)
            if line.startswith(b"\xef\xbb\xbf"):
                line = line[3:]
        line = line.rstrip(b"\r\n")
        if not line or line.isspace():  # blank (bytes.isspace and bytes.strip share one whitespace; no copy)
            continue
        try:
            maybe_big = len(line) - len(line.translate(None, _DIGITS)) >= 20 and _LONG_DIGITS.search(line)
            obj = _loads_exact(line) if maybe_big else orjson.loads(line)
            yield RawItem("line", lineno, obj=obj)
        except OverflowError as exc:
            yield RawItem("line", lineno, error=("integer_out_of_range", str(exc)), raw=line.decode("utf-8", "replace"))
        except (orjson.JSONDecodeError, json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
            raw = line.decode("utf-8", "replace")
            bad_utf8 = _utf8_error(line)
            if bad_utf8:
                yield RawItem("line", lineno, error=("invalid_utf8", bad_utf8), raw=raw)
            else:
                yield RawItem("line", lineno, error=("invalid_json", f"invalid JSON: {exc}"), raw=raw)


def _surrogate_error(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    m = _SURROGATE.search(text)
    return f"invalid UTF-8 near character {m.start()}" if m else ""


def read_json_array(f: ResolvedFile) -> Iterator[RawItem]:
    with _open(f) as fh:
        data = fh.read()
    _require_utf8(data[:4])
    text = data.decode("utf-8", "surrogateescape").lstrip("\ufeff")
    try:
        doc = _loads_exact(text)
    except json.JSONDecodeError as exc:
        yield RawItem(
            "line",
            exc.lineno,
            error=("invalid_json", f"invalid JSON document: {exc.msg} (column {exc.colno})"),
            raw=text,
        )
        return
    except OverflowError as exc:
        yield RawItem("line", 1, error=("integer_out_of_range", f"{exc} (quote it as a string)"), raw=text)
        return
    except RecursionError:
        yield RawItem(
            "line",
            1,
            error=("invalid_json", "JSON document nested too deeply to parse (thousands of levels)"),
            raw=text,
        )
        return
    if isinstance(doc, dict) and not any(k in doc for k in ("messages", "conversations", "instruction", "chosen")):
        # {"data": [...]} style wrappers: take the single list value.
        lists = [v for v in doc.values() if isinstance(v, list)]
        doc = lists[0] if len(lists) == 1 else doc
    items = doc if isinstance(doc, list) else [doc]
    for i, obj in enumerate(items):
        bad = _surrogate_error(obj)
        if bad:
            yield RawItem("row", i, error=("invalid_utf8", bad), raw=json.dumps(obj, ensure_ascii=False)[:2000])
        else:
            yield RawItem("row", i, obj=obj)


_TEXT_OR_JSON = frozenset({"prompt", "completion", "chosen", "rejected"})  # may also be plain text: "[Q] ..."


def _decode_cells(row: dict[str, Any], json_fields: frozenset[str]) -> dict[str, Any]:
    """CSV cells are strings: decode JSON in list-like fields (empty cells stay empty strings)."""
    out: dict[str, Any] = {}
    for key, value in row.items():
        if key is None:
            continue
        if isinstance(value, str):
            stripped = value.lstrip()
            if key in json_fields and stripped[:1] in ("[", "{"):
                try:
                    value = json.loads(value)
                except RecursionError:
                    raise ValueError(f"column {key!r} holds JSON nested too deeply to parse") from None
                except json.JSONDecodeError as exc:
                    if key not in _TEXT_OR_JSON:
                        raise ValueError(f"column {key!r} holds invalid JSON: {exc}") from None
        out[key] = value
    return out


CSV_FIELD_LIMIT = 64 * 1024 * 1024  # per cell; the csv module's default (128 KiB) refuses long conversations


def read_csv(f: ResolvedFile) -> Iterator[RawItem]:
    csv.field_size_limit(CSV_FIELD_LIMIT)
    # the source's own names for those fields too (its columns mapping)
    json_fields = _JSON_FIELDS | {theirs for ours, theirs in f.field_map.columns.items() if ours in _JSON_FIELDS}
    with _open(f) as fh:
        text = io.TextIOWrapper(fh, encoding="utf-8-sig", errors="surrogateescape", newline="")
        reader = csv.DictReader(text)
        start = reader.line_num + 1
        for row in reader:
            lineno = start
            start = reader.line_num + 1
            raw = ",".join(v for v in row.values() if isinstance(v, str))
            if not any((v or "").strip() for v in row.values() if isinstance(v, str)):
                continue
            bad = _surrogate_error(raw)
            if bad:
                yield RawItem("line", lineno, error=("invalid_utf8", bad), raw=raw.encode("utf-8", "replace").decode())
                continue
            if None in row:
                yield RawItem("line", lineno, error=("invalid_csv", "row has more cells than the header"), raw=raw)
                continue
            try:
                yield RawItem("line", lineno, obj=_decode_cells(row, json_fields))
            except ValueError as exc:
                yield RawItem("line", lineno, error=("invalid_json", str(exc)), raw=raw)


def _plain(value: Any) -> Any:
    """Parquet/Arrow rows may hold numpy arrays or timestamps: make them JSON-able."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if hasattr(value, "tolist"):
        return _plain(value.tolist())
    return value


def read_parquet(f: ResolvedFile) -> Iterator[RawItem]:
    import pyarrow.parquet as pq

    with _open(f) as fh:
        pf = pq.ParquetFile(fh)
        row = 0
        for batch in pf.iter_batches(batch_size=4096):
            for obj in batch.to_pylist():
                yield RawItem("row", row, obj={k: _plain(v) for k, v in obj.items() if v is not None})
                row += 1


def read_hf(f: ResolvedFile) -> Iterator[RawItem]:
    try:
        import datasets
    except ImportError as exc:  # pragma: no cover - depends on the installed extras
        raise ImportError("Hugging Face sources need the 'hf' extra: pip install 'tuneline[hf]'") from exc

    if f.uri.startswith("hf:"):
        ds = datasets.load_dataset(f.uri[3:], split=f.hf_split)
    else:
        ds = datasets.load_from_disk(f.uri)
        if isinstance(ds, datasets.DatasetDict):
            if f.hf_split not in ds:
                raise ValueError(f"{f.uri} has no split {f.hf_split!r} (has: {', '.join(ds)})")
            ds = ds[f.hf_split]
    for i, obj in enumerate(ds):
        yield RawItem("row", i, obj={k: _plain(v) for k, v in obj.items() if v is not None})


READERS = {"jsonl": read_jsonl, "json": read_json_array, "csv": read_csv, "parquet": read_parquet, "hf": read_hf}


def read_items(f: ResolvedFile, max_bytes: int = 32 * 1024 * 1024) -> Iterator[RawItem]:
    """The records of one file; a JSONL line over ``max_bytes`` is an error item (the other readers hold a
    record's whole file, row group or cell, which their own limits bound)."""
    if f.kind == "jsonl":
        return read_jsonl(f, max_bytes)
    return READERS[f.kind](f)
