"""https:// (here http://127.0.0.1) ingestion through fsspec's HTTP filesystem against a real local server."""

from __future__ import annotations

import functools
import http.server
import re
import threading
from pathlib import Path

import pytest

from tests.conftest import chat, read_jsonl, write_jsonl
from tuneline.config.schema import Source
from tuneline.stages.ingest import IngestError, run_ingest

pytest.importorskip("aiohttp")


@pytest.fixture
def http_root(tmp_path: Path):
    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield root, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()


def test_ingest_gzipped_jsonl_over_http(http_root, tmp_path: Path, make_config):
    root, url = http_root
    write_jsonl(root / "chats.jsonl.gz", [chat("over http", "yes"), "{bad json"], gz=True)
    res = run_ingest(
        make_config("data.max_bad_fraction=0.5", "data.allow_insecure_sources=true"),
        [Source(uri=f"{url}/chats.jsonl.gz")],
        tmp_path / "o",
    )
    assert res.sft == 1 and res.quarantined == 1
    assert read_jsonl(tmp_path / "o/sft.jsonl")[0]["source"] == f"{url}/chats.jsonl.gz"
    assert read_jsonl(tmp_path / "o/quarantine.jsonl")[0]["line"] == 2


@pytest.mark.parametrize(
    ("url", "needle"),
    [
        ("http://example.com/chats.jsonl", "plain http"),
        ("https://169.254.169.254/latest/meta-data/x.json", "internal address (169.254.169.254)"),
        ("https://127.0.0.1:9/x.jsonl", "internal address (127.0.0.1)"),
        ("https://10.1.2.3/x.jsonl", "internal address"),
        ("https://metadata.google.internal/computeMetadata/v1/x.json", "internal address"),
        ("https://[::1]/x.jsonl", "internal address"),
    ],
)
def test_plain_http_and_internal_addresses_are_refused_by_default(url, needle, tmp_path: Path, make_config):
    with pytest.raises(IngestError, match=re.escape(needle)):
        run_ingest(make_config(), [Source(uri=url)], tmp_path / "o")
    assert not (tmp_path / "o").exists()
