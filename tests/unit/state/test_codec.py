"""Decoding the apply script's replies (metering/state/lua/apply.lua documents their shape)."""

from __future__ import annotations

import pytest

from metering.core.ports import ApplyOutcome, ApplyStatus, MemberVerdict
from metering.state.codec import decode_admission, decode_outcome


@pytest.mark.parametrize(
    ("reply", "outcome"),
    [
        ([0, 0], ApplyOutcome(ApplyStatus.APPLIED)),
        ([0, 2, b"id-1", "id-2"], ApplyOutcome(ApplyStatus.APPLIED, ("id-1", "id-2"), 2)),
        ([1, 3], ApplyOutcome(ApplyStatus.ALREADY_APPLIED, outbox_length=3)),
        ([1, 0], ApplyOutcome(ApplyStatus.ALREADY_APPLIED)),
        ([2, 41], ApplyOutcome(ApplyStatus.PARTIAL, fence=41)),
        ([3, [b"e1", "e2"]], ApplyOutcome(ApplyStatus.DUPLICATES, duplicates=("e1", "e2"))),
        (
            [4, [b"searches", b"2026-07", "active", "2026-07"]],
            ApplyOutcome(
                ApplyStatus.CLOSED, closed=(("searches", "2026-07"), ("active", "2026-07"))
            ),
        ),
    ],
)
def test_each_reply_decodes_to_its_outcome(reply: list[object], outcome: ApplyOutcome) -> None:
    assert decode_outcome(reply) == outcome


@pytest.mark.parametrize("reply", [[], None, "0", [9, 0]])
def test_a_reply_of_another_shape_is_an_error(reply: object) -> None:
    with pytest.raises(ValueError, match=r"9|unexpected apply reply"):
        decode_outcome(reply)


def test_admission_letters_decode_to_verdicts_and_unknown_letters_are_refused() -> None:
    assert decode_admission("csaor") == (
        MemberVerdict.COUNTED,
        MemberVerdict.SUPPRESSED,
        MemberVerdict.ADMITTED,
        MemberVerdict.OVER_LIMIT,
        MemberVerdict.REFUSED,
    )
    with pytest.raises(ValueError, match="unexpected admission reply"):
        decode_admission("ax")
