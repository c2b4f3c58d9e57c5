"""The shipped Prometheus files pass Prometheus's own checks: `promtool check config` (which also
loads the rule files), `promtool check rules`, and the rule unit tests of
deploy/prometheus/tests/ (`promtool test rules`: synthetic series in, expected alerts out), so
a rule that parses but never fires, or fires on healthy data, fails here."""

from __future__ import annotations

import subprocess

import pytest

from tests.observability.prom import CONFIG, PROMETHEUS_DIR, RULE_TESTS, RULES, PrometheusTools

pytestmark = pytest.mark.integration


def _promtool(tools: PrometheusTools, *args: str) -> str:
    done = subprocess.run(
        [tools.promtool, *args], capture_output=True, text=True, check=False, cwd=PROMETHEUS_DIR
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"promtool {' '.join(args)}:\n{output}"
    return output


def test_promtool_check_config(prometheus_tools: PrometheusTools) -> None:
    output = _promtool(prometheus_tools, "check", "config", str(CONFIG))
    assert f"SUCCESS: {len(RULES)} rule files found" in output


def test_promtool_check_rules(prometheus_tools: PrometheusTools) -> None:
    assert RULES, "no rule files in deploy/prometheus/rules"
    output = _promtool(prometheus_tools, "check", "rules", *map(str, RULES))
    assert output.count("SUCCESS") == len(RULES)


def test_promtool_rule_unit_tests(prometheus_tools: PrometheusTools) -> None:
    assert RULE_TESTS, "no rule tests in deploy/prometheus/tests"
    output = _promtool(prometheus_tools, "test", "rules", *map(str, RULE_TESTS))
    assert "SUCCESS" in output
