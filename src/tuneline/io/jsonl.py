"""Fast JSONL streams of canonical records (orjson; one record per line, UTF-8)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

import orjson

from tuneline.records import MESSAGE_FIELDS, Kind

__all__ = [
    "BadRecord",
    "JsonlWriter",
    "bad_input",
    "count_lines",
    "dumps",
    "line_id",
    "line_chunks",
    "parse_canonical",
    "read_jsonl",
]

_DUMP_OPTS = orjson.OPT_APPEND_NEWLINE


def dumps(record: Any) -> bytes:
    return orjson.dumps(record, option=_DUMP_OPTS)


class JsonlWriter:
    """Buffered JSONL writer that counts what it wrote."""

    def __init__(self, path: str | Path, buffer_records: int = 4096) -> None:
        self.path = Path(path)
        self.count = 0
        self._fh: IO[bytes] = open(self.path, "wb")  # noqa: SIM115 - closed in close()
        self._buf: list[bytes] = []
        self._limit = buffer_records

    def write(self, record: Any) -> None:
        self._buf.append(dumps(record))
        self.count += 1
        if len(self._buf) >= self._limit:
            self.flush()

    def write_raw(self, line: bytes) -> None:
        """Write one already-serialized JSON line (must end with a newline)."""
        self._buf.append(line)
        self.count += 1
        if len(self._buf) >= self._limit:
            self.flush()

    def write_many(self, records: Iterable[Any]) -> None:
        for record in records:
            self.write(record)

    def flush(self) -> None:
        if self._buf:
            self._fh.write(b"".join(self._buf))
            self._buf.clear()

    def close(self) -> None:
        self.flush()
        self._fh.close()

    def __enter__(self) -> JsonlWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_jsonl(path: str | Path) -> Iterator[dict[str, Any]]:
    """Read a JSONL file written by tuneline (trusted: stage outputs, not raw input)."""
    with open(path, "rb") as fh:
        for line in fh:
            if line.strip():
                yield orjson.loads(line)


def count_lines(path: str | Path) -> int:
    with open(path, "rb") as fh:
        return sum(buf.count(b"\n") for buf in iter(lambda: fh.read(1 << 20), b""))


def line_chunks(path: str | Path, size: int) -> Iterator[list[bytes]]:
    """Non-blank lines of a JSONL file in lists of ``size`` (units of work for worker processes)."""
    with open(path, "rb") as fh:
        buf: list[bytes] = []
        for line in fh:
            if line.strip():
                buf.append(line)
                if len(buf) == size:
                    yield buf
                    buf = []
        if buf:
            yield buf


class BadRecord(ValueError):
    """A line of a stage's own output that is not a canonical record (the file was edited or truncated).

    ``index`` is the record's 0-based position in the list it came from (a chunk, in a worker);
    the caller, who knows where that list starts, names the file and line.
    """

    def __init__(self, index: int, detail: str) -> None:
        super().__init__(index, detail)
        self.index, self.detail = index, detail


def _messages_problem(value: Any, field: str) -> str:
    if not isinstance(value, list):
        return f"{field} is not a list"
    for j, m in enumerate(value):
        if not isinstance(m, dict) or not isinstance(m.get("role"), str) or not isinstance(m.get("content"), str):
            return f"{field}[{j}] is not a message with string role and content"
    return ""


def parse_canonical(line: bytes, index: int, kind: Kind) -> dict[str, Any]:
    """One canonical record of ``kind`` (a line of ingest's ``<kind>.jsonl``), or :class:`BadRecord` saying what is
    wrong. The result is a :class:`tuneline.records.Record` of that kind."""
    rec = _record(line, index)
    for field in MESSAGE_FIELDS[kind]:
        problem = _messages_problem(rec.get(field), field)
        if problem:
            raise BadRecord(index, problem)
    if kind == "kto" and not isinstance(rec.get("label"), bool):
        raise BadRecord(index, "a kto record's label is not true or false")
    return rec


def _record(line: bytes, index: int) -> dict[str, Any]:
    try:
        rec = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        raise BadRecord(index, f"invalid JSON ({exc})") from None
    if not isinstance(rec, dict) or not isinstance(rec.get("id"), str):
        raise BadRecord(index, "not a record with a string id")
    return rec


def line_id(line: bytes) -> str:
    """The id of a stage output line: sliced out (stage outputs start with ``{"id":"...``, orjson keeps key order),
    parsed only when that is not so or the id has escapes."""
    prefix = b'{"id":"'
    if line.startswith(prefix):
        end = line.find(b'"', len(prefix))
        if end > 0 and b"\\" not in line[len(prefix) : end]:
            return line[len(prefix) : end].decode()
    return _record(line, 0)["id"]


def bad_input(path: str | Path, line: int, detail: str, stage: str) -> str:
    """The one-line error for a malformed input line of ``stage``."""
    return (
        f"{path}:{line}: {detail}; {Path(path).name} is not as `tuneline {stage}` wrote it "
        f"(edited or truncated?): re-run `tuneline {stage}`"
    )
