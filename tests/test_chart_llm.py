"""The chart's second serving API (KServe LLMInferenceService v1alpha2 with vLLM and the llm-d router) and
the gateway in front of either API (route, auth, per-tenant quotas), rendered by Helm and checked against
their published CRDs and against each other: the policies target the route the chart renders, the quota
counts the tenant the auth step names, the helm test sends the credential the policy demands."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from typer.testing import CliRunner

from tests.k8s_schemas import crd_errors
from tests.test_chart import CHART, CRDS, ENVIRONMENTS, REPO, one, pod_containers, render, run_helm, runtime_container
from tests.tgi_contract import chat_completion
from tuneline.cli import app

LLMISVC = CHART / "ci" / "llmisvc-values.yaml"
AI_GATEWAY = CHART / "ci" / "llmisvc-gateway-quotas-values.yaml"
JWT = CHART / "ci" / "gateway-jwt-values.yaml"
PROD = REPO / "deploy" / "environments" / "prod.yaml"
NS = "tuneline"


def kinds(docs) -> set[str]:
    return {d["kind"] for d in docs}


def test_llmisvc_serves_the_version_and_its_adapters_with_vllm_behind_the_llm_d_router():
    docs = render(LLMISVC, namespace=NS)
    assert "InferenceService" not in kinds(docs) and "ServingRuntime" not in kinds(docs)
    llm = one(docs, "LLMInferenceService")
    assert llm["apiVersion"] == "serving.kserve.io/v1alpha2"
    spec = llm["spec"]
    root = "s3://tuneline-artifacts/mlflow/3/abc123/artifacts/model"
    assert spec["model"]["uri"] == f"{root}/base" and spec["model"]["name"] == "tuneline-chat"
    assert spec["model"]["lora"]["adapters"] == [
        {"name": "support", "uri": f"{root}/adapter"},
        {"name": "billing", "uri": f"{root}/extra/billing"},
    ]
    assert spec["model"]["lora"]["maxRank"] == 16
    assert spec["parallelism"] == {"tensor": 2}
    assert spec["router"] == {"gateway": {}, "route": {}, "scheduler": {}}, "KServe's managed route and pool"
    assert "replicas" not in spec and "scaling" not in spec, "KEDA owns the replica count (no WVA)"
    main = runtime_container(docs)
    assert main["name"] == "main" and main["image"].startswith("vllm/vllm-openai:")
    assert main["resources"]["limits"]["nvidia.com/gpu"] == 2
    assert spec["template"]["nodeSelector"] and spec["template"]["tolerations"]


def test_llmisvc_workload_is_what_keda_pdb_metrics_and_slo_rules_select():
    docs = render(LLMISVC, namespace=NS)
    scaled = one(docs, "ScaledObject")["spec"]
    assert scaled["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "tuneline-kserve"}
    queries = [t["metadata"]["query"] for t in scaled["triggers"]]
    assert "vllm:num_requests_waiting" in queries[0] and "kv_cache_usage_perc" in queries[1]
    assert all('pod=~"tuneline-kserve-.*"' in q for q in queries)
    workload = {
        "app.kubernetes.io/name": "tuneline",
        "app.kubernetes.io/part-of": "llminferenceservice",
        "app.kubernetes.io/component": "llminferenceservice-workload",
    }
    assert one(docs, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"] == workload
    metrics = next(d for d in docs if d["kind"] == "Service" and d["metadata"]["name"].endswith("-metrics"))
    assert metrics["spec"]["selector"] == workload and metrics["spec"]["ports"][0]["targetPort"] == "metrics"
    [sidecar] = [c for c in pod_containers(docs) if c["name"] == "metrics"]
    assert "--upstream=https://127.0.0.1:8000/metrics" in sidecar["args"]  # KServe's TLS on the workload
    rules = one(docs, "PrometheusRule")["spec"]["groups"][0]["rules"]
    assert all('pod=~"tuneline-kserve-.*"' in r["expr"] for r in rules)
    predictor = next(p for p in docs if p["kind"] == "NetworkPolicy" and p["metadata"]["name"].endswith("-predictor"))
    assert predictor["spec"]["podSelector"]["matchLabels"] == workload
    assert {"protocol": "TCP", "port": 8000} in predictor["spec"]["ingress"][0]["ports"]


def test_llmisvc_crd_validation_catches_a_typo():
    llm = json.loads(json.dumps(one(render(LLMISVC, namespace=NS), "LLMInferenceService")))
    llm["spec"]["model"]["lora"]["adapter"] = llm["spec"]["model"]["lora"].pop("adapters")
    assert any("adapter" in e for e in crd_errors(*CRDS["LLMInferenceService"], llm))


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (
            ("serving.api=llminferenceservice", "runtime.kind=tgi", "gateway.address=http://gw"),
            "runs vLLM: set runtime.kind to vllm",
        ),
        (
            (
                "serving.api=llminferenceservice",
                "gateway.address=http://gw",
                "runtime.kind=vllm",
                "autoscaling.scaleToZero=true",
            ),
            "Knative features",
        ),
        (("gateway.enabled=true", "gateway.address=http://gw"), "use deploymentMode RawDeployment"),
        (
            (
                "gateway.enabled=true",
                "gateway.address=http://gw",
                "deploymentMode=RawDeployment",
                "gateway.route=aigatewayroute",
            ),
            "needs serving.api llminferenceservice",
        ),
        (("gateway.enabled=true", "deploymentMode=RawDeployment"), "gateway.address"),
        (
            (
                "gateway.enabled=true",
                "gateway.address=http://gw",
                "deploymentMode=RawDeployment",
                "gateway.auth.mode=jwt",
                "gateway.auth.jwt.testTokenSecret=jwt",
            ),
            "gateway.auth.jwt.issuer",
        ),
    ],
)
def test_impossible_combinations_fail_naming_the_key(sets, message):
    args = ["template", "t", "."]
    for s in sets:
        args += ["--set", s]
    proc = run_helm(*args)
    assert proc.returncode != 0 and message in proc.stderr, proc.stderr


@pytest.mark.parametrize("values", [AI_GATEWAY, JWT, *ENVIRONMENTS[1:]], ids=lambda p: p.stem)
def test_the_policies_guard_the_route_the_chart_renders(values):
    docs = render(values, namespace=NS)
    if not any(d["kind"] == "SecurityPolicy" for d in docs):
        pytest.skip(f"{values.name} has no gateway")
    route = next(d for d in docs if d["kind"] in ("HTTPRoute", "AIGatewayRoute"))
    # Envoy AI Gateway generates an HTTPRoute named after its AIGatewayRoute: the policies attach to that
    target = {"group": "gateway.networking.k8s.io", "kind": "HTTPRoute", "name": route["metadata"]["name"]}
    auth, quotas = one(docs, "SecurityPolicy")["spec"], one(docs, "BackendTrafficPolicy")["spec"]
    assert auth["targetRefs"] == [target] and quotas["targetRefs"] == [target]
    # a request without a credential is refused: no optional or fail-open authentication anywhere
    assert "apiKeyAuth" in auth or "jwt" in auth
    assert not auth.get("jwt", {}).get("optional") and not auth.get("jwt", {}).get("failOpen")
    tenant_header = (
        auth["apiKeyAuth"]["forwardClientIDHeader"]
        if "apiKeyAuth" in auth
        else auth["jwt"]["providers"][0]["claimToHeaders"][0]["header"]
    )
    [rule] = quotas["rateLimit"]["global"]["rules"]
    assert rule["clientSelectors"] == [{"headers": [{"name": tenant_header, "type": "Distinct"}]}], "per tenant"
    if route["kind"] == "AIGatewayRoute":
        [cost] = route["spec"]["llmRequestCosts"]
        assert rule["cost"]["response"]["metadata"] == {"namespace": "io.envoy.ai_gateway", "key": cost["metadataKey"]}
        assert rule["cost"]["request"] == {"from": "Number", "number": 0}, "charged by tokens, on the response"
        assert route["spec"]["rules"][0]["backendRefs"][0]["kind"] == "InferencePool"
        llm = one(docs, "LLMInferenceService")["spec"]["router"]
        assert llm["route"] == {"http": {"refs": [{"name": route["metadata"]["name"]}]}}, "KServe uses this route"
    else:
        assert "cost" not in rule and rule["limit"]["unit"] == "Minute"
    # the client's own copy of the quota key is gone before auth runs: a token without the tenant claim (or a key
    # auth that forwards none) cannot pick the bucket it is charged to
    strip = one(docs, "ClientTrafficPolicy")
    gateway = one(docs, "HTTPRoute" if route["kind"] == "HTTPRoute" else "AIGatewayRoute")["spec"]["parentRefs"][0]
    assert strip["metadata"]["namespace"] == gateway["namespace"], "a policy attaches within its target's namespace"
    assert strip["spec"]["targetRefs"] == [
        {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": gateway["name"]}
    ]
    assert strip["spec"]["headers"]["earlyRequestHeaders"]["remove"] == [tenant_header]
    for doc in (route, one(docs, "SecurityPolicy"), one(docs, "BackendTrafficPolicy"), strip):
        assert not crd_errors(*CRDS[doc["kind"]], doc), doc["kind"]
    off = render(values, namespace=NS, sets=("gateway.stripTenantHeader=false",))
    assert not [d for d in off if d["kind"] == "ClientTrafficPolicy"]


@pytest.mark.parametrize("values", [AI_GATEWAY, JWT], ids=lambda p: p.stem)
def test_the_helm_test_sends_the_credential_the_policy_demands(values):
    docs = render(values, namespace=NS)
    auth = one(docs, "SecurityPolicy")["spec"]
    [container] = one(docs, "Pod")["spec"]["containers"]
    options = dict(a.removeprefix("--").split("=", 1) for a in container["command"][2:])
    [token] = [e for e in container["env"] if e["name"] == "TUNELINE_ENDPOINT_TOKEN"]
    ref = token["valueFrom"]["secretKeyRef"]
    assert options["url"] == "http://envoy-tuneline.envoy-gateway-system.svc.cluster.local"
    if "apiKeyAuth" in auth:
        assert ref["name"] == auth["apiKeyAuth"]["credentialRefs"][0]["name"] and ref["key"] == "helm-test"
        assert [options["token-header"]] == auth["apiKeyAuth"]["extractFrom"][0]["headers"]
    else:
        assert ref == {"name": "tuneline-helm-test-jwt", "key": "token"} and "token-header" not in options


class ApiKeyGateway:
    """What Envoy Gateway's apiKeyAuth does in front of the model: 401 unless the header holds a known key."""

    def __init__(self, header: str, keys: dict[str, str]) -> None:
        self.seen: list[dict[str, str]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _answer(self) -> None:
                outer.seen.append(dict(self.headers))
                if self.headers.get(header) not in keys.values():
                    self.send_response(401)
                    self.end_headers()
                    return
                if self.command == "POST":
                    self.rfile.read(int(self.headers.get("Content-Length", 0)))
                body = json.dumps(chat_completion("Hello there, nice day!", model="support")).encode()
                if self.path == "/v1/models":
                    body = json.dumps({"data": [{"id": "support"}]}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = _answer  # noqa: N815

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()


def test_smoke_passes_with_the_tenants_key_and_is_refused_without(monkeypatch):
    gw = ApiKeyGateway("x-api-key", {"helm-test": "k-7f3a"})
    try:
        base = ["smoke", "--url", gw.url, "--model", "support", "--timeout", "10"]
        monkeypatch.delenv("TUNELINE_ENDPOINT_TOKEN", raising=False)
        refused = CliRunner().invoke(app, base)
        assert refused.exit_code == 1 and "HTTP 401 (refused" in " ".join(refused.output.split())
        monkeypatch.setenv("TUNELINE_ENDPOINT_TOKEN", "k-7f3a")
        as_bearer = CliRunner().invoke(app, base)  # the right key in the wrong header is refused too
        assert as_bearer.exit_code == 1 and "401" in as_bearer.output
        ok = CliRunner().invoke(app, [*base, "--token-header", "x-api-key"])
        assert ok.exit_code == 0, ok.output
        assert "smoke: OK" in ok.output
        last = gw.seen[-1]
        assert last.get("x-api-key") == "k-7f3a" and "Authorization" not in last, "the key only where it belongs"
        assert "k-7f3a" not in ok.output
    finally:
        gw.close()


def test_promoted_values_serve_the_same_version_on_either_api(tmp_path):
    promoted = tmp_path / "promoted.yaml"  # what `tuneline promote` writes into an environment's values
    promoted.write_text('model:\n  version: "9"\n  storageUri: s3://bucket/mlflow/9/run/artifacts/model\n')
    isvc = one(render(PROD, promoted, namespace=NS), "InferenceService")
    llm = one(
        render(PROD, promoted, sets=("serving.api=llminferenceservice", "runtime.kind=vllm"), namespace=NS),
        "LLMInferenceService",
    )
    assert isvc["spec"]["predictor"]["model"]["storageUri"] == "s3://bucket/mlflow/9/run/artifacts/model"
    assert llm["spec"]["model"]["uri"] == "s3://bucket/mlflow/9/run/artifacts/model/base"
    assert llm["metadata"]["labels"]["tuneline.io/model-version"] == "9"
