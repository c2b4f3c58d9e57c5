"""The shipped monitoring files agree with each other and with the code, without services:
the scrape targets are the processor's and the API's loopback ports, every metric the alerts and
the dashboard name is one we export (or one docs/observability.md asks the API to export), every
alert is unit-tested in deploy/prometheus/tests, the dashboard is provisioned the way
docker-compose.yml mounts it, and the compose file keeps its structure (YAML parse and checks;
Docker itself is never run here: ADR 0002)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml  # type: ignore[import-untyped]  # no stubs in the venv
from prometheus_client import CollectorRegistry

from metering.api.metrics import ApiMetrics
from metering.settings import Settings
from streams.metrics import ProcessorMetrics
from tests.observability.prom import (
    CONFIG,
    DASHBOARD,
    PROCESSOR_JOB,
    REPO,
    RULE_TESTS,
    RULES,
    config_for_test,
)

COMPOSE = REPO / "docker-compose.yml"
GRAFANA = REPO / "deploy" / "grafana"
DOC = REPO / "docs" / "observability.md"
# What the API exports (metering/api/metrics.py), as docs/observability.md specifies.
API_METRICS = {
    "metering_api_request_duration_seconds",
    "metering_api_admission_decisions_total",
    "metering_api_requests_in_flight",
}
STANDARD = {"up", "ALERTS", "process_resident_memory_bytes", "process_cpu_seconds_total"}
SUFFIXES = ("_bucket", "_count", "_sum")
ACCOUNT_LABEL = re.compile(r"[{,(]\s*(account|account_id|subject)\s*[=!~,)]")
METRIC = re.compile(
    r"\b((?:[a-z_]+:)?metering_[a-z0-9_]+(?::[a-z0-9_]+)?|up|ALERTS|process_[a-z_]+)\b"
)


def _yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def _names(registry: CollectorRegistry) -> set[str]:
    return {f"{f.name}_total" if f.type == "counter" else f.name for f in registry.collect()}


def _bundle_names() -> set[str]:
    registry = CollectorRegistry()
    ProcessorMetrics.create(registry)
    return _names(registry)


def test_the_api_exports_exactly_the_specified_metrics() -> None:
    """The rules and the dashboard were written against API_METRICS: the API must match it."""
    metrics = ApiMetrics.create()
    assert _names(metrics.registry) == API_METRICS
    types = {f.name: f.type for f in metrics.registry.collect()}
    assert types == {
        "metering_api_request_duration_seconds": "histogram",
        "metering_api_admission_decisions": "counter",
        "metering_api_requests_in_flight": "gauge",
    }
    metrics.request_duration.labels("/r", "GET", "200").observe(0.001)
    metrics.count_decisions("sms", [(True, "credits_available")])
    labels = {s.name: set(s.labels) - {"le"} for f in metrics.registry.collect() for s in f.samples}
    assert labels["metering_api_request_duration_seconds_count"] == {"route", "method", "status"}
    assert labels["metering_api_admission_decisions_total"] == {"action", "allowed", "reason"}
    assert labels["metering_api_requests_in_flight"] == set()


def _rules() -> list[dict[str, Any]]:
    return [rule for path in RULES for group in _yaml(path)["groups"] for rule in group["rules"]]


def _recorded() -> set[str]:
    return {rule["record"] for rule in _rules() if "record" in rule}


def _known(name: str) -> bool:
    known = _bundle_names() | API_METRICS | STANDARD | _recorded()
    if name in known:
        return True
    return any(name.endswith(s) and name.removesuffix(s) in known for s in SUFFIXES)


def _dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def _dashboard_exprs() -> list[str]:
    return [t["expr"] for p in _dashboard()["panels"] for t in p.get("targets", [])]


def test_scrape_targets_are_the_loopback_ports_of_the_settings() -> None:
    config = _yaml(CONFIG)
    targets = {
        job["job_name"]: [t for sc in job["static_configs"] for t in sc["targets"]]
        for job in config["scrape_configs"]
    }
    defaults = Settings()
    assert targets[PROCESSOR_JOB] == [f"127.0.0.1:{defaults.metrics_port}"]
    assert targets["metering-api"] == [f"127.0.0.1:{defaults.api_port}"]
    assert all(t.startswith("127.0.0.1:") for ts in targets.values() for t in ts)
    assert config["rule_files"] == ["rules/*.yml"]


def test_the_test_configuration_keeps_the_shipped_job() -> None:
    config = config_for_test("127.0.0.1:1234")
    assert [j["job_name"] for j in config["scrape_configs"]] == [PROCESSOR_JOB]
    assert config["scrape_configs"][0]["static_configs"] == [{"targets": ["127.0.0.1:1234"]}]
    assert config["global"]["scrape_interval"] == "1s"
    assert config["rule_files"] == [str(p) for p in RULES]


def test_alerts_are_complete_and_each_one_is_unit_tested() -> None:
    alerts = {rule["alert"]: rule for rule in _rules() if "alert" in rule}
    assert {
        "MeteringProcessorDown",
        "MeteringNoProcessorUp",
        "MeteringConsumerLagGrowing",
        "MeteringProcessorStalled",
        "MeteringDeadLetterRate",
        "MeteringOutboxStuck",
        "MeteringRedisErrors",
    } <= set(alerts)
    for name, rule in alerts.items():
        assert rule["labels"]["severity"] in {"page", "warn"}, name
        assert rule["annotations"]["summary"], name
        assert rule["annotations"]["description"], name
        assert "for" in rule, f"{name}: alerts wait before firing"
    fired = {
        case["alertname"]
        for path in RULE_TESTS
        for test in _yaml(path)["tests"]
        for case in test.get("alert_rule_test", [])
        if case.get("exp_alerts")
    }
    assert set(alerts) <= fired, f"alerts never seen firing in a rule test: {set(alerts) - fired}"


def test_every_metric_in_rules_and_dashboard_is_exported() -> None:
    exprs = [rule["expr"] for rule in _rules()] + _dashboard_exprs()
    used = {m for expr in exprs for m in METRIC.findall(expr)}
    unknown = sorted(m for m in used if not _known(m))
    assert not unknown, f"not exported by any bundle or documented for the API: {unknown}"
    # The dashboard shows all of the processor's metrics somewhere.
    shown = {m for expr in _dashboard_exprs() for m in METRIC.findall(expr)}
    shown |= {m.removesuffix(s) for m in shown for s in SUFFIXES if m.endswith(s)}
    missing = _bundle_names() - shown
    assert not missing, f"processor metrics on no dashboard panel: {missing}"


def test_dashboard_panels() -> None:
    dashboard = _dashboard()
    assert dashboard["uid"] == "metering-overview"
    panels = dashboard["panels"]
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids))
    datasource = _yaml(GRAFANA / "provisioning" / "datasources" / "prometheus.yml")
    variable = {v["name"]: v for v in dashboard["templating"]["list"]}["datasource"]
    assert variable["type"] == "datasource"
    assert variable["query"] == "prometheus"
    assert variable["current"]["value"] == datasource["datasources"][0]["uid"]  # the default
    uid = "${datasource}"  # every panel follows the variable: pick another Prometheus at will
    for panel in panels:
        grid = panel["gridPos"]
        assert grid["x"] >= 0, panel["title"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == uid, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == uid, panel["title"]
            assert not ACCOUNT_LABEL.search(target["expr"]), panel["title"]
    titles = " | ".join(p["title"].lower() for p in panels)
    assert "processor memory (bytes)" in titles
    assert "processor cpu (cores)" in titles
    for topic in ("throughput", "rejects by reason", "lag", "apply latency", "outbox", "crossings"):
        assert topic in titles, topic


def test_every_alert_links_its_runbook() -> None:
    """`runbook_url` on every alert, to a section of docs/runbooks.md named after it."""
    runbooks = (REPO / "docs" / "runbooks.md").read_text()
    headings = set(re.findall(r"^## (\w+)$", runbooks, flags=re.MULTILINE))
    alerts = [rule for rule in _rules() if "alert" in rule]
    assert alerts
    for rule in alerts:
        name = rule["alert"]
        assert rule["annotations"]["runbook_url"] == f"docs/runbooks.md#{name.lower()}", name
        assert name in headings, f"no section ## {name} in docs/runbooks.md"
    assert headings == {rule["alert"] for rule in alerts}, "runbooks of alerts that do not exist"


def test_one_unit_per_axis() -> None:
    """A panel draws one unit: no overrides that change it, and no bytes next to seconds."""
    for panel in _dashboard()["panels"]:
        if panel["type"] == "row":
            continue
        unit = panel["fieldConfig"]["defaults"]["unit"]
        for override in panel["fieldConfig"].get("overrides", []):
            assert all(p["id"] != "unit" for p in override["properties"]), panel["title"]
        kinds = set()
        for target in panel["targets"]:
            expr = target["expr"]
            if "process_resident_memory_bytes" in expr:
                kinds.add("bytes")
            elif "process_cpu_seconds_total" in expr:
                kinds.add("cores")
            elif "histogram_quantile" in expr and "_seconds_bucket" in expr:
                kinds.add("seconds")
        assert len(kinds) <= 1, f"{panel['title']}: {kinds} on one axis"
        if kinds == {"bytes"}:
            assert unit == "bytes", panel["title"]
        if kinds == {"seconds"}:
            assert unit == "s", panel["title"]


def test_grafana_provisioning_matches_compose() -> None:
    compose = _yaml(COMPOSE)
    grafana = compose["services"]["grafana"]
    mounts = dict(v.rsplit(":", 2)[:2] for v in grafana["volumes"] if v.startswith("./"))
    provider = _yaml(GRAFANA / "provisioning" / "dashboards" / "metering.yml")["providers"][0]
    assert mounts["./deploy/grafana/dashboards"] == provider["options"]["path"]
    assert mounts["./deploy/grafana/provisioning"] == "/etc/grafana/provisioning"
    datasource = _yaml(GRAFANA / "provisioning" / "datasources" / "prometheus.yml")
    assert datasource["datasources"][0]["url"] == "http://127.0.0.1:9090"
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home == f"{provider['options']['path']}/{DASHBOARD.name}"


def test_compose_file_structure() -> None:
    compose = _yaml(COMPOSE)
    services = compose["services"]
    assert set(services) == {"kafka", "redis", "prometheus", "grafana"}
    volumes = {"kafka-data", "redis-data", "prometheus-data", "grafana-data"}
    assert set(compose["volumes"]) >= volumes
    for name, service in services.items():
        assert isinstance(service["image"], str), name
        assert ":" in service["image"], f"{name}: pin the image's version"
        for port in service.get("ports", []):
            assert port.startswith("127.0.0.1:"), f"{name}: {port}"
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith("./"):
                assert (REPO / source).exists(), f"{name}: {source}"
            else:
                assert source in compose["volumes"], f"{name}: {source}"
    prometheus, grafana = services["prometheus"], services["grafana"]
    assert prometheus["network_mode"] == grafana["network_mode"] == "host"
    assert "--web.listen-address=127.0.0.1:9090" in prometheus["command"]
    assert "--config.file=/etc/prometheus/prometheus.yml" in prometheus["command"]
    assert "./deploy/prometheus:/etc/prometheus:ro" in prometheus["volumes"]
    assert grafana["environment"]["GF_SERVER_HTTP_ADDR"] == "127.0.0.1"


def test_docs_list_every_metric_and_alert() -> None:
    doc = DOC.read_text()
    for name in sorted(_bundle_names() | API_METRICS):
        assert f"`{name}`" in doc, name
    for rule in _rules():
        if "alert" in rule:
            assert f"`{rule['alert']}`" in doc, rule["alert"]
