"""The traffic of the demo: one account per seed vendor, each exercising its policies.

- apsis-<run> (apsis-essential): e-mail quota 100 plus a 20-sendings extension for this month;
  110 sent turns it yellow, not red. Unsubscribed profiles still count, deleted ones do not.
  SMS credits are topped up through the API and spent.
- actito-<run> (actito-standard): 10 profiles x 12 = 120 interactions per contract year; 130
  over five channels turn it yellow, then red; it is never blocked.
- ac-<run> (activecampaign-lite): 20 contacts; 22 added by API (110%); imports and manual adds
  are refused, forms accepted, campaigns stopped at 110%; 15 days later (`metering remind
  --as-of`), the first "approaching" reminder.
- clerk-<run> (clerk): three closed months of searches (19,000 / 20,000 / 21,000): average
  20,000 -> "up to 25,000".
- acton-<run> (acton-active-contacts): 10 active contacts: the 11th new contact is refused,
  active ones are still allowed.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

from metering.client import UsageProducer
from metering.core.events import UsageEvent
from metering.core.periods import PeriodKind, period_of, previous_period


@dataclass(frozen=True)
class DemoAccounts:
    """The run's account ids."""

    run: str

    @property
    def apsis(self) -> str:
        return f"apsis-{self.run}"

    @property
    def actito(self) -> str:
        return f"actito-{self.run}"

    @property
    def ac(self) -> str:
        return f"ac-{self.run}"

    @property
    def clerk(self) -> str:
        return f"clerk-{self.run}"

    @property
    def acton(self) -> str:
        return f"acton-{self.run}"

    def all(self) -> list[str]:
        return [self.apsis, self.actito, self.ac, self.clerk, self.acton]

    def documents(self, now_ms: int) -> list[dict[str, object]]:
        """Account documents: small limits so that a short demo reaches them."""
        month = period_of(PeriodKind.CALENDAR_MONTH, now_ms, "Europe/Stockholm").key
        contract = datetime.fromtimestamp(now_ms / 1000 - 100 * 86400, tz=UTC).date()
        return [
            {
                "id": self.apsis,
                "plan": "apsis-essential",
                "limits": {"email_sendings": 100, "known_profiles": 40},
                "extensions": [{"meter": "email_sendings", "period": month, "extra": 20}],
            },
            {
                "id": self.actito,
                "plan": "actito-standard",
                "contract_date": contract.isoformat(),
                "limits": {"profiles": 10},
            },
            {"id": self.ac, "plan": "activecampaign-lite", "limits": {"contacts": 20}},
            {"id": self.clerk, "plan": "clerk"},
            {"id": self.acton, "plan": "acton-active-contacts", "limits": {"active_contacts": 10}},
        ]


CLERK_MONTHS = (19_000, 20_000, 21_000)
"""Searches in the three closed months before the current one: average 20,000 (Clerk.io)."""


def clerk_history(usage: UsageProducer, account: str, now_ms: int) -> Iterator[UsageEvent]:
    """Searches spread over the three months before this one, oldest first (event time
    order, so that no month is late when it arrives)."""
    tz = "Europe/Copenhagen"
    current = period_of(PeriodKind.CALENDAR_MONTH, now_ms, tz)
    months = []
    period = current
    for _ in CLERK_MONTHS:
        period = previous_period(PeriodKind.CALENDAR_MONTH, period, tz)
        months.append(period)
    for period, total in zip(reversed(months), CLERK_MONTHS, strict=True):
        span = period.end_ms - period.start_ms
        for i in range(total):
            yield usage.build(
                "search.viewed",
                account,
                time_ms=period.start_ms + span * i // total,
                surface="instant" if i % 3 else "page",
            )


def live_traffic(usage: UsageProducer, accounts: DemoAccounts) -> Iterator[UsageEvent]:
    """This month's traffic of every account (event time now)."""
    for i in range(110):  # APSIS: 110 of 100 + 20 extension
        yield usage.build("email.sent", accounts.apsis, contact=f"p{i % 30}", kind="marketing")
    for i in range(30):
        yield usage.build("contact.added", accounts.apsis, contact=f"p{i}", origin="import")
    for i in range(5):  # unsubscribed: still a known profile
        yield usage.build("contact.unsubscribed", accounts.apsis, contact=f"p{i}")
    for i in range(5, 10):  # deleted: no longer counted
        yield usage.build("contact.deleted", accounts.apsis, contact=f"p{i}")
    for _ in range(45):
        yield usage.build("sms.sent", accounts.apsis, contact="p20", quantity=1)

    for i in range(10):  # Actito: 10 profiles x 12 interactions each = 120
        yield usage.build("contact.added", accounts.actito, contact=f"a{i}", origin="api")
    channels = ("marketing_email", "transactional_email", "print", "social", "call_center")
    for i in range(130):
        yield usage.build(
            "campaign.interaction",
            accounts.actito,
            contact=f"a{i % 10}",
            channel=channels[i % len(channels)],
        )

    for i in range(22):  # ActiveCampaign: 22 contacts by API = 110% of 20
        yield usage.build("contact.added", accounts.ac, contact=f"k{i}", origin="api")

    for _ in range(200):  # Clerk: this month's searches (the month is still open)
        yield usage.build("search.viewed", accounts.clerk, surface="instant")
