"""Logging: one JSON object per line, per-task context, and no secrets above DEBUG."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from gateway.logs import (
    REDACTED,
    bind_context,
    clear_context,
    configure_logging,
    get_logger,
    log_context,
)
from tests.helpers import untimed


class FakeTTY(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def _clean_logging() -> Iterator[None]:
    clear_context()
    yield
    clear_context()
    configure_logging()  # back to stdout so later tests do not write into a dead buffer


@pytest.fixture
def out() -> io.StringIO:
    stream = io.StringIO()
    configure_logging("info", json=True, stream=stream)
    return stream


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_json_lines_carry_level_timestamp_event(out: io.StringIO) -> None:
    log = get_logger("gateway.test")
    log.info("lock online", device_id="front_door")
    log.warning("lock slow", device_id="back_door", attempt=2)

    records = lines(out)
    assert len(records) == 2
    first, second = records
    assert first["event"] == "lock online"
    assert first["level"] == "info"
    assert first["logger"] == "gateway.test"
    assert first["device_id"] == "front_door"
    assert second["level"] == "warning"
    assert second["attempt"] == 2
    stamp = datetime.fromisoformat(first["timestamp"])
    assert stamp.utcoffset() == UTC.utcoffset(None)


def test_level_filters_lower_lines(out: io.StringIO) -> None:
    get_logger().debug("not shown")
    assert out.getvalue() == ""


def test_json_is_chosen_when_stream_is_not_a_tty() -> None:
    stream = io.StringIO()
    configure_logging(stream=stream)
    get_logger().info("hello")
    assert json.loads(stream.getvalue())["event"] == "hello"


def test_console_renderer_on_a_tty() -> None:
    stream = FakeTTY()
    configure_logging(stream=stream)
    get_logger().info("hello console", device_id="front_door")
    text = stream.getvalue()
    assert "hello console" in text
    assert "front_door" in text
    with pytest.raises(json.JSONDecodeError):
        json.loads(text)


def test_unknown_level_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown log level"):
        configure_logging("loud", stream=io.StringIO())


async def test_context_is_per_task(out: io.StringIO) -> None:
    log = get_logger()
    both_bound = asyncio.Barrier(2)

    async def worker(device_id: str, request_id: str) -> None:
        bind_context(device_id=device_id, request_id=request_id)
        await both_bound.wait()  # the other task has bound its own values by now
        log.info("working")

    async with asyncio.TaskGroup() as tg:
        tg.create_task(worker("front_door", "r-1"))
        tg.create_task(worker("back_door", "r-2"))
    log.info("outside")

    by_device = {r.get("device_id"): r for r in lines(out)}
    assert by_device["front_door"]["request_id"] == "r-1"
    assert by_device["back_door"]["request_id"] == "r-2"
    assert "request_id" not in by_device[None]  # the parent task never saw either binding


def test_log_context_restores_previous_values(out: io.StringIO) -> None:
    log = get_logger()
    bind_context(device_id="front_door")
    with log_context(device_id="back_door", access_code_id="ac-1"):
        log.info("inside")
    log.info("after")

    inside, after = lines(out)
    assert inside["device_id"] == "back_door"
    assert inside["access_code_id"] == "ac-1"
    assert after["device_id"] == "front_door"
    assert "access_code_id" not in after


@pytest.mark.parametrize("method", ["info", "warning", "error"])
def test_secrets_are_redacted_above_debug(out: io.StringIO, method: str) -> None:
    log = get_logger()
    getattr(log, method)(
        "programming",
        code="4821",
        password="hunter2-secret",
        device_id="front_door",
        payload={"userCode": "4821", "slot": 3},
        nested={"access_code": {"code": "4821", "name": "Guest"}, "pins": [{"pin": "4821"}]},
    )
    text = untimed(out.getvalue())
    assert "4821" not in text
    assert "hunter2-secret" not in text
    (record,) = lines(out)
    assert record["code"] == REDACTED
    assert record["password"] == REDACTED
    assert record["payload"] == REDACTED
    assert record["device_id"] == "front_door"
    assert record["nested"]["access_code"] == {"code": REDACTED, "name": "Guest"}
    assert record["nested"]["pins"] == [{"pin": REDACTED}]


def test_secrets_pass_at_debug() -> None:
    stream = io.StringIO()
    configure_logging("debug", json=True, stream=stream)
    get_logger().debug("programming", code="4821", password="hunter2-secret")
    (record,) = lines(stream)
    assert record["code"] == "4821"
    assert record["password"] == "hunter2-secret"


def test_bound_secret_is_redacted(out: io.StringIO) -> None:
    get_logger().bind(pin_code="4821").info("bound")
    with log_context(secret="s3cr3t"):
        get_logger().info("context")
    assert "4821" not in untimed(out.getvalue())
    assert "s3cr3t" not in out.getvalue()


def test_caller_objects_are_not_mutated(out: io.StringIO) -> None:
    payload = {"code": "4821"}
    get_logger().info("sent", message=payload)
    assert payload == {"code": "4821"}


def _fail_with_pin_in_frame() -> None:
    pin = "918273"
    raise ValueError(f"code of length {len(pin)} rejected by the lock")


@pytest.mark.parametrize("json_output", [True, False])
def test_traceback_has_no_frame_locals(json_output: bool) -> None:
    stream = io.StringIO()
    configure_logging("info", json=json_output, stream=stream)
    log = get_logger()
    try:
        _fail_with_pin_in_frame()
    except ValueError:
        log.exception("programming failed", device_id="front_door")

    text = untimed(stream.getvalue())
    assert "918273" not in text
    assert "_fail_with_pin_in_frame" in text  # the traceback itself is there
    assert "rejected by the lock" in text
    if json_output:
        (record,) = lines(stream)
        assert record["level"] == "error"
        frames = record["exception"][0]["frames"]
        assert all("locals" not in frame for frame in frames)


def test_library_logging_is_routed_at_warning_and_above(out: io.StringIO) -> None:
    lib = logging.getLogger("aiomqtt.test")
    lib.info("chatty")
    lib.warning("broker went away: %s", "reset")

    (record,) = lines(out)
    assert record["event"] == "broker went away: reset"
    assert record["level"] == "warning"
    assert record["logger"] == "aiomqtt.test"


def test_library_exception_has_no_frame_locals(out: io.StringIO) -> None:
    try:
        _fail_with_pin_in_frame()
    except ValueError:
        logging.getLogger("paho.test").exception("callback failed")
    text = untimed(out.getvalue())
    assert "918273" not in text
    assert "callback failed" in text
    assert "ValueError" in text


def test_configure_is_idempotent() -> None:
    stream = io.StringIO()
    for _ in range(5):
        configure_logging("info", json=True, stream=stream)
    get_logger().info("once")
    logging.getLogger("aiomqtt.test").warning("library once")
    assert [r["event"] for r in lines(stream)] == ["once", "library once"]


def test_reconfigure_reaches_existing_loggers() -> None:
    log = get_logger("gateway.early")  # module-level loggers are created before configuration
    first, second = io.StringIO(), io.StringIO()
    configure_logging(json=True, stream=first)
    log.info("one")
    configure_logging(json=True, stream=second)
    log.info("two")
    assert [r["event"] for r in lines(first)] == ["one"]
    assert [r["event"] for r in lines(second)] == ["two"]


def test_default_stream_is_stdout_at_call_time(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(json=True)
    get_logger().info("to stdout")
    assert json.loads(capsys.readouterr().out)["event"] == "to stdout"


def test_library_custom_level_rounds_down(out: io.StringIO) -> None:
    logging.getLogger("paho.test").log(logging.WARNING + 5, "odd level")
    (record,) = lines(out)
    assert record["level"] == "warning"
