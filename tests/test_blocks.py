"""Scratch-file helpers of the engine: line offsets, and appending a file or byte spans of it to an output."""

from __future__ import annotations

import random
import re
from pathlib import Path

import fsspec
import numpy as np
import pytest

from tuneline.engine import blocks
from tuneline.engine.blocks import append_file, line_offsets


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"a",
        b"a\n",
        b"\n\n",
        b"one\ntwo\n\nthree",
        "é\r\n€\n".encode(),
        b"a\rb\n\x0bc\x1c\r",
        b"\r",
        b"a\x0bb\x1cc\n\x85d",
    ],
)
def test_split_lines_cuts_at_newlines_only(data: bytes):
    """A line ends at "\n" and nowhere else (a lone "\r", "\x0b" or "\x1c" is inside a line), with its newline."""
    assert blocks.split_lines(data) == re.findall(rb"[^\n]*\n|[^\n]+$", data)


@pytest.mark.parametrize("data", [b"", b"a", b"a\n", b"\n\n", b"one\ntwo\n\nthree", "é\r\n€\n".encode()])
def test_line_offsets_cut_where_split_lines_does(data: bytes):
    offsets = line_offsets(data)
    assert [data[a:b] for a, b in zip(offsets[:-1], offsets[1:], strict=True)] == blocks.split_lines(data)


@pytest.mark.parametrize("read", [3, 16, 1 << 22])  # chunks shorter than a line, a few lines, the whole file
def test_line_ranges_cut_every_n_lines_wherever_the_read_chunks_end(monkeypatch, read: int):
    """Each range is ``per`` whole lines (the last one the rest, with or without a final newline), whatever
    the size of the chunks the file is read in."""
    import io

    monkeypatch.setattr(blocks, "_READ", read)
    rng = random.Random(read)
    for n in (0, 1, 2, 5, 37, 200):
        lines = [b"x" * rng.randrange(0, 9) + b"\n" for _ in range(n)]
        for tail in (b"", b"no newline"):
            data = b"".join(lines) + tail
            for per in (1, 2, 3, 7, 64):
                ranges = blocks.line_ranges(io.BytesIO(data), per)
                assert b"".join(data[a:b] for a, b, _, _ in ranges) == data
                expected = blocks.split_lines(data)
                got = [blocks.split_lines(data[a:b]) for a, b, _, _ in ranges]
                assert [len(g) for g in got] == [k for _, _, _, k in ranges]
                assert [x for g in got for x in g] == expected
                assert all(k == per for _, _, _, k in ranges[:-1]) and all(0 < k <= per for *_, k in ranges)
                assert [f for _, _, f, _ in ranges] == [1 + i * per for i in range(len(ranges))]


def _spans(rng: random.Random, size: int) -> np.ndarray:
    cuts = sorted(rng.sample(range(size + 1), 10))
    return np.array([cuts[i : i + 2] for i in range(0, len(cuts), 2)], dtype=np.int64)


@pytest.mark.parametrize("kernel", [True, False], ids=["copy_file_range", "read-and-write"])
def test_append_file_copies_exactly_the_spans_after_what_was_written(tmp_path: Path, monkeypatch, kernel: bool):
    """The kernel's copy and the fallback (another file system, or no copy_file_range) write the same bytes,
    after what the output held, and buffered writes after it land after it."""
    if not kernel:
        monkeypatch.delattr(blocks.os, "copy_file_range", raising=False)
    rng = random.Random(7)
    src = tmp_path / "part.jsonl"
    data = rng.randbytes(3 * (1 << 22) + 17)  # over the read chunk: the fallback loops
    src.write_bytes(data)
    spans = _spans(rng, len(data))
    with open(tmp_path / "out", "wb") as out:
        out.write(b"head")
        append_file(out, str(src), spans)
        append_file(out, str(src))
        out.write(b"tail")
    expected = b"head" + b"".join(data[a:b] for a, b in spans.tolist()) + data + b"tail"
    assert (tmp_path / "out").read_bytes() == expected


def test_append_file_reads_spans_from_an_object_store(tmp_path: Path):
    fs = fsspec.filesystem("memory")
    fs.pipe("/scratch/part", b"0123456789" * 5)
    with open(tmp_path / "out", "wb") as out:
        append_file(out, "memory://scratch/part", np.array([[0, 3], [10, 12], [49, 50]]))
    assert (tmp_path / "out").read_bytes() == b"012019"


def test_discard_removes_local_scratch_files_and_leaves_the_rest(tmp_path):
    """Dropped local files are gone when the block ends; a missing one or an object store URI raises nothing
    (remove_tree takes what is left), and a file not dropped stays."""
    from tuneline.engine.blocks import Discard

    files = [tmp_path / f"b{i}.jsonl" for i in range(20)]
    for f in files:
        f.write_bytes(b"x" * 1000)
    with Discard() as done:
        for f in files[:-1]:
            done.drop(str(f))
        done.drop(str(tmp_path / "never-written"))
        done.drop("s3://bucket/scratch/b0.jsonl")
    assert [f.exists() for f in files] == [False] * 19 + [True]
