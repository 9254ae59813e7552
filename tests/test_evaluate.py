"""The evaluate stage end to end: real local judge server, TGI-contract endpoints, cache, gate, report, errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import EvalAssets, read_jsonl, write_jsonl
from tests.tgi_contract import TgiContractServer, chat_completion, chat_completion_logprobs, generate_response
from tuneline.results import ExampleRow
from tuneline.stages.evaluate import EvaluateError, run_evaluate


def _between(text: str, start: str, end: str | None) -> str:
    tail = text.split(start, 1)[1]
    return (tail.split(end, 1)[0] if end else tail).strip()


def rule_judge(path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """A judge that is right by construction: an answer equal to the reference is better.

    Asked for logprobs, it answers with one token and its alternatives, as TGI's chat API does:
    the right label most likely (" 9" beside "9", as tokenizers split), the others far behind.
    """
    prompt = body["messages"][0]["content"] if path == "/v1/chat/completions" else body["inputs"]
    reference = _between(prompt, "[Reference answer]\n", "\n\n[")
    if "[Response A]" in prompt:
        a_ok = _between(prompt, "[Response A]\n", "\n\n[Response B]") == reference
        b_ok = _between(prompt, "[Response B]\n", None) == reference
        letter = "A" if a_ok and not b_ok else "B" if b_ok and not a_ok else "C"
        text = f"[[{letter}]]"
        alternatives = [("A", -2.0), ("B", -2.0), ("The", -3.0)] if letter == "C" else [(letter, -0.1), ("x", -4.0)]
        alternatives += [] if letter == "C" else [("B" if letter == "A" else "A", -5.0)]
    else:
        digit = "9" if _between(prompt, "[Response to judge]\n", None) == reference else "2"
        text = f"Rating: [[{digit}]]"
        alternatives = [(digit, -0.2), (f" {digit}", -2.0), ("5", -6.0), ("I", -3.0)]
    if body.get("logprobs"):
        return 200, chat_completion_logprobs(alternatives[: body.get("top_logprobs") or 1])
    return 200, chat_completion(text) if path == "/v1/chat/completions" else generate_response(text)


def perfect_candidate(split_dir: Path):
    answers = {
        r["messages"][0]["content"]: r["messages"][1]["content"] for r in read_jsonl(split_dir / "sft" / "test.jsonl")
    }
    return lambda path, body: (200, chat_completion(answers[body["messages"][-1]["content"]]))


@pytest.mark.slow
def test_evaluate_end_to_end_with_a_real_local_judge_server(eval_assets: EvalAssets, make_config, tmp_path) -> None:
    ids = [r["id"] for r in read_jsonl(eval_assets.split_dir / "sft" / "test.jsonl")][:6]
    labels = write_jsonl(
        tmp_path / "human.jsonl", [{"id": i, "winner": "tie" if n < 4 else "candidate"} for n, i in enumerate(ids)]
    )
    config = make_config(
        f"eval.judge.model={eval_assets.judge_dir}",
        "eval.judge.mode=generate",  # behind `transformers serve`, which rejects logprobs
        "eval.gate.primary_metric=rouge_l",  # the 40-step tiny candidate gets closer, not yet field-exact
        "eval.max_examples=6",
        "eval.judge.max_new_tokens=12",
        f"eval.judge.human_labels={labels}",
    )
    result = run_evaluate(
        config, eval_assets.model_dir, eval_assets.split_dir, tmp_path / "eval", tmp_path / "judge.sqlite"
    )

    judge = result.metrics.judge
    assert judge.requests == 24 and judge.cache_hits == 0 and judge.request_errors == 0
    assert judge.parse_failure_rate == 0.0
    assert judge.candidate_score.mean == 8.0 and judge.candidate_score.n == 6
    # the judge always answers [[A]]: shown both orders, every comparison becomes a tie
    assert judge.pairwise.tie == 1.0 and judge.pairwise.win_rate == 0.5
    assert judge.pairwise.position_consistency == 0.0
    assert judge.agreement.model_dump() == {"n": 6, "accuracy": 4 / 6, "cohen_kappa": 0.0}
    cand, base = result.metrics.candidate, result.metrics.baseline
    assert cand["eval_loss"] < base["eval_loss"]  # the fine-tune fits the task better than the untouched base
    assert cand["rouge_l"] > base["rouge_l"]
    assert result.gate.passed, result.gate.reasons

    out = tmp_path / "eval"
    rows = read_jsonl(out / "examples.jsonl")
    assert [r["id"] for r in rows] == ids
    assert all(r["pairwise"]["outcome"] == "tie" and r["candidate"]["judge_output"] == "Rating: [[8]]" for r in rows)
    assert [ExampleRow.model_validate(r).id for r in rows] == ids  # every line is a typed row
    assert json.loads((out / "gate.json").read_text())["passed"] is True
    report = (out / "report.md").read_text()
    assert "**Gate: PASS**" in report and f"| {rows[0]['category']} | 6 |" in report
    assert report.count("data:image/png;base64,") == 0 and "data:image/png;base64," in (out / "report.html").read_text()
    assert all((out / "charts" / c).stat().st_size > 1000 for c in ("judge_scores.png", "pairwise.png"))

    evaluation = json.loads((out / "evaluation.json").read_text())
    assert evaluation["baseline_kind"] == "base"
    import mlflow

    run = mlflow.MlflowClient(tracking_uri=config.registry.tracking_uri).get_run(evaluation["mlflow_run_id"])
    assert run.data.metrics["judge.candidate_score.mean"] == 8.0 and run.data.tags["tuneline.gate"] == "pass"

    # a re-run pays for nothing: every judgement comes from the cache, and the result is the same
    again = run_evaluate(
        config, eval_assets.model_dir, eval_assets.split_dir, tmp_path / "eval2", tmp_path / "judge.sqlite"
    )
    assert again.metrics.judge.cache_hits == 24
    assert again.metrics.judge.candidate_score == judge.candidate_score
    assert read_jsonl(tmp_path / "eval2" / "examples.jsonl") == rows


@pytest.mark.slow
def test_the_builtin_judge_produces_junk_that_is_counted_not_guessed(
    eval_assets: EvalAssets, make_config, tmp_path
) -> None:
    config = make_config(
        "eval.judge.mode=generate", "eval.max_examples=2", "eval.judge.max_new_tokens=12", "eval.judge.pairwise=false"
    )
    result = run_evaluate(
        config, eval_assets.model_dir, eval_assets.split_dir, tmp_path / "eval", tmp_path / "judge.sqlite"
    )
    judge = result.metrics.judge
    assert judge.requests == 4 and judge.parse_failure_rate == 1.0 and judge.mode == "generate"
    assert judge.candidate_score.mean is None
    assert not result.gate.passed
    assert "no readable judge score for the candidate" in result.gate.reasons
    assert {c.name: c.passed for c in result.gate.checks}["win_rate"] is None  # pairwise off: skipped


@pytest.mark.slow
def test_the_same_junk_judge_in_logprob_mode_always_gives_a_verdict(
    eval_assets: EvalAssets, make_config, tmp_path
) -> None:
    """In-process, the verdict is read from the next-token distribution: no text to misparse, 0% failures."""
    config = make_config("eval.judge.mode=logprobs", "eval.max_examples=3")
    result = run_evaluate(
        config, eval_assets.model_dir, eval_assets.split_dir, tmp_path / "eval", tmp_path / "judge.sqlite"
    )
    judge = result.metrics.judge
    assert judge.mode == "logprobs" and judge.requests == 12 and judge.parse_failure_rate == 0.0
    assert judge.candidate_score.n == 3 and 1.0 <= judge.candidate_score.mean <= 10.0
    assert judge.pairwise.n == 3 and judge.pairwise.position_consistency is not None
    rows = read_jsonl(tmp_path / "eval" / "examples.jsonl")
    alternatives = json.loads(rows[0]["candidate"]["judge_output"])["top_logprobs"]
    assert sorted({t.strip() for t, _ in alternatives}) == [str(d) for d in range(1, 10)]
    assert "in-process (logprobs mode)" in json.loads((tmp_path / "eval" / "evaluation.json").read_text())["judge"]


@pytest.mark.parametrize(("api", "mode"), [("chat", "logprobs"), ("chat", "generate"), ("generate", "generate")])
def test_endpoints_for_candidate_and_judge(api: str, mode: str, eval_assets: EvalAssets, make_config, tmp_path) -> None:
    with TgiContractServer(perfect_candidate(eval_assets.split_dir)) as cand, TgiContractServer(rule_judge) as judge:
        config = make_config(
            f"eval.candidate_endpoint={cand.url}",
            f"eval.judge.endpoint={judge.url}",
            f"eval.judge.api={api}",
            f"eval.judge.mode={mode}",
            "eval.max_examples=5",
        )
        result = run_evaluate(
            config, eval_assets.model_dir, eval_assets.split_dir, tmp_path / "eval", tmp_path / "judge.sqlite"
        )
    assert cand.violations == [] and judge.violations == []
    assert len(cand.requests) == 5 and len(judge.requests) == 20
    m = result.metrics
    assert m.candidate["exact_match"] == 1.0 and "eval_loss" not in m.candidate  # no weights in-process
    assert m.candidate["field_accuracy"] == 1.0 and m.candidate["valid_json"] == 1.0
    if mode == "logprobs":
        bodies = [body for _, body, _ in judge.requests]
        assert all(b["logprobs"] is True and b["top_logprobs"] == 5 and b["max_tokens"] == 1 for b in bodies)
        assert m.judge.candidate_score.mean > 9.9  # P("9") ~ 0.95: the expected 1-9 digit, rescaled onto 1-10
    else:
        assert m.judge.candidate_score.mean == 9.0
    assert m.judge.parse_failure_rate == 0.0 and m.judge.mode == mode
    # the rule judge scores the baseline's wrong answers 2 and prefers the candidate in both orders
    assert m.judge.baseline_score.mean < 3.5
    assert m.judge.pairwise.loss == 0.0 and m.judge.pairwise.win_rate > 0.5
    # it agrees with the truth (field accuracy) on every answer: trusted
    assert m.judge.truth.single.model_dump() == {"n": 10, "accuracy": 1.0, "cohen_kappa": 1.0}
    assert m.judge.truth.pairwise.accuracy == 1.0
    checks = {c.name: c for c in result.gate.checks}
    assert checks["judge_trust"].passed is True and checks["judge_score"].passed is True
    assert checks["improvement.field_accuracy"].passed is True
    assert result.gate.passed, result.gate.reasons
    # what a reviewer reads: MLflow and the report carry the mode, the failures and the agreement with the truth
    import mlflow

    run_id = json.loads((tmp_path / "eval" / "evaluation.json").read_text())["mlflow_run_id"]
    run = mlflow.MlflowClient(tracking_uri=config.registry.tracking_uri).get_run(run_id)
    assert run.data.tags["tuneline.judge_mode"] == mode
    assert run.data.metrics["judge.truth.single.cohen_kappa"] == 1.0
    assert (
        run.data.metrics["judge.parse_failure_rate"] == 0.0
        and "judge.pairwise.position_consistency" in run.data.metrics
    )
    report = (tmp_path / "eval" / "report.md").read_text()
    assert (
        f"verdicts read by {mode}" in report and "| single grade >= 5.5 means correct | 10 | 1.000 | 1.000 |" in report
    )


def contrarian_judge(path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """The rule judge upside down: it prefers whatever is wrong (and answers every request it gets)."""
    status, payload = rule_judge(path, body)
    choice = payload["choices"][0]
    flip = {"9": "2", "2": "9", " 9": " 2", " 2": " 9", "A": "B", "B": "A"}
    for alt in choice["logprobs"]["content"][0]["top_logprobs"]:
        alt["token"] = flip.get(alt["token"], alt["token"])
    return status, payload


@pytest.mark.parametrize("policy", ["reference_only", "fail"])
def test_a_judge_that_disagrees_with_the_truth_is_not_trusted(
    policy: str, eval_assets: EvalAssets, make_config, tmp_path
) -> None:
    with TgiContractServer(perfect_candidate(eval_assets.split_dir)) as cand, TgiContractServer(contrarian_judge) as j:
        config = make_config(
            f"eval.candidate_endpoint={cand.url}",
            f"eval.judge.endpoint={j.url}",
            f"eval.gate.untrusted_judge={policy}",
            "eval.max_examples=4",
        )
        result = run_evaluate(
            config, eval_assets.model_dir, eval_assets.split_dir, tmp_path / "eval", tmp_path / "j.db"
        )
    m = result.metrics
    assert m.judge.truth.single.cohen_kappa == -1.0 and m.judge.pairwise.win_rate == 0.0
    checks = {c.name: c for c in result.gate.checks}
    assert "kappa" in checks["judge_trust"].detail
    if policy == "reference_only":
        # the judge's own checks are skipped, the reference metrics decide: the candidate is right, the base is not
        assert checks["judge_score"].passed is None and checks["win_rate"].passed is None
        assert checks["improvement.field_accuracy"].passed is True
        assert result.gate.passed, result.gate.reasons
    else:
        assert not result.gate.passed
        assert any("judge pairwise agreement with field_accuracy" in r for r in result.gate.reasons)


def test_the_gate_fails_a_candidate_that_does_not_beat_the_baseline(
    eval_assets: EvalAssets, make_config, tmp_path
) -> None:
    """Candidate and baseline from the same endpoint: equal field accuracy is no improvement."""
    with TgiContractServer(perfect_candidate(eval_assets.split_dir)) as same, TgiContractServer(rule_judge) as j:
        config = make_config(
            f"eval.candidate_endpoint={same.url}",
            f"eval.baseline_endpoint={same.url}",
            f"eval.judge.endpoint={j.url}",
            "eval.max_examples=3",
        )
        result = run_evaluate(
            config, eval_assets.model_dir, eval_assets.split_dir, tmp_path / "eval", tmp_path / "j.db"
        )
    assert not result.gate.passed
    assert "field_accuracy 1.000 vs baseline 1.000 (gain +0.000, must exceed 0)" in result.gate.reasons


def test_logprob_mode_needs_the_chat_api(make_config) -> None:
    with pytest.raises(ValueError, match="eval.judge.api: logprobs mode"):
        make_config("eval.judge.endpoint=http://127.0.0.1:1", "eval.judge.api=generate", "eval.judge.mode=logprobs")


def test_baseline_none_evaluates_the_candidate_alone(eval_assets: EvalAssets, make_config, tmp_path) -> None:
    with TgiContractServer(rule_judge) as judge:
        config = make_config(f"eval.judge.endpoint={judge.url}", "eval.max_examples=3", "eval.baseline=none")
        result = run_evaluate(
            config, eval_assets.model_dir, eval_assets.split_dir, tmp_path / "eval", tmp_path / "judge.sqlite"
        )
    assert result.metrics.baseline is None and len(judge.requests) == 3
    assert {c.name: c.passed for c in result.gate.checks}["regression.rouge_l"] is None


def test_clear_errors_for_bad_inputs(eval_assets: EvalAssets, make_config, tmp_path) -> None:
    config = make_config("eval.max_examples=2")
    with pytest.raises(EvaluateError, match="not a tuneline model dir"):
        run_evaluate(config, tmp_path, eval_assets.split_dir, tmp_path / "eval")
    with pytest.raises(EvaluateError, match=r"sft/test.jsonl not found"):
        run_evaluate(config, eval_assets.model_dir, tmp_path / "nosplit", tmp_path / "eval")
    bad = tmp_path / "labels.jsonl"
    bad.write_text('{"id": "a", "winner": "candidate"}\n{"id": "b", "winner": "maybe"}\n')
    with pytest.raises(EvaluateError, match=r"labels.jsonl:2: expected"):
        run_evaluate(make_config(f"eval.judge.human_labels={bad}"), eval_assets.model_dir, eval_assets.split_dir)
    with pytest.raises(EvaluateError, match="has no @champion version"):
        run_evaluate(make_config("eval.baseline=champion"), eval_assets.model_dir, eval_assets.split_dir)
    assert not (tmp_path / "eval").exists()  # nothing half-written


def test_an_unreachable_judge_fails_the_stage_and_writes_nothing(
    eval_assets: EvalAssets, make_config, tmp_path
) -> None:
    from tests.conftest import free_port

    config = make_config(
        f"eval.judge.endpoint=http://127.0.0.1:{free_port()}",
        "eval.max_examples=2",
        "eval.judge.max_retries=0",
        "eval.baseline=none",
    )
    with pytest.raises(EvaluateError, match="judge failed on all 2 requests"):
        run_evaluate(config, eval_assets.model_dir, eval_assets.split_dir, tmp_path / "eval")
    assert not (tmp_path / "eval").exists()


HOSTILE = (
    "<script>alert(1)</script><img src=x onerror=alert(2)> [click](javascript:alert(3)) ![t](http://evil.example/t.png)"
)


def test_the_html_report_shows_hostile_model_output_as_text(eval_assets: EvalAssets, make_config, tmp_path) -> None:
    """Model output (and data) in the report is text: no script, no foreign image or link, scripts forbidden."""
    from html.parser import HTMLParser

    class Tags(HTMLParser):
        def __init__(self) -> None:
            super().__init__()
            self.tags: list[tuple[str, dict[str, str | None]]] = []

        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            self.tags.append((tag, dict(attrs)))

    hostile = lambda path, body: (200, chat_completion(HOSTILE))  # noqa: E731
    with TgiContractServer(hostile) as cand, TgiContractServer(rule_judge) as judge:
        config = make_config(
            f"eval.candidate_endpoint={cand.url}",
            f"eval.judge.endpoint={judge.url}",
            "eval.max_examples=2",
            "eval.baseline=none",
        )
        run_evaluate(config, eval_assets.model_dir, eval_assets.split_dir, tmp_path / "eval", tmp_path / "j.sqlite")
    html = (tmp_path / "eval" / "report.html").read_text()
    parser = Tags()
    parser.feed(html)
    assert "&lt;script&gt;alert(1)" in html, "the output is shown, as text"
    assert not [t for t, _ in parser.tags if t == "script"]
    assert all(a.get("src", "").startswith("data:image/png") for t, a in parser.tags if t == "img")
    assert not [a for t, a in parser.tags if t == "a" and "javascript" in (a.get("href") or "")]
    [csp] = [a["content"] for t, a in parser.tags if t == "meta" and a.get("http-equiv") == "Content-Security-Policy"]
    assert "default-src 'none'" in csp


ORDER_TOOL = {
    "type": "function",
    "function": {
        "name": "create_order",
        "description": "Place an order.",
        "parameters": {
            "type": "object",
            "properties": {"item": {"type": "string"}, "qty": {"type": "integer"}, "express": {"type": "boolean"}},
            "required": ["item", "qty"],
        },
    },
}


def tool_records() -> list[dict[str, Any]]:
    """Tool-calling test records: three that should call create_order, two where no call belongs."""
    records = []
    for i, (item, qty) in enumerate((("lamp", 2), ("desk", 1), ("chair", 4))):
        call = {
            "type": "function",
            "function": {"name": "create_order", "arguments": json.dumps({"item": item, "qty": qty})},
        }
        records.append(
            {
                "id": f"tool-{i}",
                "tools": [ORDER_TOOL],
                "messages": [
                    {"role": "user", "content": f"Order {qty} {item}, please."},
                    {"role": "assistant", "content": "", "tool_calls": [{"id": f"c{i}", **call}]},
                    {"role": "tool", "tool_call_id": f"c{i}", "content": '{"ok": true}'},
                    {"role": "assistant", "content": "Done."},
                ],
            }
        )
    for i, question in enumerate(("What are your opening hours?", "Thanks, that is all.")):
        records.append(
            {
                "id": f"quiet-{i}",
                "tools": [ORDER_TOOL],
                "messages": [{"role": "user", "content": question}, {"role": "assistant", "content": "We open at 9."}],
            }
        )
    return records


def test_tool_calling_records_are_asked_with_their_tools_and_scored_as_calls(
    eval_assets: EvalAssets, make_config, tmp_path
) -> None:
    from transformers import AutoTokenizer

    from tuneline.models.trained import read_manifest
    from tuneline.results import TOOL_METRICS, ToolCallRow
    from tuneline.stages.evaluate.answers import load_examples
    from tuneline.stages.evaluate.toolcalls import ExpectedCall, check_turn

    split = tmp_path / "split"
    text = read_jsonl(eval_assets.split_dir / "sft" / "test.jsonl")[:3]
    write_jsonl(split / "sft" / "test.jsonl", text + tool_records())
    examples = load_examples(split, "test", None)
    assert [e.id for e in examples.text] == [r["id"] for r in text] and len(examples.tools) == 5
    first = examples.tools[0]
    assert first.prompt == [{"role": "user", "content": "Order 2 lamp, please."}]  # up to the turn that calls
    assert first.expected == [ExpectedCall("create_order", {"item": ["lamp"], "qty": [2], "express": [""]})]
    assert examples.tools[3].expected == []  # no call belongs here
    # the chat template the model is asked with renders the tools it may call
    tokenizer = AutoTokenizer.from_pretrained(
        str(eval_assets.model_dir / read_manifest(eval_assets.model_dir).adapter_dir)
    )
    rendered = tokenizer.apply_chat_template(first.prompt, tools=first.tools, tokenize=False)
    assert "create_order" in rendered and "<tool_call>" in rendered

    with TgiContractServer(rule_judge) as judge:
        config = make_config(f"eval.judge.endpoint={judge.url}", "eval.baseline=base")
        result = run_evaluate(config, eval_assets.model_dir, split, tmp_path / "eval", tmp_path / "judge.sqlite")
    assert len(judge.requests) == 3 * 4, "the judge grades the text answers only"
    rows = [ToolCallRow.model_validate(r) for r in read_jsonl(tmp_path / "eval" / "tool_calls.jsonl")]
    assert [r.id for r in rows] == [e.id for e in examples.tools]
    for row, example in zip(rows, examples.tools, strict=True):
        assert row.expected == example.reference
        for answer in (row.candidate, row.baseline):
            assert answer.valid == check_turn(example.tools, answer.calls, example.expected).valid
    m = result.metrics
    assert m.tool_examples == 5 and set(TOOL_METRICS) <= set(m.candidate) and set(TOOL_METRICS) <= set(m.baseline)
    quiet = [r.candidate for r in rows if not r.expected]
    assert m.candidate["tool_irrelevance_accuracy"] == sum(not a.calls for a in quiet) / 2
    assert m.candidate["tool_call_accuracy"] == sum(r.candidate.valid for r in rows if r.expected) / 3
    assert "regression.tool_call_accuracy" in {c.name for c in result.gate.checks}
    report = (tmp_path / "eval" / "report.md").read_text()
    assert "## Tool calls (5 records" in report and "| tool_call_accuracy |" in report


def test_a_split_of_tool_calls_only_is_gated_on_its_calls(eval_assets: EvalAssets, make_config, tmp_path) -> None:
    """Fine-tuned for function calling alone: no text for the judge, and the gate decides on the calls."""
    split = tmp_path / "split"
    write_jsonl(split / "sft" / "test.jsonl", tool_records())
    config = make_config(
        "eval.judge.endpoint=http://127.0.0.1:9", "eval.baseline=base", "eval.gate.primary_metric=tool_call_accuracy"
    )
    result = run_evaluate(config, eval_assets.model_dir, split, tmp_path / "eval", tmp_path / "judge.sqlite")
    checks = {c.name: c for c in result.gate.checks}
    assert result.metrics.examples == 0 and result.metrics.tool_examples == 5
    assert checks["judge_score"].passed is None and checks["judge_parse_failures"].passed is None
    improvement = checks["improvement.tool_call_accuracy"]
    assert improvement.passed is not None, improvement.detail  # measured on both: decided, not skipped
