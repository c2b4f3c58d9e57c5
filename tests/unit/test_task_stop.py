"""Background tasks stop within a bound, even one whose cancellation was swallowed once
(Python 3.11's `asyncio.wait_for` can do that inside client libraries)."""

from __future__ import annotations

import asyncio
import logging

import pytest

from metering.runtime.process import cancel_and_wait


async def _swallows_one_cancellation(cancelled: list[int]) -> None:
    while True:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            cancelled.append(1)
            if len(cancelled) == 1:
                continue  # what a swallowed cancellation looks like to the loop
            raise


async def _fails() -> None:
    raise RuntimeError("boom")


async def test_a_swallowed_cancellation_is_asked_for_again() -> None:
    cancelled: list[int] = []
    task = asyncio.create_task(_swallows_one_cancellation(cancelled))
    await asyncio.sleep(0)
    await cancel_and_wait([task], timeout_s=0.2)
    assert task.cancelled()
    assert len(cancelled) == 2


async def test_a_task_that_never_stops_is_named_and_left_behind(
    caplog: pytest.LogCaptureFixture,
) -> None:
    let_go = asyncio.Event()

    async def stubborn() -> None:
        while not let_go.is_set():
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                continue

    task = asyncio.create_task(stubborn(), name="stubborn")
    await asyncio.sleep(0)
    with caplog.at_level(logging.WARNING):
        await cancel_and_wait([task], timeout_s=0.2)
    assert not task.done()
    assert "task stubborn did not stop" in caplog.text
    let_go.set()  # clean up: the test's loop must not keep it
    task.cancel()
    await asyncio.wait([task], timeout=1)
    assert task.done()


async def test_failed_tasks_are_retrieved_not_raised() -> None:
    task = asyncio.create_task(_fails())
    await asyncio.sleep(0)
    await cancel_and_wait([task], timeout_s=0.2)
    assert isinstance(task.exception(), RuntimeError)
