"""S3 ingestion through fsspec/s3fs against a real local S3-compatible server (moto's server mode)."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from tests.conftest import chat, read_jsonl
from tuneline.stages.ingest import IngestError, run_ingest

boto3 = pytest.importorskip("boto3")
pytest.importorskip("moto.server")
pytest.importorskip("s3fs")


def test_ingest_glob_from_s3(s3_endpoint: str, tmp_path: Path, make_config):
    s3 = boto3.client("s3", endpoint_url=s3_endpoint)
    s3.create_bucket(Bucket="raw")
    body = "\n".join(json.dumps(chat(f"s3 q{i}", "a")) for i in range(3)) + "\n{broken\n"
    s3.put_object(Bucket="raw", Key="chats/part-0.jsonl", Body=body.encode())
    s3.put_object(Bucket="raw", Key="chats/part-1.jsonl.gz", Body=gzip.compress(json.dumps(chat("gz q", "a")).encode()))
    s3.put_object(Bucket="raw", Key="other/skip.jsonl", Body=b"{}")
    cfg = make_config(
        "data.sources=[s3://raw/chats/*]",
        f"data.source_options={{s3: {{endpoint_url: '{s3_endpoint}'}}}}",
        "data.max_bad_fraction=0.5",
    )
    res = run_ingest(cfg, None, tmp_path / "o")
    sft = read_jsonl(tmp_path / "o/sft.jsonl")
    assert sorted(r["messages"][0]["content"] for r in sft) == ["gz q", "s3 q0", "s3 q1", "s3 q2"]
    assert {r["source"] for r in sft} == {"s3://raw/chats/part-0.jsonl", "s3://raw/chats/part-1.jsonl.gz"}
    q = read_jsonl(tmp_path / "o/quarantine.jsonl")
    assert q == [
        {
            "file": "s3://raw/chats/part-0.jsonl",
            "line": 4,
            "reason": "invalid_json",
            "detail": q[0]["detail"],
            "raw": "{broken",
        }
    ]
    assert res.files == 2


def test_missing_s3_prefix_is_a_clear_error(s3_endpoint: str, tmp_path: Path, make_config):
    boto3.client("s3", endpoint_url=s3_endpoint).create_bucket(Bucket="empty")
    cfg = make_config(f"data.source_options={{s3: {{endpoint_url: '{s3_endpoint}'}}}}")
    from tuneline.config.schema import Source

    with pytest.raises(IngestError, match="s3://empty/none/"):
        run_ingest(cfg, [Source(uri="s3://empty/none/*.jsonl")], tmp_path / "o")
