"""No command deletes what it did not write; a failed or killed run keeps the last good output.

Each case runs the real CLI in a subprocess, in a folder laid out as a user's project.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, chat, write_jsonl
from tuneline.io.atomic import MARKER


def tuneline(*args: str, cwd: Path, wrapper: list[str] | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, COLUMNS="200", PYTHONPATH=str(REPO))
    cmd = [sys.executable, "-m", *(wrapper or ["tuneline"]), *args]
    # a session of its own: tests.kill_at kills the process group (the CLI and its workers), never pytest
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=env, timeout=300, start_new_session=True)


def tree(root: Path) -> dict[str, str]:
    """Every file under ``root`` (hidden ones too) with its sha256."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture
def project(tmp_path: Path) -> Path:
    write_jsonl(
        tmp_path / "data/raw/a.jsonl", [chat(f"question {i} on subject {i * 13}", f"answer {i}") for i in range(40)]
    )
    (tmp_path / "notes.txt").write_text("the user's own file\n")
    r = tuneline("ingest", "data/raw", "--out", "data/ingested", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    return tmp_path


@pytest.mark.parametrize(
    ("args", "why"),
    [
        (["clean", "data/ingested", "--out", "data"], "contains the input"),
        (["clean", "data/ingested", "--out", "data/ingested"], "is or contains the input"),
        (["clean", "data/ingested", "--out", "data/ingested/sub"], "inside the input directory"),
        (["ingest", "data/raw", "--out", "."], "current directory"),
        (["ingest", "data/raw/a.jsonl", "--out", "data/raw"], "contains the input"),
        (["ingest", "data/raw", "--out", "data"], "contains the input"),
        (["clean", "data/ingested", "--out", "elsewhere"], "not written by tuneline"),
        (["split", "data/ingested", "--out", "data/cleaned"], "output of tuneline clean"),
    ],
)
def test_an_output_that_is_not_ours_is_refused_and_nothing_changes(project: Path, args, why) -> None:
    (project / "elsewhere").mkdir()
    (project / "elsewhere/keep.txt").write_text("someone else's\n")
    assert tuneline("clean", "data/ingested", "--out", "data/cleaned", cwd=project).returncode == 0
    before = tree(project)
    r = tuneline(*args, cwd=project)
    assert r.returncode == 2, r.stdout + r.stderr
    assert why in r.stderr and "refused" in r.stderr and "Traceback" not in r.stderr
    assert tree(project) == before


def test_a_previous_output_of_the_same_stage_is_replaced_and_an_empty_dir_is_used(project: Path) -> None:
    (project / "empty").mkdir()
    assert tuneline("clean", "data/ingested", "--out", "empty", cwd=project).returncode == 0
    first = tree(project / "empty")
    assert MARKER in first and "sft.jsonl" in first
    write_jsonl(project / "data/raw/b.jsonl", [chat("one more question here", "and its answer")])
    assert tuneline("ingest", "data/raw", "--out", "data/ingested", cwd=project).returncode == 0
    assert tuneline("clean", "data/ingested", "--out", "empty", cwd=project).returncode == 0
    assert tree(project / "empty")["sft.jsonl"] != first["sft.jsonl"]
    assert (project / "notes.txt").read_text() == "the user's own file\n"
    assert not [p for p in project.iterdir() if p.name.startswith(".")], "no temp dirs left behind"


def state(out: Path) -> dict[str, object]:
    """What a complete ingest output holds, without the wall-clock figures of its report."""
    if not out.exists():
        return {}
    files: dict[str, object] = {k: v for k, v in tree(out).items() if k != "report.json"}
    report = json.loads((out / "report.json").read_text())
    files["report.json"] = {k: v for k, v in report.items() if k not in ("seconds", "records_per_second")}
    return files


@pytest.mark.parametrize("exchange", [True, False], ids=["renameat2", "two-renames"])
def test_kill_9_at_every_write_step_leaves_the_old_or_the_new_output_and_the_rerun_recovers(
    project: Path, tmp_path_factory: pytest.TempPathFactory, exchange: bool
) -> None:
    out, data = project / "data/ingested", project / "data"
    old = state(out)
    saved = tmp_path_factory.mktemp("saved") / "ingested"
    shutil.copytree(out, saved)
    write_jsonl(project / "data/raw/b.jsonl", [chat(f"another question {i}", f"another answer {i}") for i in range(30)])
    reference = project.parent / f"{project.name}-reference"
    shutil.copytree(project, reference)
    assert tuneline("ingest", "data/raw", "--out", "data/ingested", cwd=reference).returncode == 0
    new = state(reference / "data/ingested")
    assert new != old
    killed = 0
    for k in range(1, 200):
        r = tuneline(
            str(k),
            *([] if exchange else ["--no-exchange"]),
            "--",
            "ingest",
            "data/raw",
            "--out",
            "data/ingested",
            cwd=project,
            wrapper=["tests.kill_at"],
        )
        if r.returncode == 0:
            assert state(out) == new
            break
        assert r.returncode == -9, r.stderr
        killed += 1
        now = state(out)
        if not now:  # only possible between the two renames of the fallback: the previous output is set aside
            assert not exchange
            [backup] = [p for p in data.iterdir() if p.name.startswith(".ingested.old-")]
            now = state(backup)
        assert now in (old, new), f"kill before write step {k} left a mixed output"
        # the next uninterrupted run works and removes what the killed one left
        ok = tuneline("ingest", "data/raw", "--out", "data/ingested", cwd=project)
        assert ok.returncode == 0, ok.stderr
        assert state(out) == new
        assert not [p.name for p in data.iterdir() if p.name.startswith(".")], f"litter after a kill at step {k}"
        shutil.rmtree(out)
        shutil.copytree(saved, out)
    else:
        pytest.fail("the command never finished")
    assert killed >= 8, "the sweep reached too few write steps to mean anything"
