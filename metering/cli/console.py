"""Terminal views for the CLI: usage tables with coloured status, admission decisions.

The CLI reads usage and asks for admission through the HTTP API (`METERING_API_URL`, a key in
`METERING_API_KEY`), so the terminal shows exactly what the dashboard and API clients see and
needs no Redis or Kafka access. Standard library only (urllib), to keep the CLI light.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

from metering.core.errors import ApiCallFailed, ApiUnreachable

_COLOURS = {"green": "\033[32m", "yellow": "\033[33m", "red": "\033[31m"}
_RESET = "\033[0m"


def call_api(
    base_url: str,
    key: str,
    method: str,
    path: str,
    body: object | None = None,
    *,
    timeout_s: float = 10,
    accept: tuple[int, ...] = (),
) -> dict[str, Any]:
    """One JSON request; raises `ApiCallFailed` with the API's title and detail, except for
    the statuses in `accept`, whose problem document is returned like an answer."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(  # noqa: S310 - the URL is the operator's own API
        base_url.rstrip("/") + path,
        data=data,
        method=method,
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:  # noqa: S310
            result: dict[str, Any] = json.loads(response.read())
            return result
    except urllib.error.HTTPError as exc:
        try:
            problem = json.loads(exc.read())
            if exc.code in accept and isinstance(problem, dict):
                return problem
            detail = f"{problem.get('title', '')}: {problem.get('detail', '')}"
        except ValueError:
            detail = exc.reason
        raise ApiCallFailed(f"{method} {path} -> {exc.code} {detail}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise ApiUnreachable(
            f"cannot reach the API at {base_url} ({exc}); is `metering api` running? "
            "Set --api-url or METERING_API_URL"
        ) from None


def state_word(state: str) -> str:
    """The API's status word (`state`: ok, at_risk, at_limit, over, no_credits) as printed:
    the same words as the dashboard; "over" only strictly above the limit."""
    return state.replace("_", " ")


def _paint(text: str, value: str, colour: bool) -> str:
    return f"{_COLOURS[value]}{text}{_RESET}" if colour and value in _COLOURS else text


def _number(value: object) -> str:
    return f"{value:,}" if isinstance(value, int) else ("-" if value is None else str(value))


def usage_table(usage: dict[str, Any], *, colour: bool) -> str:
    """The usage of an account as a table (one line per meter)."""
    header = ("meter", "used", "limit", "remaining", "%", "status", "period", "last update")
    rows = [header]
    for m in usage["meters"]:
        ratio = m.get("ratio")
        period = m.get("period") or {}
        rows.append(
            (
                m["meter"],
                _number(m["used"]),
                _number(m["limit"]),
                _number(m["remaining"]),
                "-" if ratio is None else f"{100 * ratio:.0f}%",
                state_word(m["state"]),
                str(period.get("key", "-")),
                str(m.get("last_update") or "-")[:19],
            )
        )
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(header))]
    lines = []
    paints = [""] + [m["status"] for m in usage["meters"]]
    for n, row in enumerate(rows):
        cells = []
        for i, cell in enumerate(row):
            text = str(cell)
            padded = text.rjust(widths[i]) if i in (1, 2, 3, 4) else text.ljust(widths[i])
            if i == 5 and n > 0:
                padded = _paint(text, paints[n], colour) + " " * (widths[i] - len(text))
            cells.append(padded)
        lines.append("  ".join(cells).rstrip())
    plan = usage.get("plan")
    plan_id = plan.get("id", "?") if isinstance(plan, dict) else plan
    title = f"{usage['account']} (plan {plan_id})"
    return "\n".join([title, *lines, freshness_line(usage.get("freshness"))])


def freshness_line(freshness: dict[str, Any] | None) -> str:
    """How fresh the counts are: "counted as of" the partition's event-time watermark and
    the time it was applied, and the records not applied yet."""
    if freshness is None:
        return "as of: unknown (this API runs without Kafka)"
    applied = freshness.get("applied_at")
    watermark = freshness.get("watermark")
    when = (
        "nothing counted yet"
        if applied is None
        else f"events up to {watermark or '-'}, applied {applied}"
    )
    lag = freshness.get("lag")
    if lag is None:
        behind = f"lag unknown: {freshness.get('lag_unknown')}"
    elif lag == 0:
        behind = "caught up"
    else:
        behind = f"{lag:,} records not counted yet (`metering wait` waits for them)"
    return f"as of: {when}; {behind}"


def wait_report(result: dict[str, Any]) -> str:
    """The answer of a wait: caught up, or the records left per partition."""
    scope = f"account {result['account']}" if result.get("account") else "every partition"
    if result.get("caught_up"):
        return f"caught up ({scope}) after {result['waited_ms']:,} ms"
    left = ", ".join(
        f"partition {p['partition']}: {p['lag']:,}" for p in result["partitions"] if p["lag"]
    )
    return f"not caught up ({scope}): {result['lag']:,} records not applied yet ({left})"


def decisions_table(result: dict[str, Any], *, colour: bool) -> str:
    """Admission decisions: a summary line (allowed or refused, how many, why, how many more
    would fit), then one line per item."""
    allowed = bool(result.get("allowed"))
    verdict = "allowed" if allowed else "refused"
    if colour:
        verdict = f"{_COLOURS['green' if allowed else 'red']}{verdict}{_RESET}"
    items = result.get("items", [])
    summary = f"{verdict}: {result.get('admitted', 0)} of {len(items)} admitted"
    if result.get("reason"):
        summary += f" ({result['reason']}"
        if result.get("meter"):
            summary += f" on {result['meter']}"
        summary += ")"
    if result.get("fits") is not None:
        summary += f"; {result['fits']:,} more would fit"
    lines = [summary]
    for item in items:
        ok = item.get("allowed")
        word = "allow" if ok else "deny"
        if colour:
            word = f"{_COLOURS['green' if ok else 'red']}{word}{_RESET}"
        subject = item.get("item") or ""
        lines.append(f"{word}  {subject}  {item.get('reason', '')}".rstrip())
    return "\n".join(lines)


def mismatches_table(report: dict[str, Any]) -> str:
    """The wrong-tier report: one line per (account, ladder), the months behind it after it."""
    found = report.get("mismatches", [])
    checked = report.get("checked", 0)
    if not found:
        return f"no account on the wrong tier ({checked} accounts with paid tiers checked)"
    header = ("account", "ladder", "pays up to", "placed up to", "move", "3-month avg", "months")
    rows = [header]
    for m in found:
        months = ", ".join(f"{x['period']}: {_number(x['total'])}" for x in m["months"])
        placed = m["placed_up_to"]
        rows.append(
            (
                m["account"],
                m["ladder"],
                _number(m["paid_up_to"]),
                "above every tier" if placed is None else _number(placed),
                m["direction"],
                m["average_display"],
                months,
            )
        )
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(header))]
    lines = [
        "  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows
    ]
    lines.append(f"{len(found)} on the wrong tier of {checked} accounts with paid tiers")
    return "\n".join(lines)
