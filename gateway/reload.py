"""What a reload (SIGHUP, ``systemctl reload lockgate``) changes, decided without I/O.

The running gateway compares the configuration it runs with the one just read. What lives in
the database or in a lock worker follows in place (names, pool settings, timings); a device
whose address or driver changed gets a new driver and worker; a device that left the file is
unmanaged, as ``devices/update is_managed: false`` would, and retired once its backups are off
its lock. Some keys name what the gateway *is* (its topics, its database): those need a
restart, and a file that changes them is refused as a whole.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.config import Config, DeviceConfig


@dataclass(frozen=True, slots=True)
class ReloadPlan:
    added: tuple[DeviceConfig, ...]  # to start
    removed: tuple[str, ...]  # to unmanage and retire
    replaced: tuple[DeviceConfig, ...]  # same id, another driver or address: a new worker
    broker_changed: bool  # the mqtt section differs: reconnect with the new settings

    @property
    def devices_changed(self) -> bool:
        return bool(self.added or self.removed or self.replaced)


class ReloadRefused(Exception):
    """The new file asks for what only a restart can do; ``problems`` say what, one per key."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def _needs_new_worker(old: DeviceConfig, new: DeviceConfig) -> bool:
    """The lock is spoken to differently: its driver, its address or its slot table's shape."""
    return (old.driver, old.options, old.slots, old.code_lengths) != (
        new.driver,
        new.options,
        new.slots,
        new.code_lengths,
    )


def plan_reload(running: Config, wanted: Config) -> ReloadPlan:
    """How to go from ``running`` to ``wanted``; raises :class:`ReloadRefused`."""
    problems = [
        f"{key}: cannot change on reload (restart lockgate to use {value!r})"
        for key, before, value in (
            ("hub_id", running.hub_id, wanted.hub_id),
            ("mqtt.topic_prefix", running.mqtt.topic_prefix, wanted.mqtt.topic_prefix),
            ("database", running.database, wanted.database),
        )
        if before != value
    ]
    if problems:
        raise ReloadRefused(problems)
    before = {d.device_id: d for d in running.devices}
    after = {d.device_id: d for d in wanted.devices}
    return ReloadPlan(
        added=tuple(d for i, d in after.items() if i not in before),
        removed=tuple(i for i in before if i not in after),
        replaced=tuple(
            d for i, d in after.items() if i in before and _needs_new_worker(before[i], d)
        ),
        broker_changed=running.mqtt != wanted.mqtt,
    )
