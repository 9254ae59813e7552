"""The ingest stage on real files: every file kind, quarantine with file + location + reason."""

from __future__ import annotations

import csv
import gzip
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.conftest import REPO, chat, read_jsonl, write_jsonl
from tuneline.config.schema import Source
from tuneline.stages.ingest import IngestError, run_ingest


def test_jsonl_defects_are_quarantined_and_neighbours_survive(tmp_path: Path, make_config):
    good = [json.dumps(chat(f"q{i}", f"a{i}")) for i in range(4)]
    raw = (
        b"\xef\xbb\xbf"
        + good[0].encode()
        + b"\r\n"  # line 1: BOM + CRLF
        + b"\n"  # line 2: blank
        + b'{"messages": [\n'  # line 3: invalid JSON
        + good[1].encode()
        + b"\n"  # line 4
        + b'{"messages": [{"role": "user", "content": "caf\xe9"}]}\n'  # line 5: invalid UTF-8
        + b"42\n"  # line 6: not an object
        + good[2].encode()
        + b"\r\n"
        + good[3].encode()
    )  # lines 7, 8 (no final newline)
    src = tmp_path / "in.jsonl"
    src.write_bytes(raw)
    res = run_ingest(make_config("data.max_bad_fraction=0.5"), [Source(uri=str(src))], tmp_path / "out")
    sft = read_jsonl(tmp_path / "out/sft.jsonl")
    assert [r["messages"][0]["content"] for r in sft] == ["q0", "q1", "q2", "q3"]
    assert [r["meta"]["line"] for r in sft] == [1, 4, 7, 8]
    q = read_jsonl(tmp_path / "out/quarantine.jsonl")
    assert [(e["file"], e["line"], e["reason"]) for e in q] == [
        (str(src), 3, "invalid_json"),
        (str(src), 5, "invalid_utf8"),
        (str(src), 6, "not_an_object"),
    ]
    assert q[1]["detail"] == "invalid UTF-8 at byte 46"  # the \\xe9 after "caf"
    assert res.by_reason == {"invalid_json": 1, "invalid_utf8": 1, "not_an_object": 1}
    assert res.by_source[str(src)] == {"total": 7, "sft": 4, "quarantined": 3}


def test_raw_preview_is_truncated(tmp_path: Path, make_config):
    src = write_jsonl(tmp_path / "x.jsonl", ['{"broken": "' + "x" * 1000, chat("q", "a")])
    run_ingest(
        make_config("data.raw_preview_chars=20", "data.max_bad_fraction=1"), [Source(uri=str(src))], tmp_path / "o"
    )
    assert len(read_jsonl(tmp_path / "o/quarantine.jsonl")[0]["raw"]) == 20


def test_every_file_kind_and_gzip(tmp_path: Path, make_config):
    d = tmp_path / "raw"
    write_jsonl(d / "a.jsonl.gz", [chat("gz", "ok")], gz=True)
    (d / "b.json").write_text(
        json.dumps([{"conversations": [{"from": "human", "value": "arr"}, {"from": "gpt", "value": "ok"}]}, "oops"])
    )
    with open(d / "c.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["instruction", "input", "output", "category"])
        w.writerow(["multi\nline", "", "ok", "x"])  # physical lines 2-3
        w.writerow(["csv", "ctx", "", "y"])  # line 4: empty output
        w.writerow(["", "", "", ""])  # line 5: blank row, skipped
        w.writerow(["csv2", "", "ok", "z"])  # line 6
    with open(d / "d.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["messages"])
        w.writerow([json.dumps(chat("json in csv", "ok")["messages"])])
    pq.write_table(
        pa.Table.from_pylist([{"prompt": "p", "chosen": "good", "rejected": "bad", "n": 1}]), d / "e.parquet"
    )
    (d / "notes.txt").write_text("ignored")
    res = run_ingest(make_config("data.max_bad_fraction=0.5"), [Source(uri=str(d))], tmp_path / "out")
    sft = read_jsonl(tmp_path / "out/sft.jsonl")
    contents = {r["messages"][0]["content"]: r for r in sft}
    assert set(contents) == {"gz", "arr", "multi\nline", "csv2", "json in csv"}
    assert contents["csv2"]["meta"]["line"] == 6 and contents["csv2"]["meta"]["category"] == "z"
    assert contents["arr"]["meta"]["row"] == 0
    pref = read_jsonl(tmp_path / "out/preference.jsonl")
    assert pref[0]["chosen"][0]["content"] == "good" and pref[0]["meta"]["n"] == 1
    q = {
        (Path(e["file"]).name, e.get("line", e.get("row")), e["reason"])
        for e in read_jsonl(tmp_path / "out/quarantine.jsonl")
    }
    assert q == {("b.json", 1, "not_an_object"), ("c.csv", 4, "empty_content")}
    assert res.skipped_files == [f"{d / 'notes.txt'} (unsupported file kind)"]
    assert res.by_format == {"alpaca": 2, "messages": 2, "preference": 1, "sharegpt": 1}


def test_zstd_and_a_folder_with_someone_elses_state_json(tmp_path: Path, make_config):
    import zstandard

    d = tmp_path / "raw"
    d.mkdir()
    line = (json.dumps(chat("zst", "ok")) + "\n").encode()
    (d / "a.jsonl.zst").write_bytes(zstandard.ZstdCompressor().compress(line))
    write_jsonl(d / "b.jsonl", [chat("beside state.json", "ok")])
    (d / "state.json").write_text('{"step": 3}')  # a training tool's state, not a saved Hugging Face dataset
    run_ingest(make_config("data.max_bad_fraction=0.5"), [Source(uri=str(d))], tmp_path / "out")
    assert {r["messages"][0]["content"] for r in read_jsonl(tmp_path / "out/sft.jsonl")} == {"zst", "beside state.json"}
    # state.json is read as the JSON file it is (and quarantined: it holds no conversation), not as a dataset marker
    assert [(Path(q["file"]).name, q["reason"]) for q in read_jsonl(tmp_path / "out/quarantine.jsonl")] == [
        ("state.json", "unknown_format")
    ]


def test_globs_and_explicit_format(tmp_path: Path, make_config):
    write_jsonl(tmp_path / "p1.jsonl", [{"instruction": "i", "output": "o", "messages": "not a list"}])
    write_jsonl(tmp_path / "p2.jsonl", [{"instruction": "i2", "output": "o2"}])
    run_ingest(make_config(), [Source(uri=str(tmp_path / "p*.jsonl"), format="alpaca")], tmp_path / "o")
    assert len(read_jsonl(tmp_path / "o/sft.jsonl")) == 2


def test_hugging_face_dataset_from_a_local_dir(tmp_path: Path, make_config):
    datasets = pytest.importorskip("datasets")
    ds = datasets.Dataset.from_list([chat("hf q", "hf a"), {"messages": [{"role": "user", "content": "x"}]}])
    datasets.DatasetDict({"train": ds}).save_to_disk(str(tmp_path / "hfds"))
    res = run_ingest(make_config("data.max_bad_fraction=0.5"), [Source(uri=str(tmp_path / "hfds"))], tmp_path / "o")
    assert res.sft == 1 and res.quarantined == 1
    assert read_jsonl(tmp_path / "o/quarantine.jsonl")[0]["row"] == 1


def test_too_many_bad_records_fails_keeps_the_last_good_output_and_the_failed_one_beside(tmp_path: Path, make_config):
    good = write_jsonl(tmp_path / "good.jsonl", [chat("q", "a")])
    run_ingest(make_config(), [Source(uri=str(good))], tmp_path / "o")
    before = (tmp_path / "o/sft.jsonl").read_bytes()
    src = write_jsonl(tmp_path / "x.jsonl", [chat("q", "a"), "{bad", "{bad"])
    with pytest.raises(IngestError, match=r"2 of 3 records \(66.7%\).*max_bad_fraction=0.2.*o is unchanged"):
        run_ingest(make_config(), [Source(uri=str(src))], tmp_path / "o")
    assert (tmp_path / "o/sft.jsonl").read_bytes() == before
    assert len(read_jsonl(tmp_path / "o.failed/quarantine.jsonl")) == 2
    # the next failure replaces the earlier failed output (ours), a success leaves it alone
    with pytest.raises(IngestError):
        run_ingest(make_config(), [Source(uri=str(src))], tmp_path / "o")
    assert len(read_jsonl(tmp_path / "o.failed/quarantine.jsonl")) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["good.jsonl", "o", "o.failed", "x.jsonl"]


def test_missing_source_and_unknown_kind_fail_clearly(tmp_path: Path, make_config):
    with pytest.raises(IngestError, match="does not exist"):
        run_ingest(make_config(), [Source(uri=str(tmp_path / "nope.jsonl"))], tmp_path / "o")
    (tmp_path / "data.txt").write_text("x")
    with pytest.raises(IngestError, match="set kind"):
        run_ingest(make_config(), [Source(uri=str(tmp_path / "data.txt"))], tmp_path / "o")


def test_failed_run_leaves_previous_output_intact(tmp_path: Path, make_config):
    src = write_jsonl(tmp_path / "x.jsonl", [chat("q", "a")])
    run_ingest(make_config(), [Source(uri=str(src))], tmp_path / "o")
    before = (tmp_path / "o/sft.jsonl").read_bytes()
    with pytest.raises(IngestError):
        run_ingest(make_config(), [Source(uri=str(tmp_path / "missing"))], tmp_path / "o")
    assert (tmp_path / "o/sft.jsonl").read_bytes() == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".o.tmp")]


def test_bundled_sample_is_ingested_from_params_defaults(tmp_path: Path, make_config, monkeypatch):
    monkeypatch.chdir(REPO)
    res = run_ingest(make_config(), None, tmp_path / "o")
    assert res.by_format == {"alpaca": 120, "messages": 250, "preference": 120, "sharegpt": 120}
    assert res.quarantined == 9 and len(set(res.by_reason)) == 9
    assert all(not Path(s).is_absolute() for s in res.by_source)  # ids independent of the checkout
    ids = [r["id"] for r in read_jsonl(tmp_path / "o/sft.jsonl")]
    assert len(ids) == len(set(ids))
    run_ingest(make_config(), None, tmp_path / "o2")
    assert (tmp_path / "o/sft.jsonl").read_bytes() == (tmp_path / "o2/sft.jsonl").read_bytes()
    gzip.decompress((REPO / "data/raw/support_messy.jsonl.gz").read_bytes())  # valid gzip on purpose


def test_nothing_outside_the_source_and_no_special_file_is_read(tmp_path: Path, make_config):
    import os

    outside = write_jsonl(tmp_path / "outside.jsonl", [chat("SECRET-OUTSIDE", "leak")])
    d = tmp_path / "raw"
    write_jsonl(d / "good.jsonl", [chat("inside", "ok")])
    (d / "link.jsonl").symlink_to(outside)
    (d / "passwd.jsonl").symlink_to("/etc/passwd")
    os.mkfifo(d / "pipe.jsonl")  # opening it for reading would block forever
    res = run_ingest(make_config(), [Source(uri=str(d))], tmp_path / "out")
    assert [r["messages"][0]["content"] for r in read_jsonl(tmp_path / "out/sft.jsonl")] == ["inside"]
    assert read_jsonl(tmp_path / "out/quarantine.jsonl") == []
    skipped = "\n".join(res.skipped_files)
    assert "link.jsonl (resolves outside the source" in skipped and "passwd.jsonl (resolves outside" in skipped
    assert "pipe.jsonl (not a regular file" in skipped
    with pytest.raises(IngestError, match="not a regular file"):
        run_ingest(make_config(), [Source(uri=str(d / "pipe.jsonl"))], tmp_path / "out2")


def test_many_small_files_are_batched_in_order_and_logged_as_a_summary(
    tmp_path: Path, make_config, caplog, monkeypatch
):
    """600 one-record files (one with a bad line) in nested directories, a symlinked directory inside the source
    (entered once, though it loops back), one leading outside (refused): same records in the same order as read one
    file at a time, a handful of log lines, and every file's counts in the report."""
    import logging

    d = tmp_path / "raw"
    for i in range(600):
        write_jsonl(d / f"part{i // 100}" / f"f{i:04d}.jsonl", [chat(f"q{i}", f"a{i}")])
    (d / "part5" / "f0599.jsonl").write_text('{"messages": [\n')
    outside = tmp_path / "elsewhere"
    write_jsonl(outside / "x.jsonl", [chat("SECRET-OUTSIDE", "leak")])
    (d / "away").symlink_to(outside)
    (d / "part0" / "loop").symlink_to(d)  # inside the source: entered once, not forever
    monkeypatch.setattr("tuneline.stages.ingest.run.MAX_BATCH_FILES", 64)  # several batches, from two workers
    config = make_config()
    with caplog.at_level(logging.INFO, logger="tuneline"):
        res = run_ingest(config, [Source(uri=str(d))], tmp_path / "out")
    got = [r["messages"][0]["content"] for r in read_jsonl(tmp_path / "out/sft.jsonl")]
    assert got == [f"q{i}" for i in range(599)] and "SECRET-OUTSIDE" not in got
    assert res.files == 600 and len(res.by_source) == 600 and res.quarantined == 1
    assert "away (a directory that resolves outside the source: refused)" in "\n".join(res.skipped_files)
    ingest_lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("ingest")]
    assert len(ingest_lines) <= 4, ingest_lines
    assert any("600 files" in m and "1 with quarantined records" in m for m in ingest_lines)
    assert any("f0599.jsonl: 0 sft" in m for m in ingest_lines), "the file with a bad record is named"
    # the same records, ids and quarantine as ingesting each file on its own
    one_by_one = [Source(uri=str(p)) for p in sorted(d.glob("part*/*.jsonl"))]
    run_ingest(config, one_by_one, tmp_path / "each")
    for name in ("sft.jsonl", "quarantine.jsonl"):
        assert (tmp_path / "out" / name).read_bytes() == (tmp_path / "each" / name).read_bytes(), name


def test_a_llamafactory_index_cannot_point_outside_its_directory(tmp_path: Path, make_config):
    outside = tmp_path / "secret.json"
    outside.write_text(json.dumps([{"instruction": "SECRET-OUTSIDE", "output": "leak"}]))
    d = tmp_path / "lf"
    d.mkdir()
    (d / "ok.json").write_text(json.dumps([{"instruction": "inside", "output": "ok"}]))
    info = {
        "ok": {"file_name": "ok.json"},
        "up": {"file_name": "../secret.json"},
        "absolute": {"file_name": str(outside)},
    }
    (d / "dataset_info.json").write_text(json.dumps(info))
    res = run_ingest(make_config(), [Source(uri=str(d))], tmp_path / "out")
    assert [r["messages"][0]["content"] for r in read_jsonl(tmp_path / "out/sft.jsonl")] == ["inside"]
    skipped = "\n".join(res.skipped_files)
    assert skipped.count("resolves outside the source") == 2, skipped
