"""Benchmarks beside the judge (eval.benchmarks): BFCL v4 from the installed wheel, lm-eval tasks over local data."""

from __future__ import annotations

import importlib.util
import json
import sqlite3
from pathlib import Path

import pytest

from tests.conftest import EvalAssets, read_jsonl
from tuneline.config.schema import BfclConfig, LmEvalConfig
from tuneline.stages.evaluate import EvaluateError, run_evaluate
from tuneline.stages.evaluate.benchmarks import bfcl_examples, bfcl_scores, lm_eval_tasks, summaries
from tuneline.stages.evaluate.toolcalls import ParsedAnswer

needs_bfcl = pytest.mark.skipif(
    importlib.util.find_spec("bfcl_eval") is None, reason="bfcl-eval not installed (make setup installs it --no-deps)"
)
needs_lm_eval = pytest.mark.skipif(importlib.util.find_spec("lm_eval") is None, reason="lm-eval not installed")


def right_answer(expected) -> ParsedAnswer:
    """The calls BFCL's possible answer allows, each parameter given its first acceptable value ("": left out)."""
    calls = []
    for want in expected:
        args = {p: next(v for v in values if v != "") for p, values in want.params.items() if values != [""]}
        calls.append({"name": want.name, "arguments": args})
    return ParsedAnswer(calls)


@needs_bfcl
def test_bfcl_questions_are_sampled_from_the_installed_wheel_and_scored_by_its_rules() -> None:
    cfg = BfclConfig(categories=["simple_python", "parallel", "irrelevance"], n=4, seed=1)
    examples = bfcl_examples(cfg)
    assert [e.category for e in examples] == ["bfcl/simple_python"] * 4 + ["bfcl/parallel"] * 4 + [
        "bfcl/irrelevance"
    ] * 4
    assert [e.id for e in bfcl_examples(cfg)] == [e.id for e in examples], "the same seed asks the same questions"
    assert [e.id for e in bfcl_examples(cfg.model_copy(update={"seed": 2}))] != [e.id for e in examples]
    assert all(len(e.expected) >= 2 for e in examples[4:8]), "parallel questions expect several calls"
    assert all(e.expected == [] for e in examples[8:]), "irrelevance: no call belongs"
    schema = json.dumps([e.tools for e in examples])
    assert '"type": "dict"' not in schema and '"type": "float"' not in schema, "tools are written in JSON schema"

    right = [right_answer(e.expected) for e in examples]
    wrong = [ParsedAnswer([]) if e.expected else right_answer(examples[0].expected) for e in examples]
    scores = bfcl_scores(examples, right, wrong)
    assert [(s.task, s.n, s.candidate, s.baseline) for s in scores] == [
        ("simple_python", 4, 1.0, 0.0), ("parallel", 4, 1.0, 0.0), ("irrelevance", 4, 1.0, 0.0),
    ]  # fmt: skip
    half = right[:2] + wrong[2:4] + right[4:]  # two simple questions missed: 10 of 12 right
    assert summaries(bfcl_scores(examples, half, None), "candidate") == {"bfcl_accuracy": round(10 / 12, 4)}


@needs_lm_eval
def test_unknown_lm_eval_tasks_and_directories_fail_before_any_model_loads(tmp_path) -> None:
    assert lm_eval_tasks(LmEvalConfig()) is None
    (tmp_path / "tasks").mkdir()
    with pytest.raises(EvaluateError, match=r"eval.benchmarks.lm_eval.tasks: unknown task\(s\) \['nope'\]"):
        lm_eval_tasks(LmEvalConfig(tasks=["nope"], include_path=str(tmp_path / "tasks")))
    with pytest.raises(EvaluateError, match="include_path: .* is not a directory"):
        lm_eval_tasks(LmEvalConfig(tasks=["x"], include_path=str(tmp_path / "missing")))


def write_task(directory: Path, data: Path) -> None:
    """An lm-eval task over a local JSONL file of tuneline records: the user turn in, the answer's exact match."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "local_orders.yaml").write_text(
        f"""task: local_orders
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: generate_until
doc_to_text: "{{{{messages[-2].content}}}}"
doc_to_target: "{{{{messages[-1].content}}}}"
generation_kwargs:
  until: ["\\n\\n"]
  max_gen_toks: 64
  do_sample: false
metric_list:
  - metric: exact_match
    aggregation: mean
    higher_is_better: true
"""
    )


@needs_bfcl
@needs_lm_eval
def test_benchmark_scores_reach_metrics_gate_report_and_mlflow(eval_assets: EvalAssets, make_config, tmp_path) -> None:
    from tests.test_evaluate import rule_judge
    from tests.tgi_contract import TgiContractServer

    test_file = eval_assets.split_dir / "sft" / "test.jsonl"
    write_task(tmp_path / "tasks", test_file)
    with TgiContractServer(rule_judge) as judge:
        config = make_config(
            f"eval.judge.endpoint={judge.url}",
            "eval.baseline=base",
            "eval.max_examples=4",
            "eval.benchmarks.bfcl.categories=[simple_python,irrelevance]",
            "eval.benchmarks.bfcl.n=2",
            "eval.benchmarks.lm_eval.tasks=[local_orders]",
            f"eval.benchmarks.lm_eval.include_path={tmp_path / 'tasks'}",
            "eval.benchmarks.lm_eval.limit=4",
            "eval.gate.regression_metrics=[exact_match,bfcl_accuracy,lm_eval_score]",
        )
        result = run_evaluate(config, eval_assets.model_dir, eval_assets.split_dir, tmp_path / "eval", tmp_path / "j")
    m = result.metrics
    rows = {(b.suite, b.task, b.metric): b for b in m.benchmarks}
    assert set(rows) == {("bfcl", "simple_python", "accuracy"), ("bfcl", "irrelevance", "accuracy"),
                         ("lm_eval", "local_orders", "exact_match")}  # fmt: skip
    assert rows["bfcl", "simple_python", "accuracy"].n == 2 and rows["lm_eval", "local_orders", "exact_match"].n == 4
    for who in ("candidate", "baseline"):
        bfcl = [getattr(b, who) for b in m.benchmarks if b.suite == "bfcl"]
        assert getattr(m, who)["bfcl_accuracy"] == sum(bfcl) / 2  # 2 questions in each category
        lm = getattr(rows["lm_eval", "local_orders", "exact_match"], who)
        assert getattr(m, who)["lm_eval_score"] == lm
        # lm-eval asked the same first 4 test records through the same chat template: its exact match is tuneline's
        assert lm == pytest.approx(getattr(m, who)["exact_match"]), who
    checks = {c.name: c for c in result.gate.checks}
    assert (
        checks["regression.bfcl_accuracy"].passed is not None and checks["regression.lm_eval_score"].passed is not None
    )
    report = (tmp_path / "eval" / "report.md").read_text()
    assert "## Benchmarks" in report and "| bfcl | simple\\_python | accuracy | 2 |" in report
    assert json.loads((tmp_path / "eval" / "metrics.json").read_text())["benchmarks"][0]["suite"] == "bfcl"
    uri = config.registry.tracking_uri.removeprefix("sqlite:///")
    names = {r[0] for r in sqlite3.connect(uri).execute("select key from metrics")}
    assert {"bench.bfcl.simple_python.accuracy.candidate", "bench.lm_eval.local_orders.exact_match.baseline"} <= names
    assert read_jsonl(tmp_path / "eval" / "tool_calls.jsonl") == [], "BFCL's questions are not the split's records"

    # registration tags each score; a promotion PR compares them with what the environment serves
    from tuneline.serving.promote import pr_body
    from tuneline.stages.register import run_register

    record = run_register(config, eval_assets.model_dir, tmp_path / "eval", tmp_path / "registration.json").record
    key = "bench.bfcl.simple_python.accuracy.candidate"
    assert record.metrics[key] == rows["bfcl", "simple_python", "accuracy"].candidate
    assert "benchmarks" not in record.metrics, "no JSON blob among the tags"
    older = record.model_copy(update={"version": "0", "metrics": {**record.metrics, key: 0.5}})
    assert f"| {key} | 0.5 |" in pr_body("dev", record, older, None, "dev")
