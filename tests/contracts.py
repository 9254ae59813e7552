"""Published third-party contracts (CRDs, TGI's OpenAPI) that the tests validate against, found offline.

The files are not part of this repository. ``contracts/manifest.json`` pins each one (upstream URL at a
commit, version, sha256); the tests read them from a directory:

* ``$TUNELINE_CONTRACTS_DIR`` when set, else
* ``../shared/reference`` beside the checkout (where the project's CI provides them), else
* ``.contracts/`` in the checkout, where ``make contracts`` downloads them.

A test that needs an absent contract is skipped with a one-line reason naming ``make contracts``; a file
whose sha256 differs from the pin fails the test (a silently different contract would prove nothing).

``python -m tests.contracts fetch [--dest DIR] [--base-url URL]`` downloads and verifies every pinned file
(``--base-url`` replaces ``https://raw.githubusercontent.com`` for a mirror).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
import urllib.request
from functools import cache
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
MANIFEST = ROOT / "contracts" / "manifest.json"
FETCHED = ROOT / ".contracts"
ENV = "TUNELINE_CONTRACTS_DIR"
UPSTREAM = "https://raw.githubusercontent.com"


class ContractMismatch(AssertionError):
    """A contract file is present but is not the pinned one."""


def manifest() -> dict[str, dict[str, Any]]:
    return {row["file"]: row for row in json.loads(MANIFEST.read_text())["contracts"]}


def search_dirs() -> list[Path]:
    if os.environ.get(ENV):
        return [Path(os.environ[ENV])]
    return [ROOT.parent / "shared" / "reference", FETCHED]


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@cache
def find(relpath: str) -> Path | None:
    """The verified local copy of pinned contract ``relpath``, or None when no search directory has it."""
    pin = manifest().get(relpath)
    if pin is None:
        raise KeyError(f"{relpath} is not pinned in {MANIFEST.relative_to(ROOT)}")
    for d in search_dirs():
        path = d / relpath
        if path.is_file():
            if (digest := _sha256(path)) != pin["sha256"]:
                raise ContractMismatch(
                    f"{path} has sha256 {digest}, but {MANIFEST.name} pins {pin['sha256']} "
                    f"({pin['url']}): refresh it with `make contracts`"
                )
            return path
    return None


def skip_reason(relpath: str) -> str:
    where = " or ".join(str(d) for d in search_dirs())
    return f"contract {relpath} not found in {where}: run `make contracts` (or set {ENV})"


def require(relpath: str) -> Path:
    """The contract's path, or skip the calling test with a one-line reason."""
    import pytest

    path = find(relpath)
    if path is None:
        pytest.skip(skip_reason(relpath))
    return path


def fetch(dest: Path, base_url: str = UPSTREAM) -> list[str]:
    """Download every pinned file into ``dest`` (atomically, sha256-checked); returns the files fetched."""
    fetched = []
    for rel, pin in manifest().items():
        target = dest / rel
        if target.is_file() and _sha256(target) == pin["sha256"]:
            continue
        url = base_url.rstrip("/") + pin["url"][len(UPSTREAM) :]
        try:
            with urllib.request.urlopen(url, timeout=60) as resp:  # noqa: S310 - pinned https URLs or a given mirror
                data = resp.read()
        except OSError as exc:
            raise OSError(f"cannot fetch {url}: {exc}") from None
        if (digest := hashlib.sha256(data).hexdigest()) != pin["sha256"]:
            raise ContractMismatch(f"{url}: sha256 {digest} is not the pinned {pin['sha256']}")
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, target)
        fetched.append(rel)
    return fetched


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.contracts")
    sub = parser.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("fetch", help="download and verify every pinned contract")
    f.add_argument("--dest", type=Path, default=FETCHED)
    f.add_argument("--base-url", default=UPSTREAM)
    args = parser.parse_args(argv)
    try:
        got = fetch(args.dest, args.base_url)
    except (OSError, ContractMismatch) as exc:
        print(f"contracts: {exc}", file=sys.stderr)
        return 1
    print(f"contracts: {len(got)} fetched, {len(manifest()) - len(got)} already present in {args.dest}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
