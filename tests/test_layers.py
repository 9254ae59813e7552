"""The package graph points down its layers (pyproject.toml's import-linter contracts), lazy imports included.

``make lint`` runs the same check; here it also shows the check can fail: a copy of the package with one
import pointing up (a library importing the CLI, inside a function) is refused.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO

LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def _lint(root: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(root / "src")}
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", str(REPO / "pyproject.toml")],
        cwd=root, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def test_the_package_keeps_its_layers():
    proc = _lint(REPO)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "broken" in proc.stdout and " 0 broken" in proc.stdout


def test_an_import_pointing_up_breaks_the_layers(tmp_path):
    shutil.copytree(REPO / "src" / "tuneline", tmp_path / "src" / "tuneline", ignore=shutil.ignore_patterns("*.pyc"))
    io_module = tmp_path / "src" / "tuneline" / "io" / "jsonl.py"
    io_module.write_text(io_module.read_text() + "\n\ndef _up():\n    from tuneline.cli import app\n\n    return app\n")
    proc = _lint(tmp_path)
    assert proc.returncode != 0
    assert "tuneline.io.jsonl -> tuneline.cli" in proc.stdout
