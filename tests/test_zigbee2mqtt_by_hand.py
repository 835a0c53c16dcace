"""The zigbee2mqtt driver against Zigbee2MQTT played by hand on a real broker: republished caches,
unrelated and event messages, and disabled users are no answer to a write."""

from __future__ import annotations

import asyncio

import pytest

from drivers.base import CommandFailed, CommandTimedOut, Unreadable
from drivers.zigbee2mqtt.driver import QUIET_SHARE
from drivers.zigbee2mqtt.protocol import KEYPAD, logging_error_payload, read_payload, set_payload
from tests.broker import Broker
from tests.conftest import ConfigFactory
from tests.helpers import Probe
from tests.zigbee2mqtt_helpers import (
    AVAILABLE,
    TIMEOUT,
    TOPICS,
    hand_played,
    read_when_asked,
    users,
    value,
)

# -- Zigbee2MQTT played by hand -------------------------------------------------------------------


async def test_a_republished_cache_is_not_taken_for_the_answer(
    make_config: ConfigFactory, broker: Broker, probe: Probe
) -> None:
    async with hand_played(make_config, broker, probe) as driver:
        await probe.publish(TOPICS.state, users(u2=AVAILABLE))  # the cache, as Z2M has it
        write = asyncio.create_task(driver.set_code(3, "0123"), name="test-set")
        assert await probe.next(TOPICS.set) == set_payload(2, "0123")
        assert await probe.next(TOPICS.get) == read_payload(2)
        # The battery changed just before the answer: the old cache comes again first.
        await probe.publish(TOPICS.state, users(u2=AVAILABLE))
        await probe.publish(TOPICS.state, users(u2={"status": "enabled", "pin_code": "0123"}))
        await write
        assert value(driver, 3) == "0123"

        # Accepted and not applied: the unchanged entry is the answer, once nothing else came.
        loop = asyncio.get_running_loop()
        started = loop.time()
        await probe.publish(TOPICS.state, users(u3=AVAILABLE))
        write = asyncio.create_task(driver.set_code(4, "4444"), name="test-set")
        await probe.next(TOPICS.get)
        await probe.publish(TOPICS.state, users(u3=AVAILABLE))
        await probe.publish(TOPICS.state, users(u3=AVAILABLE))
        with pytest.raises(CommandFailed) as caught:
            await write
        assert caught.value.reason == "not_applied"
        assert loop.time() - started >= TIMEOUT * QUIET_SHARE
        assert value(driver, 4) is None

        # A bridge error says at once that the unchanged entry is the answer.
        started = loop.time()
        write = asyncio.create_task(driver.set_code(4, "4444"), name="test-set")
        await probe.next(TOPICS.get)
        await probe.publish(
            TOPICS.bridge_logging,
            {"level": "error", "message": "Publish 'set' 'pin_code' to 'zb' failed: 'timeout'"},
        )
        await probe.publish(TOPICS.state, users(u3=AVAILABLE))
        with pytest.raises(CommandFailed) as caught:
            await write
        assert caught.value.reason == "not_applied"
        assert loop.time() - started < TIMEOUT

        # A read takes the first entry for its user, however old it looks.
        read = asyncio.create_task(driver.read(), name="test-read")
        for user in range(10):
            assert await probe.next(TOPICS.get) == read_payload(user)
            await probe.publish(TOPICS.state, {"users": {str(user): AVAILABLE}})
        assert (await read).slots == dict.fromkeys(range(1, 11))


async def test_unrelated_and_event_messages_answer_nothing(
    make_config: ConfigFactory, broker: Broker, probe: Probe
) -> None:
    async with hand_played(make_config, broker, probe) as driver:
        clear = asyncio.create_task(driver.clear_slot(1), name="test-clear")
        await probe.next(TOPICS.set)
        await probe.next(TOPICS.get)
        await probe.publish(TOPICS.state, {"battery": 60})  # nothing about user 0
        # A keypad event about another user: its users are the old cache, not an answer.
        await probe.publish(
            TOPICS.state,
            {"action": "pin_code_added", "action_user": 5, "users": {"0": {"status": "enabled"}}},
        )
        await probe.publish(TOPICS.state, users(u0=AVAILABLE))
        await clear
        assert value(driver, 1) is None
        # Then the worker reads user 5 again, as the event asked it to.
        reread = asyncio.create_task(read_when_asked(driver), name="test-reread")
        assert await probe.next(TOPICS.get) == read_payload(5)
        await probe.publish(TOPICS.state, users(u5={"status": "enabled", "pin_code": "5555"}))
        assert await reread == {6}
        assert value(driver, 6) == "5555"


async def test_a_failed_reread_leaves_the_slot_unknown(
    make_config: ConfigFactory, broker: Broker, probe: Probe
) -> None:
    """The worker's read of a slot changed at the keypad goes nowhere: what the table showed is
    from before the change, so the slot is unknown until it is read again."""
    async with hand_played(make_config, broker, probe) as driver:
        cached = users(u4={"status": "enabled", "pin_code": "4444"})
        read = asyncio.create_task(driver.read([5]), name="test-read")
        await probe.next(TOPICS.get)
        await probe.publish(TOPICS.state, cached)
        await read
        assert value(driver, 5) == "4444"
        event = {"action": "pin_code_changed", "action_user": 4, "action_source_name": KEYPAD}
        await probe.publish(TOPICS.state, {**cached, **event})
        reread = asyncio.create_task(read_when_asked(driver), name="test-reread")
        assert await probe.next(TOPICS.get) == read_payload(4)
        await probe.publish(TOPICS.bridge_logging, logging_error_payload("zb", "get", "timeout"))
        with pytest.raises(CommandTimedOut):
            await reread
        assert value(driver, 5) is Unreadable.UNKNOWN


async def test_a_disabled_user_is_no_success(
    make_config: ConfigFactory, broker: Broker, probe: Probe
) -> None:
    async with hand_played(make_config, broker, probe) as driver:
        write = asyncio.create_task(driver.set_code(2, "2222"), name="test-set")
        await probe.next(TOPICS.get)
        await probe.publish(TOPICS.state, users(u1={"status": "disabled", "pin_code": "2222"}))
        with pytest.raises(CommandFailed) as caught:
            await write
        assert caught.value.reason == "not_applied"
        assert value(driver, 2) is Unreadable.OCCUPIED  # held, but it opens nothing
        # An event about a user the lock cannot have is logged and dropped.
        await probe.publish(TOPICS.state, {"action": "pin_code_added", "action_user": 10})
        assert driver.take_read_requests() == frozenset()
        write = asyncio.create_task(driver.set_code(3, "3333"), name="test-set")
        assert await probe.next(TOPICS.get) == read_payload(2)  # no re-read of user 10 first
        await probe.publish(TOPICS.state, users(u2={"status": "enabled", "pin_code": "3333"}))
        await write
        assert probe.seen(TOPICS.get) == [read_payload(1), read_payload(2)]
