"""The chart's NetworkPolicies, evaluated with Kubernetes' NetworkPolicy semantics (networking.k8s.io/v1:
a pod selected by a policy of a direction accepts only what one of those policies' rules allows; a
connection needs the source's egress and the destination's ingress). No cluster here, so the semantics
are implemented below for what the chart uses (label selectors, namespace selectors, ipBlock with except,
TCP/UDP ports), and the rendered policies are checked path by path."""

from __future__ import annotations

import copy
import ipaddress
from dataclasses import dataclass, field

import pytest

from tests.test_chart import CHART, REPO, render

NS = "tuneline"
PROD = REPO / "deploy" / "environments" / "prod.yaml"  # RawDeployment


@dataclass(frozen=True)
class Pod:
    namespace: str
    labels: dict[str, str] = field(default_factory=dict)

    def __hash__(self) -> int:
        return hash((self.namespace, tuple(sorted(self.labels.items()))))


@dataclass(frozen=True)
class External:
    ip: str


def _matches(selector: dict | None, labels: dict[str, str]) -> bool:
    selector = selector or {}
    assert set(selector) <= {"matchLabels", "matchExpressions"}
    for expr in selector.get("matchExpressions", []):
        assert expr["operator"] == "In", "only In is used (and implemented)"
        if labels.get(expr["key"]) not in expr["values"]:
            return False
    return all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items())


def _peer_matches(peer: dict, policy_ns: str, other: Pod | External) -> bool:
    if "ipBlock" in peer:
        if not isinstance(other, External):
            return False
        ip = ipaddress.ip_address(other.ip)
        block = peer["ipBlock"]
        return ip in ipaddress.ip_network(block["cidr"]) and not any(
            ip in ipaddress.ip_network(e) for e in block.get("except", [])
        )
    if not isinstance(other, Pod):
        return False
    if "namespaceSelector" in peer:
        ns_ok = _matches(peer["namespaceSelector"], {"kubernetes.io/metadata.name": other.namespace})
    else:
        ns_ok = other.namespace == policy_ns
    return ns_ok and _matches(peer.get("podSelector"), other.labels)


def _ports_match(ports: list[dict] | None, protocol: str, port: int) -> bool:
    return not ports or any(p.get("protocol", "TCP") == protocol and p["port"] == port for p in ports)


def _allowed(policies: list[dict], pod: Pod, direction: str, other: Pod | External, protocol: str, port: int) -> bool:
    kind, key = ("Ingress", "from") if direction == "ingress" else ("Egress", "to")
    selecting = [
        p
        for p in policies
        if p["metadata"]["namespace"] == pod.namespace
        and kind in p["spec"].get("policyTypes", ["Ingress"])
        and _matches(p["spec"]["podSelector"], pod.labels)
    ]
    if not selecting:
        return True  # not isolated in this direction
    for p in selecting:
        for rule in p["spec"].get(direction, []):
            peers = rule.get(key)
            if (not peers or any(_peer_matches(x, pod.namespace, other) for x in peers)) and _ports_match(
                rule.get("ports"), protocol, port
            ):
                return True
    return False


def can_connect(
    policies: list[dict], src: Pod | External, dst: Pod | External, port: int, protocol: str = "TCP"
) -> bool:
    out_ok = not isinstance(src, Pod) or _allowed(policies, src, "egress", dst, protocol, port)
    in_ok = not isinstance(dst, Pod) or _allowed(policies, dst, "ingress", src, protocol, port)
    return out_ok and in_ok


def policies_of(*values, sets: tuple[str, ...] = ()) -> list[dict]:
    docs = render(*values, sets=sets, namespace=NS)
    out = [copy.deepcopy(d) for d in docs if d["kind"] == "NetworkPolicy"]  # render() is cached: no edits
    for d in out:
        d["metadata"].setdefault("namespace", NS)
    return out


PREDICTOR = Pod(NS, {"serving.kserve.io/inferenceservice": "tuneline", "component": "predictor"})
HELM_TEST = Pod(NS, {"tuneline.io/helm-test": "tuneline"})
NEIGHBOUR = Pod(NS, {"app": "something-else"})
GATEWAY = Pod("envoy-gateway-system", {"app.kubernetes.io/name": "envoy"})
STRANGER = Pod("default", {"app": "curl"})
PROMETHEUS = Pod("monitoring", {"app.kubernetes.io/name": "prometheus"})
GRAFANA = Pod("monitoring", {"app.kubernetes.io/name": "grafana"})
KUBE_DNS = Pod("kube-system", {"k8s-app": "kube-dns"})
ACTIVATOR = Pod("knative-serving", {"app": "activator"})
KOURIER = Pod("kourier-system", {"app": "3scale-kourier-gateway"})
S3 = External("52.216.8.10")
DATABASE = External("10.20.0.5")
METADATA = External("169.254.169.254")


@pytest.mark.parametrize("values", [(), (PROD,)], ids=["serverless", "raw-deployment"])
def test_only_the_allowed_paths_are_open(values):
    pol = policies_of(*values)
    assert any(p["spec"]["podSelector"] == {} for p in pol), "a default deny for the whole namespace"
    assert can_connect(pol, GATEWAY, PREDICTOR, 8080)
    assert can_connect(pol, HELM_TEST, PREDICTOR, 8080)
    assert can_connect(pol, PROMETHEUS, PREDICTOR, 9400), "Prometheus scrapes the metrics sidecar"
    assert not can_connect(pol, PROMETHEUS, PREDICTOR, 8080), "never the inference API behind the gateway"
    assert not can_connect(pol, STRANGER, PREDICTOR, 8080), "a pod in another namespace"
    assert not can_connect(pol, NEIGHBOUR, PREDICTOR, 8080), "an unrelated pod in the same namespace"
    assert not can_connect(pol, GRAFANA, PREDICTOR, 8080), "only Prometheus from the monitoring namespace"
    assert not can_connect(pol, PROMETHEUS, PREDICTOR, 22)
    assert can_connect(pol, PREDICTOR, KUBE_DNS, 53, "UDP") and can_connect(pol, PREDICTOR, KUBE_DNS, 53)
    assert not can_connect(pol, PREDICTOR, KUBE_DNS, 443)
    assert can_connect(pol, PREDICTOR, S3, 443), "object storage over HTTPS"
    assert not can_connect(pol, PREDICTOR, S3, 80)
    assert not can_connect(pol, PREDICTOR, DATABASE, 443), "not the cluster's private networks"
    assert not can_connect(pol, PREDICTOR, METADATA, 80), "no metadata server unless configured"
    assert not can_connect(pol, PREDICTOR, STRANGER, 8080)
    assert not can_connect(pol, HELM_TEST, S3, 443)
    assert not can_connect(pol, NEIGHBOUR, S3, 443), "default deny covers the namespace's other pods"


def test_serverless_lets_knative_reach_the_pods_and_raw_deployment_does_not():
    serverless, raw = policies_of(), policies_of(PROD)
    for port in (8080, 8012):
        assert can_connect(serverless, ACTIVATOR, PREDICTOR, port) and can_connect(serverless, KOURIER, PREDICTOR, port)
    assert can_connect(serverless, HELM_TEST, KOURIER, 80), "the cluster-local address is Knative's local gateway"
    assert not can_connect(raw, ACTIVATOR, PREDICTOR, 8080) and not can_connect(raw, HELM_TEST, KOURIER, 80)


def test_metadata_server_for_workload_identity_is_opt_in():
    pol = policies_of(sets=("networkPolicy.metadataServer=169.254.169.254",))
    assert can_connect(pol, PREDICTOR, METADATA, 80)
    assert not can_connect(pol, PREDICTOR, METADATA, 443)


def test_evaluator_sees_no_isolation_without_policies():
    """The control: with the policies off, everything is open (so the checks above test the policies)."""
    pol = policies_of(sets=("networkPolicy.enabled=false",))
    assert pol == [] and can_connect(pol, STRANGER, PREDICTOR, 8080) and can_connect(pol, PREDICTOR, DATABASE, 5432)


def test_knative_service_is_cluster_local_unless_values_say_external():
    isvc = next(d for d in render(namespace=NS) if d["kind"] == "InferenceService")
    assert isvc["metadata"]["labels"]["networking.knative.dev/visibility"] == "cluster-local"
    external = next(d for d in render(sets=("visibility=external",), namespace=NS) if d["kind"] == "InferenceService")
    assert "networking.knative.dev/visibility" not in external["metadata"]["labels"]
    raw = next(d for d in render(PROD, namespace=NS) if d["kind"] == "InferenceService")
    assert "networking.knative.dev/visibility" not in raw["metadata"]["labels"], "RawDeployment: no Knative"
    assert CHART.is_dir()


def test_mlflow_is_reached_only_from_the_pipeline_and_serving_namespaces():
    from tests.test_chart import config
    from tests.test_mlflow_manifests import KUBECTL, build

    if KUBECTL is None:
        pytest.skip("kubectl (for kustomize) is not installed")
    docs = build("eks")
    pol = [d for d in docs if d["kind"] == "NetworkPolicy"]
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    server = Pod("mlflow", deployment["spec"]["template"]["metadata"]["labels"])
    cfg = config()
    allowed = {cfg.kubeflow.namespace, *(e.namespace for e in cfg.serve.environments.values())}
    for ns in allowed:
        assert can_connect(pol, Pod(ns, {"app": "step"}), server, 5000), ns
    assert not can_connect(pol, Pod("kubeflow", {"app": "step"}), server, 22)
    assert not can_connect(pol, STRANGER, server, 5000)
    assert not can_connect(pol, Pod("mlflow", {"app": "other"}), server, 5000)
    assert can_connect(pol, server, External("10.1.2.3"), 5432), "its PostgreSQL"
    assert not can_connect(pol, server, External("10.1.2.3"), 22)
    assert can_connect(pol, server, S3, 443) and not can_connect(pol, server, METADATA, 80)
    [rule] = next(p for p in pol if p["metadata"]["name"] == "tracking-server")["spec"]["ingress"]
    [peer] = rule["from"]
    assert set(peer["namespaceSelector"]["matchExpressions"][0]["values"]) == allowed, "the namespaces of params.yaml"
