"""``lockgate demo``: the backup-code story, played against simulated locks in one process.

Everything is real but the locks and the calendar: a private mosquitto, the gateway, its
SQLite database, the simulator, and the API spoken over MQTT. The calendar is a clock the demo
moves forward, so a guest's stay takes seconds.
"""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from typing import Any

import aiomqtt

from drivers.sim_settings import simulator_settings
from gateway.clock import ManualClock, isoformat
from gateway.config import Config
from gateway.model import Json, ProblemCode
from gateway.site import Site, private_site

STEP_TIMEOUT = 30.0
LOCK = "front_door"


def say(text: str) -> None:
    print(text, flush=True)


def show(label: str, value: Any) -> None:
    print(f"    {label:<34} {value}", flush=True)


class Demo:
    """The story, told through the same MQTT API any client would use."""

    def __init__(self, site: Site) -> None:
        self.site = site
        self.config = site.config
        self.api = site.api
        self.clock = site.manual_clock
        self.control_topic = simulator_settings(site.config).control_topic

    async def call(self, endpoint: str, **params: Any) -> Json:
        return await self.site.call(endpoint, **params)

    async def settle(self) -> None:
        await self.site.settled(STEP_TIMEOUT)

    async def advance(self, delta: timedelta) -> None:
        await self.site.advance(delta.total_seconds())

    async def device(self) -> Json:
        device: Json = (await self.call("devices/get", device_id=LOCK))["device"]
        return device

    async def code(self, access_code_id: str) -> Json:
        reply = await self.call("access_codes/get", access_code_id=access_code_id)
        code: Json = reply["access_code"]
        return code

    async def keypad(self, pin: str) -> Json:
        """A person types ``pin`` at the simulated keypad; the lock says whether it opens."""
        control = f"{self.control_topic}/{LOCK}"
        answers = await self.api.subscribe(f"{control}/keypad")
        await self.api.publish(f"{control}/set", {"enter": pin})
        async with asyncio.timeout(STEP_TIMEOUT):
            return _json(await answers.get())

    async def fault(self, **switches: Any) -> None:
        """Switch a simulator fault through its control topic, and wait until it is on."""
        control = f"{self.control_topic}/{LOCK}"
        states = await self.api.subscribe(f"{control}/state")
        await self.api.publish(f"{control}/set", switches)
        async with asyncio.timeout(STEP_TIMEOUT):
            while True:
                faults = _json(await states.get()).get("faults", {})
                if all(faults.get(k) == v for k, v in switches.items()):
                    return

    async def play(self) -> None:
        say("\n1. The front door carries a pool of backup codes, programmed ahead of need.")
        await self.settle()
        props = (await self.device())["properties"]
        show("backup pool enabled", props["backup_access_code_pool_enabled"])
        show(
            "backup codes set on the lock",
            f"{props['backup_codes_available']} of {props['backup_pool_size']}",
        )

        say("\n2. A guest books a stay; the lock's radio starts dropping commands.")
        await self.fault(fail_next=self.config.timing.max_attempts, error="busy")
        now = self.clock.now()
        stay = await self.call(
            "access_codes/create",
            device_id=LOCK,
            name="Guest: A. Jensen",
            starts_at=isoformat(now + timedelta(hours=1)),
            ends_at=isoformat(now + timedelta(hours=49)),
        )
        guest = stay["access_code"]
        show("scheduled code", f"{guest['name']}, status {guest['status']}")
        say("    ... the clock moves to the start of the stay")
        await self.advance(timedelta(hours=1))
        guest = await self.code(guest["access_code_id"])
        errors = [e["error_code"] for e in guest["errors"]]
        show("status", guest["status"])
        show("errors", ", ".join(errors) or "none")
        show("is_backup_access_code_available", guest["is_backup_access_code_available"])
        if ProblemCode.FAILED_TO_SET_ON_DEVICE not in errors:
            raise RuntimeError("the simulated fault did not make programming fail")

        say("\n3. The guest is at the door. Pull a backup code: answered at once, no lock trip.")
        loop = asyncio.get_running_loop()
        started = loop.time()
        pulled = await self.call(
            "access_codes/pull_backup_access_code", access_code_id=guest["access_code_id"]
        )
        elapsed_ms = (loop.time() - started) * 1000
        backup = pulled["backup_access_code"]
        show("backup PIN for the guest", f"{backup['code']} (slot {backup['slot']})")
        show("answered in", f"{elapsed_ms:.1f} ms")
        show("backup ends with the stay at", backup["ends_at"])
        warnings = [w["warning_code"] for w in pulled["access_code"]["warnings"]]
        show("warnings on the guest's code", ", ".join(warnings))

        say(
            "\n4. The guest types it at the keypad; the lock tells the gateway who opened the door."
        )
        unlocks = await self.api.subscribe(f"{self.config.prefix}/events/lock.unlocked")
        answer = await self.keypad(backup["code"])
        show("door opens", f"{answer['code_accepted']} (slot {answer['slot']})")
        async with asyncio.timeout(STEP_TIMEOUT):
            unlocked = _json(await unlocks.get())
        opener = unlocked["access_code_id"]
        who = backup["name"] if opener == backup["access_code_id"] else opener
        show("lock.unlocked", f"by {unlocked['method']}, slot {unlocked['slot']}")
        show("opened by", f"{who}, standing in for {guest['name']}")
        story = await self.call("access_codes/get_timeline", access_code_id=guest["access_code_id"])
        show("the guest's timeline", ", ".join(_short(e) for e in story["timeline"]))

        say("\n5. The gateway refills the pool in the background.")
        await self.settle()
        props = (await self.device())["properties"]
        show(
            "backup codes set on the lock",
            f"{props['backup_codes_available']} of {props['backup_pool_size']}",
        )
        show("pulled backups still active", props["active_backup_codes"])

        say("\n6. The stay ends: the backup code comes off the lock.")
        await self.advance(timedelta(hours=48))
        answer = await self.keypad(backup["code"])
        show("backup PIN still opens the door", answer["code_accepted"])
        props = (await self.device())["properties"]
        show("pulled backups still active", props["active_backup_codes"])
        say("\nDone: every step above went over MQTT through the real gateway and database.")


def _short(event: Json) -> str:
    """An event type without its family: ``backup_access_code_pulled``, ``unlocked``."""
    kind: str = event["event_type"]
    return kind.rsplit(".", 1)[-1]


def _json(message: aiomqtt.Message) -> Json:
    payload = message.payload
    value = json.loads(payload if isinstance(payload, bytes) else b"{}")
    return value if isinstance(value, dict) else {}


async def run_demo(config: Config) -> int:
    clock = ManualClock()
    async with private_site(config, clock, settle=False) as site:
        say(
            f"lockgate demo: private broker on {site.config.mqtt.host}:{site.config.mqtt.port}, "
            f"database {site.config.database}"
        )
        await Demo(site).play()
    return 0
