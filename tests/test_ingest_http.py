"""https:// (here http://127.0.0.1) ingestion through fsspec's HTTP filesystem against a real local server."""

from __future__ import annotations

import functools
import http.server
import threading
from pathlib import Path

import pytest

from tests.conftest import chat, read_jsonl, write_jsonl
from tuneline.config.schema import Source
from tuneline.stages.ingest import run_ingest

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
    res = run_ingest(make_config("data.max_bad_fraction=0.5"), [Source(uri=f"{url}/chats.jsonl.gz")], tmp_path / "o")
    assert res.sft == 1 and res.quarantined == 1
    assert read_jsonl(tmp_path / "o/sft.jsonl")[0]["source"] == f"{url}/chats.jsonl.gz"
    assert read_jsonl(tmp_path / "o/quarantine.jsonl")[0]["line"] == 2
