"""The pinned third-party contracts: found where configured, verified by sha256, fetched by `make contracts`."""

from __future__ import annotations

import hashlib
import json
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests import contracts


def _pins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, files: dict[str, bytes]) -> None:
    rows = [
        {
            "file": rel,
            "url": f"{contracts.UPSTREAM}/owner/repo/{'0' * 40}/{rel}",
            "sha256": hashlib.sha256(data).hexdigest(),
        }
        for rel, data in files.items()
    ]
    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps({"contracts": rows}))
    monkeypatch.setattr(contracts, "MANIFEST", manifest)
    contracts.find.cache_clear()


def test_every_pin_names_an_upstream_commit_a_version_and_a_checksum() -> None:
    pins = contracts.manifest()
    assert {
        "tgi/openapi.json",
        "kserve/serving.kserve.io_inferenceservices.yaml",
        "kubeflow-trainer/trainer.kubeflow.org_trainjobs.yaml",
    } <= set(pins)
    for rel, pin in pins.items():
        assert pin["url"].startswith(contracts.UPSTREAM + "/") and pin["url"].endswith("/" + pin["path"]), rel
        assert len(pin["commit"]) == 40 and pin["commit"] in pin["url"], rel
        assert pin["version"] and len(pin["sha256"]) == 64, rel


def test_contracts_present_here_are_the_pinned_bytes() -> None:
    present = [rel for rel in contracts.manifest() if contracts.find(rel) is not None]
    if not present:
        pytest.skip(contracts.skip_reason("any pinned file"))
    assert all(contracts.find(rel).is_file() for rel in present)


def test_absent_contract_skips_with_a_reason_that_names_the_fix(tmp_path, monkeypatch) -> None:
    _pins(tmp_path, monkeypatch, {"x/crd.yaml": b"kind: CustomResourceDefinition\n"})
    monkeypatch.setenv(contracts.ENV, str(tmp_path / "empty"))
    assert contracts.find("x/crd.yaml") is None
    with pytest.raises(pytest.skip.Exception, match=r"make contracts"):
        contracts.require("x/crd.yaml")


def test_a_changed_contract_fails_instead_of_validating_against_something_else(tmp_path, monkeypatch) -> None:
    _pins(tmp_path, monkeypatch, {"x/crd.yaml": b"pinned\n"})
    (tmp_path / "dir/x").mkdir(parents=True)
    (tmp_path / "dir/x/crd.yaml").write_bytes(b"edited\n")
    monkeypatch.setenv(contracts.ENV, str(tmp_path / "dir"))
    with pytest.raises(contracts.ContractMismatch, match="make contracts"):
        contracts.find("x/crd.yaml")


def test_fetch_downloads_verifies_and_refuses_tampered_bytes(tmp_path, monkeypatch) -> None:
    files = {"a/one.yaml": b"one\n", "b/two.json": b"{}\n"}
    _pins(tmp_path, monkeypatch, files)
    mirror = tmp_path / "mirror/owner/repo" / ("0" * 40)
    for rel, data in files.items():
        (mirror / rel).parent.mkdir(parents=True, exist_ok=True)
        (mirror / rel).write_bytes(data)
    handler = partial(SimpleHTTPRequestHandler, directory=str(tmp_path / "mirror"))
    handler.log_message = lambda *a: None  # type: ignore[method-assign]
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        dest = tmp_path / "dest"
        assert contracts.main(["fetch", "--dest", str(dest), "--base-url", base]) == 0
        assert {rel: (dest / rel).read_bytes() for rel in files} == files
        assert contracts.fetch(dest, base) == []  # already there and verified: nothing downloaded again
        (mirror / "a/one.yaml").write_bytes(b"tampered\n")
        (dest / "a/one.yaml").unlink()
        assert contracts.main(["fetch", "--dest", str(dest), "--base-url", base]) == 1
        assert not (dest / "a/one.yaml").exists()
    finally:
        server.shutdown()
        server.server_close()
