"""Every setting is documented in docs/configuration.md (a new one cannot slip in unnoticed)."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import pytest

from metering.core.errors import ConfigError
from metering.settings import Settings

DOC = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


def test_every_setting_is_documented() -> None:
    text = DOC.read_text()
    missing = [f.name for f in fields(Settings) if f"`METERING_{f.name.upper()}`" not in text]
    assert missing == []


def test_settings_are_read_from_the_environment() -> None:
    settings = Settings.from_env({"METERING_EVENTS_TOPIC": "usage", "METERING_GRACE_S": "60"})
    assert (settings.events_topic, settings.grace_s) == ("usage", 60)


def test_a_malformed_number_names_the_variable() -> None:
    with pytest.raises(ConfigError, match="METERING_GRACE_S: expected an integer, got 'soon'"):
        Settings.from_env({"METERING_GRACE_S": "soon"})


def test_the_sasl_password_is_not_printed() -> None:
    assert "hunter2" not in repr(Settings(kafka_sasl_password="hunter2"))


def test_to_env_round_trips_through_from_env() -> None:
    settings = Settings(events_topic="t", grace_s=5, redis_cluster=True, kafka_sasl_password="pw")
    assert Settings.from_env(settings.to_env()) == settings
