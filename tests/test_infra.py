"""infra/: Terraform for EKS and GKE, checked offline.

No provider or module can be downloaded here, so nothing is planned. What is checked instead:
the node-pool definitions are *evaluated* by the real ``terraform console`` (it needs no providers)
over the committed ``gpu_pools.auto.tfvars.json``; that file is what ``params.yaml`` says; pods
scheduled with :func:`tuneline.gpu_pools.scheduling` fit those pools under Kubernetes'
own toleration and selector rules; versions are pinned; ``terraform fmt`` and checkov pass.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import hcl2
import pytest
import yaml
from typer.testing import CliRunner

from tests.conftest import REPO
from tuneline.cli import app
from tuneline.config import ConfigError, load_config
from tuneline.gpu_pools import CLOUDS, TFVARS_NAME, scheduling, stale_tfvars

INFRA = REPO / "infra"
ROOTS = {cloud: INFRA / cloud for cloud in CLOUDS}
TF_ENV = {**os.environ, "TF_CLI_CONFIG_FILE": os.devnull, "TF_IN_AUTOMATION": "1", "CHECKPOINT_DISABLE": "1"}
K8S_EFFECT = {"NO_SCHEDULE": "NoSchedule", "PREFER_NO_SCHEDULE": "PreferNoSchedule", "NO_EXECUTE": "NoExecute"}


@pytest.fixture(scope="module")
def cfg():
    return load_config(REPO / "params.yaml")


def tf_console(
    root: Path, expr: str, tmp_path: Path, tfvars: str | None = None, extra: tuple[str, ...] = ()
) -> subprocess.CompletedProcess:
    """Evaluate ``expr`` over a root's variables.tf + node_pools.tf and its tfvars, with the real terraform."""
    work = tmp_path / f"console-{root.name}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    for name in ("variables.tf", "node_pools.tf"):
        shutil.copy(root / name, work / name)
    (work / TFVARS_NAME).write_text(tfvars if tfvars is not None else (root / TFVARS_NAME).read_text())
    required = {
        "eks": ["-var", "gitops_repo_url=x", "-var", 'api_allowed_cidrs=["203.0.113.0/24"]'],
        "gke": ["-var", "gitops_repo_url=x", "-var", "project_id=p"],
    }
    return subprocess.run(
        ["terraform", "console", "-no-color", *required[root.name], *extra],
        input=f"jsonencode({expr})\n",
        cwd=work,
        env=TF_ENV,
        capture_output=True,
        text=True,
        timeout=120,
    )


def evaluate(root: Path, expr: str, tmp_path: Path):
    proc = tf_console(root, expr, tmp_path)
    assert proc.returncode == 0 and "Error" not in proc.stdout + proc.stderr, proc.stdout + proc.stderr
    return json.loads(json.loads(proc.stdout))  # console prints the JSON string as an HCL string literal


def tolerates(tolerations: list[dict], taint: dict) -> bool:
    """Kubernetes' rule: a toleration matches a taint on key, effect, and value (Equal) or any value (Exists)."""
    for t in tolerations:
        if t.get("key") not in (None, "", taint["key"]) or t.get("effect") not in (None, "", taint["effect"]):
            continue
        if t.get("operator", "Equal") == "Exists" or t.get("value") == taint["value"]:
            return True
    return False


def load_tf(path: Path) -> dict:
    """All blocks of the .tf files under ``path``, quotes stripped from keys and literal strings."""

    def unquote(x):
        if isinstance(x, dict):
            return {unquote(k): unquote(v) for k, v in x.items() if k != "__is_block__"}
        if isinstance(x, list):
            return [unquote(v) for v in x]
        if isinstance(x, str) and len(x) >= 2 and x[0] == x[-1] == '"':
            return x[1:-1]
        return x

    merged: dict[str, list] = {}
    for f in sorted(path.rglob("*.tf")):
        with f.open() as fh:
            for kind, blocks in unquote(hcl2.load(fh)).items():
                merged.setdefault(kind, []).extend(blocks)
    return merged


def _blocks(tf: dict, kind: str, type_: str) -> dict:
    return {n: b for block in tf.get(kind, []) for t, items in block.items() if t == type_ for n, b in items.items()}


def platform_manifests() -> dict[str, str]:
    """The platform module's kubectl_manifest bodies by resource name (HCL expressions, unevaluated)."""
    return {
        n: b["yaml_body"]
        for n, b in _blocks(load_tf(INFRA / "modules" / "platform"), "resource", "kubectl_manifest").items()
    }


# --------------------------------------------------------------------------- one source for node pools
def test_committed_tfvars_are_what_params_yaml_says(cfg):
    assert stale_tfvars(cfg, INFRA) == [], "run `tuneline infra export`"


def test_infra_export_cli_writes_and_checks(tmp_path):
    runner = CliRunner()
    out = runner.invoke(app, ["infra", "export", "--dir", str(tmp_path), "--config", str(REPO / "params.yaml")])
    assert out.exit_code == 0, out.output
    assert (tmp_path / "eks" / TFVARS_NAME).read_text() == (INFRA / "eks" / TFVARS_NAME).read_text()
    args = ["infra", "export", "--check", "--dir", str(tmp_path), "--config", str(REPO / "params.yaml")]
    assert runner.invoke(app, args).exit_code == 0
    # a pool edited in params.yaml but not exported is caught
    changed = runner.invoke(app, [*args, "--set", "infra.gpu_pools=[{gpu: l4, max_nodes: 5}]"])
    assert changed.exit_code == 1 and "stale" in changed.output


def test_a_pool_outside_the_gpu_catalogue_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match=r"infra\.gpu_pools\.0\.gpu: 'b200' is not in plan\.gpus"):
        load_config(REPO / "params.yaml", ["infra.gpu_pools=[{gpu: b200}]"])
    with pytest.raises(ConfigError, match="a10g' needs eks_instance_type, gke_accelerator"):
        load_config(REPO / "params.yaml", ["infra.gpu_pools=[{gpu: a10g}]"])


def test_eks_gpu_node_groups_fit_the_pods_the_config_schedules(cfg, tmp_path):
    groups = evaluate(ROOTS["eks"], "local.gpu_node_groups", tmp_path)
    assert set(groups) == {f"gpu-{p.gpu}" for p in cfg.infra.gpu_pools}
    for pool in cfg.infra.gpu_pools:
        g = groups[f"gpu-{pool.gpu}"]
        assert (g["min_size"], g["max_size"], g["desired_size"]) == (0, pool.max_nodes, 0)
        assert g["capacity_type"] == ("SPOT" if pool.spot else "ON_DEMAND")
        assert g["ami_type"] == "AL2023_x86_64_NVIDIA"
        taint = {**g["taints"]["gpu"], "effect": K8S_EFFECT[g["taints"]["gpu"]["effect"]]}
        # the labels a node of this group will have: ours plus the kubelet's instance-type label
        node_labels = {**g["labels"], "node.kubernetes.io/instance-type": g["instance_types"][0]}
        sched = scheduling(cfg, pool.gpu, "eks")
        assert sched.node_selector.items() <= node_labels.items()
        assert tolerates(sched.tolerations, taint)
        assert not tolerates([], taint), "a pod without the toleration must stay off GPU nodes"
        # Cluster Autoscaler scales from zero only if the ASG tags describe the node it would get
        tags = g["tags"]
        assert tags["k8s.io/cluster-autoscaler/node-template/resources/nvidia.com/gpu"] == str(sched.gpus_per_node)
        assert (
            tags[f"k8s.io/cluster-autoscaler/node-template/taint/{taint['key']}"]
            == f"{taint['value']}:{taint['effect']}"
        )
        for k, v in node_labels.items():
            assert tags[f"k8s.io/cluster-autoscaler/node-template/label/{k}"] == v


def test_gke_gpu_node_pools_fit_the_pods_the_config_schedules(cfg, tmp_path):
    pools = {p["name"]: p for p in evaluate(ROOTS["gke"], "local.gpu_node_pools", tmp_path)}
    taints = evaluate(ROOTS["gke"], "local.node_pools_taints", tmp_path)
    labels = evaluate(ROOTS["gke"], "local.node_pools_labels", tmp_path)
    assert set(pools) == {f"gpu-{p.gpu}" for p in cfg.infra.gpu_pools}
    assert "system" not in taints or taints["system"] == []
    for pool in cfg.infra.gpu_pools:
        name = f"gpu-{pool.gpu}"
        p = pools[name]
        assert (p["min_count"], p["max_count"], p["autoscaling"], p["spot"]) == (0, pool.max_nodes, True, pool.spot)
        assert p["gpu_driver_version"] == "LATEST"  # GKE-managed drivers
        node_labels = {**labels[name], "cloud.google.com/gke-accelerator": p["accelerator_type"]}
        sched = scheduling(cfg, pool.gpu, "gke")
        assert sched.node_selector.items() <= node_labels.items()
        assert p["accelerator_count"] == sched.gpus_per_node
        [taint] = taints[name]
        assert tolerates(sched.tolerations, {**taint, "effect": K8S_EFFECT[taint["effect"]]})


@pytest.mark.parametrize("cloud", CLOUDS)
def test_variable_validation_refuses_pools_that_cannot_scale_from_zero(cloud, tmp_path):
    bad = json.loads((ROOTS[cloud] / TFVARS_NAME).read_text())
    next(iter(bad["gpu_pools"].values()))["min_nodes"] = 1
    proc = tf_console(ROOTS[cloud], "var.gpu_pools", tmp_path, tfvars=json.dumps(bad))
    # console reports a failed validation on its output (its exit code stays 0)
    assert "Invalid value for variable" in proc.stdout + proc.stderr and "scale from zero" in proc.stdout + proc.stderr
    untainted = json.loads((ROOTS[cloud] / TFVARS_NAME).read_text())
    next(iter(untainted["gpu_pools"].values()))["taint"]["key"] = "dedicated"
    proc = tf_console(ROOTS[cloud], "var.gpu_pools", tmp_path, tfvars=json.dumps(untainted))
    assert "nvidia.com/gpu NoSchedule taint" in proc.stdout + proc.stderr


# --------------------------------------------------------------------------- pins, identities, hygiene
EXACT = re.compile(r"^v?\d+\.\d+\.\d+$")


def test_modules_charts_and_providers_are_pinned():
    tf = load_tf(INFRA)
    modules = [(name, body) for block in tf["module"] for name, body in block.items()]
    assert len(modules) >= 8
    for name, body in modules:
        if body["source"].startswith("../"):
            assert "version" not in body, name
        else:
            assert EXACT.match(body["version"]), f"module {name}: {body['version']!r} is not an exact version"
    chart_versions = {}
    for block in tf["variable"]:
        for name, body in block.items():
            if name == "chart_versions":
                chart_versions.update(body["default"])
    releases = [
        (n, b)
        for block in tf["resource"]
        for kind, rs in block.items()
        if kind == "helm_release"
        for n, b in rs.items()
    ]
    assert {n for n, _ in releases} >= {
        "cert_manager",
        "knative_operator",
        "kserve",
        "keda",
        "kube_prometheus_stack",
        "argo_cd",
        "nvidia_device_plugin",
        "cluster_autoscaler",
        "kubeflow_trainer",
    }
    for name, body in releases:
        ref = re.fullmatch(r"\$\{(?:local\.v|var\.chart_versions)\.(\w+)\}", body["version"])
        assert ref and EXACT.match(chart_versions[ref.group(1)]), f"helm_release {name}: {body['version']}"
    assert EXACT.match(chart_versions["kubeflow_pipelines"])  # the KFP kustomize ref
    for block in tf["terraform"]:
        assert block["required_version"].startswith(">=")
        for providers in block["required_providers"]:
            for name, spec in providers.items():
                assert re.fullmatch(r"~> \d+\.\d+", spec["version"]), f"provider {name}: {spec['version']}"


def test_workload_identities_bind_the_service_accounts_the_repo_deploys():
    base = REPO / "mlflow" / "base"
    mlflow_sa = {
        "name": yaml.safe_load((base / "serviceaccount.yaml").read_text())["metadata"]["name"],
        "namespace": yaml.safe_load((base / "kustomization.yaml").read_text())["namespace"],
    }
    eks = {k: v for block in load_tf(ROOTS["eks"])["locals"] for k, v in block.items()}
    gke = {k: v for block in load_tf(ROOTS["gke"])["locals"] for k, v in block.items()}
    assert eks["workload_service_accounts"]["mlflow"] == f"{mlflow_sa['namespace']}:{mlflow_sa['name']}"
    assert gke["workload_service_accounts"]["mlflow"] == {
        "namespace": mlflow_sa["namespace"],
        "name": mlflow_sa["name"],
    }
    for sa in ("pipeline", "serving"):
        ns, name = eks["workload_service_accounts"][sa].split(":")
        assert gke["workload_service_accounts"][sa] == {"namespace": ns, "name": name}


def _evaluated_manifest(name: str, tmp_path: Path, **variables: str) -> dict:
    """The platform module's kubectl_manifest ``name`` as terraform evaluates it, validated as a Kubernetes object
    (``variables``: the module's inputs it reads, as HCL expressions)."""
    import kubernetes_validate

    expr = re.fullmatch(r"\$\{yamlencode\((.*)\)\}", platform_manifests()[name], re.S).group(1)
    for var, value in variables.items():
        expr = expr.replace(f"var.{var}", value)
    proc = subprocess.run(
        ["terraform", "console", "-no-color"],
        input=f"jsonencode({expr})\n",
        cwd=tmp_path,
        env=TF_ENV,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    obj = json.loads(json.loads(proc.stdout))
    kubernetes_validate.validate(obj, "1.32", strict=True)
    return obj


def test_the_train_step_may_run_its_multi_node_jobs(cfg, tmp_path):
    """The RBAC infra/ applies, evaluated by terraform and validated as Kubernetes objects, lets the pipeline's
    service account do what the train step does with a TrainJob (create, follow, replace after a failure)."""
    from tuneline.launch.training import PYTORCHJOB, TRAINJOB

    role, binding = (_evaluated_manifest(name, tmp_path) for name in ("train_jobs_role", "train_jobs_binding"))
    for kind in (TRAINJOB, PYTORCHJOB):
        [rule] = [r for r in role["rules"] if r["apiGroups"] == [kind.group] and r["resources"] == [kind.plural]]
        assert {"create", "get", "delete"} <= set(rule["verbs"])
    assert role["metadata"]["namespace"] == binding["metadata"]["namespace"] == cfg.kubeflow.namespace
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": cfg.kubeflow.service_account, "namespace": cfg.kubeflow.namespace}
    ]


def test_the_data_steps_may_launch_their_rayjobs_and_nothing_more(cfg, tmp_path):
    """infra/ installs the KubeRay operator at the version whose CRD the RayJob is validated against, and lets the
    pipeline's service account create, follow and replace RayJobs: the operator, not the step, makes the pods."""
    from tuneline.launch.rayjob import RAYJOB

    role, binding = (_evaluated_manifest(name, tmp_path) for name in ("ray_jobs_role", "ray_jobs_binding"))
    assert role["rules"] == [
        {"apiGroups": [RAYJOB.group], "resources": [RAYJOB.plural], "verbs": ["create", "get", "delete"]}
    ]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": cfg.kubeflow.service_account, "namespace": cfg.kubeflow.namespace}
    ]
    pinned = json.loads((REPO / "contracts" / "manifest.json").read_text())
    [crd] = [e for e in pinned["contracts"] if e["file"] == "kuberay/ray.io_rayjobs.yaml"]
    variables = (INFRA / "modules" / "platform" / "variables.tf").read_text()
    assert re.search(r'kuberay_operator\s*=\s*"' + re.escape(crd["version"].lstrip("v")) + '"', variables)
    assert "local.v.kuberay_operator" in (INFRA / "modules" / "platform" / "main.tf").read_text()


def test_ray_pods_run_as_their_own_account_and_only_ray_and_the_operator_reach_them(cfg, tmp_path):
    """The RayJob's pods run as infra/'s tuneline-ray account (no role binds it, no token is mounted, the
    pipeline's bucket identity trusts it on both clouds), and its NetworkPolicy selects exactly the label the
    RayJob puts on its pods, admitting Ray's pods and the KubeRay operator's job-status reads only."""
    from tuneline.launch import rayjob

    annotations = '{pipeline = {"eks.amazonaws.com/role-arn" = "arn:aws:iam::1:role/c-pipeline"}}'
    sa = _evaluated_manifest("ray_sa", tmp_path, service_account_annotations=annotations)
    policy = _evaluated_manifest("ray_network_policy", tmp_path)
    ray = cfg.data.ray.cluster.service_account
    assert sa["metadata"] == {
        "name": ray, "namespace": cfg.kubeflow.namespace,
        "annotations": {"eks.amazonaws.com/role-arn": "arn:aws:iam::1:role/c-pipeline"},  # the pipeline's identity
    }  # fmt: skip
    assert sa["automountServiceAccountToken"] is False
    bound = [m for n, m in platform_manifests().items() if n.endswith("_binding")]
    assert bound and not [m for m in bound if f'name = "{ray}"' in m], "no Kubernetes role for Ray's account"
    ray_label = {rayjob.RAY_POD_LABEL: "true"}
    assert policy["metadata"]["namespace"] == cfg.kubeflow.namespace
    assert policy["spec"]["podSelector"] == {"matchLabels": ray_label}
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    peers, operator = policy["spec"]["ingress"]
    assert peers == {"from": [{"podSelector": {"matchLabels": ray_label}}]}
    assert operator["ports"] == [{"protocol": "TCP", "port": 8265}]
    assert operator["from"][0]["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"] == "kuberay-system"
    staged = load_config(REPO / "params.yaml", ("data.ray.cluster.stage_uri=s3://b/staging/ray",))
    manifest = rayjob.rayjob_manifest(staged, "r1", "clean", cfg.kubeflow.namespace)
    head = manifest["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]
    assert ray_label.items() <= head["metadata"]["labels"].items()
    eks_trust = (INFRA / "eks" / "iam.tf").read_text()
    assert f'"{cfg.kubeflow.namespace}:{ray}"' in eks_trust
    gke = _blocks(load_tf(INFRA / "gke"), "resource", "google_service_account_iam_member")["ray_workload_identity"]
    assert gke["member"].endswith(f".svc.id.goog[{cfg.kubeflow.namespace}/{ray}]")
    assert 'workload_identity["pipeline"]' in gke["service_account_id"]


def test_staged_data_expires_from_both_buckets_with_every_old_version():
    """A failed run leaves pre-clean data (PII) where its RayJob was staged: the bucket expires the staging prefix
    (infra's stage_uri output) after a week, and its old versions a day after they are replaced."""
    eks = _blocks(load_tf(INFRA / "eks"), "resource", "aws_s3_bucket_lifecycle_configuration")["artifacts"]
    [staged] = [r for r in eks["rule"] if r["id"] == "expire-staged-data"]
    assert staged["status"] == "Enabled" and staged["filter"][0]["prefix"] == "staging/"
    assert staged["expiration"][0]["days"] == 7 and staged["noncurrent_version_expiration"][0]["noncurrent_days"] == 1
    gke = _blocks(load_tf(INFRA / "gke"), "resource", "google_storage_bucket")["artifacts"]
    staged_rules = [r["condition"][0] for r in gke["lifecycle_rule"] if "matches_prefix" in r["condition"][0]]
    assert {tuple(c["matches_prefix"]) for c in staged_rules} == {("staging/",)}
    assert {c.get("age") for c in staged_rules} >= {7} and {
        c.get("days_since_noncurrent_time") for c in staged_rules
    } >= {1}
    for cloud in ("eks", "gke"):
        [out] = [b["stage_uri"] for b in load_tf(INFRA / cloud)["output"] if "stage_uri" in b]
        assert "/staging/ray" in out["value"]


def test_both_clusters_enforce_network_policies():
    """The chart's default-deny NetworkPolicies are what keep pods off the predictor and metrics Services; a
    cluster without an enforcing dataplane would accept them and enforce nothing."""

    def module(cloud: str, name: str) -> dict:
        return next(b[name] for b in load_tf(INFRA / cloud)["module"] if name in b)

    cluster = module("eks", "eks")
    cni = cluster["cluster_addons"]["vpc-cni"]
    assert "enableNetworkPolicy" in cni["configuration_values"] and '"true"' in cni["configuration_values"]
    assert cni["before_compute"] is True  # on before the first node joins, not patched in afterwards
    assert module("gke", "gke")["network_policy"] is True


def test_the_eks_api_endpoint_is_open_only_to_the_networks_named(tmp_path):
    cluster = next(b["eks"] for b in load_tf(INFRA / "eks")["module"] if "eks" in b)
    assert cluster["cluster_endpoint_public_access_cidrs"] == "${var.api_allowed_cidrs}"
    proc = tf_console(
        ROOTS["eks"], "var.api_allowed_cidrs", tmp_path, extra=("-var", 'api_allowed_cidrs=["0.0.0.0/0"]')
    )
    assert "Invalid value for variable" in proc.stdout + proc.stderr and "opens the API to everyone" in proc.stderr


def test_terraform_fmt_is_clean():
    proc = subprocess.run(
        ["terraform", "fmt", "-check", "-recursive", "-diff", str(INFRA)],
        env=TF_ENV,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stdout


def test_checkov_offline_finds_nothing_unlisted():
    checkov = shutil.which("checkov", path=str(REPO / ".venv-tools" / "bin")) or shutil.which("checkov")
    assert checkov, "checkov is installed by `make setup` into .venv-tools"
    proc = subprocess.run(
        [checkov, "--config-file", str(INFRA / ".checkov.yaml"), "-o", "json"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    reports = json.loads(proc.stdout)
    reports = reports if isinstance(reports, list) else [reports]
    [report] = [r for r in reports if r["check_type"] == "terraform"]
    assert report["summary"]["parsing_errors"] == 0
    assert report["summary"]["resource_count"] >= 20
    failed = [(c["check_id"], c["resource"], c["file_path"]) for c in report["results"]["failed_checks"]]
    assert failed == []
    # every check skipped in the config carries a reason in the comment above it
    lines = (INFRA / ".checkov.yaml").read_text().splitlines()
    for i, line in enumerate(lines):
        if re.match(r"\s+- CKV", line):
            j = i - 1
            while re.match(r"\s+- CKV", lines[j]):
                j -= 1
            assert lines[j].strip().startswith("#"), f"{line.strip()} has no reason"


def test_serving_identities_are_read_only_on_the_models_prefix_per_environment():
    """What a compromised predictor could do with its cloud identity: read registered models, nothing else."""
    eks = load_tf(ROOTS["eks"])
    docs = _blocks(eks, "data", "aws_iam_policy_document")
    serving = docs["serving"]["statement"]
    actions = {a for s in serving for a in s["actions"]}
    assert actions == {"s3:ListBucket", "s3:GetObject", "kms:Decrypt"}, "read-only"
    for s in serving:
        if "s3:GetObject" in s["actions"]:
            assert all(r.endswith("/${local.models_prefix}/*") for r in s["resources"]), s
        if "s3:ListBucket" in s["actions"]:
            [cond] = s["condition"]
            assert cond["variable"] == "s3:prefix" and cond["values"] == ["${local.models_prefix}/*"]
    mlflow = {a for s in docs["mlflow"]["statement"] for a in s["actions"]}
    assert "s3:PutObject" in mlflow
    assert all(
        r.endswith("/${local.models_prefix}/*") or r == "${aws_s3_bucket.artifacts.arn}"
        for s in docs["mlflow"]["statement"]
        if s["sid"] != "UseBucketKey"
        for r in s["resources"]
    )
    modules = {n: b for block in eks["module"] for n, b in block.items()}
    assert modules["serving_irsa"]["for_each"] == "${toset(var.serving_namespaces)}", "one role per environment"
    assert "serving" not in str(modules["workload_irsa"]["for_each"]).replace('k != "serving"', "")

    gke = load_tf(ROOTS["gke"])
    members = _blocks(gke, "resource", "google_storage_bucket_iam_member")
    assert members["serving"]["role"] == "roles/storage.objectViewer"
    assert members["serving"]["for_each"] == "${module.serving_identity}"
    for name in ("serving", "mlflow"):
        [cond] = members[name]["condition"]
        assert cond["expression"] == "${local.models_condition}"
    gke_locals = {k: v for block in gke["locals"] for k, v in block.items()}
    assert "/objects/${local.models_prefix}/" in gke_locals["models_condition"]


def test_the_pipeline_service_account_reads_no_secrets():
    cfg = load_config(REPO / "params.yaml")
    manifests = platform_manifests()
    role = manifests["pipeline_role"]
    assert "secrets" not in role and "pods/exec" not in role and '"*"' not in role
    assert f'name = "{cfg.kubeflow.service_account}"' in manifests["pipeline_sa"].replace("  ", " ")
    assert cfg.kubeflow.service_account == "tuneline-pipeline"
