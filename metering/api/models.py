"""The request and response models of the API, as msgspec Structs: the OpenAPI document's
schemas are generated from them (`openapi.py`, `msgspec.json.schema_components`).

One class per JSON object the API reads or writes; its docstring is the schema's description,
`Meta` carries bounds, patterns, descriptions and examples. The bounds and patterns are the
ones `validation.py` enforces (schemathesis sends inputs just inside and just outside them and
expects the API to agree). The routes build their answers as dictionaries on the hot path;
tests/api/test_schemathesis.py checks every answer against these schemas, and
tests/api/test_models.py decodes real answers with them, so the two cannot drift apart.

Fields that may be absent use `UnsetType` (not required, never null); `X | None` fields are
always present and may be null.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Annotated, Any
from zoneinfo import available_timezones

import msgspec
from msgspec import UNSET, Meta, UnsetType

from metering.api import validation as v
from metering.core.enforcement import EnforcementMode, GatedAction, Reason
from metering.core.events import MAX_QUANTITY, ContactOrigin, EmailKind
from metering.core.status import State


def anchored(pattern: str | re.Pattern[str]) -> str:
    """A whole-string pattern (JSON Schema patterns match anywhere unless anchored)."""
    text = pattern if isinstance(pattern, str) else pattern.pattern
    return f"^(?:{text})$"


def one_of(values: Iterable[str], description: str | None = None) -> Meta:
    return Meta(extra_json_schema={"enum": list(values)}, description=description)


class _Model(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Closed objects: a field the schema does not name is an error (additionalProperties)."""


Nat = Annotated[int, Meta(ge=0)]
Time = Annotated[str, Meta(extra_json_schema={"format": "date-time"})]
Date = Annotated[str, Meta(extra_json_schema={"format": "date"})]
Colour = Annotated[str, one_of(["green", "yellow", "red"])]
Amount = Annotated[int, Meta(ge=0, le=v.MAX_AMOUNT)]
ReasonCode = Annotated[str, one_of(r.value for r in Reason)]
MeterName = Annotated[str, Meta(pattern=anchored(v.METER_NAME))]
PlanId = Annotated[str, Meta(pattern=anchored(v.PLAN_ID))]
Timezone = Annotated[str, one_of(sorted(available_timezones()))]
Contacts = Annotated[
    list[Annotated[str, Meta(min_length=1, max_length=v.MAX_CONTACT_CHARS)]],
    Meta(min_length=1, max_length=v.MAX_ITEMS, examples=[["c-1", "c-2"]]),
]


# -- errors and operations ---------------------------------------------------------------------


class Problem(_Model):
    """An RFC 9457 problem document (`application/problem+json`): every refusal."""

    type: str
    title: str
    status: Annotated[int, Meta(ge=400, le=599)]
    code: Annotated[str, Meta(description="Stable machine-readable code.", examples=["not_found"])]
    detail: str
    field: Annotated[str, Meta(description="Dotted path of the input at fault.")] | UnsetType = (
        UNSET
    )
    cause: (
        Annotated[
            str,
            one_of(
                ["persistence", "out_of_memory", "read_only", "kafka_timeout"],
                "Why a 503 `store_refusing_writes` or `kafka_unavailable` happened "
                "(docs/api.md).",
            ),
        ]
        | UnsetType
    ) = UNSET


class Ready(_Model):
    """Readiness: Redis answers, accepts writes and holds the store marker."""

    status: Annotated[str, one_of(["ready"])]
    redis: Annotated[str, one_of(["reachable"])]
    store_marker: Annotated[str, one_of(["present"])]
    writes: Annotated[str, one_of(["accepted"])]


class Me(_Model):
    """The key that made the request."""

    key_id: Annotated[str, Meta(examples=["k_0123456789ab"])]
    scope: Annotated[str, one_of(["account", "admin"])]
    account: str | None


# -- usage -------------------------------------------------------------------------------------


class Period(_Model):
    """A period of a meter: its key and bounds."""

    key: Annotated[str, Meta(examples=["2026-11"])]
    kind: str | None
    start: Time
    end: Time


class Projection(_Model):
    """Where the meter ends the period at the current pace."""

    used_at_period_end: int
    limit_reached_at: Time | None


class MeterUsage(_Model):
    """One meter of an account: used, limit, status, thresholds reached, projection."""

    meter: Annotated[str, Meta(examples=["emails"])]
    description: str
    aggregation: Annotated[str, one_of(["count", "sum", "distinct", "gauge", "balance"])]
    enforcement: Annotated[str, one_of(m.value for m in EnforcementMode)]
    used: Annotated[int, Meta(description="Amount this period (level for gauges, balance).")]
    held: Annotated[
        Nat,
        Meta(
            description="Units admission holds keep for usage not counted yet (counters and "
            "balances); never part of status, thresholds or projection."
        ),
    ]
    limit: Annotated[Nat | None, Meta(description="Including this period's extension.")]
    base_limit: Nat | None
    extension: Nat
    remaining: Nat | None
    ratio: Annotated[float, Meta(ge=0)] | None
    status: Colour
    state: Annotated[
        str,
        one_of((w.value for w in State), "The status word: over only strictly above the limit."),
    ]
    thresholds_reached: list[str]
    period: Period | None
    last_update: Time | None
    projection: Projection | None


class Freshness(_Model):
    """How fresh an answer is: the account's partition, what was applied there, the lag."""

    partition: Annotated[
        Nat | None, Meta(description="The account's partition of the events topic.")
    ]
    position: Annotated[int | None, Meta(description="Offset of the last record applied there.")]
    watermark: Annotated[
        Time | None, Meta(description="Largest event time applied in the partition.")
    ]
    applied_at: Annotated[
        Time | None, Meta(description="When the processor last applied records of it.")
    ]
    lag: Annotated[
        Nat | None, Meta(description="Records produced to the partition, not yet applied.")
    ]
    caught_up: bool | None
    lag_unknown: Annotated[
        str | None, Meta(description="Why the lag is null (Kafka did not answer).")
    ]


class PlanName(_Model):
    """The account's plan."""

    id: str
    name: str


class Usage(_Model):
    """The usage of an account: every meter of its plan, as of now."""

    account: Annotated[str, Meta(examples=["acme"])]
    plan: PlanName
    timezone: str
    contract_date: Date | None
    as_of: Annotated[Time, Meta(description="When this answer was computed.")]
    freshness: Freshness | None
    meters: list[MeterUsage]


class HistoryPeriod(_Model):
    """One period of a meter's history."""

    period: str
    start: Time
    end: Time
    used: int
    limit: Nat | None
    status: Colour
    closed: bool


class History(_Model):
    """A meter over its last periods, oldest first."""

    account: str
    meter: str
    kind: str
    freshness: Freshness | None
    periods: list[HistoryPeriod]


class Members(_Model):
    """The distinct members of a meter in a period (sorted, paged)."""

    account: str
    meter: str
    period: str
    count: Nat
    freshness: Freshness | None
    offset: Nat
    members: list[str]


class PlacementMonth(_Model):
    """One month behind a tier placement."""

    period: str
    used: int


class Placement(_Model):
    """The tier the account's recent months place it in."""

    ladder: str
    meter: str
    up_to: int | None
    average: float
    average_exact: str
    months_used: Nat
    complete: bool
    months: list[PlacementMonth]


class TierLadder(_Model):
    """One tier ladder of the plan and the account's placement on it."""

    ladder: str
    meter: str
    bounds: Annotated[list[int], Meta(description="The ladder's tier boundaries (`up_to`).")]
    source: Annotated[str, one_of(["counters", "unavailable"])]
    note: str | None
    placement: Placement | None


class Tiers(_Model):
    """The account's placement on each tier ladder of its plan."""

    account: str
    freshness: Freshness | None
    ladders: list[TierLadder]


class WaitedPartition(_Model):
    """One partition of the events topic while waiting."""

    partition: Nat
    target: Annotated[Nat, Meta(description="End offset of the partition at the call.")]
    position: int | None
    watermark: Time | None
    applied_at: Time | None
    lag: Nat


class Waited(_Model):
    """Everything produced before the call is counted (or, in a 504, what is left)."""

    caught_up: bool
    account: str | None
    waited_ms: Nat
    lag: Annotated[Nat, Meta(description="Records produced before the call, not applied yet.")]
    partitions: list[WaitedPartition]


class NotCaughtUp(Problem, kw_only=True):
    """504 `not_caught_up`: the timeout passed first; the lag left, per partition."""

    caught_up: bool
    account: str | None
    waited_ms: Nat
    lag: Annotated[Nat, Meta(description="Records produced before the call, not applied yet.")]
    partitions: list[WaitedPartition]


# -- admission ---------------------------------------------------------------------------------


class AdmissionItem(_Model):
    """The decision on one item (contact, message, campaign)."""

    index: Nat
    item: str | None
    allowed: bool
    reason: ReasonCode
    meter: str | None


class MeterLevel(_Model):
    """A meter the decision consulted, as it stands."""

    meter: str
    period: str | None
    used: int
    held: Annotated[
        Nat,
        Meta(
            description="Units holds keep on a counter or balance (this request's included); "
            "places admitted imports hold on a gauge until counted."
        ),
    ]
    limit: Nat | None
    fits: Annotated[Nat | None, Meta(description="How many more units fit: limit - used - held.")]
    enforcement: str


class Hold(_Model):
    """Units admission keeps for the admitted items until their usage events capture them
    (docs/api.md, "Holds")."""

    id: Annotated[
        str, Meta(description="Put it on the usage events of the admitted items (`holdid`).")
    ]
    expires_at: Time
    units: dict[str, Nat]


class HoldRelease(_Model):
    """What releasing a hold freed."""

    account: str
    hold: str
    released: bool
    units: dict[str, Nat]


class Admission(_Model):
    """The one shape of every admission answer (docs/api.md, "Admission")."""

    account: str
    action: Annotated[str, Meta(examples=["message.send"])]
    allowed: Annotated[bool, Meta(description="Every item is allowed.")]
    admitted: Nat
    refused: Nat
    reason: ReasonCode | None
    meter: str | None
    fits: Nat | None
    hold: Hold | None
    items: list[AdmissionItem]
    meters: list[MeterLevel]


class CampaignCheck(_Model):
    """One meter a campaign was checked against."""

    meter: str
    allowed: bool
    reason: ReasonCode


class CampaignAdmission(Admission, kw_only=True):
    """The admission answer of a campaign, with its recipients and each meter's check."""

    recipients: Nat
    checks: list[CampaignCheck]


class MessagesInput(_Model):
    """May these contacts be sent a message now?"""

    contacts: Contacts
    kind: Annotated[str, one_of(k.value for k in EmailKind)] | UnsetType = UNSET


class ContactsInput(_Model):
    """May these contacts be added now? (`import`: all or nothing)"""

    contacts: Contacts
    origin: Annotated[str, one_of(o.value for o in ContactOrigin)]


class CampaignInput(_Model):
    """May this campaign be created or sent now?"""

    action: (
        Annotated[
            str, one_of([GatedAction.CAMPAIGN_SEND.value, GatedAction.CAMPAIGN_CREATE.value])
        ]
        | UnsetType
    ) = UNSET
    recipients: Annotated[int, Meta(ge=0, le=100_000_000)] | UnsetType = UNSET
    contacts_via_api: bool | UnsetType = UNSET
    kind: Annotated[str, one_of(k.value for k in EmailKind)] | UnsetType = UNSET


class AutomationsInput(_Model):
    """May these contacts trigger an automation now?"""

    contacts: Contacts
    contacts_via_api: bool | UnsetType = UNSET


class SmsInput(_Model):
    """May these SMS be sent now?"""

    messages: Annotated[int, Meta(ge=1, le=v.MAX_ITEMS)]
    segments: Annotated[int, Meta(ge=1, le=100)] | UnsetType = UNSET


# -- plans and accounts ------------------------------------------------------------------------


class Extension(_Model):
    """A temporary extension of a meter's limit in one period."""

    meter: str
    period: str
    extra: Nat


class Account(_Model):
    """An account: its plan, contract, limit overrides, extensions and paid tiers."""

    id: Annotated[str, Meta(examples=["acme"])]
    plan: str
    timezone: str | UnsetType = UNSET
    contract_date: Date | UnsetType = UNSET
    limits: dict[str, Nat] | UnsetType = UNSET
    extensions: list[Extension] | UnsetType = UNSET
    paid_tiers: dict[str, int] | UnsetType = UNSET


class AccountList(_Model):
    """Every account."""

    accounts: list[Account]


class ExtensionInput(_Model):
    """A temporary extension of a meter's limit."""

    meter: MeterName
    period: Annotated[str, Meta(pattern=anchored(v.PERIOD_KEY))]
    extra: Amount


class AccountInput(_Model):
    """An account to create or replace (`PUT /v1/accounts/{account}`)."""

    plan: PlanId
    id: Annotated[str, Meta(pattern=anchored(v.ACCOUNT_ID))] | UnsetType = UNSET
    timezone: Timezone | UnsetType | None = UNSET
    contract_date: Date | UnsetType | None = UNSET
    limits: dict[MeterName, Amount] | UnsetType = UNSET
    extensions: list[ExtensionInput] | UnsetType = UNSET
    paid_tiers: dict[MeterName, Annotated[int, Meta(ge=1)]] | UnsetType = UNSET


class Plan(_Model):
    """A plan: its meters and tier ladders (docs/plans.md)."""

    id: str
    name: str
    description: str
    timezone: str
    meters: list[dict[str, Any]]
    ladders: list[dict[str, Any]]


class PlanList(_Model):
    """Every plan."""

    plans: list[Plan]


class PlanChange(_Model):
    """The plan to put the account on."""

    plan: PlanId


class ContractChange(_Model):
    """The contract date and timezone (null restores the plan's)."""

    timezone: Timezone | UnsetType | None = UNSET
    contract_date: Date | UnsetType | None = UNSET


class LimitChange(_Model):
    """The account's own limit of a meter."""

    limit: Amount


class PaidTierChange(_Model):
    """The tier the account pays for on a ladder."""

    up_to: Annotated[int, Meta(ge=1)]


class ExtensionChange(_Model):
    """The temporary extension of the current period (0 removes it)."""

    extra: Amount


class ExtensionAnswer(_Model):
    """The extension as set, and the account."""

    period: str
    extra: Nat
    account: Account


class TierMismatchMonth(_Model):
    """One month of the average."""

    period: str
    total: Nat


class TierMismatch(_Model):
    """An account whose 3-month average places it in another tier than it pays for."""

    account: str
    ladder: str
    meter: str
    paid_up_to: int
    placed_up_to: int | None
    direction: Annotated[str, one_of(["up", "down"])]
    average: str
    average_display: str
    as_of: str
    months: list[TierMismatchMonth]


class TierMismatches(_Model):
    """Accounts on the wrong tier."""

    checked: Nat
    mismatches: list[TierMismatch]


class TopUp(_Model):
    """SMS credits to add."""

    credits: Annotated[int, Meta(ge=1, le=MAX_QUANTITY, examples=[500])]


class TopUpAnswer(_Model):
    """The top-up event is on the events topic."""

    account: str
    event_id: str
    credits: Nat
    meters: list[str]


class SessionInput(_Model):
    """An API key to exchange for the dashboard's cookie."""

    key: Annotated[str, Meta(min_length=1, max_length=200)]


MODELS: tuple[type[msgspec.Struct], ...] = (
    Problem, Ready, Me, Usage, History, Members, Tiers, Waited, NotCaughtUp, Admission,
    CampaignAdmission, MessagesInput, ContactsInput, CampaignInput, AutomationsInput, SmsInput,
    Account, AccountList, AccountInput, Plan, PlanList, PlanChange, ContractChange, LimitChange,
    PaidTierChange, ExtensionChange, ExtensionAnswer, TierMismatches, TopUp, TopUpAnswer,
    SessionInput, HoldRelease,
)  # fmt: skip
"""Every model the document names (the ones they contain are found through them)."""
