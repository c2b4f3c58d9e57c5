"""The domain's exceptions: one root, data carried on each exception.

Everything the domain raises on purpose derives from `MeteringError`, so a caller (processor,
API, CLI) can catch the domain's refusals without catching programming errors. Each exception
keeps its facts as attributes (a reason code, a field path, a file name) because callers turn
them into dead-letter headers, metric labels and HTTP problem documents, and parsing a message
string back would be fragile.

Tree::

    MeteringError
    ├── EventRejected      an event that cannot be metered (reason code + field)
    ├── PlanError          a plan file that does not describe a valid plan
    ├── AccountError       account settings that do not fit their plan
    ├── PeriodError        a timezone or anchor that cannot define periods
    ├── UnknownAccount     no account with this id
    ├── UnknownPlan        no plan with this id
    └── UnknownMeter       the plan has no meter with this name
"""

from __future__ import annotations

from enum import StrEnum


class MeteringError(Exception):
    """Root of every error the metering domain raises on purpose."""


class RejectReason(StrEnum):
    """Stable codes for why an event was not metered.

    The values are part of the public contract: they label dead-lettered records and metrics,
    so they never change once released (add new ones instead).
    """

    NOT_JSON = "not_json"
    NOT_OBJECT = "not_object"
    MISSING_FIELD = "missing_field"
    WRONG_TYPE = "wrong_type"
    INVALID_VALUE = "invalid_value"
    UNKNOWN_TYPE = "unknown_type"
    UNSUPPORTED_VERSION = "unsupported_version"
    OVERSIZED = "oversized"
    NEGATIVE_QUANTITY = "negative_quantity"
    ABSURD_QUANTITY = "absurd_quantity"
    FUTURE_TIMESTAMP = "future_timestamp"
    UNKNOWN_ACCOUNT = "unknown_account"
    """Decided by the processor (the decoder does not know the accounts)."""


class EventRejected(MeteringError):
    """An event that cannot be metered; it goes to the dead-letter topic with `reason`."""

    def __init__(self, reason: RejectReason, field: str | None, detail: str) -> None:
        self.reason = reason
        """Stable code (dead-letter header, metric label)."""
        self.field = field
        """Dotted path of the offending field (`data.quantity`), None for the whole record."""
        self.detail = detail
        """Human-readable explanation, safe to log (never contains the whole payload)."""
        where = f" at {field}" if field else ""
        super().__init__(f"{reason.value}{where}: {detail}")


class PlanError(MeteringError):
    """A plan file that does not describe a valid plan.

    The message names the file, the dotted field path and the problem, so the person who wrote
    the file can fix it without reading our code.
    """

    def __init__(self, source: str, field: str, problem: str) -> None:
        self.source = source
        """File name (or another label for where the plan came from)."""
        self.field = field
        """Dotted path, e.g. `meters.contacts.limit`; empty for the whole document."""
        self.problem = problem
        super().__init__(f"{source}: {field or '<document>'}: {problem}")


class AccountError(MeteringError):
    """Account settings that do not fit their plan (unknown meter in an override, ...)."""

    def __init__(self, account: str, field: str, problem: str) -> None:
        self.account = account
        self.field = field
        self.problem = problem
        super().__init__(f"account {account}: {field}: {problem}")


class PeriodError(MeteringError):
    """A timezone or anchor date that cannot define periods."""

    def __init__(self, problem: str) -> None:
        self.problem = problem
        super().__init__(problem)


class UnknownAccount(MeteringError):
    """No account with this id (the processor dead-letters with `RejectReason.UNKNOWN_ACCOUNT`)."""

    def __init__(self, account: str) -> None:
        self.account = account
        super().__init__(f"unknown account {account!r}")


class UnknownPlan(MeteringError):
    """No plan with this id."""

    def __init__(self, plan_id: str) -> None:
        self.plan_id = plan_id
        super().__init__(f"unknown plan {plan_id!r}")


class UnknownMeter(MeteringError):
    """The plan has no meter with this name."""

    def __init__(self, plan_id: str, meter: str) -> None:
        self.plan_id = plan_id
        self.meter = meter
        super().__init__(f"plan {plan_id!r} has no meter {meter!r}")
