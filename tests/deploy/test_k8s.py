"""deploy/k8s renders (`kubectl kustomize`), validates against the Kubernetes schemas offline, and
holds together: probes, drains, Services, the models ConfigMap, the NetworkPolicy and the CRDs
(KEDA, Prometheus Operator) that no offline schema covers."""

from __future__ import annotations

import os
import re
from pathlib import Path
from urllib.parse import urlsplit

import kubernetes_validate
import pytest
import yaml

from codeserve.server.config import Settings, UpstreamEngine, parse_models_file
from tests.deploy.kubectl import Obj, render

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "deploy" / "k8s"
OVERLAYS = ["gpu", "cpu-demo"]
# Oldest Kubernetes we claim (native sidecars, preStop exec, policy/v1, autoscaling/v2) and the
# newest the schemas know.
K8S_VERSIONS = ["1.29", kubernetes_validate.utils.latest_version()]
NAMESPACE = "codeserve"
CRD_GROUPS = ("keda.sh/", "monitoring.coreos.com/")


def _render_overlay(name: str) -> list[Obj]:
    return render(K8S / "overlays" / name)


def _render_with(tmp_path: Path, components: list[str]) -> list[Obj]:
    """Base plus components, as an overlay a user would write (for the HPA alternative).
    kustomize takes only relative paths to other kustomizations."""

    def rel(path: Path) -> str:
        return os.path.relpath(path, tmp_path)

    kust = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "namespace": NAMESPACE,
        "resources": [rel(K8S / "base")],
        "components": [rel(K8S / "components" / c) for c in components],
    }
    (tmp_path / "kustomization.yaml").write_text(yaml.safe_dump(kust))
    return render(tmp_path)


def _of(objs: list[Obj], kind: str) -> list[Obj]:
    return [o for o in objs if o["kind"] == kind]


def _named(objs: list[Obj], kind: str, name: str) -> Obj:
    found = [o for o in _of(objs, kind) if o["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} objects"
    return found[0]


def _selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def _engines(objs: list[Obj]) -> list[Obj]:
    return [
        d
        for d in _of(objs, "Deployment")
        if d["metadata"]["labels"].get("app.kubernetes.io/component") == "engine"
    ]


def _gateway(objs: list[Obj]) -> Obj:
    return _named(objs, "Deployment", "codeserve-gateway")


def _pod_labels(deployment: Obj) -> dict[str, str]:
    return deployment["spec"]["template"]["metadata"]["labels"]


def _container(deployment: Obj) -> Obj:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def _flag(container: Obj, flag: str) -> str | None:
    for arg in container.get("args", []):
        if arg.startswith(flag + "="):
            return arg.split("=", 1)[1]
    return None


def _sleep_seconds(container: Obj) -> int:
    command = container["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sleep" and len(command) == 2, command
    return int(command[1])


def _models(objs: list[Obj]) -> tuple[Obj, object]:
    """The gateway's models ConfigMap (followed through its volume) and the parsed file."""
    gateway = _gateway(objs)
    env = {e["name"]: e.get("value") for e in _container(gateway)["env"]}
    path = Path(env["CODESERVE_MODELS_FILE"])
    mount = next(
        m for m in _container(gateway)["volumeMounts"] if m["mountPath"] == str(path.parent)
    )
    volume = next(
        v for v in gateway["spec"]["template"]["spec"]["volumes"] if v["name"] == mount["name"]
    )
    configmap = _named(objs, "ConfigMap", volume["configMap"]["name"])
    text = configmap["data"][path.name]
    return configmap, parse_models_file(text, f"ConfigMap {configmap['metadata']['name']}")


@pytest.fixture(scope="module", params=OVERLAYS)
def overlay(request: pytest.FixtureRequest) -> tuple[str, list[Obj]]:
    return request.param, _render_overlay(request.param)


def test_every_object_validates_against_kubernetes_schemas(
    overlay: tuple[str, list[Obj]],
) -> None:
    name, objs = overlay
    checked = 0
    for obj in objs:
        if obj["apiVersion"].startswith(CRD_GROUPS):
            continue  # checked field by field below
        for version in K8S_VERSIONS:
            try:
                kubernetes_validate.validate(obj, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                pytest.fail(
                    f"{name}: {obj['kind']}/{obj['metadata']['name']} invalid for "
                    f"Kubernetes {version}: {exc.message} at {list(exc.path)}"
                )
        checked += 1
    assert checked >= 8


def test_everything_lands_in_the_codeserve_namespace(overlay: tuple[str, list[Obj]]) -> None:
    _, objs = overlay
    for obj in objs:
        if obj["kind"] == "Namespace":
            assert obj["metadata"]["name"] == NAMESPACE
        else:
            assert obj["metadata"].get("namespace") == NAMESPACE, obj["metadata"]


def test_engines_probe_health_drain_and_request_resources(
    overlay: tuple[str, list[Obj]],
) -> None:
    _, objs = overlay
    engines = _engines(objs)
    assert len(engines) == 2
    for deployment in engines:
        name = deployment["metadata"]["name"]
        pod = deployment["spec"]["template"]["spec"]
        container = _container(deployment)
        port_names = {p["name"]: p["containerPort"] for p in container["ports"]}
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            get = container[probe]["httpGet"]
            assert get["path"] == "/health", (name, probe)
            assert get["port"] in port_names, (name, probe)
        assert _flag(container, "--port") == str(port_names["http"])
        # The pod leaves DNS during preStop, then vLLM drains for --shutdown-timeout seconds:
        # the grace period must cover both or in-flight requests are killed.
        drain = int(_flag(container, "--shutdown-timeout") or 0)
        assert drain > 0, f"{name}: vLLM aborts running requests without --shutdown-timeout"
        assert pod["terminationGracePeriodSeconds"] > _sleep_seconds(container) + drain
        requests = container["resources"]["requests"]
        assert {"cpu", "memory"} <= set(requests), name
        assert pod["securityContext"]["runAsNonRoot"] is True
        strategy = deployment["spec"]["strategy"]["rollingUpdate"]
        assert strategy["maxUnavailable"] == 0, f"{name}: rollouts must not drop capacity"


def test_each_engine_has_a_headless_service_selecting_its_pods(
    overlay: tuple[str, list[Obj]],
) -> None:
    _, objs = overlay
    for deployment in _engines(objs):
        name = deployment["metadata"]["name"]
        service = _named(objs, "Service", name)
        assert service["spec"]["clusterIP"] == "None", f"{name}: Service must be headless"
        assert _selects(service["spec"]["selector"], _pod_labels(deployment))
        # No other engine's pods behind this Service.
        others = [d for d in _engines(objs) if d is not deployment]
        assert not any(_selects(service["spec"]["selector"], _pod_labels(d)) for d in others)
        names = {p["name"] for p in _container(deployment)["ports"]}
        assert all(p["targetPort"] in names for p in service["spec"]["ports"])


def test_models_configmap_parses_and_points_at_engine_services(
    overlay: tuple[str, list[Obj]],
) -> None:
    _, objs = overlay
    _, models = _models(objs)
    assert len(models.models) == len(_engines(objs))
    for spec in models.models:
        engine = spec.engine
        assert isinstance(engine, UpstreamEngine)
        assert engine.discover, f"{spec.name}: headless Services need discovery"
        (url,) = engine.urls
        parts = urlsplit(str(url))
        match = re.fullmatch(r"([a-z0-9-]+)\.([a-z0-9-]+)\.svc\.cluster\.local", parts.hostname)
        assert match, f"{spec.name}: {url} is not a Service DNS name"
        service = _named(objs, "Service", match.group(1))
        assert match.group(2) == service["metadata"]["namespace"]
        assert parts.port in {p["port"] for p in service["spec"]["ports"]}
        deployment = _named(objs, "Deployment", match.group(1))
        container = _container(deployment)
        assert _flag(container, "--served-model-name") == spec.upstream_model_name
        assert _pod_labels(deployment)["codeserve/model"] == spec.name


def test_gateway_settings_probes_service_and_disruption_budget(
    overlay: tuple[str, list[Obj]],
) -> None:
    _, objs = overlay
    gateway = _gateway(objs)
    container = _container(gateway)
    known = {f"CODESERVE_{field.upper()}" for field in Settings.model_fields}
    env = {e["name"]: e.get("value") for e in container["env"]}
    unknown = {k for k in env if k.startswith("CODESERVE_")} - known
    assert not unknown, f"gateway env names no setting: {unknown}"
    port = next(p for p in container["ports"] if p["name"] == "http")["containerPort"]
    assert env["CODESERVE_PORT"] == str(port) and env["CODESERVE_HOST"] == "0.0.0.0"
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"] == {"path": "/health", "port": "http"}
    grace = gateway["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert grace > _sleep_seconds(container) + float(env["CODESERVE_SHUTDOWN_GRACE_S"])

    labels = _pod_labels(gateway)
    service = _named(objs, "Service", "codeserve")
    assert _selects(service["spec"]["selector"], labels)
    pdb = _named(objs, "PodDisruptionBudget", "codeserve-gateway")
    assert _selects(pdb["spec"]["selector"]["matchLabels"], labels)
    assert pdb["spec"]["minAvailable"] < gateway["spec"]["replicas"], "PDB would block drains"


def test_only_the_gateway_reaches_engines(overlay: tuple[str, list[Obj]]) -> None:
    _, objs = overlay
    gateway_labels = _pod_labels(_gateway(objs))
    policy = _named(objs, "NetworkPolicy", "engines-from-gateway-only")
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    for deployment in _engines(objs):
        assert _selects(policy["spec"]["podSelector"]["matchLabels"], _pod_labels(deployment))
    assert not _selects(policy["spec"]["podSelector"]["matchLabels"], gateway_labels)
    (rule,) = policy["spec"]["ingress"]
    (peer,) = rule["from"]
    assert set(peer) == {"podSelector"}, "peer must be pods of this namespace only"
    assert _selects(peer["podSelector"]["matchLabels"], gateway_labels)
    # Any other policy on engines may only admit Prometheus, never everyone.
    for other in _of(objs, "NetworkPolicy"):
        for rule in other["spec"].get("ingress", []):
            assert rule.get("from"), f"{other['metadata']['name']}: ingress from anywhere"


def test_overlay_specifics() -> None:
    gpu = _render_overlay("gpu")
    for deployment in _engines(gpu):
        container = _container(deployment)
        assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
        assert container["image"].startswith("vllm/vllm-openai:")
    cpu = _render_overlay("cpu-demo")
    for deployment in _engines(cpu):
        container = _container(deployment)
        assert "nvidia.com/gpu" not in container["resources"].get("limits", {})
        assert container["image"] == "codeserve:cpu"
        assert "VLLM_CPU_KVCACHE_SPACE" in {e["name"] for e in container["env"]}
    assert not _of(cpu, "ScaledObject") and not _of(cpu, "ServiceMonitor"), (
        "cpu-demo must run on a bare cluster (no KEDA or Prometheus Operator CRDs)"
    )


def _check_scaled_object(obj: Obj, objs: list[Obj]) -> None:
    """The fields KEDA's CRD requires, and that the trigger scales on the model's vLLM queue."""
    spec = obj["spec"]
    target = _named(objs, "Deployment", spec["scaleTargetRef"]["name"])
    assert 0 <= spec.get("minReplicaCount", 0) <= spec["maxReplicaCount"]
    (trigger,) = spec["triggers"]
    assert trigger["type"] == "prometheus"
    meta = trigger["metadata"]
    assert {"serverAddress", "query", "threshold"} <= set(meta)
    assert all(isinstance(v, str) for v in meta.values()), "KEDA trigger metadata are strings"
    assert float(meta["threshold"]) > 0
    assert urlsplit(meta["serverAddress"]).scheme in {"http", "https"}
    model = _pod_labels(target)["codeserve/model"]
    assert "vllm:num_requests_waiting" in meta["query"]
    assert f'model="{model}"' in meta["query"]
    assert f'namespace="{target["metadata"]["namespace"]}"' in meta["query"]


def _check_service_monitor(obj: Obj, objs: list[Obj]) -> None:
    """Required `selector` and `endpoints`; every endpoint port exists on a selected Service."""
    spec = obj["spec"]
    services = [
        s
        for s in _of(objs, "Service")
        if _selects(spec["selector"]["matchLabels"], s["metadata"].get("labels", {}))
    ]
    assert services, f"ServiceMonitor {obj['metadata']['name']} selects no Service"
    assert spec["endpoints"]
    for endpoint in spec["endpoints"]:
        assert endpoint["path"] == "/metrics"
        for service in services:
            assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}
        for relabel in endpoint.get("relabelings", []):
            assert relabel["targetLabel"] and relabel["sourceLabels"]


def test_custom_resources_have_their_required_fields() -> None:
    objs = _render_overlay("gpu")
    scaled = _of(objs, "ScaledObject")
    assert {s["spec"]["scaleTargetRef"]["name"] for s in scaled} == {
        d["metadata"]["name"] for d in _engines(objs)
    }, "one ScaledObject per engine"
    for obj in scaled:
        assert obj["apiVersion"] == "keda.sh/v1alpha1"
        _check_scaled_object(obj, objs)
    monitors = _of(objs, "ServiceMonitor")
    assert {m["metadata"]["name"] for m in monitors} == {"codeserve-gateway", "codeserve-engines"}
    for obj in monitors:
        assert obj["apiVersion"] == "monitoring.coreos.com/v1"
        _check_service_monitor(obj, objs)
    engines_monitor = _named(objs, "ServiceMonitor", "codeserve-engines")
    relabels = engines_monitor["spec"]["endpoints"][0]["relabelings"]
    assert any(r["targetLabel"] == "model" for r in relabels), "dashboards filter vLLM by model"


def test_hpa_alternative_validates_and_never_meets_keda(tmp_path: Path) -> None:
    objs = _render_with(tmp_path, ["hpa"])
    hpas = _of(objs, "HorizontalPodAutoscaler")
    assert len(hpas) == len(_engines(objs))
    for hpa in hpas:
        for version in K8S_VERSIONS:
            kubernetes_validate.validate(hpa, version, strict=True)
        _named(objs, "Deployment", hpa["spec"]["scaleTargetRef"]["name"])
        (metric,) = hpa["spec"]["metrics"]
        assert metric["pods"]["metric"]["name"] == "vllm_num_requests_waiting"
    for overlay in OVERLAYS:
        kust = yaml.safe_load((K8S / "overlays" / overlay / "kustomization.yaml").read_text())
        used = {Path(c).name for c in kust.get("components", [])}
        assert not {"hpa", "keda"} <= used, f"{overlay}: HPA and KEDA would fight over replicas"
