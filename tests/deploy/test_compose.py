"""deploy/compose holds together (no Docker engine needed; test_compose_up.py brings
compose.local.yaml up for real): the gateway's models file points at engine services, Prometheus
scrapes the gateway and every engine under the gateway's model names, Grafana mounts where its
provisioning looks, and bind mounts exist."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from codeserve.server.config import Settings, UpstreamEngine, load_models_file

REPO = Path(__file__).resolve().parents[2]
COMPOSE_DIR = REPO / "deploy" / "compose"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    # safe_load resolves the `<<: *engine` merge keys the way Compose does.
    return yaml.safe_load((COMPOSE_DIR / "compose.yaml").read_text())


def _engines(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: svc for name, svc in compose["services"].items() if name.startswith("vllm-")}


def _flag(service: dict[str, Any], flag: str) -> str | None:
    for arg in service.get("command", []):
        if arg.startswith(flag + "="):
            return arg.split("=", 1)[1]
    return None


def _seconds(duration: str) -> float:
    units = {"s": 1, "m": 60, "h": 3600}
    return float(duration[:-1]) * units[duration[-1]]


def _bind_mounts(service: dict[str, Any]) -> list[tuple[Path, str]]:
    mounts = []
    for volume in service.get("volumes", []):
        source, target = volume.split(":")[:2]
        if source.startswith("."):
            mounts.append(((COMPOSE_DIR / source).resolve(), target))
    return mounts


def test_services_and_bind_mounts(compose: dict[str, Any]) -> None:
    assert {"gateway", "prometheus", "grafana"} <= set(compose["services"])
    assert len(_engines(compose)) == 2
    for name, service in compose["services"].items():
        for source, _ in _bind_mounts(service):
            assert source.exists(), f"{name}: bind mount source {source} is missing"
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if not source.startswith((".", "/")):
                assert source in compose["volumes"], f"{name}: undeclared volume {source}"
    gateway = compose["services"]["gateway"]
    assert gateway["build"]["target"] == "gateway"
    assert (COMPOSE_DIR / gateway["build"]["context"] / "Dockerfile").exists()


def test_engines_use_the_gpu_drain_and_report_health(compose: dict[str, Any]) -> None:
    for name, engine in _engines(compose).items():
        devices = engine["deploy"]["resources"]["reservations"]["devices"]
        assert any("gpu" in d["capabilities"] for d in devices), name
        assert "/health" in " ".join(engine["healthcheck"]["test"])
        drain = int(_flag(engine, "--shutdown-timeout") or 0)
        assert drain > 0 and _seconds(engine["stop_grace_period"]) > drain, name
        assert "ports" not in engine, f"{name}: engines must not be reachable past the gateway"
    shares = [float(_flag(e, "--gpu-memory-utilization")) for e in _engines(compose).values()]
    assert sum(shares) <= 0.9, "engines sharing one GPU overcommit its memory"


def test_gateway_models_point_at_engine_services(compose: dict[str, Any]) -> None:
    gateway = compose["services"]["gateway"]
    env = gateway["environment"]
    known = {f"CODESERVE_{f.upper()}" for f in Settings.model_fields}
    assert {k for k in env if k.startswith("CODESERVE_")} <= known
    mounted = dict((target, source) for source, target in _bind_mounts(gateway))
    models = load_models_file(mounted[env["CODESERVE_MODELS_FILE"]])
    engines = _engines(compose)
    pointed = set()
    for spec in models.models:
        assert isinstance(spec.engine, UpstreamEngine)
        for url in spec.engine.urls:
            parts = urlsplit(str(url))
            engine = engines[parts.hostname]
            assert str(parts.port) == _flag(engine, "--port")
            assert _flag(engine, "--served-model-name") == spec.upstream_model_name
            pointed.add(parts.hostname)
    assert pointed == set(engines), "an engine no model uses"


def test_prometheus_scrapes_gateway_and_engines_by_model_name(compose: dict[str, Any]) -> None:
    prometheus = compose["services"]["prometheus"]
    mounted = dict((target, source) for source, target in _bind_mounts(prometheus))
    config = yaml.safe_load(mounted["/etc/prometheus/prometheus.yml"].read_text())
    gateway = compose["services"]["gateway"]
    models = load_models_file(
        dict((t, s) for s, t in _bind_mounts(gateway))[
            gateway["environment"]["CODESERVE_MODELS_FILE"]
        ]
    )
    model_of = {urlsplit(str(u)).hostname: m.name for m in models.models for u in m.engine.urls}
    scraped: dict[str, dict[str, str]] = {}
    for job in config["scrape_configs"]:
        assert job.get("metrics_path", "/metrics") == "/metrics"
        for group in job["static_configs"]:
            for target in group["targets"]:
                host, port = target.split(":")
                assert host in compose["services"], f"scrape target {target}: no such service"
                scraped[host] = {"port": port, **group.get("labels", {})}
    assert scraped["gateway"]["port"] == "8080"
    for name, engine in _engines(compose).items():
        assert scraped[name]["port"] == _flag(engine, "--port")
        # Dashboard panels filter vLLM series by the gateway's model name.
        assert scraped[name]["model"] == model_of[name]


def test_grafana_mounts_where_provisioning_looks(compose: dict[str, Any]) -> None:
    grafana = compose["services"]["grafana"]
    mounts = {target: source for source, target in _bind_mounts(grafana)}
    provisioning = mounts["/etc/grafana/provisioning"]
    datasource = yaml.safe_load((provisioning / "datasources" / "prometheus.yaml").read_text())
    assert urlsplit(datasource["datasources"][0]["url"]).hostname == "prometheus"
    provider = yaml.safe_load((provisioning / "dashboards" / "codeserve.yaml").read_text())
    path = provider["providers"][0]["options"]["path"]
    assert (mounts[path] / "codeserve.json").exists()
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert (mounts[str(Path(home).parent)] / Path(home).name).exists()


def test_local_compose_keeps_the_gateway_and_prometheus_of_the_real_one(
    compose: dict[str, Any],
) -> None:
    """compose.local.yaml (mock engines, no GPU, no registry; brought up by test_compose_up.py)
    differs from compose.yaml only in what runs the engines and Prometheus."""
    local = yaml.safe_load((COMPOSE_DIR / "compose.local.yaml").read_text())
    assert set(_engines(local)) == set(_engines(compose))
    for name in _engines(local):
        assert "ports" not in local["services"][name]
    gateway, real = local["services"]["gateway"], compose["services"]["gateway"]
    for key in ("environment", "volumes", "ports", "read_only", "tmpfs", "stop_grace_period"):
        assert gateway.get(key) == real.get(key), f"gateway {key} differs from compose.yaml"
    prometheus = local["services"]["prometheus"]
    assert prometheus["volumes"] == compose["services"]["prometheus"]["volumes"]
    assert prometheus["command"] == compose["services"]["prometheus"]["command"]
