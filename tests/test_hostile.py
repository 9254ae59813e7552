"""Hostile input through the CLI: a one-line error naming the file, line or key; bad records quarantined; no traceback.

Each case runs ``tuneline`` as a user does (a subprocess) and checks the exit code, the message, that no
Python traceback or bare "Aborted." reaches the user, and, for ingest, what the quarantine says.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from tests.conftest import chat, read_jsonl, write_jsonl
from tests.test_cli import tuneline


def _clean_exit(r, code: int, *needles: str) -> None:
    text = r.stdout + r.stderr
    assert r.returncode == code, text
    assert "Traceback" not in text and "Aborted" not in text, text
    for needle in needles:
        assert needle in text, text


def _quarantine(out: Path) -> list[dict]:
    for candidate in (out, out.with_name(out.name + ".failed")):  # a run with no valid record is set aside
        if (candidate / "quarantine.jsonl").is_file():
            return read_jsonl(candidate / "quarantine.jsonl")
    raise AssertionError(f"no quarantine.jsonl in {out} or {out}.failed")


def test_json_nested_200k_deep_is_quarantined(tmp_path: Path):
    (tmp_path / "raw").mkdir()
    (tmp_path / "raw/deep.json").write_text("[" * 200_000 + "]" * 200_000)
    r = tuneline("ingest", "raw", "--out", "i", cwd=tmp_path)
    _clean_exit(r, 1, "no valid records")
    [q] = _quarantine(tmp_path / "i")
    assert q["file"].endswith("deep.json") and q["line"] == 1 and "nested too deeply" in q["detail"]


def test_an_integer_beyond_64_bits_is_quarantined_not_rounded(tmp_path: Path):
    big = 1234567890123456789012345678901234567890
    good = chat("hi", "yo")
    line = json.dumps({**chat("a", "b"), "meta": {"n": big}})
    (tmp_path / "raw").mkdir()
    (tmp_path / "raw/a.jsonl").write_text(json.dumps(good) + "\n" + line + "\n" + json.dumps(good | {"x": 7}) + "\n")
    r = tuneline("ingest", "raw", "--out", "i", "--set", "data.max_bad_fraction=0.5", cwd=tmp_path)
    _clean_exit(r, 0)
    [q] = _quarantine(tmp_path / "i")
    assert q["line"] == 2 and q["reason"] == "integer_out_of_range" and "64 bits" in q["detail"]
    assert len(read_jsonl(tmp_path / "i/sft.jsonl")) == 2


def test_a_record_meta_cannot_overwrite_tunelines_own_keys(tmp_path: Path):
    write_jsonl(tmp_path / "raw/a.jsonl", [{**chat("a", "b"), "meta": {"format": [1], "line": "x", "topic": "t"}}])
    r = tuneline("ingest", "raw", "--out", "i", cwd=tmp_path)
    _clean_exit(r, 0)
    [rec] = read_jsonl(tmp_path / "i/sft.jsonl")
    assert rec["meta"]["format"] == "messages" and rec["meta"]["line"] == 1
    assert rec["meta"]["source_format"] == [1] and rec["meta"]["source_line"] == "x" and rec["meta"]["topic"] == "t"


def test_a_csv_cell_over_128_kib_is_read(tmp_path: Path):
    (tmp_path / "raw").mkdir()
    long = "word " * 30_000  # 150 KB in one cell: the csv module's default limit is 128 KiB
    (tmp_path / "raw/a.csv").write_text(f'instruction,output\n"{long}",ok\nhi,yo\n')
    r = tuneline("ingest", "raw", "--out", "i", cwd=tmp_path)
    _clean_exit(r, 0, "2 sft")
    assert read_jsonl(tmp_path / "i/sft.jsonl")[0]["messages"][0]["content"] == long


def test_a_truncated_gzip_keeps_what_was_read_and_says_where_it_stopped(tmp_path: Path):
    lines = b"".join(json.dumps(chat(f"q {i}", f"a {i}")).encode() + b"\n" for i in range(3000))
    data = gzip.compress(lines)
    (tmp_path / "raw").mkdir()
    (tmp_path / "raw/a.jsonl.gz").write_bytes(data[: len(data) // 2])
    r = tuneline("ingest", "raw", "--out", "i", cwd=tmp_path)
    _clean_exit(r, 0)
    kept = read_jsonl(tmp_path / "i/sft.jsonl")
    [q] = _quarantine(tmp_path / "i")
    assert (
        q["reason"] == "unreadable_file" and "EOFError" in q["detail"] and f"after {len(kept)} records" in q["detail"]
    )
    assert 0 < len(kept) < 3000 and kept[0]["messages"][0]["content"] == "q 0"


@pytest.mark.parametrize(
    ("out", "needle"),
    [("afile/sub", "which is a file, not a directory"), ("afile", "is a file, not a directory"), (".", "current")],
)
def test_an_output_that_cannot_be_a_directory_is_refused(tmp_path: Path, out: str, needle: str):
    write_jsonl(tmp_path / "raw/a.jsonl", [chat("a", "b")])
    (tmp_path / "afile").write_text("keep me")
    _clean_exit(tuneline("ingest", "raw", "--out", out, cwd=tmp_path), 2, needle)
    assert (tmp_path / "afile").read_text() == "keep me"


def test_config_that_is_a_directory_or_binary_is_refused(tmp_path: Path):
    (tmp_path / "cfg").mkdir()
    (tmp_path / "bin.yaml").write_bytes(bytes(range(256)) * 4)
    _clean_exit(tuneline("config", "show", "--config", "cfg", cwd=tmp_path), 2, "cfg is a directory")
    _clean_exit(tuneline("config", "show", "--config", "bin.yaml", cwd=tmp_path), 2, "not a UTF-8 text file")


@pytest.mark.parametrize("stage", ["clean", "split"])
def test_clean_and_split_name_the_malformed_line_of_their_input(tmp_path: Path, stage: str):
    good = {"id": "a", "messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}]}
    (tmp_path / "in").mkdir()
    (tmp_path / "in/sft.jsonl").write_text(json.dumps(good) + '\n{"id": "b", "messages": [{"role": "user"}]}\n')
    r = tuneline(stage, "in", "--out", "o", cwd=tmp_path)
    _clean_exit(r, 1, "in/sft.jsonl:2:", "messages[0] is not a message")
    (tmp_path / "in/sft.jsonl").write_text("not json\n")
    _clean_exit(tuneline(stage, "in", "--out", "o", cwd=tmp_path), 1, "in/sft.jsonl:1: invalid JSON")
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--tokens", "1e400"], "--tokens"),
        (["--tokens", "nan"], "--tokens"),
        (["--tokens", "-5"], "--tokens"),
        (["--batch-size", "-1"], "--batch-size"),
        (["--seq-len", "0"], "--seq-len"),
    ],
)
def test_plan_refuses_impossible_numbers(tmp_path: Path, args: list[str], needle: str):
    _clean_exit(tuneline("plan", "--model", "llama-2-7b", *args, cwd=tmp_path), 2, needle)


@pytest.mark.parametrize("value", [".inf", "-.inf", ".nan"])
def test_non_finite_numbers_are_refused_naming_the_key(tmp_path: Path, value: str):
    r = tuneline("config", "show", "--set", f"train.epochs={value}", cwd=tmp_path)
    _clean_exit(r, 2, "train.epochs", "finite")
    assert "Infinity" not in r.stdout and "NaN" not in r.stdout


def test_a_clean_that_keeps_nothing_fails_and_keeps_its_output_aside(tmp_path: Path):
    write_jsonl(tmp_path / "raw/a.jsonl", [chat("spam " * 40, "spam spam spam spam spam spam") for _ in range(3)])
    assert tuneline("ingest", "raw", "--out", "i", cwd=tmp_path).returncode == 0
    r = tuneline("clean", "i", "--out", "c", cwd=tmp_path)
    _clean_exit(r, 1, "clean kept 0 of 3 records", "c.failed")
    assert not (tmp_path / "c").exists() and len(read_jsonl(tmp_path / "c.failed/removed.jsonl")) == 3


def test_depth_past_what_json_writes_or_python_recurses_is_refused_in_one_line(tmp_path: Path):
    deep: dict = {"x": 1}
    for _ in range(300):  # orjson reads 1,024 levels but writes 255
        deep = {"a": deep}
    write_jsonl(tmp_path / "raw/a.jsonl", [{**chat("q", "a"), "extra": deep}, chat("q2", "a2")])
    with open(tmp_path / "raw/b.csv", "w", newline="") as fh:
        fh.write("messages\n" + "[" * 5000 + "]" * 5000 + "\n")
    r = tuneline("ingest", "raw", "--out", "i", "--set", "data.max_bad_fraction=0.9", cwd=tmp_path)
    _clean_exit(r, 0)
    reasons = {(Path(q["file"]).name, q["reason"]) for q in _quarantine(tmp_path / "i")}
    assert reasons == {("a.jsonl", "too_deep"), ("b.csv", "invalid_json")}

    (tmp_path / "deep.yaml").write_text("a:\n" + "".join("  " * i + "b:\n" for i in range(1, 2000)))
    r = tuneline("ingest", "raw", "--out", "j", "--config", "deep.yaml", cwd=tmp_path)
    _clean_exit(r, 2, "deep.yaml is nested too deeply")
    r = tuneline("ingest", "raw", "--out", "j", "--set", "data.x=" + "[" * 3000 + "]" * 3000, cwd=tmp_path)
    _clean_exit(r, 2, "override data.x is nested too deeply")


def test_lone_surrogates_utf16_and_undecodable_file_names_are_named_not_tracebacks(tmp_path: Path):
    import os

    good = json.dumps(chat("q", "a"))
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "a.jsonl").write_text(good[:-1] + ', "k\\ud800": 1}\n' + good + "\n")  # a lone surrogate in a key
    (raw / "b.json").write_text("[" + good[:-1] + ', "\\udc80x": 2}]')
    (raw / "c.jsonl").write_bytes((good + "\n").encode("utf-16"))
    (raw / "d.jsonl").write_text(good + "\n")
    open(os.fsencode(raw) + b"/\xff\xfe.jsonl", "w").write(good + "\n")  # noqa: SIM115 - closed at exit
    r = tuneline("ingest", "raw", "--out", "i", "--set", "data.max_bad_fraction=0.9", cwd=tmp_path)
    _clean_exit(r, 0)
    reasons = {(Path(q["file"]).name, q["reason"]) for q in _quarantine(tmp_path / "i")}
    assert reasons == {("a.jsonl", "invalid_json"), ("b.json", "invalid_utf8"), ("c.jsonl", "unreadable_file")}
    [utf16] = [q for q in _quarantine(tmp_path / "i") if q["file"].endswith("c.jsonl")]
    assert "UTF-16" in utf16["detail"]
    report = json.loads((tmp_path / "i/report.json").read_text())
    assert any("\\xff\\xfe.jsonl (its name is not UTF-8" in s for s in report["skipped_files"])
    assert len(read_jsonl(tmp_path / "i/sft.jsonl")) == 2


def test_a_line_of_hundreds_of_megabytes_is_quarantined_in_bounded_memory(tmp_path: Path):
    """300 MB on one line (1/1000th of that gzipped): quarantined with its line and size, never read whole."""
    import contextlib
    import os
    import subprocess
    import sys
    import time

    import psutil

    (tmp_path / "raw").mkdir()
    good = json.dumps(chat("q", "a"))
    with gzip.open(tmp_path / "raw/a.jsonl.gz", "wt") as fh:
        fh.write(good + "\n")
        fh.write('{"messages": [{"role": "user", "content": "' + "x" * (300 << 20) + '"}]}\n')
        fh.write(good + "\n")
    cmd = [sys.executable, "-m", "tuneline", "ingest", "raw", "--out", "i", "--set", "data.max_bad_fraction=0.5"]
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=dict(os.environ), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    watched, peak = psutil.Process(proc.pid), 0
    while proc.poll() is None:
        with contextlib.suppress(psutil.NoSuchProcess):
            peak = max(peak, sum(p.memory_info().rss for p in [watched, *watched.children(recursive=True)]))
        time.sleep(0.02)
    out = proc.stdout.read().decode()
    assert proc.returncode == 0 and "Traceback" not in out, out
    [q] = _quarantine(tmp_path / "i")
    assert (q["line"], q["reason"]) == (2, "record_too_large") and "314,572,8" in q["detail"]
    assert len(read_jsonl(tmp_path / "i/sft.jsonl")) == 2
    assert peak < 300 << 20, f"peak RSS {peak >> 20} MiB: the line was held in memory"


def test_credentials_in_a_quarantined_record_are_redacted(tmp_path: Path):
    canary = "ghp_" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8"  # GitHub token shape, a canary
    aws = "AKIA" + "Z7QW3X9PLMN2RT5K"
    (tmp_path / "raw").mkdir()
    (tmp_path / "raw/a.jsonl").write_text(
        json.dumps(chat("q", "a")) + "\n" + '{"token": "' + canary + '", "key": "' + aws + '", "broken": \n'
    )
    r = tuneline("ingest", "raw", "--out", "i", "--set", "data.max_bad_fraction=0.9", cwd=tmp_path)
    _clean_exit(r, 0)
    [q] = _quarantine(tmp_path / "i")
    assert q["reason"] == "invalid_json" and '"token"' in q["raw"]
    written = (tmp_path / "i/quarantine.jsonl").read_text() + r.stdout + r.stderr
    assert canary not in written and aws not in written


def test_an_object_store_that_refuses_connections_is_one_line_in_bounded_time(tmp_path: Path, monkeypatch):
    import time

    from tests.conftest import free_port

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "canary-id")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "canary-secret")
    endpoint = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    started = time.monotonic()
    r = tuneline(
        "ingest", "s3://bucket/x/*.jsonl", "--out", "i",
        "--set", f"data.source_options={{s3: {{endpoint_url: '{endpoint}'}}}}", cwd=tmp_path,
    )  # fmt: skip
    _clean_exit(r, 1, "cannot list source 's3://bucket/x/*.jsonl'", "EndpointConnectionError")
    assert time.monotonic() - started < 60
    assert "canary-secret" not in r.stdout + r.stderr
