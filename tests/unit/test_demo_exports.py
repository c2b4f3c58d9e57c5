"""The demo's printed `export` lines give a shell exactly the run's settings."""

from __future__ import annotations

import os
import subprocess
from dataclasses import replace

from metering.demo.__main__ import CLI_FIELDS, cli_exports, run_settings
from metering.settings import Settings


def test_sourcing_the_exports_gives_the_runs_topics() -> None:
    base = replace(Settings(), kafka_bootstrap="127.0.0.1:19092")
    settings = run_settings(base, "abc123")
    lines = cli_exports(settings, "http://127.0.0.1:8080", "mk_admin'quote")
    assert all(line.startswith("export METERING_") for line in lines)
    script = "\n".join([*lines, "env"])
    env = {k: v for k, v in os.environ.items() if not k.startswith("METERING_")}
    done = subprocess.run(
        ["bash", "-c", script], env=env, capture_output=True, text=True, check=True
    )
    seen = dict(
        line.split("=", 1) for line in done.stdout.splitlines() if line.startswith("METERING_")
    )
    assert seen.pop("METERING_API_URL") == "http://127.0.0.1:8080"
    assert seen.pop("METERING_API_KEY") == "mk_admin'quote"
    shell = Settings.from_env(seen)
    for name in CLI_FIELDS:
        assert getattr(shell, name) == getattr(settings, name), name
    assert shell.events_topic == "demo.abc123.usage-events"
