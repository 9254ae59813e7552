"""The chart's SLO rules, tested for real with Prometheus's promtool (Debian's `prometheus` package):
`promtool check rules` on what the chart renders, and `promtool test rules` with synthetic series that must
fire each alert and series that must not. The Grafana dashboard queries only recording rules that exist,
each a valid PromQL expression."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.test_chart import CHART, one, render

PROMTOOL = shutil.which("promtool")
pytestmark = pytest.mark.skipif(PROMTOOL is None, reason="promtool is absent (apt-get install prometheus)")
NS, POD = "tuneline", "tuneline-predictor-00001-deployment-7d9c"
SERVICE = "tuneline"
VLLM = CHART / "ci" / "vllm-values.yaml"


def s(metric: str, values: str, **labels: str) -> dict:
    """One input series of the pod, 1-minute samples in promtool's expanding notation."""
    extra = "".join(f', {k}="{v}"' for k, v in labels.items())
    return {"series": f'{metric}{{namespace="{NS}", pod="{POD}"{extra}}}', "values": values}


def hist(metric: str, buckets: dict[str, str]) -> list[dict]:
    return [s(f"{metric}_bucket", v, le=le) for le, v in buckets.items()]


FAST = {"1": "0+60x40", "60": "0+60x40", "+Inf": "0+60x40"}  # every request under a second
SLOW = {"1": "0+0x40", "60": "0+60x40", "+Inf": "0+60x40"}  # all between 1 and 60 s: p95 ≈ 57 s

HEALTHY = {
    "tgi": {
        "count": [s("tgi_request_count", "0+60x40")],
        "failure": [s("tgi_request_failure", "0+0x40", err="generation")],
        "latency": hist("tgi_request_duration", FAST),
        "ttft": hist("tgi_request_queue_duration", FAST),
        "queue": [s("tgi_queue_size", "1+0x40")],
        "tokens": [s("tgi_request_generated_tokens_sum", "0+3000x40")],
    },
    "vllm": {
        "count": [
            s("vllm:e2e_request_latency_seconds_count", "0+60x40"),
            s("http_requests_total", "0+60x40", status="2xx"),
        ],
        "failure": [s("http_requests_total", "0+0x40", status="5xx")],
        "latency": hist("vllm:e2e_request_latency_seconds", FAST),
        "ttft": hist("vllm:time_to_first_token_seconds", FAST),
        "queue": [s("vllm:num_requests_waiting", "1+0x40")],
        "tokens": [s("vllm:generation_tokens_total", "0+3000x40")],
        "kv": [s("vllm:kv_cache_usage_perc", "0.5+0x40")],
    },
}
# alert → (runtime, the part of the healthy series it replaces, the replacement that must fire it)
BREAKS = {
    ("tgi", "TunelineHighErrorRate"): ("failure", [s("tgi_request_failure", "0+6x40", err="generation")]),
    ("tgi", "TunelineHighLatency"): ("latency", hist("tgi_request_duration", SLOW)),
    ("tgi", "TunelineSlowTimeToFirstToken"): ("ttft", hist("tgi_request_queue_duration", SLOW)),
    ("tgi", "TunelineQueueSaturated"): ("queue", [s("tgi_queue_size", "20+0x40")]),
    ("tgi", "TunelineNotGenerating"): ("tokens", [s("tgi_request_generated_tokens_sum", "0+0x40")]),
    ("vllm", "TunelineHighErrorRate"): ("failure", [s("http_requests_total", "0+6x40", status="5xx")]),
    ("vllm", "TunelineHighLatency"): ("latency", hist("vllm:e2e_request_latency_seconds", SLOW)),
    ("vllm", "TunelineSlowTimeToFirstToken"): ("ttft", hist("vllm:time_to_first_token_seconds", SLOW)),
    ("vllm", "TunelineQueueSaturated"): ("queue", [s("vllm:num_requests_waiting", "20+0x40")]),
    ("vllm", "TunelineKVCacheNearlyFull"): ("kv", [s("vllm:kv_cache_usage_perc", "0.97+0x40")]),
    ("vllm", "TunelineNotGenerating"): ("tokens", [s("vllm:generation_tokens_total", "0+0x40")]),
}
SEVERITY = {"TunelineHighErrorRate": "critical", "TunelineNotGenerating": "critical"}


def rules_of(runtime: str) -> dict:
    docs = render(VLLM, namespace=NS) if runtime == "vllm" else render(namespace=NS, sets=("runtime.kind=tgi",))
    return one(docs, "PrometheusRule")["spec"]


def promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([PROMTOOL, *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def series(runtime: str, replace: tuple[str, list[dict]] | None = None) -> list[dict]:
    parts = dict(HEALTHY[runtime])
    if replace:
        parts[replace[0]] = replace[1]
    return [x for group in parts.values() for x in group]


@pytest.mark.parametrize("runtime", ["tgi", "vllm"])
def test_rules_pass_promtool_check(tmp_path, runtime):
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(rules_of(runtime)))
    proc = promtool("check", "rules", "rules.yaml", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    names = {r.get("alert") for g in rules_of(runtime)["groups"] for r in g["rules"]} - {None}
    assert names == {alert for rt, alert in BREAKS if rt == runtime}, "every alert has a firing test"


@pytest.mark.parametrize("runtime", ["tgi", "vllm"])
def test_each_alert_fires_on_its_breakage_and_not_on_healthy_series(tmp_path, runtime):
    spec = rules_of(runtime)
    annotations = {r["alert"]: r.pop("annotations") for g in spec["groups"] for r in g["rules"] if "alert" in r}
    # promtool would compare annotations too; their templates are checked by `promtool check rules` above,
    # here each alert is identified by its labels
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(spec))
    tests = []
    for (rt, alert), replace in BREAKS.items():
        if rt != runtime:
            continue
        labels = {"severity": SEVERITY.get(alert, "warning"), "namespace": NS, "service": SERVICE}
        fired = {"exp_labels": labels}
        tests.append(
            {
                "name": f"{alert} fires",
                "interval": "1m",
                "input_series": series(runtime, replace),
                "alert_rule_test": [
                    {"eval_time": "25m", "alertname": alert, "exp_alerts": [fired]},
                    {"eval_time": "8m", "alertname": alert, "exp_alerts": []},  # not before `for` has passed
                ],
            }
        )
        tests.append(
            {
                "name": f"{alert} stays silent",
                "interval": "1m",
                "input_series": series(runtime),
                "alert_rule_test": [{"eval_time": "25m", "alertname": alert, "exp_alerts": []}],
            }
        )
        assert annotations[alert]["summary"] and annotations[alert]["description"]
    (tmp_path / "test.yaml").write_text(yaml.safe_dump({"rule_files": ["rules.yaml"], "tests": tests}))
    proc = promtool("test", "rules", "test.yaml", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("SUCCESS") >= 1


@pytest.mark.parametrize("runtime", ["tgi", "vllm"])
def test_dashboard_queries_only_existing_recording_rules_in_valid_promql(tmp_path, runtime):
    docs = render(VLLM, namespace=NS) if runtime == "vllm" else render(namespace=NS, sets=("runtime.kind=tgi",))
    [cm] = [d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"].endswith("-dashboard")]
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    [(name, text)] = cm["data"].items()
    dashboard = json.loads(text)
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    records = {r["record"] for g in rules_of(runtime)["groups"] for r in g["rules"] if "record" in r}
    used = {e.split("{", 1)[0] for e in exprs}
    assert used == records, "one panel per recording rule, none for a rule that does not exist"
    # each query is valid PromQL: promtool parses it as a rule
    check = {
        "groups": [{"name": "dashboard", "rules": [{"record": f"panel:{i}", "expr": e} for i, e in enumerate(exprs)]}]
    }
    (tmp_path / "panels.yaml").write_text(yaml.safe_dump(check))
    proc = promtool("check", "rules", "panels.yaml", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert name.endswith(".json") and dashboard["templating"]["list"][0]["type"] == "datasource"
