"""What every process built from `Settings` shares: stopping on SIGTERM/SIGINT, the metrics
endpoint, and freezing the start-up heap.

The clock every room uses is `metering.core.ports.wall_clock_ms` (engines take a `Clock`, so
tests and the backfill decide the time); the processes here pass nothing else.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

from metering.settings import Settings

log = logging.getLogger(__name__)


def stop_on_signals(stop: asyncio.Event) -> None:
    """Set `stop` on SIGTERM or SIGINT (call inside the running loop): a graceful shutdown."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)


def metrics_registry(settings: Settings, *, resources: bool = False) -> CollectorRegistry:
    """A fresh registry, served on 127.0.0.1:`metrics_port` when that is set (0: not served).

    With `resources`, it also carries the standard `process_*` (CPU, memory, file
    descriptors) and `python_info` series, so the dashboard can show a process's resources
    next to its work.
    """
    registry = CollectorRegistry()
    if resources:
        ProcessCollector(registry=registry)
        PlatformCollector(registry=registry)
    if settings.metrics_port:
        start_http_server(settings.metrics_port, addr="127.0.0.1", registry=registry)
    return registry


def freeze_startup_heap() -> None:
    """Move everything start-up built (libraries, plans, accounts, caches) out of the cyclic
    collector's reach: frozen objects are never traversed again; memory is still freed by
    reference counting, and cycles made afterwards are still collected."""
    gc.collect()
    gc.freeze()


TASK_STOP_S = 10.0
"""How long a cancelled background task may take to end before shutdown goes on without it."""


async def cancel_and_wait(
    tasks: list[asyncio.Task[None]], *, timeout_s: float = TASK_STOP_S
) -> None:
    """Cancel the background tasks and wait for them, bounded.

    Why bounded: on Python 3.11 `asyncio.wait_for` (used inside client libraries) can swallow a
    cancellation that arrives as its inner call completes, and a loop that then sleeps goes on
    as if nothing happened; an unbounded gather would hold SIGTERM up for good (seen: a
    processor that took more than 60 s to stop). A task still running after `timeout_s` is
    named in a warning and cancelled again; the process carries on shutting down.
    """
    if not tasks:
        return
    for task in tasks:
        task.cancel()
    for _ in range(2):
        _, pending = await asyncio.wait(tasks, timeout=timeout_s / 2)
        if not pending:
            break
        for task in pending:
            task.cancel()  # a cancellation that was swallowed is asked for again
    for task in tasks:
        if not task.done():
            log.warning(
                "task %s did not stop within %.0f s of its cancellation", task.get_name(), timeout_s
            )
        elif not task.cancelled():
            task.exception()  # retrieved: the callers report failures through their own state

