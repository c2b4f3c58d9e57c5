"""Progress of produce and backfill: a rich bar on a terminal, periodic log lines off one."""

from __future__ import annotations

import io
import logging

import pytest

from metering.runtime.progress import Reporter, progress_line


def test_the_line_shows_done_total_rate_and_time_left() -> None:
    line = progress_line("backfill", 2_500, 10_000, 2.0)
    assert line == "backfill: 2,500/10,000 events (25.0%), 1,250 ev/s, ETA 0:06"
    assert progress_line("produce", 0, 0, 0.0) == "produce: 0/0 events (100.0%), 0 ev/s, ETA 0:00"


def test_off_a_terminal_it_logs_lines_instead_of_redrawing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    out = io.StringIO()  # not a terminal
    with (
        caplog.at_level(logging.INFO, logger="metering.progress"),
        Reporter("produce", 300, out, every_s=0.0) as bar,
    ):
        for _ in range(3):
            bar.advance(100)
    lines = [r.getMessage() for r in caplog.records if r.name == "metering.progress"]
    assert len(lines) == 4  # one per advance (every_s=0), one at the end
    assert lines[-1].startswith("produce: 300/300 events (100.0%)")
    assert "\r" not in out.getvalue()
    assert out.getvalue() == ""  # the bar is not drawn; the lines go through logging


def test_on_a_terminal_it_draws_a_rich_bar(caplog: pytest.LogCaptureFixture) -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    out = Terminal()
    with (
        caplog.at_level(logging.INFO, logger="metering.progress"),
        Reporter("backfill", 50, out) as bar,
    ):
        bar.advance(50)
    assert "50/50" in out.getvalue()
    assert "ev/s" in out.getvalue()
    assert not [r for r in caplog.records if r.name == "metering.progress"]


def test_without_an_output_it_counts_silently(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO), Reporter("backfill", 10, None, every_s=0.0) as bar:
        bar.advance(10)
    assert bar.done == 10
    assert not caplog.records
