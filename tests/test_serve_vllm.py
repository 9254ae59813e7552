"""The serving half against the real engine: `tuneline serve` on vLLM (its CPU build), with the fine-tune's adapter.

One server for the module, started by the CLI as a user starts it. Against it: the printed request answers with
the fine-tune's JSON, the served answers equal the in-process ones (the evaluate stage, both ways), the logprob
judge reads verdicts from vLLM, `tuneline smoke` passes (and fails naming why), a new adapter version is swapped
in under load with no failed request, the resolver serves a published version, Prometheus scrapes the server
and the chart's rules and KEDA queries evaluate on what it exports, and Ctrl-C stops every process.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.serving_assets import (
    MODEL_NAME,
    Served,
    chat,
    needs_vllm,
    train_candidate,
    tuneline_serve,
    zeroed_copy,
)
from tuneline.config.schema import Source
from tuneline.results import ExampleRow

pytestmark = [pytest.mark.slow, needs_vllm]
V1, V2 = f"{MODEL_NAME}-v1", f"{MODEL_NAME}-v2"
BASE = f"{MODEL_NAME}-base"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("served")
    model_dir, split = train_candidate(root)
    v2 = zeroed_copy(model_dir / "adapter", root / "adapter-v2")
    with tuneline_serve(model_dir, root / "store") as info:
        yield Served(
            url=info["url"],
            names=info["names"],
            request=info["request"],
            model_dir=model_dir,
            split_dir=split,
            v2_adapter=v2,
            store=root / "store",
            overrides=info["overrides"],
            pid=info["pid"],
            chat_url=info["chat_url"],
        )
        proc = info["proc"]
    assert proc.returncode == 0, "Ctrl-C stops `tuneline serve` cleanly"
    leftover = subprocess.run(["pgrep", "-f", str(model_dir)], capture_output=True, text=True).stdout.split()
    assert not leftover, f"processes left running after Ctrl-C: {leftover}"
    from tuneline.inference.local_server import healthy

    assert not healthy(f"{info['url']}/health"), "the API still answers after Ctrl-C"
    if info["chat_url"]:
        assert not healthy(f"{info['chat_url']}/health"), "the chat page still answers after Ctrl-C"


def _config(served: Served, *more: str):
    from tuneline.config import load_config

    return load_config(None, (*served.overrides, *more))


@pytest.mark.timeout(1200)  # the first test pays for the module's fine-tune and server start
def test_the_printed_request_answers_with_the_fine_tunes_json(served: Served) -> None:
    assert served.names == [MODEL_NAME, BASE]
    args = shlex.split(served.request)
    body = json.loads(args[args.index("-d") + 1])
    assert body["model"] == MODEL_NAME
    body["messages"][0]["content"] = "Order: 3 x lamp for Alice"
    out = subprocess.run([*args[: args.index("-d") + 1], json.dumps(body)], capture_output=True, text=True, timeout=120)
    answer = json.loads(out.stdout)["choices"][0]["message"]["content"]
    assert answer.lstrip().startswith("{"), answer
    base = chat(served.url, BASE, "Order: 3 x lamp for Alice")["choices"][0]["message"]["content"]
    assert base != answer, "the base name serves the untouched model"


@pytest.mark.timeout(1200)
def test_served_answers_and_judge_equal_the_in_process_evaluation(served: Served, tmp_path: Path) -> None:
    """evaluate twice on the test split, with tool-calling records added: in-process, then every model call
    through vLLM (tools offered, calls read back by its hermes parser); same reference and tool-call metrics."""
    import shutil

    from tests.conftest import write_jsonl
    from tests.test_benchmarks import write_task
    from tests.test_evaluate import tool_records
    from tuneline.io.jsonl import read_jsonl as read_records
    from tuneline.stages.evaluate import run_evaluate

    split = tmp_path / "split"
    shutil.copytree(served.split_dir, split)
    test_file = split / "sft" / "test.jsonl"
    write_jsonl(test_file, [*read_records(test_file), *tool_records()])
    write_task(tmp_path / "tasks", served.split_dir / "sft" / "test.jsonl")
    common = (
        "eval.judge.model=builtin:smollm2-135m", "eval.judge.mode=logprobs", "eval.baseline=base",
        # the benchmarks too: BFCL's questions through vLLM's tool parser, lm-eval through local-chat-completions
        "eval.benchmarks.bfcl.categories=[simple_python,irrelevance]", "eval.benchmarks.bfcl.n=2",
        "eval.benchmarks.lm_eval.tasks=[local_orders]", f"eval.benchmarks.lm_eval.include_path={tmp_path / 'tasks'}",
        "eval.benchmarks.lm_eval.limit=3", "eval.benchmarks.lm_eval.max_gen_toks=48", "eval.tool_max_new_tokens=64",
    )  # fmt: skip
    local = run_evaluate(_config(served, *common), served.model_dir, split, tmp_path / "local")
    endpoint = _config(
        served,
        *common,
        f"eval.candidate_endpoint={served.url}",
        f"eval.candidate_model={MODEL_NAME}",
        f"eval.baseline_endpoint={served.url}",
        f"eval.baseline_model={BASE}",
        f"eval.judge.endpoint={served.url}",
        # one request at a time: vLLM's CPU kernels sum a batch's floats in another order, which can flip a
        # near-tie of a 12-step fine-tune (the swap test shows answers under load keep their shape)
        "eval.judge.concurrency=1",
    )
    remote = run_evaluate(endpoint, served.model_dir, split, tmp_path / "remote")

    assert local.metrics.tool_examples == remote.metrics.tool_examples == 5
    for who in ("candidate", "baseline"):
        mine = getattr(local.metrics, who)
        theirs = getattr(remote.metrics, who)
        shared = {k for k in theirs if theirs[k] is not None and not k.startswith("loss")}
        assert {"exact_match", "rouge_l", "token_f1", "field_accuracy", "tool_irrelevance_accuracy"} <= shared
        assert {k: theirs[k] for k in shared} == {k: mine[k] for k in shared}, who
    local_scores = [(b.suite, b.task, b.n, b.candidate, b.baseline) for b in local.metrics.benchmarks]
    assert [b[:3] for b in local_scores] == [
        ("bfcl", "simple_python", 2), ("bfcl", "irrelevance", 2), ("lm_eval", "local_orders", 3),
    ]  # fmt: skip
    assert [(b.suite, b.task, b.n, b.candidate, b.baseline) for b in remote.metrics.benchmarks] == local_scores
    local_rows = _rows(tmp_path / "local")
    remote_rows = _rows(tmp_path / "remote")
    assert [r.candidate.text for r in remote_rows] == [r.candidate.text for r in local_rows]

    # the judge: the same base in logprob mode; vLLM restricts the first token to the labels (structured outputs'
    # choice), so its logprobs are the distribution over the labels the in-process judge reads
    assert remote.metrics.judge.parse_failure_rate == 0.0
    assert remote.metrics.judge.request_errors == 0
    for key in ("candidate", "baseline"):
        diffs = [
            abs(a.answers()[key].judge_score - b.answers()[key].judge_score)
            for a, b in zip(local_rows, remote_rows, strict=True)
        ]
        assert max(diffs) <= 0.1, (key, diffs)  # stated tolerance: 0.1 of a 1-10 rating, on every example
    same = sum(a.pairwise.outcome == b.pairwise.outcome for a, b in zip(local_rows, remote_rows, strict=True))
    assert same >= len(local_rows) - 1, (same, len(local_rows))


@pytest.mark.timeout(900)
def test_vllm_is_a_teacher_for_all_three_generate_methods(served: Served, tmp_path: Path) -> None:
    """self-instruct, distil and preference with the served base as teacher and judge (logprobs); quality is not
    the point, the mechanics are: records kept carry provenance and ingest, a rerun pays for no call."""
    import random

    from tests.conftest import read_jsonl, write_jsonl
    from tuneline.sample import order
    from tuneline.stages.generate import run_generate
    from tuneline.stages.ingest.run import run_ingest

    # new order requests, prompts only: the split's own answers are JSON the base cannot write (structure filter)
    seeds = tmp_path / "prompts.jsonl"
    write_jsonl(seeds, [{"prompt": order(random.Random(i))[0]} for i in range(6)])
    common = (
        f"generate.seeds={seeds}", f"generate.teacher.endpoint={served.url}", f"generate.teacher.served_model={BASE}",
        f"eval.judge.endpoint={served.url}", "eval.judge.mode=logprobs",
        "generate.n=4", "generate.max_new_tokens=48", f"paths.generate_cache={tmp_path / 'cache.sqlite'}",
    )  # fmt: skip
    runs = {
        "self_instruct": ("generate.method=self_instruct", "generate.min_judge_score=1", "generate.max_similarity=0.9"),
        "distil": ("generate.method=distil", "generate.samples=2", "generate.min_judge_score=1"),
        "preference": ("generate.method=preference",),
    }
    for method, more in runs.items():
        report = run_generate(_config(served, *common, *more), tmp_path / method)
        assert report.failed == 0 and report.requests > 0 and report.prompt_tokens > 0, report
        assert report.teacher == f"{served.url} ({BASE})"
        records = read_jsonl(tmp_path / method / "generated.jsonl")
        assert len(records) == report.kept and report.kept + sum(report.dropped.values()) >= 4, report
        for record in records:
            assert record["meta"]["generated"]["method"] == method and record["meta"]["generated"]["seeds"]
            if method != "preference":
                assert record["meta"]["generated"]["judge_score"] >= 1.0
        again = run_generate(_config(served, *common, *more), tmp_path / f"{method}-again")
        assert again.cache_hits == again.requests == report.requests, "a rerun is answered from the cache"
        assert read_jsonl(tmp_path / f"{method}-again" / "generated.jsonl") == records
    assert report.judged > 0, "the preference run asked the judge"
    kept = {m: len(read_jsonl(tmp_path / m / "generated.jsonl")) for m in runs}
    assert kept["distil"] >= 4, kept  # four prompts, two samples each: only equal samples are dropped
    sources = [Source(uri=str(tmp_path / m / "generated.jsonl")) for m in runs]
    ingested = run_ingest(_config(served), sources, tmp_path / "ingested")
    assert ingested.quarantined == 0 and ingested.sft + ingested.preference == sum(kept.values())


def _rows(out: Path) -> list[ExampleRow]:
    from tuneline.stages.evaluate.run import EXAMPLES

    return [ExampleRow.model_validate_json(line) for line in (out / EXAMPLES).read_text().splitlines()]


def test_smoke_passes_on_the_adapter_and_names_a_missing_one(served: Served) -> None:
    from tuneline.serving.smoke import SmokeError, smoke

    result = smoke(served.url, model=MODEL_NAME, prompt="Order: 2 x desk for Bob", max_tokens=24)
    assert result.health_status == 200 and result.reply.lstrip().startswith("{")
    with pytest.raises(SmokeError, match=r"(?s)404.*tuneline-chat-v9"):
        smoke(served.url, model="tuneline-chat-v9", max_tokens=4)


def test_a_new_version_swaps_in_under_load_without_a_failed_request(served: Served) -> None:
    from tuneline.serving import adapters

    prompt = "Order: 4 x chair for Dana"
    v1_answer = chat(served.url, MODEL_NAME, prompt)["choices"][0]["message"]["content"]
    base_answer = chat(served.url, BASE, prompt)["choices"][0]["message"]["content"]
    # greedy answers of a batch can differ from a lone request's in their wording (batch-dependent float sums on
    # CPU), so each answer is told by its shape: version 1 answers the task's JSON, version 2 (= the base) does not
    assert _is_order(v1_answer) and not _is_order(base_answer)
    adapters.load(served.url, V1, served.model_dir / "adapter")

    answers: list[tuple[float, str]] = []
    failures: list[str] = []
    stop = threading.Event()

    def load() -> None:
        while not stop.is_set():
            try:
                answers.append(
                    (time.monotonic(), chat(served.url, MODEL_NAME, prompt)["choices"][0]["message"]["content"])
                )
            except Exception as exc:  # noqa: BLE001 - every failure counts
                failures.append(repr(exc))

    workers = [threading.Thread(target=load) for _ in range(3)]
    for w in workers:
        w.start()
    try:
        warm = time.monotonic() + 120
        while len(answers) < 4 and not failures and time.monotonic() < warm:  # version 1 answering under load
            time.sleep(0.5)
        adapters.swap(served.url, MODEL_NAME, V2, served.v2_adapter, retire=[V1])
        swapped = time.monotonic()
        deadline = swapped + 120
        while sum(t > swapped + 1 for t, _ in answers) < 4 and time.monotonic() < deadline:
            time.sleep(0.5)
        stop.set()
        for w in workers:
            w.join(timeout=120)
        assert not failures, failures[:3]
        # an answer that finished within a second of the swap may have started before it
        before = Counter(_is_order(a) for t, a in answers if t < swapped - 1)
        after = Counter(_is_order(a) for t, a in answers if t > swapped + 1)
        assert set(before) == {True} and set(after) == {False}, (before, after)
        assert after[False] >= 4, "requests kept being answered after the swap"
        names = adapters.served_models(served.url)
        assert V2 in names and V1 not in names and MODEL_NAME in names
        with pytest.raises(Exception, match="404"):
            chat(served.url, V1, prompt)
        assert chat(served.url, MODEL_NAME, prompt)["choices"][0]["message"]["content"] == base_answer
    finally:
        stop.set()
        adapters.swap(served.url, MODEL_NAME, V1, served.model_dir / "adapter", retire=[V2])  # back, for the others
    assert chat(served.url, MODEL_NAME, prompt)["choices"][0]["message"]["content"] == v1_answer


def _is_order(answer: str) -> bool:
    """The fine-tune's shape: a JSON object naming the customer and the item."""
    try:
        parsed = json.loads(answer)
    except ValueError:
        return False
    return isinstance(parsed, dict) and {"name", "item"} <= set(parsed)


def test_a_published_version_is_resolved_on_its_first_request(served: Served) -> None:
    """The chart's mechanism for replicas that start later: publish into the store, name it, get it."""
    from tuneline.serving import adapters

    name = f"{MODEL_NAME}-v3"
    assert name not in adapters.served_models(served.url)
    adapters.publish(served.v2_adapter, served.store, name, str((served.model_dir / "base").resolve()))
    prompt = "Order: 1 x sofa for Eve"
    answer = chat(served.url, name, prompt)["choices"][0]["message"]["content"]
    assert answer == chat(served.url, BASE, prompt)["choices"][0]["message"]["content"]
    assert name in adapters.served_models(served.url)


# ------------------------------------------------------------------------------------------ metrics
def _scrape(url: str) -> dict[str, set[frozenset]]:
    """Metric family → label-name sets of its samples, from the server's /metrics."""
    import urllib.request

    with urllib.request.urlopen(f"{url}/metrics", timeout=30) as resp:  # noqa: S310 - 127.0.0.1
        text = resp.read().decode()
    found: dict[str, set[frozenset]] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, rest = line.partition("{") if "{" in line.split(" ")[0] else (line.split(" ")[0], "", "")
            labels = frozenset(re.findall(r'(\w+)="', rest.split("}")[0])) if rest else frozenset()
            found.setdefault(name, set()).add(labels)
    return found


def _metrics_in(expr: str) -> set[str]:
    names = set(re.findall(r"\b([a-z_]+:[a-z_:]+|[a-z_]+_(?:total|bucket|count|sum|seconds|perc))\b", expr))
    return {n for n in names if not n.startswith("tuneline:")}


def test_every_rule_and_scaling_query_uses_metrics_the_server_exports(served: Served) -> None:
    """Read as Prometheus reads them in the cluster: through the chart's metrics sidecar, which refuses the API."""
    from tests.test_chart import CHART, render
    from tests.test_metrics_proxy import proxy_in_front_of, status

    for _ in range(3):
        chat(served.url, MODEL_NAME, "Order: 2 x lamp for Bo", max_tokens=8)
    with proxy_in_front_of(f"{served.url}/metrics") as sidecar:
        exported = _scrape(sidecar)
        assert status(f"{sidecar}/v1/models")[0] == 404
        assert status(f"{sidecar}/v1/chat/completions", "POST", b"{}")[0] == 405
    assert exported.keys() == _scrape(served.url).keys(), "the sidecar passes the whole scrape"
    docs = render(CHART / "ci" / "vllm-values.yaml", sets=("deploymentMode=RawDeployment",))
    rules = next(d for d in docs if d["kind"] == "PrometheusRule")
    exprs = [r["expr"] for g in rules["spec"]["groups"] for r in g["rules"]]
    keda = next(d for d in docs if d["kind"] == "ScaledObject")
    exprs += [t["metadata"]["query"] for t in keda["spec"]["triggers"]]
    used = set().union(*(_metrics_in(e) for e in exprs))
    assert "vllm:num_requests_waiting" in used and "vllm:kv_cache_usage_perc" in used
    missing = {m for m in used if m not in exported}
    assert not missing, f"rules or KEDA queries reference metrics vLLM does not export: {sorted(missing)}"


def test_promtool_fixtures_are_shaped_like_the_real_scrape(served: Served) -> None:
    """The alert unit tests' synthetic vLLM series carry names and labels the real server exports."""
    from tests import test_monitoring

    exported = _scrape(served.url)
    synthetic = [s for group in test_monitoring.HEALTHY["vllm"].values() for s in group]
    synthetic += [s for (runtime, _), (_, extra) in test_monitoring.BREAKS.items() if runtime == "vllm" for s in extra]
    for series in synthetic:
        name, _, labels = series["series"].partition("{")
        keys = set(re.findall(r"(\w+)=", labels)) - {"namespace", "pod"}
        assert name in exported, f"{name} is not exported by vLLM"
        assert any(keys <= have for have in exported[name]), f"{name}{{{keys}}} has labels vLLM does not send"


def test_prometheus_scrapes_the_server_and_the_charts_recording_rules_produce_series(
    served: Served, tmp_path: Path
) -> None:
    """A real Prometheus scrapes vLLM under a short load with the chart's rules loaded; every recording rule has a
    series, the request and token rates are positive and the error ratio is 0 (no request failed)."""
    import shutil
    import urllib.parse
    import urllib.request

    import yaml

    from tests.conftest import free_port
    from tests.test_chart import CHART, render
    from tuneline.inference.local_server import ServerProcess

    prometheus = shutil.which("prometheus")
    if prometheus is None:
        pytest.skip("prometheus is absent (apt-get install prometheus)")
    ns = "tuneline"
    rules = next(d for d in render(CHART / "ci" / "vllm-values.yaml", namespace=ns) if d["kind"] == "PrometheusRule")
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"groups": rules["spec"]["groups"]}))
    target = served.url.removeprefix("http://")
    scrape = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": ["rules.yaml"],
        "scrape_configs": [
            {
                "job_name": "vllm",
                "static_configs": [{"targets": [target], "labels": {"namespace": ns, "pod": "tuneline-predictor-0"}}],
            }
        ],
    }
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(scrape))
    port = free_port()
    cmd = [
        prometheus,
        f"--config.file={tmp_path / 'prometheus.yml'}",
        f"--storage.tsdb.path={tmp_path / 'tsdb'}",
        f"--web.listen-address=127.0.0.1:{port}",
    ]

    def query(expr: str) -> list[dict]:
        url = f"http://127.0.0.1:{port}/api/v1/query?query={urllib.parse.quote(expr)}"
        with urllib.request.urlopen(url, timeout=10) as resp:  # noqa: S310 - 127.0.0.1
            return json.loads(resp.read())["data"]["result"]

    with ServerProcess("Prometheus", cmd, f"http://127.0.0.1:{port}", health_path="/-/ready", startup_timeout_s=60):
        threads = [
            threading.Thread(target=chat, args=(served.url, MODEL_NAME, f"Order: {i} x lamp for Al", 16))
            for i in range(1, 7)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=300)
        recorded = [r["record"] for g in rules["spec"]["groups"] for r in g["rules"] if "record" in r]
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            values = {name: query(name) for name in recorded}
            if all(values.values()) and float(values["tuneline:request_rate:rate5m"][0]["value"][1]) > 0:
                break
            time.sleep(2)
        assert all(values.values()), {k: v for k, v in values.items() if not v}
    value = {name: float(v[0]["value"][1]) for name, v in values.items()}
    assert value["tuneline:request_rate:rate5m"] > 0 and value["tuneline:generated_tokens:rate5m"] > 0
    assert value["tuneline:request_error_ratio:rate5m"] == 0.0
    assert value["tuneline:queue_length"] >= 0 and 0 <= value["tuneline:kv_cache_usage_ratio"] <= 1


def test_the_chat_page_shows_the_fine_tunes_answer_in_a_browser(served: Served, tmp_path: Path) -> None:
    """`tuneline serve --chat`: Open WebUI against the local vLLM, driven in headless Chromium like a person."""
    import urllib.parse

    from tests.browser import CHROMIUM
    from tests.serving_assets import CHAT_PYTHON

    if served.chat_url is None:
        pytest.skip(f"Open WebUI is not installed ({CHAT_PYTHON}): make chat-setup")
    if CHROMIUM is None:
        pytest.skip("chromium not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    questions = [
        json.loads(line)["messages"][0]["content"] for line in (served.split_dir / "sft" / "test.jsonl").open()
    ]
    answers = {q: chat(served.url, MODEL_NAME, q)["choices"][0]["message"]["content"] for q in questions[:4]}
    question, answer = next((q, a) for q, a in answers.items() if _is_order(a))  # 12 steps: most, not all
    expected = json.loads(answer)
    flags = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"]
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=flags)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            query = urllib.parse.urlencode({"models": MODEL_NAME, "q": question})
            page.goto(f"{served.chat_url}/?{query}", wait_until="domcontentloaded")
            box = page.locator("#chat-input")
            box.wait_for(timeout=60_000)
            whats_new = page.get_by_text("Okay, Let's Go!")
            if whats_new.count():
                whats_new.click()
            box.click()
            page.keyboard.press("Enter")
            answer = page.get_by_text(re.compile(r'^\s*\{"[^{}]*\}\s*$')).first  # the whole JSON, streamed
            answer.wait_for(timeout=120_000)
            page.screenshot(path=str(tmp_path / "chat.png"))
            shown = answer.inner_text()
        finally:
            browser.close()
    assert json.loads(shown[shown.index("{") : shown.rindex("}") + 1]) == expected
    assert (tmp_path / "chat.png").stat().st_size > 10_000
