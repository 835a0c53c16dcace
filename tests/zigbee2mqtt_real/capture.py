"""Record what a real Zigbee2MQTT says on MQTT for one run of a lock's PIN traffic.

    .venv/bin/python -m tests.zigbee2mqtt_real.capture     # rewrites the fixture below

Set, get, clear, a write that times out, a refused write, a keypad programming event, a keypad
unlock, a read past the lock's users, and availability, on and off. Every message on the lock's
topics and on ``bridge/state`` is kept, and the warning and error lines of ``bridge/logging``
(its info lines repeat each publish). One JSON object a line: ``topic`` and ``payload`` (the
JSON payload, or the text when it is not JSON). tests/test_zigbee2mqtt_capture.py
checks the driver's parsers, and the simulator, against it.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiomqtt

from drivers.zigbee2mqtt.protocol import clear_payload, read_payload, set_payload
from gateway.broker import Broker
from tests.zigbee2mqtt_real.stack import ROOT, FakeLockSpec, Zigbee2Mqtt, running_zigbee2mqtt

FIXTURE = ROOT / "tests" / "fixtures" / "zigbee2mqtt" / "capture.jsonl"
LOCK = FakeLockSpec("front_door", "0x000d6f0000a1b2c3", 0x2B1D)
BASE = "zigbee2mqtt"


def kept(topic: str, payload: Any) -> bool:
    if topic == f"{BASE}/bridge/logging":
        return isinstance(payload, dict) and payload.get("level") in ("warning", "error")
    return topic == f"{BASE}/bridge/state" or topic.startswith(f"{BASE}/{LOCK.friendly_name}")


async def scenario(
    z2m: Zigbee2Mqtt, client: aiomqtt.Client, quiet: Callable[[], Awaitable[None]]
) -> None:
    """The driver's own requests, one exchange at a time."""
    name = LOCK.friendly_name
    state = f"{BASE}/{name}"

    async def send(suffix: str, payload: dict[str, Any]) -> None:
        await client.publish(f"{state}/{suffix}", json.dumps(payload))

    await z2m.reset(name, {0: "8642"})
    for request in (
        ("set", set_payload(2, "0123")),  # set, then read back
        ("get", read_payload(2)),
        ("get", read_payload(3)),  # an empty slot
        ("set", clear_payload(2)),  # clear, then read back
        ("get", read_payload(2)),
        ("set", set_payload(4, "8642")),  # a duplicate PIN: refused by the lock (status 3)
        ("get", read_payload(4)),
        ("get", read_payload(40)),  # past the lock's 30 users: userstatus 0xFF
    ):
        await send(*request)
        await quiet()
    await z2m.fault(name, drop=1)  # a write that times out in herdsman
    await send("set", set_payload(5, "5555"))
    await quiet()
    await z2m.control("keypad", name, user=6, pin="6666")
    await quiet()
    await z2m.control("unlock", name, user=6)
    await quiet()


async def capture() -> list[dict[str, Any]]:
    with tempfile.TemporaryDirectory(prefix="lockgate-z2m-capture-") as workdir:
        root = Path(workdir)
        (root / "broker").mkdir()
        (root / "data").mkdir()
        broker = Broker(root / "broker")
        broker.start()
        records: list[dict[str, Any]] = []
        heard = asyncio.Event()
        try:
            async with aiomqtt.Client(broker.host, broker.port) as client:
                await client.subscribe(f"{BASE}/#")

                async def listen() -> None:
                    async for message in client.messages:
                        assert isinstance(message.payload, bytes)
                        text = message.payload.decode()
                        try:
                            payload: Any = json.loads(text)
                        except ValueError:
                            payload = text
                        topic = str(message.topic)
                        if kept(topic, payload):
                            records.append({"topic": topic, "payload": payload})
                            heard.set()

                async def quiet() -> None:
                    """Until the stack has said all it will about the last step."""
                    while True:
                        heard.clear()
                        try:
                            await asyncio.wait_for(heard.wait(), 2.5)  # > the fake's 1.5 s timeout
                        except TimeoutError:
                            return

                listener = asyncio.create_task(listen())
                with running_zigbee2mqtt(root / "data", broker.port, [LOCK]) as z2m:
                    await quiet()
                    await scenario(z2m, client, quiet)
                    # Zigbee2MQTT stopping: the bridge goes offline.
                await quiet()
                listener.cancel()
        finally:
            broker.kill()
    return records


if __name__ == "__main__":
    captured = asyncio.run(capture())
    FIXTURE.parent.mkdir(parents=True, exist_ok=True)
    FIXTURE.write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in captured))
    print(f"{len(captured)} messages -> {FIXTURE.relative_to(ROOT)}")
