"""Which changes mark a device's public object (``P/devices/<id>``) as changed, so that the
publisher reads, encodes and compares it again: its row, its own errors and warnings and its
backup counts do; the changes of its ordinary codes, which the object does not show, do not
(in a burst of a thousand creates each used to cost a read of the device object, three times)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from gateway.clock import ManualClock
from gateway.model import AccessCode, CodeStatus, EventType, ProblemCode
from gateway.store import Store, Tx
from gateway.store import codes as code_store
from gateway.store import devices as device_store
from gateway.store.problems import set_problem
from tests.fakes import DEVICE, add_code, opened_store, stored_code, unit_config


async def touched(store: Store, change: Callable[[Tx], object]) -> set[str]:
    """The devices a unit making ``change`` marks as changed."""

    def unit(tx: Tx) -> set[str]:
        change(tx)
        return set(tx.devices_touched)

    return await store.write(unit)


async def backup_of(store: Store) -> AccessCode:
    return await store.write(
        lambda tx: code_store.insert_code(
            tx, device_id=DEVICE, name=None, code="5555", starts_at=None, ends_at=None, backup=True
        )
    )


async def test_an_ordinary_codes_changes_leave_the_device_object_alone(tmp_path: Path) -> None:
    async with opened_store(unit_config(tmp_path), ManualClock()) as store:
        code_id = await add_code(store, "1234")
        code = await stored_code(store, code_id)
        assert code is not None
        assert (
            await touched(store, lambda tx: code_store.set_status(tx, code, CodeStatus.SET))
            == set()
        )
        assert (
            await touched(store, lambda tx: tx.emit(EventType.CODE_SET, DEVICE, code_id)) == set()
        )
        problem = ProblemCode.FAILED_TO_SET_ON_DEVICE
        assert (
            await touched(
                store, lambda tx: set_problem(tx, code_id, problem, True, device_id=DEVICE)
            )
            == set()
        )
        assert await touched(store, lambda tx: code_store.mark_deleting(tx, code)) == set()
        assert await touched(store, lambda tx: code_store.forget(tx, code)) == set()


async def test_what_the_device_object_shows_marks_it(tmp_path: Path) -> None:
    async with opened_store(unit_config(tmp_path), ManualClock()) as store:
        assert await touched(store, lambda tx: device_store.set_online(tx, DEVICE, True)) == {
            DEVICE
        }
        problem = ProblemCode.INVALID_REPORT_FROM_DEVICE
        assert await touched(
            store, lambda tx: set_problem(tx, DEVICE, problem, True, device_id=DEVICE)
        ) == {DEVICE}
        assert await touched(store, lambda tx: device_store.set_managed(tx, DEVICE, False)) == {
            DEVICE
        }
        assert await touched(store, lambda tx: device_store.enable_pool(tx, DEVICE)) == {DEVICE}


async def test_a_backups_changes_mark_the_device_whose_counts_they_change(tmp_path: Path) -> None:
    async with opened_store(unit_config(tmp_path), ManualClock()) as store:
        backup = await backup_of(store)
        set_it = lambda tx: code_store.set_status(tx, backup, CodeStatus.SET)  # noqa: E731
        assert await touched(store, set_it) == {DEVICE}
        original = await stored_code(store, await add_code(store, "1234"))
        assert original is not None
        assert await touched(store, lambda tx: code_store.pull(tx, backup, original)) == {DEVICE}
        assert await touched(store, lambda tx: code_store.mark_deleting(tx, backup)) == {DEVICE}
        assert await touched(store, lambda tx: code_store.forget(tx, backup)) == {DEVICE}
