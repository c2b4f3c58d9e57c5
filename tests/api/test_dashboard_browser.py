"""The "My consumption" page in a real headless Chromium against a real uvicorn server:
what a person sees (meter names, numbers, status colours, period, last update), and a
screenshot kept in .state/screenshots/dashboard.png for people to look at."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from tests.api.cdp import REPO, Browser, chromium_path
from tests.api.conftest import NOW
from tests.api.server import ServerThread

pytestmark = pytest.mark.integration

SCREENSHOT = REPO / ".state" / "screenshots" / "dashboard.png"
GREEN, YELLOW, RED = "rgb(46, 158, 79)", "rgb(224, 168, 0)", "rgb(208, 52, 44)"


@pytest.fixture(scope="module")
def chromium() -> str:
    return chromium_path()


@pytest.fixture
async def server(redis_url: str) -> AsyncIterator[ServerThread]:
    running = ServerThread(redis_url).start()
    yield running
    running.stop()


@pytest.fixture
async def browser(chromium: str) -> AsyncIterator[Browser]:
    b = await Browser(chromium).start()
    yield b
    await b.close()


READ_METERS = """
[...document.querySelectorAll('article.meter')].map((m) => ({
  meter: m.dataset.meter,
  status: m.dataset.status,
  label: m.querySelector('.status').innerText,
  name: m.querySelector('.name').innerText,
  used: m.querySelector('.used').innerText,
  dot: getComputedStyle(m.querySelector('.dot')).backgroundColor,
  fill: m.querySelector('.fill') ? m.querySelector('.fill').style.width : null,
  text: m.innerText,
}))
"""


async def test_my_consumption_page_shows_each_meter_as_a_coloured_bar(
    server: ServerThread, browser: Browser, redis: aioredis.Redis
) -> None:
    await redis.set("mtr:{apsis}:c:email_sendings:2026-11", 85)
    await redis.hset("mtr:{apsis}:u", "email_sendings:2026-11", NOW - 3_600_000)
    await redis.sadd("mtr:{apsis}:g:known_profiles", *[f"p{i}" for i in range(2_400)])
    await redis.set("mtr:{apsis}:b:sms_credits", 0)
    await redis.hset("mtr:{apsis}:ht", "email_sendings:2026-11", 7)  # a hold's total

    token = server.tokens["apsis"]
    await browser.send("Page.navigate", url=f"{server.url}/dashboard#key={token}")
    await browser.wait_for("!!document.body && document.body.dataset.ready === '1'")

    # The key left the address bar at once, and the session cookie is not readable by scripts.
    assert await browser.evaluate("location.href") == f"{server.url}/dashboard"
    assert token not in (await browser.evaluate("document.cookie"))
    login_display = "getComputedStyle(document.getElementById('login')).display"
    assert await browser.evaluate(login_display) == "none"  # signed in: no key form
    heading = await browser.evaluate("document.querySelector('h1').innerText")
    assert heading == "My consumption"
    subtitle = await browser.evaluate("document.getElementById('subtitle').innerText")
    assert "apsis" in subtitle
    assert "APSIS Essential" in subtitle

    meters = {m["meter"]: m for m in await browser.evaluate(READ_METERS)}
    assert list(meters) == ["email_sendings", "known_profiles", "sms_credits"]
    email = meters["email_sendings"]
    assert (email["name"], email["used"]) == ("Email sendings", "85 / 100")
    assert (email["status"], email["label"], email["dot"]) == ("yellow", "AT RISK", YELLOW)
    assert email["fill"] == "85%"
    assert "Remaining\n15" in email["text"]
    assert "Held\n7 admitted, not counted yet" in email["text"]  # beside usage, not in it
    assert "Consumption since\n1 Nov 2026 (until 30 Nov 2026)" in email["text"]
    assert "Last update\n15 Nov 2026, 12:00" in email["text"]  # 11:00 UTC in Stockholm
    assert "At this pace\n≈ 175 by period end" in email["text"]

    profiles = meters["known_profiles"]
    assert (profiles["used"], profiles["status"]) == ("2,400 / 10,000", "green")
    assert profiles["dot"] == GREEN
    assert profiles["label"] == "OK"
    assert "Last update\nno usage yet" in profiles["text"]
    assert "Held" not in profiles["text"]

    sms = meters["sms_credits"]
    assert sms["name"] == "SMS credits"
    assert (sms["used"], sms["status"], sms["label"], sms["dot"]) == (
        "0 credits left",
        "red",
        "NO CREDITS",
        RED,
    )
    shot = await browser.screenshot(SCREENSHOT)
    assert shot.stat().st_size > 10_000


async def test_without_a_key_the_page_asks_for_one_and_refuses_a_wrong_one(
    server: ServerThread, browser: Browser
) -> None:
    await browser.send("Page.navigate", url=f"{server.url}/dashboard")
    await browser.wait_for(
        "!!document.getElementById('login') && !document.getElementById('login').hidden"
    )
    await browser.evaluate(
        "document.getElementById('key').value = 'mk_wrong';"
        "document.querySelector('#login button').click()"
    )
    error = await browser.wait_for("document.getElementById('login-error').innerText")
    assert "not a valid API key" in error
    await browser.evaluate(
        f"document.getElementById('key').value = {server.tokens['acton']!r};"
        "document.querySelector('#login button').click()"
    )
    await browser.wait_for("!!document.body && document.body.dataset.ready === '1'")
    meters = await browser.evaluate(READ_METERS)
    assert [m["meter"] for m in meters] == ["active_contacts"]
    assert meters[0]["used"] == "0 / 5"
    await browser.screenshot(Path(SCREENSHOT.parent / "dashboard-acton.png"))
