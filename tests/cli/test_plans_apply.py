"""`metering plans validate` and `plans apply` on hostile and dangerous plans (issue 14, items
3 and 9): deeply nested TOML is a one-line error; a plan that drops a meter accounts use is
refused, naming the meter and the accounts, unless --remove-meters-in-use is given."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest

from metering.cli.main import main
from metering.core.directory import Directory
from metering.core.plan_loading import EXAMPLES_DIR, parse_plan
from metering.core.plans import Plan
from metering.settings import Settings
from streams.config_follower import ConfigFollower
from streams.kafka import new_consumer, started

APSIS = (EXAMPLES_DIR / "apsis.toml").read_text(encoding="utf-8")
WITHOUT_KNOWN_PROFILES = (
    APSIS[: APSIS.index("[meters.known_profiles]")] + APSIS[APSIS.index("[meters.sms_credits]") :]
)


def test_validate_turns_deep_toml_into_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    deep = tmp_path / "deep.toml"
    deep.write_text("a = " + "[" * 10_000 + "]" * 10_000)
    assert main(["plans", "validate", str(deep)]) == 5  # a bad input file
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert err.startswith(f"metering: {deep}: <document>: not valid TOML: nested too deeply")
    assert "Traceback" not in err


def test_removed_meters_in_use_names_the_accounts_on_the_plan() -> None:
    directory = Directory()
    apsis = parse_plan(APSIS, source="apsis.toml")
    directory.put_plan(apsis)
    smaller = parse_plan(WITHOUT_KNOWN_PROFILES, source="apsis.toml")
    assert directory.removed_meters_in_use(smaller) == {}, "no account on the plan yet"
    assert directory.apply_record(b"account:b", b'{"id": "b", "plan": "apsis-essential"}') is None
    assert directory.apply_record(b"account:a", b'{"id": "a", "plan": "apsis-essential"}') is None
    assert directory.apply_record(b"account:c", b'{"id": "c", "plan": "clerk"}') is None
    assert directory.removed_meters_in_use(smaller) == {"known_profiles": ["a", "b"]}
    assert directory.removed_meters_in_use(apsis) == {}


@pytest.mark.integration
async def test_apply_refuses_to_drop_a_meter_in_use_unless_forced(
    kafka_bootstrap: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    run = uuid.uuid4().hex[:8]
    monkeypatch.setenv("METERING_KAFKA_BOOTSTRAP", kafka_bootstrap)
    for topic in ("events", "accounts", "dead_letter", "late", "thresholds", "statements", "tiers"):
        monkeypatch.setenv(f"METERING_{topic.upper()}_TOPIC", f"cli.{run}.{topic}")
    account = tmp_path / "accounts.json"
    account.write_text(
        '[{"id": "acme", "plan": "apsis-essential"}, {"id": "beta", "plan": "apsis-essential"}]'
    )
    smaller = tmp_path / "apsis.toml"
    smaller.write_text(WITHOUT_KNOWN_PROFILES)
    assert await asyncio.to_thread(main, ["topics", "create"]) == 0
    assert await asyncio.to_thread(main, ["plans", "apply", "--examples"]) == 0
    assert await asyncio.to_thread(main, ["accounts", "put", str(account)]) == 0
    capsys.readouterr()

    assert await asyncio.to_thread(main, ["plans", "apply", str(smaller)]) == 2
    err = capsys.readouterr().err
    assert (
        "plan apsis-essential: meter 'known_profiles' is in use by 2 accounts (acme, beta)" in err
    )
    assert "--remove-meters-in-use" in err
    assert (await plan_in_force(Settings.from_env())).has_meter("known_profiles")

    forced = ["plans", "apply", "--remove-meters-in-use", str(smaller)]
    assert await asyncio.to_thread(main, forced) == 0
    out, err = capsys.readouterr()
    assert "warning: plan apsis-essential: removing meter 'known_profiles'" in err
    assert "applied plan apsis-essential" in out
    assert not (await plan_in_force(Settings.from_env())).has_meter("known_profiles")

    billing = tmp_path / "billing.toml"
    billing.write_text(WITHOUT_KNOWN_PROFILES.replace("calendar_month", "billing_month"))
    assert await asyncio.to_thread(main, ["plans", "apply", str(billing)]) == 2
    err = capsys.readouterr().err
    assert "plan apsis-essential: billing periods need a contract_date" in err
    assert "2 accounts (acme, beta) lack" in err
    email = (await plan_in_force(Settings.from_env())).meter("email_sendings")
    assert email.period is not None
    assert not email.period.anchored, "the refused plan was not published"


async def plan_in_force(settings: Settings) -> Plan:
    directory = Directory()
    consumer = new_consumer(settings, group_id=None, client_id="test-plans-apply")
    async with started(consumer):
        await ConfigFollower(consumer, settings.accounts_topic, directory).catch_up()
    plan = directory.plan("apsis-essential")
    assert plan is not None
    return plan
