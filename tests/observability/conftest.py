"""Fixtures of the observability tests: the Prometheus binaries (installed once by the
project's script, so `pytest` alone works on a fresh machine with apt)."""

from __future__ import annotations

import pytest

from tests.observability.prom import PrometheusTools, install_prometheus


@pytest.fixture(scope="session")
def prometheus_tools() -> PrometheusTools:
    """`prometheus` and `promtool`; a failed install is an error, not a skip."""
    try:
        return install_prometheus()
    except RuntimeError as exc:
        pytest.fail(str(exc), pytrace=False)
