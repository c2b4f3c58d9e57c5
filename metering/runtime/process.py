"""What every process built from `Settings` shares: stopping on SIGTERM/SIGINT, the metrics
endpoint, and freezing the start-up heap.

The clock every room uses is `metering.core.ports.wall_clock_ms` (engines take a `Clock`, so
tests and the backfill decide the time); the processes here pass nothing else.
"""

from __future__ import annotations

import asyncio
import gc
import signal

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

from metering.settings import Settings


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
