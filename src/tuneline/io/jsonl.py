"""Fast JSONL streams of canonical records (orjson; one record per line, UTF-8)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

import orjson

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
