"""The "My consumption" page in a real headless Chromium against a real uvicorn server on real
Redis, at 1280 px and at 390 px (a phone): what a person sees (meter names, numbers, status
colours, period, last update, the forecast, the 12-period chart, the tier cards), what assistive
technology is told (progressbars, a live region that speaks only of changes), AA contrast
measured on the computed colours, no sideways scrolling, and the account picker of admin keys.
Screenshots are kept in .state/screenshots/ for people to look at."""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import redis.asyncio as aioredis
from starlette.applications import Starlette

from metering.api.app import create_app
from metering.api.auth import Scope
from metering.runtime.api import running
from metering.settings import Settings
from tests.api.cdp import REPO, Browser, chromium_path
from tests.api.conftest import NOW
from tests.api.server import ServerThread
from tests.api.test_end_to_end import processor
from tests.integration.harness import (
    TopicFactory,
    encoded,
    event,
    make_settings,
    produce,
    publish_config,
)

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


WIDTHS = {"desktop": (1280, 900, False), "phone": (390, 844, True)}


@pytest.fixture(params=list(WIDTHS))
async def browser(chromium: str, request: pytest.FixtureRequest) -> AsyncIterator[Browser]:
    b = await Browser(chromium).start()
    width, height, mobile = WIDTHS[request.param]
    await b.send(
        "Emulation.setDeviceMetricsOverride",
        width=width,
        height=height,
        deviceScaleFactor=1,
        mobile=mobile,
    )
    b.width = width  # type: ignore[attr-defined]
    yield b
    await b.close()


def shot_name(browser: Browser, name: str) -> Path:
    width: int = browser.width  # type: ignore[attr-defined]
    return SCREENSHOT.parent / f"{name}-{width}.png"


# WCAG 2 contrast of every element that shows text (SVG text by its fill) against the first
# opaque background behind it, from Chromium's computed styles.
CONTRASTS = """
(() => {
  const rgb = (text) => (text.match(/[\\d.]+/g) || []).map(Number);
  const lum = ([r, g, b]) => {
    const c = [r, g, b].map((v) => v / 255)
      .map((v) => (v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4)));
    return 0.2126 * c[0] + 0.7152 * c[1] + 0.0722 * c[2];
  };
  const background = (node) => {
    for (let n = node; n && n.nodeType === 1; n = n.parentElement) {
      const c = rgb(getComputedStyle(n).backgroundColor);
      if (c.length === 3 || (c.length === 4 && c[3] === 1)) return c.slice(0, 3);
    }
    return [255, 255, 255];
  };
  const found = [];
  for (const node of document.querySelectorAll('body *')) {
    const own = [...node.childNodes].some((c) => c.nodeType === 3 && c.textContent.trim());
    if (!own || node.closest('[hidden], .visually-hidden, title, desc')) continue;
    if (!node.getClientRects().length) continue;
    const style = getComputedStyle(node);
    const fg = rgb(node instanceof SVGElement ? style.fill : style.color).slice(0, 3);
    const [a, b] = [lum(fg), lum(background(node))].sort((x, y) => y - x);
    found.push({ text: node.textContent.trim().slice(0, 40), ratio: (a + 0.05) / (b + 0.05) });
  }
  return found;
})()
"""

LAYOUT = """
({
  overflow: document.documentElement.scrollWidth - document.documentElement.clientWidth,
  cut: [...document.querySelectorAll('.status')].filter((s) => {
    const card = s.closest('article').getBoundingClientRect();
    const box = s.getBoundingClientRect();
    return s.scrollWidth > s.clientWidth || box.right > card.right || box.left < card.left;
  }).map((s) => s.innerText),
})
"""

READ_BARS = """
Object.fromEntries([...document.querySelectorAll('article.meter')].map((m) => {
  const bar = m.querySelector('[role=progressbar]');
  return [m.dataset.meter, bar && ['aria-valuemin', 'aria-valuenow', 'aria-valuemax',
    'aria-valuetext', 'aria-label'].map((a) => bar.getAttribute(a))];
}))
"""

READ_CHART = """
Object.fromEntries([...document.querySelectorAll('article.meter')].map((m) => {
  const svg = m.querySelector('figure.history svg');
  return [m.dataset.meter, svg && {
    role: svg.getAttribute('role'),
    bars: [...svg.querySelectorAll('rect')].map((r) =>
      [r.dataset.period, Number(r.dataset.used), r.getAttribute('class')]),
    labels: [...svg.querySelectorAll('text')].map((t) => t.textContent),
    limit: !!svg.querySelector('line.limit'),
    caption: m.querySelector('figure.history figcaption').innerText,
  }];
}))
"""


async def check_page_fits_and_reads(browser: Browser) -> None:
    """No sideways scroll, no status word cut, AA contrast for every visible text."""
    layout = await browser.evaluate(LAYOUT)
    assert layout == {"overflow": 0, "cut": []}
    contrasts = await browser.evaluate(CONTRASTS)
    assert len(contrasts) > 20
    low = [c for c in contrasts if c["ratio"] < 4.5]
    assert low == []


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
    await redis.set("mtr:{apsis}:c:email_sendings:2026-09", 70)
    await redis.set("mtr:{apsis}:c:email_sendings:2026-10", 120)

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
    # 85 in 14.5 days of a 30-day month: 85 x 30 / 14.5 = 175 by the end; the limit of 100
    # at 1 Nov + 100 x 14.5 / 85 days = 18 Nov 2026 (Stockholm).
    assert "At this pace\nyou reach the limit on 18 Nov 2026 (≈ 175 by period end)" in email["text"]

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

    bars = await browser.evaluate(READ_BARS)
    assert bars == {
        "email_sendings": ["0", "85", "100", "85 of 100 (At risk)", "Email sendings used"],
        "known_profiles": ["0", "2400", "10000", "2,400 of 10,000 (OK)", "Known profiles used"],
        "sms_credits": None,  # a balance: no bar
    }

    charts = await browser.evaluate(READ_CHART)
    assert charts["known_profiles"] is None  # a gauge: no periods
    assert charts["sms_credits"] is None
    email_chart = charts["email_sendings"]
    assert email_chart["role"] == "img"
    assert email_chart["caption"] == "Last 12 periods"
    assert [b[0] for b in email_chart["bars"]] == [f"2025-{m:02}" for m in (12,)] + [
        f"2026-{m:02}" for m in range(1, 12)
    ]
    assert email_chart["bars"][-3:] == [
        ["2026-09", 70, "green"],
        ["2026-10", 120, "red"],
        ["2026-11", 85, "yellow current"],
    ]
    assert email_chart["labels"][0] == "Dec"
    assert email_chart["labels"][-1] == "Nov"
    assert email_chart["limit"] is True

    # Embedded without Kafka (tests/api/server.py): the usage answer's freshness is null.
    freshness = await browser.evaluate("document.getElementById('freshness').innerText")
    assert freshness == "Counted as of: unknown"
    status = await browser.evaluate("document.getElementById('status').innerText")
    assert status == "Updated 15 Nov 2026, 13:00"
    assert await browser.evaluate("document.getElementById('tiers').hidden") is True  # no ladder
    assert await browser.evaluate("document.getElementById('picker').hidden") is True

    await check_page_fits_and_reads(browser)
    shot = await browser.screenshot(shot_name(browser, "dashboard"))
    assert shot.stat().st_size > 10_000


async def test_the_live_region_announces_only_changes(
    server: ServerThread, browser: Browser, redis: aioredis.Redis
) -> None:
    await redis.set("mtr:{apsis}:c:email_sendings:2026-11", 85)
    await browser.send("Page.navigate", url=f"{server.url}/dashboard#key={server.tokens['apsis']}")
    await browser.wait_for("document.body && document.body.dataset.loads === '1'")
    region = "document.getElementById('announce')"
    assert await browser.evaluate(f"{region}.getAttribute('aria-live')") == "polite"
    meters_live = "document.getElementById('meters').getAttribute('aria-live')"
    assert await browser.evaluate(meters_live) is None  # cards are not re-read on refresh
    assert await browser.evaluate(f"{region}.textContent") == ""  # the first load is not news

    await browser.evaluate("document.getElementById('refresh').click()")
    await browser.wait_for("document.body.dataset.loads === '2'")
    assert await browser.evaluate(f"{region}.textContent") == ""  # nothing changed

    await redis.set("mtr:{apsis}:c:email_sendings:2026-11", 101)
    await browser.evaluate("document.getElementById('refresh').click()")
    await browser.wait_for("document.body.dataset.loads === '3'")
    assert await browser.evaluate(f"{region}.textContent") == (
        "Email sendings is now Over (101 of 100)."
    )
    card = "document.querySelector('article[data-meter=email_sendings]')"
    assert await browser.evaluate(f"{card}.dataset.state") == "over"


async def test_admin_keys_pick_an_account_and_see_its_tiers(
    server: ServerThread, browser: Browser, redis: aioredis.Redis
) -> None:
    for month, used in (("2026-08", 19_000), ("2026-09", 20_000), ("2026-10", 21_001)):
        await redis.set(f"mtr:{{clerk}}:c:searches:{month}", used)
    await redis.set("mtr:{clerk}:c:searches:2026-11", 4_000)
    await browser.send("Page.navigate", url=f"{server.url}/dashboard#key={server.admin}")
    await browser.wait_for("document.body && document.body.dataset.loads === '1'")
    assert await browser.evaluate("document.getElementById('picker').hidden") is False
    options = await browser.evaluate(
        "[...document.querySelectorAll('#account option')].map((o) => o.value)"
    )
    assert options == ["ac", "actito", "acton", "acton-big", "apsis", "clerk"]
    subtitle = "document.getElementById('subtitle').innerText"
    assert (await browser.evaluate(subtitle)).startswith("ac · ")

    await browser.evaluate(
        "const s = document.getElementById('account'); s.value = 'clerk';"
        "s.dispatchEvent(new Event('change'))"
    )
    await browser.wait_for("document.body.dataset.loads === '2'")
    assert (await browser.evaluate(subtitle)).startswith("clerk · Clerk.io")
    assert await browser.evaluate("location.search") == "?account=clerk"

    tiers = await browser.evaluate(
        "Object.fromEntries([...document.querySelectorAll('article.tier')]"
        ".map((t) => [t.dataset.ladder, t.innerText]))"
    )
    assert list(tiers) == ["search", "recommendations", "email", "email_snippets", "audience"]
    search = tiers["search"]
    assert "Up to 25,000" in search
    for row in ("2026-08\t19,000", "2026-09\t20,000", "2026-10\t21,001"):
        assert row in search
    assert "Monthly average\n20,000" in search
    assert "Next boundary\nan average above 25,000 moves you to up to 50,000" in search
    assert "Not available yet" in tiers["audience"]
    searches = (await browser.evaluate(READ_CHART))["searches"]
    assert searches["bars"][-4:] == [
        ["2026-08", 19_000, "green"],
        ["2026-09", 20_000, "green"],
        ["2026-10", 21_001, "green"],
        ["2026-11", 4_000, "green current"],
    ]
    assert searches["limit"] is False  # no limit: no limit line
    await check_page_fits_and_reads(browser)
    await browser.screenshot(shot_name(browser, "dashboard-admin-clerk"))


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
    await check_page_fits_and_reads(browser)
    await browser.screenshot(shot_name(browser, "dashboard-acton"))


@dataclass
class KafkaServerThread(ServerThread):
    """The API as `metering api` builds it (Redis, Kafka, the configuration topic), served by
    uvicorn in its own thread: usage answers carry a real `freshness`."""

    settings: Settings | None = None

    def _app(self) -> Starlette:
        @contextlib.asynccontextmanager
        async def lifespan(app: Starlette) -> AsyncIterator[None]:
            assert self.settings is not None
            async with running(self.settings, self.config) as ctx:
                app.state.ctx = ctx
                self.ctx = ctx
                self.tokens = {"acme": (await ctx.keys.create(Scope.ACCOUNT, "acme"))[0]}
                yield

        return create_app(config=self.config, lifespan=lifespan)


@pytest.fixture
async def settings(kafka_bootstrap: str, redis_url: str, topic_factory: TopicFactory) -> Settings:
    s = await make_settings(kafka_bootstrap, redis_url, topic_factory, partitions=1)
    await publish_config(s, [{"id": "acme", "plan": "it-plan"}])
    return s


COUNTED = re.compile(
    r"^Counted as of \d+ \w+ \d{4}, \d\d:\d\d \(events up to \d+ \w+ \d{4}, \d\d:\d\d\); "
)


# The freshness line once Kafka answered: a usage answer whose Kafka reads took longer than 2 s
# says "lag unknown" (docs/api.md), so the page is refreshed until it has a lag to show.
FRESHNESS = """
(() => {
  const text = document.getElementById('freshness').innerText;
  if (!text.endsWith('lag unknown')) return text;
  document.getElementById('refresh').click();
  return null;
})()
"""


async def test_freshness_says_what_is_counted_and_what_is_not_yet(
    settings: Settings, browser: Browser
) -> None:
    emails = encoded(
        event("acme", "email.sent", contact=f"c{i}", kind="marketing") for i in range(3)
    )
    async with processor(settings):
        server = KafkaServerThread(settings.redis_url, settings=settings).start()
        try:
            await produce(settings, emails)
            key = {"Authorization": f"Bearer {server.tokens['acme']}"}
            async with httpx.AsyncClient(base_url=server.url, headers=key) as client:
                waited = await client.get("/v1/accounts/acme/wait?timeout_ms=60000")
                assert waited.status_code == 200, waited.text
            await browser.send(
                "Page.navigate", url=f"{server.url}/dashboard#key={server.tokens['acme']}"
            )
            await browser.wait_for("document.body && document.body.dataset.loads === '1'")
            text = await browser.wait_for(FRESHNESS)
            assert COUNTED.match(text), text
            assert text.endswith("; up to date")
            used = "document.querySelector('article[data-meter=emails] .used').innerText"
            assert await browser.evaluate(used) == "3 / 100"
        except BaseException:
            server.stop()
            raise
    # The processor has stopped: two more events are produced and not counted.
    try:
        await produce(settings, emails[:2])
        await browser.evaluate("document.getElementById('refresh').click()")
        await browser.wait_for("document.body.dataset.loads === '2'")
        text = await browser.wait_for(FRESHNESS)
        assert COUNTED.match(text), text
        assert text.endswith("; 2 events not counted yet")
        await check_page_fits_and_reads(browser)
    finally:
        server.stop()
