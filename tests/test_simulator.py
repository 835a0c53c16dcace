"""The simulator as a person or a script sees it: raw MQTT in, raw MQTT out, real broker.

Every fault switch is driven here through the control topic; the NativeDriver's view of the same
faults is in test_native_driver.py.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

import drivers.sim
from drivers.base import SlotTable
from drivers.native.driver import NativeDriver, create_driver
from drivers.native.protocol import Topics, command_payload
from drivers.sim import (
    ControlTopics,
    SimCommand,
    SimulatedLock,
    Simulator,
    register_simulated_lock,
    run_simulator,
)
from drivers.sim_settings import with_generated_devices
from gateway.config import Config
from tests.broker import Broker
from tests.conftest import ConfigFactory, codes_on_lock
from tests.helpers import Probe, Wakes, running, session_for, simulation, untimed

PIN = "8642"  # in slot 1 of the front door at start


class Remote:
    """One simulated lock driven by hand over MQTT, as a script would."""

    def __init__(self, probe: Probe, device_id: str) -> None:
        self.probe = probe
        self.topics = Topics(f"locks/{device_id}")
        self.control_topics = ControlTopics(f"lockgate-sim/{device_id}")

    async def send(self, op: Any, slot: int | None = None, code: str | None = None) -> str:
        command_id = str(uuid.uuid4())
        await self.probe.publish(self.topics.command, command_payload(command_id, op, slot, code))
        return command_id

    async def result(self, command_id: str, timeout: float = 5.0) -> Any:
        return await self.probe.next_where(
            self.topics.result, lambda r: r["id"] == command_id, timeout
        )

    async def call(self, op: Any, slot: int | None = None, code: str | None = None) -> Any:
        return await self.result(await self.send(op, slot, code))

    def answered(self, command_id: str) -> bool:
        return any(r["id"] == command_id for r in self.probe.seen(self.topics.result))

    def slots(self) -> dict[str, str | None]:
        table: dict[str, str | None] = self.probe.last(self.topics.slots)["slots"]
        return table

    async def control(self, payload: Any) -> Any:
        """Switch something and return the state summary published in answer."""
        self.probe.drain(self.control_topics.state)
        await self.probe.publish(self.control_topics.set, payload)
        return await self.probe.next(self.control_topics.state)


@pytest.fixture
def config(make_config: ConfigFactory) -> Config:
    return make_config(simulator={"latency": "1ms", **codes_on_lock({1: PIN})})


@pytest.fixture
async def sim(config: Config, broker: Broker) -> AsyncIterator[Simulator]:
    async with simulation(config, broker) as simulator:
        yield simulator


@pytest.fixture
async def probe(probe: Probe) -> Probe:
    """conftest's probe, subscribed to every lock's and the simulator's topics."""
    await probe.subscribe("locks/#", "lockgate-sim/#")
    return probe


@pytest.fixture
async def front(sim: Simulator, probe: Probe) -> Remote:
    """The front door, once its retained announcement has reached the probe."""
    remote = Remote(probe, "front_door")
    for topic in (remote.topics.availability, remote.topics.slots, remote.control_topics.state):
        await probe.next(topic)
    return remote


# -- start and the plain protocol ---------------------------------------------------------------


async def test_announces_itself_retained(front: Remote, probe: Probe) -> None:
    assert probe.last(front.topics.availability) == {"state": "online"}
    table = probe.last(front.topics.slots)
    assert table["capacity"] == 30
    assert table["code_lengths"] == [4, 8]
    assert table["slots"]["1"] == PIN
    assert table["slots"]["30"] is None
    state = probe.last(front.control_topics.state)
    assert state["online"] is True
    assert state["faults"]["fail_next"] == 0
    assert PIN not in str(state)


async def test_set_clear_read(front: Remote, sim: Simulator, probe: Probe) -> None:
    assert (await front.call("set", 3, "0123"))["ok"] is True
    assert sim.lock("front_door").slots[3] == "0123"
    assert front.slots()["3"] == "0123"
    assert (await front.call("clear", 3))["ok"] is True
    assert 3 not in sim.lock("front_door").slots
    assert front.slots()["3"] is None
    probe.drain(front.topics.slots)
    command_id = await front.send("read")
    assert (await front.result(command_id))["ok"] is True
    # A read republishes the table, before answering.
    assert (await probe.next(front.topics.slots, timeout=0))["slots"]["1"] == PIN


async def test_table_is_republished_before_the_result(front: Remote, probe: Probe) -> None:
    result = await front.call("set", 5, "5555")
    own = {front.topics.slots, front.topics.result}
    sequence = [(t, p) for t, p in probe.history if t in own]
    assert sequence[-1][0] == front.topics.result
    assert sequence[-2][0] == front.topics.slots
    assert b'"5":"5555"' in sequence[-2][1]
    assert result["ok"] is True


@pytest.mark.parametrize(
    ("op", "slot", "code", "error"),
    [
        ("set", 0, "1234", "slot_out_of_range"),
        ("set", 31, "1234", "slot_out_of_range"),
        ("clear", 31, None, "slot_out_of_range"),
        ("set", 2, "12a4", "invalid_code"),
        ("set", 2, "123", "invalid_code"),
        ("set", 2, "123456789", "invalid_code"),
        ("set", 2, "١٢٣٤", "invalid_code"),  # digits, but not ASCII ones
        ("set", 2, PIN, "duplicate_code"),
    ],
)
async def test_refusals(
    front: Remote, sim: Simulator, op: str, slot: int, code: str | None, error: str
) -> None:
    result = await front.call(op, slot, code)
    assert (result["ok"], result["error"]) == (False, error)
    assert sim.lock("front_door").slots == {1: PIN}


async def test_setting_the_same_code_in_its_own_slot_is_no_duplicate(front: Remote) -> None:
    assert (await front.call("set", 1, PIN))["ok"] is True


async def test_malformed_commands(front: Remote, probe: Probe) -> None:
    await probe.publish(front.topics.command, b"{broken")
    await probe.publish(front.topics.command, {"id": "x1", "op": "set", "slot": "2"})
    await probe.publish(front.topics.command, {"id": "x2", "op": "unlock"})
    assert await front.result("x1") == {"id": "x1", "ok": False, "error": "slot_out_of_range"}
    assert await front.result("x2") == {"id": "x2", "ok": False, "error": "internal"}
    assert (await front.call("read"))["ok"] is True  # still alive


async def test_commands_are_processed_one_at_a_time_in_order(front: Remote) -> None:
    ids = [await front.send("set", slot, f"{slot:04d}") for slot in range(2, 12)]
    results = [await front.result(command_id) for command_id in ids]
    assert all(r["ok"] for r in results)
    answered = [r["id"] for r in front.probe.seen(front.topics.result)]
    assert answered == ids


# -- every fault switch, through the control topic -------------------------------------------


async def test_offline_and_back(front: Remote, probe: Probe, sim: Simulator) -> None:
    state = await front.control({"online": False})
    assert state["online"] is False
    assert await probe.next(front.topics.availability) == {"state": "offline"}
    ignored = await front.send("set", 2, "2222")
    await front.control({"keypad": {"slot": 4, "code": "4444"}})  # typed in while offline
    probe.drain(front.topics.slots)
    await front.control({"online": True})
    assert await probe.next(front.topics.availability) == {"state": "online"}
    # Back online it republishes the table, with what was typed in meanwhile.
    assert (await probe.next(front.topics.slots))["slots"]["4"] == "4444"
    assert (await front.call("read"))["ok"] is True
    assert not front.answered(ignored)
    assert 2 not in sim.lock("front_door").slots


async def test_fail_next(front: Remote, sim: Simulator) -> None:
    state = await front.control({"fail_next": 2, "error": "internal"})
    assert state["faults"]["fail_next"] == 2
    assert (await front.call("set", 2, "2222"))["error"] == "internal"
    assert (await front.call("read"))["error"] == "internal"
    assert (await front.call("set", 2, "2222"))["ok"] is True
    assert sim.lock("front_door").slots == {1: PIN, 2: "2222"}


async def test_fail_next_defaults_to_busy(front: Remote, sim: Simulator) -> None:
    await front.control({"fail_next": 1, "error": "internal"})
    await front.control({"fail_next": 1})
    assert (await front.call("clear", 1))["error"] == "busy"
    assert sim.lock("front_door").slots == {1: PIN}


async def test_silent_next(front: Remote, sim: Simulator) -> None:
    await front.control({"silent_next": 1})
    lost = await front.send("set", 2, "2222")
    assert (await front.call("read"))["ok"] is True  # answered after the silent one
    assert not front.answered(lost)
    assert 2 not in sim.lock("front_door").slots


async def test_silent_until_switched_back(front: Remote, sim: Simulator) -> None:
    await front.control({"silent": True})
    lost = [await front.send("read"), await front.send("clear", 1)]
    await front.control({"silent": False})
    assert (await front.call("read"))["ok"] is True
    assert not any(front.answered(i) for i in lost)
    assert sim.lock("front_door").slots == {1: PIN}


async def test_apply_silently_next(front: Remote, sim: Simulator, probe: Probe) -> None:
    await front.control({"apply_silently_next": 1})
    probe.drain(front.topics.slots)
    unanswered = await front.send("set", 2, "2222")
    assert (await probe.next(front.topics.slots))["slots"]["2"] == "2222"
    assert (await front.call("read"))["ok"] is True
    assert not front.answered(unanswered)
    assert sim.lock("front_door").slots[2] == "2222"


async def test_latency(front: Remote) -> None:
    loop = asyncio.get_running_loop()
    await front.control({"latency": 0.25})
    started = loop.time()
    await front.call("read")
    assert loop.time() - started >= 0.25
    await front.control({"latency": 0})
    started = loop.time()
    await front.call("read")
    assert loop.time() - started < 0.25


async def test_keypad(front: Remote, probe: Probe, sim: Simulator) -> None:
    probe.drain(front.topics.slots)
    await front.control({"keypad": {"slot": 7, "code": "7777"}})
    assert (await probe.next(front.topics.slots))["slots"]["7"] == "7777"
    await front.control({"keypad": {"slot": 1, "code": None}})
    assert (await probe.next(front.topics.slots))["slots"]["1"] is None
    assert sim.lock("front_door").slots == {7: "7777"}


async def test_keypad_may_create_a_duplicate_but_not_nonsense(
    front: Remote, sim: Simulator
) -> None:
    await front.control({"keypad": {"slot": 2, "code": PIN}})
    for bad in ({"slot": 99, "code": "1234"}, {"slot": 3, "code": "12"}, {"slot": 3}, [3]):
        await front.control({"keypad": bad})
    assert sim.lock("front_door").slots == {1: PIN, 2: PIN}


async def test_reject_duplicates_off(front: Remote, sim: Simulator) -> None:
    state = await front.control({"reject_duplicates": False})
    assert state["faults"]["reject_duplicates"] is False
    assert (await front.call("set", 2, PIN))["ok"] is True
    assert sim.lock("front_door").slots == {1: PIN, 2: PIN}


async def test_ignore_writes_next(front: Remote, sim: Simulator) -> None:
    await front.control({"ignore_writes_next": 1})
    assert (await front.call("set", 2, "2222"))["ok"] is True
    assert 2 not in sim.lock("front_door").slots
    assert front.slots()["2"] is None
    assert (await front.call("clear", 1))["ok"] is True  # only sets are ignored
    assert (await front.call("set", 2, "2222"))["ok"] is True
    assert sim.lock("front_door").slots == {2: "2222"}


async def test_enter(front: Remote, probe: Probe) -> None:
    keypad = front.control_topics.keypad
    await front.control({"enter": PIN})
    assert await probe.next(keypad) == {"code_accepted": True, "slot": 1}
    await front.control({"enter": "0000"})
    assert await probe.next(keypad) == {"code_accepted": False, "slot": None}
    # A code typed in and tried in one message: the keypad change applies first.
    await front.control({"keypad": {"slot": 9, "code": "9999"}, "enter": "9999"})
    assert await probe.next(keypad) == {"code_accepted": True, "slot": 9}


async def test_enter_and_operate_report_door_operations(front: Remote, probe: Probe) -> None:
    event = front.topics.event
    await front.control({"enter": PIN})
    assert await probe.next(event) == {"type": "unlocked", "method": "keycode", "slot": 1}
    await front.control({"enter": "0000"})
    assert await probe.next(event) == {"type": "access_denied", "method": "keycode"}
    await front.control({"operate": {"type": "locked", "method": "automatic"}})
    assert await probe.next(event) == {"type": "locked", "method": "automatic"}
    await front.control({"operate": {"type": "unlocked"}})
    assert await probe.next(event) == {"type": "unlocked", "method": "unknown"}
    # Old firmware says nothing of either; neither does a lock that is offline. The state
    # comes after the event it would follow, so nothing has come once it is here.
    state = await front.control({"entry_events": False})
    assert state["faults"]["entry_events"] is False
    await front.control({"enter": PIN, "operate": {"type": "unlocked", "method": "manual"}})
    await front.control({"entry_events": True, "online": False})
    await front.control({"enter": PIN})
    assert len(probe.seen(event)) == 4
    await front.control({"online": True, "operate": {"type": "locked", "method": "manual"}})
    assert await probe.next(event) == {"type": "locked", "method": "manual"}
    assert (await front.control({"reset": True}))["faults"]["entry_events"] is True


@pytest.mark.parametrize(
    "operate",
    [
        "unlocked",
        {"type": "opened"},
        {"type": "unlocked", "method": "keycode"},  # a PIN at the keypad is `enter`
        {"type": "unlocked", "method": 3},
        {"type": "unlocked", "slot": 2},
    ],
)
async def test_bad_operations_are_refused(
    front: Remote, probe: Probe, operate: object, capsys: pytest.CaptureFixture[str]
) -> None:
    await front.control({"operate": operate})
    assert probe.seen(front.topics.event) == []
    assert "sim.control_bad_value" in capsys.readouterr().out


async def test_reset(front: Remote) -> None:
    await front.control({"fail_next": 5, "silent": True, "latency": 3, "online": False})
    state = await front.control({"reset": True})
    assert state["online"] is True
    assert state["faults"]["fail_next"] == 0
    assert state["faults"]["silent"] is False
    assert state["faults"]["latency"] == pytest.approx(0.001)
    assert (await front.call("read"))["ok"] is True


async def test_state_counts_down(front: Remote, probe: Probe) -> None:
    await front.control({"fail_next": 1})
    await front.call("read")
    state = await probe.next_where(
        front.control_topics.state, lambda s: s["faults"]["fail_next"] == 0
    )
    assert state["faults"]["error"] == "busy"


async def test_bad_control_messages_never_crash_anything(
    front: Remote, probe: Probe, capsys: pytest.CaptureFixture[str]
) -> None:
    await probe.publish(front.control_topics.set, b"{not json")
    await probe.publish(front.control_topics.set, b'["online", false]')
    state = await front.control({"bogus": 1, "fail_next": -1, "silent": "yes", "latency": "x"})
    assert state["online"] is True
    assert state["faults"]["silent"] is False
    assert (await front.call("read"))["ok"] is True
    out = capsys.readouterr().out
    assert "sim.control_malformed" in out
    assert "sim.control_unknown_key" in out
    assert "sim.control_bad_value" in out


async def test_no_pin_in_logs_above_debug(
    front: Remote, capsys: pytest.CaptureFixture[str]
) -> None:
    await front.control({"keypad": {"slot": 3, "code": "13579"}, "enter": "13579"})
    await front.control({"enter": "97531"})
    await front.call("set", 4, "24680")
    out = capsys.readouterr().out
    assert "13579" not in untimed(out)
    assert "97531" not in untimed(out)
    assert "24680" not in untimed(out)


# -- in process --------------------------------------------------------------------------------


async def test_python_control_and_try_code(front: Remote, sim: Simulator, probe: Probe) -> None:
    lock = sim.lock("front_door")
    assert lock.try_code(PIN) == 1
    assert lock.try_code("0000") is None
    await lock.control({"fail_next": 1, "error": "busy"})
    assert lock.faults.fail_next == 1
    assert (await front.call("read"))["error"] == "busy"
    assert lock.faults.fail_next == 0
    await lock.control({"online": False})
    assert probe.last(front.topics.availability) == {"state": "offline"}


async def test_devices_of_other_drivers_are_skipped(
    make_config: ConfigFactory, broker: Broker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A driver whose package brings no simulated lock: its devices are left out, not fatal."""
    drivers.sim.simulated_lock_class("zigbee2mqtt")  # load the built-in simulators first
    monkeypatch.delitem(drivers.sim._registry, "zigbee2mqtt")
    config = make_config(
        devices=[
            {"device_id": "a", "name": "A", "driver": "native", "code_lengths": [6, 6]},
            {"device_id": "z", "name": "Z", "driver": "zigbee2mqtt", "slots": 10},
        ]
    )
    sim = Simulator(config, session_for(broker, "unused"))
    assert list(sim.locks) == ["a"]
    assert sim.lock("a").code_lengths == (6, 6)


# -- connection life ------------------------------------------------------------------------


async def test_announces_again_after_the_broker_comes_back(sim: Simulator, broker: Broker) -> None:
    broker.restart()  # persistence is off: every retained message is gone
    async with Probe(broker, "after-restart") as probe:
        await probe.subscribe("locks/front_door/availability", "locks/front_door/slots")
        assert await probe.next("locks/front_door/availability") == {"state": "online"}
        assert (await probe.next("locks/front_door/slots"))["slots"]["1"] == PIN


async def test_run_simulator_announces_and_says_offline_when_stopped(
    config: Config, broker: Broker
) -> None:
    async with Probe(broker) as probe:
        await probe.subscribe("locks/+/availability", "lockgate-sim/status")
        ready = asyncio.Event()
        task = asyncio.create_task(run_simulator(config, ready=ready), name="test-run-simulator")
        async with asyncio.timeout(5):
            await ready.wait()
        assert await probe.next("lockgate-sim/status") == {"state": "online"}
        for device_id in ("front_door", "back_door"):
            topic = f"locks/{device_id}/availability"
            assert await probe.next(topic) == {"state": "online"}
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        for device_id in ("front_door", "back_door"):
            topic = f"locks/{device_id}/availability"
            assert await probe.next(topic) == {"state": "offline"}


# -- scale ------------------------------------------------------------------------------------


async def test_a_thousand_locks_on_one_connection(
    make_config: ConfigFactory, broker: Broker
) -> None:
    simulator = {"latency": 0, "generate": {"count": 1000}}
    # A thousand reads are sent at once and answered one after another on one connection:
    # the last answer may come after the default 2 s; the bound here is the whole run's.
    timing = {"command_timeout": "8s"}
    config = with_generated_devices(make_config(devices=[], simulator=simulator, timing=timing))
    loop = asyncio.get_running_loop()
    started = loop.time()
    async with simulation(config, broker) as sim:
        assert len(sim.locks) == 1000
        announced = loop.time()
        session = session_for(broker, "gateway")
        wakes = Wakes()
        drivers: list[NativeDriver] = [
            create_driver(device, session, config.timing) for device in config.devices
        ]
        for driver in drivers:
            await driver.start(wakes)
        waiting = list(drivers)

        def all_online() -> bool:  # amortised O(1) per wake: a thousand wakes come
            while waiting and waiting[-1].online:
                waiting.pop()
            return not waiting

        async with running(("test-gateway-mqtt", session.run())):
            await wakes.until(all_online)
            tables = await asyncio.gather(*(d.read() for d in drivers))
    finished = loop.time()
    assert all(isinstance(t, SlotTable) and t.capacity == 30 for t in tables)
    print(f"1000 locks: up {announced - started:.2f}s, all read {finished - announced:.2f}s")
    assert finished - started < 10


async def test_a_driver_package_can_add_its_simulated_lock(
    make_config: ConfigFactory, broker: Broker, monkeypatch: pytest.MonkeyPatch
) -> None:
    class QuietLock(SimulatedLock):
        driver = "zigbee2mqtt"

        async def subscribe(self) -> None:
            pass

        async def publish_availability(self) -> None:
            pass

        async def publish_table(self) -> None:
            pass

        async def answer(self, command: SimCommand, error: str | None) -> None:
            pass

    monkeypatch.setattr(drivers.sim, "_registry", dict(drivers.sim._registry))
    register_simulated_lock(QuietLock)
    config = make_config(
        devices=[{"device_id": "z", "name": "Z", "driver": "zigbee2mqtt", "slots": 10}]
    )
    sim = Simulator(config, session_for(broker, "unused"))
    assert isinstance(sim.lock("z"), QuietLock)
    assert sim.lock("z").capacity == 10
