"""How every `metering` process logs: one call at start, driven by two settings.

`METERING_LOG_FORMAT` picks the line format: `text` (the default, for people), `json` (one
JSON object per line, for log shippers), or `auto` (text when stderr is a terminal, JSON
otherwise: one setting for a service under systemd or Kubernetes that people also run by hand).
JSON is opt-in so that existing log readers and scripts keep their lines.
`METERING_LOG_LEVEL` sets our level (INFO by default). aiokafka logs every connection and
group step at INFO, which drowned our own lines: it is held at WARNING unless our level is
DEBUG. Every record carries the request id, partition and account set in
metering/core/log_context.py where the code knows them.
"""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime
from typing import TextIO

import orjson

from metering.core import log_context
from metering.core.errors import ConfigError

FORMATS = ("auto", "text", "json")
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
QUIET_LIBRARIES = ("aiokafka", "kafka")
"""Libraries held at WARNING unless the level is DEBUG (their INFO lines are per connection)."""
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class ContextFilter(logging.Filter):
    """Copies the log context (request id, partition, account) onto each record."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name, value in log_context.current().items():
            if not hasattr(record, name):
                setattr(record, name, value)
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, the context fields, and the
    exception's text when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        fields: dict[str, object] = {}
        for name, _ in log_context.FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                fields[name] = value
                # A filter that already wrote ` name=value` into the text: a field suffices.
                message = message.removesuffix(f" {name}={value}")
        line: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": message,
            **fields,
        }
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(line, default=str).decode()


class TextFormatter(logging.Formatter):
    """The classic line, with the context fields appended as `key=value`."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        first_line = text.partition("\n")[0]
        pairs = (
            f"{name}={getattr(record, name)}"
            for name, _ in log_context.FIELDS
            if getattr(record, name, None) is not None
        )
        extra = " ".join(p for p in pairs if p not in first_line)  # not twice
        if not extra:
            return text
        first, sep, rest = text.partition("\n")
        return f"{first} [{extra}]{sep}{rest}"


class _OurHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The handler `configure_logging` installs (and replaces when called again)."""


def parse_level(raw: str) -> int:
    """The `logging` level of a METERING_LOG_LEVEL value (case-insensitive)."""
    name = raw.strip().upper()
    if name not in LEVELS:
        raise ConfigError("METERING_LOG_LEVEL", f"expected one of {', '.join(LEVELS)}, got {raw!r}")
    level: int = getattr(logging, name)
    return level


def configure_logging(
    level: str, log_format: str, *, stream: TextIO | None = None, debug: bool = False
) -> None:
    """Install our handler on the root logger (replacing an earlier one of ours), once per
    process start.

    `debug` (the CLI's `--debug`/`--verbose`) forces DEBUG whatever the setting says."""
    if log_format not in FORMATS:
        raise ConfigError(
            "METERING_LOG_FORMAT", f"expected one of {', '.join(FORMATS)}, got {log_format!r}"
        )
    resolved = logging.DEBUG if debug else parse_level(level)
    out = sys.stderr if stream is None else stream
    use_json = log_format == "json" or (log_format == "auto" and not out.isatty())
    handler = _OurHandler(out)
    handler.setFormatter(JsonFormatter() if use_json else TextFormatter())
    handler.addFilter(ContextFilter())
    root = logging.getLogger()
    for old in list(root.handlers):
        if isinstance(old, _OurHandler):  # an earlier call's; others (a test runner's) stay
            root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(resolved)
    for name in QUIET_LIBRARIES:
        logging.getLogger(name).setLevel(
            logging.DEBUG if resolved <= logging.DEBUG else max(resolved, logging.WARNING)
        )
