"""Log lines: JSON behind METERING_LOG_FORMAT, text on a terminal, the level setting, aiokafka
held at WARNING, and the request id / partition / account of the context on each record."""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import Iterator

import orjson
import pytest

from metering.core import log_context
from metering.core.errors import ConfigError
from metering.runtime.logging import configure_logging
from metering.settings import Settings


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    """configure_logging adds a root handler and sets levels: undo it afterwards."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    quiet = {name: logging.getLogger(name).level for name in ("aiokafka", "kafka")}
    yield
    for handler in list(root.handlers):
        if handler not in handlers:
            root.removeHandler(handler)
    root.setLevel(level)
    for name, old in quiet.items():
        logging.getLogger(name).setLevel(old)


def lines(out: io.StringIO) -> list[dict[str, object]]:
    return [orjson.loads(line) for line in out.getvalue().splitlines()]


def test_json_lines_carry_the_context_fields() -> None:
    out = io.StringIO()
    configure_logging("INFO", "json", stream=out)
    log = logging.getLogger("metering.test")
    log.info("plain %s", "line")
    with log_context.bound(request="req-1", partition_=3, account_="acct-9"):
        log.warning("in a request")
    log.info("explicit", extra={"account": "acct-2"})
    first, second, third = lines(out)
    assert first["message"] == "plain line"
    assert first["level"] == "INFO"
    assert first["logger"] == "metering.test"
    assert "request_id" not in first
    assert str(first["time"]).endswith("+00:00")
    assert (second["request_id"], second["partition"], second["account"]) == ("req-1", 3, "acct-9")
    assert third["account"] == "acct-2"
    assert log_context.current() == {}  # restored after the block


def test_an_exception_stays_inside_its_json_line() -> None:
    out = io.StringIO()
    configure_logging("INFO", "json", stream=out)
    try:
        raise ValueError("boom")
    except ValueError:
        logging.getLogger("metering.test").exception("failed")
    (line,) = lines(out)  # one line, however long the traceback
    assert "ValueError: boom" in str(line["exception"])


def test_auto_is_text_on_a_terminal_and_json_elsewhere() -> None:
    terminal = Terminal()
    configure_logging("INFO", "auto", stream=terminal)
    with log_context.bound(request="r-7"):
        logging.getLogger("metering.test").info("hello")
    text = terminal.getvalue()
    assert " INFO metering.test: hello [request_id=r-7]" in text
    assert not text.startswith("{")
    pipe = io.StringIO()
    configure_logging("INFO", "auto", stream=pipe)
    logging.getLogger("metering.test").info("hello")
    assert lines(pipe)[0]["message"] == "hello"


def test_level_setting_and_aiokafka_held_at_warning() -> None:
    out = io.StringIO()
    configure_logging("warning", "json", stream=out)
    logging.getLogger("metering.test").info("hidden")
    logging.getLogger("metering.test").warning("shown")
    assert [x["message"] for x in lines(out)] == ["shown"]

    out = io.StringIO()
    configure_logging("INFO", "json", stream=out)
    logging.getLogger("aiokafka.consumer").info("joined group")  # aiokafka's chatter
    logging.getLogger("aiokafka.conn").warning("connection lost")
    assert [x["message"] for x in lines(out)] == ["connection lost"]

    out = io.StringIO()
    configure_logging("DEBUG", "json", stream=out)
    logging.getLogger("aiokafka.consumer").info("joined group")
    assert [x["message"] for x in lines(out)] == ["joined group"]

    out = io.StringIO()
    configure_logging("ERROR", "json", stream=out, debug=True)  # --debug wins
    logging.getLogger("metering.test").debug("detail")
    assert [x["message"] for x in lines(out)] == ["detail"]


def test_bad_values_name_the_variable() -> None:
    with pytest.raises(ConfigError, match="METERING_LOG_LEVEL"):
        configure_logging("LOUD", "json")
    with pytest.raises(ConfigError, match="METERING_LOG_FORMAT"):
        configure_logging("INFO", "xml")


async def test_concurrent_tasks_keep_their_own_request_ids() -> None:
    out = io.StringIO()
    configure_logging("INFO", "json", stream=out)
    log = logging.getLogger("metering.test")

    async def request(rid: str) -> None:
        log_context.request_id.set(rid)  # what the API does once per request
        await asyncio.sleep(0)
        log.info("served %s", rid)

    await asyncio.gather(*(request(f"r{i}") for i in range(5)))
    assert all(x["request_id"] == str(x["message"]).split()[-1] for x in lines(out))
    assert len(lines(out)) == 5


def test_the_default_is_text_even_off_a_terminal() -> None:
    """JSON is opt-in: existing log readers keep their lines."""
    settings = Settings()
    out = io.StringIO()
    configure_logging(settings.log_level, settings.log_format, stream=out)
    logging.getLogger("metering.test").info("hello")
    logging.getLogger("metering.test").debug("hidden")
    assert out.getvalue().rstrip().endswith(" INFO metering.test: hello")
    assert "hidden" not in out.getvalue()


def test_a_field_a_filter_already_wrote_into_the_message_is_not_repeated() -> None:
    """A filter (the API's request-id filter) may append ` request_id=<id>` to the message
    and set the attribute: JSON keeps the field and a clean message, text shows it once."""

    class Appends(logging.Filter):
        def filter(self, record: logging.LogRecord) -> bool:
            record.request_id = "abc"
            record.msg = f"{record.msg} request_id=abc"
            return True

    out = io.StringIO()
    configure_logging("INFO", "json", stream=out)
    logger = logging.getLogger("metering.test.appends")
    logger.addFilter(Appends())
    logger.info("served")
    (line,) = lines(out)
    assert (line["message"], line["request_id"]) == ("served", "abc")

    out = io.StringIO()
    configure_logging("INFO", "text", stream=out)
    logger.info("served")
    assert out.getvalue().count("request_id=abc") == 1, out.getvalue()
