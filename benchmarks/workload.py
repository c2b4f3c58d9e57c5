"""A realistic, deterministic event mix and its ground truth.

Accounts are Zipf-skewed (a few very active, a long tail); the mix is sends, opens, search
views, recommendation views and contacts added, like the seeds' products. Every path of the
benchmark must count exactly `Workload.units` per (account, event type), where a unit is 1 per
event and the element count for recommendation views (3 banners = 3 units, Clerk.io).
"""

from __future__ import annotations

import random
import time
from bisect import bisect
from collections import Counter
from dataclasses import dataclass, field
from itertools import accumulate

import orjson

MIX: tuple[tuple[str, float], ...] = (
    ("email.sent", 0.40),
    ("email.opened", 0.20),
    ("search.viewed", 0.20),
    ("recommendation.viewed", 0.15),
    ("contact.added", 0.05),
)

BENCH_PLAN = """\
id = "bench"
name = "Benchmark plan: one meter per event type, plus distinct active contacts"
timezone = "UTC"

[meters.emails_sent]
aggregation = "count"
period = "calendar_month"
limit = 1000000
events = [{ type = "email.sent" }]

[meters.active_contacts]
aggregation = "distinct"
member = "contact"
period = "calendar_month"
limit = 1000000
events = [{ type = "email.sent" }]

[meters.emails_opened]
aggregation = "count"
period = "calendar_month"
events = [{ type = "email.opened" }]

[meters.searches]
aggregation = "count"
period = "calendar_month"
events = [{ type = "search.viewed" }]

[meters.recommendation_views]
aggregation = "sum"
period = "calendar_month"
events = [{ type = "recommendation.viewed" }]

[meters.contacts_added]
aggregation = "count"
period = "calendar_month"
events = [{ type = "contact.added" }]
"""

METER_OF_TYPE = {
    "email.sent": "emails_sent",
    "email.opened": "emails_opened",
    "search.viewed": "searches",
    "recommendation.viewed": "recommendation_views",
    "contact.added": "contacts_added",
}


def units_of(doc: dict[str, object]) -> int:
    """What one event adds to its type's total."""
    if doc["type"] == "recommendation.viewed":
        data = doc["data"]
        assert isinstance(data, dict)
        return int(data["quantity"])
    return 1


@dataclass
class Workload:
    """Encoded records (key, value) and the totals every path must reach."""

    accounts: list[str]
    records: list[tuple[bytes, bytes]] = field(default_factory=list)
    units: Counter[tuple[str, str]] = field(default_factory=Counter)

    @property
    def total_units(self) -> int:
        return sum(self.units.values())


def account_name(i: int) -> str:
    return f"acct-{i:05d}"


def generate(events: int, accounts: int, *, seed: int = 1, zipf_s: float = 1.1) -> Workload:
    """`events` events over `accounts` Zipf-skewed accounts, all in the current month."""
    rng = random.Random(seed)
    names = [account_name(i) for i in range(accounts)]
    cumulative = list(accumulate(1 / (i + 1) ** zipf_s for i in range(accounts)))
    mix_types = [t for t, _ in MIX]
    mix_cum = list(accumulate(w for _, w in MIX))
    work = Workload(names)
    now = time.time_ns() // 1_000_000
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now / 1000))
    for n in range(events):
        account = names[bisect(cumulative, rng.random() * cumulative[-1])]
        event_type = mix_types[min(bisect(mix_cum, rng.random()), len(mix_types) - 1)]
        data: dict[str, object]
        if event_type == "email.sent":
            data = {"contact": f"c{rng.randrange(5000)}", "kind": "marketing"}
        elif event_type == "email.opened":
            data = {"contact": f"c{rng.randrange(5000)}", "with_recommendations": True}
        elif event_type == "search.viewed":
            data = {"surface": "instant" if rng.random() < 0.7 else "page"}
        elif event_type == "recommendation.viewed":
            data = {"quantity": rng.randrange(1, 4)}
        else:
            data = {"contact": f"n{n}", "origin": "api"}
        doc = {
            "specversion": "1.0",
            "id": f"b{seed}-{n}",
            "source": "bench",
            "type": event_type,
            "subject": account,
            "time": f"{stamp}.{n % 1000:03d}Z",
            "data": data,
        }
        work.records.append((account.encode(), orjson.dumps(doc)))
        work.units[(account, event_type)] += units_of(doc)
    return work


def accounts_json(workload: Workload) -> list[dict[str, object]]:
    """Account documents (all on the bench plan)."""
    return [{"id": a, "plan": "bench"} for a in workload.accounts]
