"""The Grafana dashboard loads, covers what an operator needs per model, and queries only metrics
that exist: the gateway's (from the registry codeserve.server.metrics builds) and vLLM's (from the metric
definitions in the installed vllm package's source)."""

from __future__ import annotations

import ast
import importlib.util
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from codeserve.server.metrics import GatewayMetrics

REPO = Path(__file__).resolve().parents[2]
DASHBOARD = REPO / "deploy" / "grafana" / "dashboards" / "codeserve.json"
PROVISIONING = REPO / "deploy" / "grafana" / "provisioning"

# Sample names a metric family exports, by type (prometheus_client's exposition).
SUFFIXES = {
    "counter": ("_total",),
    "gauge": ("",),
    "histogram": ("_bucket", "_sum", "_count"),
    "summary": ("", "_sum", "_count"),
}
PROMQL_WORDS = {
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    "inf",
    "nan",
}
# What the issue asks the dashboard to show, per model.
REQUIRED = {
    "codeserve_requests_total",  # requests/s and errors
    "codeserve_candidates_total",
    "codeserve_time_to_first_token_seconds_bucket",
    "codeserve_request_duration_seconds_bucket",
    "codeserve_requests_in_flight",
    "codeserve_engine_restarts_total",
    "vllm:num_requests_waiting",
    "vllm:kv_cache_usage_perc",
    "vllm:time_to_first_token_seconds_bucket",
    "vllm:e2e_request_latency_seconds_bucket",
}


def gateway_series() -> set[str]:
    names = set()
    for family in GatewayMetrics().registry.collect():
        names |= {family.name + suffix for suffix in SUFFIXES[family.type]}
    return names


def _metric_kind(call: ast.Call) -> str | None:
    func = call.func
    callee = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
    for kind in ("counter", "gauge", "histogram"):
        if kind in callee.lower():
            return kind
    return None


def vllm_series() -> set[str]:
    """Every `vllm:` series the installed vLLM defines, read from its source (importing vLLM
    would take seconds and pull in torch)."""
    spec = importlib.util.find_spec("vllm")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("vllm is not installed (scripts/install.sh --no-engine)")
    root = Path(next(iter(spec.submodule_search_locations)))
    names = set()
    for path in root.rglob("*.py"):
        text = path.read_text(encoding="utf-8", errors="replace")
        if '"vllm:' not in text:
            continue
        for node in ast.walk(ast.parse(text)):
            if not isinstance(node, ast.Call) or not (kind := _metric_kind(node)):
                continue
            for kw in node.keywords:
                if (
                    kw.arg == "name"
                    and isinstance(kw.value, ast.Constant)
                    and str(kw.value.value).startswith("vllm:")
                ):
                    base = str(kw.value.value).removesuffix("_total")
                    names |= {base + suffix for suffix in SUFFIXES[kind]}
    return names


def metric_names(expr: str) -> set[str]:
    """Metric names a PromQL expression selects."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # strings
    expr = re.sub(r"\{[^}]*\}", " ", expr)  # label matchers
    expr = re.sub(r"\[[^\]]*\]", " ", expr)  # ranges
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", expr)
    names = set()
    for match in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", expr):
        word = match.group(0)
        if expr[match.end() :].lstrip().startswith("("):
            continue  # a function
        if word.lower() in PROMQL_WORDS or expr[match.start() - 1 : match.start()] == "$":
            continue
        names.add(word)
    return names


def panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def _queries(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    return [(p["title"], t["expr"]) for p in panels(dashboard) for t in p.get("targets", [])]


def test_metric_name_extraction() -> None:
    expr = (
        'histogram_quantile(0.95, sum by (model, le) (rate(vllm:x_bucket{model=~"$model", '
        'a="b{c}"}[$__rate_interval]))) / on (model) group_left (state) codeserve_y == 1'
    )
    assert metric_names(expr) == {"vllm:x_bucket", "codeserve_y"}


def test_dashboard_shape(dashboard: dict[str, Any]) -> None:
    assert dashboard["uid"] and dashboard["title"]
    ids = [p["id"] for p in panels(dashboard)]
    assert len(ids) == len(set(ids)), "duplicate panel ids"
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["query"] == "prometheus"
    assert variables["model"]["includeAll"] and variables["model"]["multi"]
    for panel in panels(dashboard):
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
            assert panel["targets"], panel["title"]


def test_every_query_is_per_model(dashboard: dict[str, Any]) -> None:
    for title, expr in _queries(dashboard):
        assert 'model=~"$model"' in expr, f"{title}: not filtered by the model variable"


def test_every_queried_metric_is_exported(dashboard: dict[str, Any]) -> None:
    exported = gateway_series() | vllm_series()
    queried = set()
    for title, expr in _queries(dashboard):
        names = metric_names(expr)
        assert names, f"{title}: no metric in {expr}"
        missing = names - exported
        assert not missing, f"{title}: {sorted(missing)} exported by neither gateway nor vLLM"
        queried |= names
    variable = next(v for v in dashboard["templating"]["list"] if v["name"] == "model")
    source = re.fullmatch(r"label_values\((\w+),\s*model\)", variable["query"]["query"])
    assert source and source.group(1) in exported
    assert REQUIRED <= queried, f"dashboard lacks {sorted(REQUIRED - queried)}"


def test_exported_name_sources_are_real() -> None:
    """Guards the two name lists themselves, so an empty or wrong list cannot pass every query."""
    gateway = gateway_series()
    assert {
        "codeserve_requests_total",
        "codeserve_engine_state",
        "codeserve_time_to_first_token_seconds_bucket",
    } <= gateway
    vllm = vllm_series()
    assert {
        "vllm:num_requests_waiting",
        "vllm:generation_tokens_total",
        "vllm:e2e_request_latency_seconds_bucket",
    } <= vllm
    assert "vllm:generation_tokens" not in vllm, "counters are exported with _total"


def test_grafana_provisioning_points_at_the_dashboard() -> None:
    provider = yaml.safe_load((PROVISIONING / "dashboards" / "codeserve.yaml").read_text())
    (entry,) = provider["providers"]
    assert entry["type"] == "file" and entry["options"]["path"] == "/var/lib/grafana/dashboards"
    datasource = yaml.safe_load((PROVISIONING / "datasources" / "prometheus.yaml").read_text())
    (source,) = datasource["datasources"]
    assert source["type"] == "prometheus" and source["isDefault"]
