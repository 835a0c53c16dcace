"""The safety invariants of issue 7, checked against what the locks really hold.

Pure: the caller gathers the locks' tables (from the simulator) and the gateway's codes (from
its API, pooled backups included), plus what it has told the gateway to forget; this module only
judges. The property test and the fault suite both use it, so both mean the same thing by "safe".
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

Json = dict[str, Any]


@dataclass
class Ledger:
    """What a client has been told, so the locks can be held to it.

    ``revoked`` holds, per device, every PIN of a code the client deleted (or that ended) — its
    old PINs from before an update too. ``acked`` holds every access_code_id a success reply
    named that the client has not deleted since.
    """

    revoked: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    acked: set[str] = field(default_factory=set)
    pins: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))  # id -> PINs
    device_of: dict[str, str] = field(default_factory=dict)
    backup_of: dict[str, str] = field(default_factory=dict)  # code id -> its pulled backup's

    def created(self, code: Json) -> None:
        cid = code["access_code_id"]
        self.acked.add(cid)
        self.device_of[cid] = code["device_id"]
        self.pins[cid].add(code["code"])

    def updated(self, code: Json) -> None:
        self.pins[code["access_code_id"]].add(code["code"])

    def pulled(self, access_code_id: str, backup: Json) -> None:
        """A pulled backup is listed until its code goes, and leaves the lock with it."""
        self.created(backup)
        self.backup_of[access_code_id] = backup["access_code_id"]

    def deleted(self, access_code_id: str) -> None:
        """Every PIN the code ever had must leave its lock, and so must its pulled backup."""
        backup = self.backup_of.pop(access_code_id, None)
        if backup is not None:
            self.deleted(backup)
        self.acked.discard(access_code_id)
        device_id = self.device_of.get(access_code_id)
        if device_id is not None:
            self.revoked[device_id] |= self.pins.pop(access_code_id, set())


def violations(  # noqa: C901 (one flat list of invariants, each checked and named where it is read)
    tables: Mapping[str, Mapping[int, str | None]],
    codes: Iterable[Json],
    ledger: Ledger | None = None,
    *,
    unmanaged: Mapping[str, Iterable[str]] | None = None,
) -> list[str]:
    """Every broken invariant, in words; empty when the site is safe.

    ``tables``: device_id -> slot -> PIN as the lock really holds it. ``codes``: every managed
    code the gateway lists (``include_backup_pool``). ``unmanaged``: PINs put on a lock outside
    the gateway (keypad, initial codes), which may legitimately sit anywhere.
    """
    found: list[str] = []
    codes = list(codes)
    live_pins: dict[str, set[str]] = defaultdict(set)
    slots_of: dict[tuple[str, int], list[str]] = defaultdict(list)
    for code in codes:
        live_pins[code["device_id"]].add(code["code"])
        if code.get("slot") is not None:
            slots_of[(code["device_id"], code["slot"])].append(code["access_code_id"])
    for (device_id, slot), ids in slots_of.items():
        if len(ids) > 1:
            found.append(f"{device_id} slot {slot} is claimed by {len(ids)} managed codes")
    for device_id, table in tables.items():
        pins = Counter(pin for pin in table.values() if pin is not None)
        found += [
            f"{device_id} holds one PIN in {count} slots" for count in pins.values() if count > 1
        ]
        by_pin: dict[str, list[int]] = defaultdict(list)
        for slot, pin in table.items():
            if pin is not None:
                by_pin[pin].append(slot)
        for code in codes:
            if code["device_id"] == device_id and len(by_pin.get(code["code"], [])) > 1:
                found.append(f"managed code {code['access_code_id']} is in two slots")
        if ledger is not None:
            foreign = set(unmanaged.get(device_id, ()) if unmanaged else ())
            for pin in ledger.revoked.get(device_id, set()):
                if pin in pins and pin not in live_pins[device_id] and pin not in foreign:
                    found.append(
                        f"{device_id} still holds a PIN of a deleted code in slot "
                        f"{sorted(by_pin[pin])}"
                    )
    if ledger is not None:
        listed = {c["access_code_id"] for c in codes}
        lost = ledger.acked - listed
        if lost:
            found.append(f"acknowledged codes lost: {sorted(lost)}")
    return found


def divergences(
    tables: Mapping[str, Mapping[int, str | None]],
    codes: Iterable[Json],
    now: datetime,
    *,
    unmanaged: Mapping[str, Iterable[str]] | None = None,
) -> list[str]:
    """What still separates the locks from the gateway's codes, in words; empty once the site
    has converged. Not an invariant (work in flight differs for a while): tests wait for it to
    empty, then judge :func:`violations`.

    Converged: no code ``removing``; a code whose window has opened (or that has none) is ``set``
    and its slot holds its PIN; one whose window lies ahead is ``unset`` and off the lock; a lock
    holds no PIN but those and ``unmanaged`` ones.
    """
    found: list[str] = []
    wanted: dict[str, set[str]] = defaultdict(set)
    for code in codes:
        cid, device_id, pin = code["access_code_id"], code["device_id"], code["code"]
        table = tables.get(device_id, {})
        starts = code.get("starts_at")
        if code["status"] == "removing":
            found.append(f"{cid} is still removing")
        elif starts is None or datetime.fromisoformat(starts) <= now:
            wanted[device_id].add(pin)
            if code["status"] != "set" or table.get(code["slot"]) != pin:
                found.append(f"{cid} is {code['status']}, slot {code['slot']} of {device_id}")
        elif code["status"] != "unset" or pin in table.values():
            found.append(f"{cid} lies ahead of its window but is {code['status']}")
    for device_id, table in tables.items():
        allowed = wanted[device_id] | set(unmanaged.get(device_id, ()) if unmanaged else ())
        extra = sorted(s for s, pin in table.items() if pin is not None and pin not in allowed)
        if extra:
            found.append(f"{device_id} holds PINs no code wants in slots {extra}")
    return found


__all__ = ["Ledger", "divergences", "violations"]
