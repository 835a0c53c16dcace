"""The verdict (gateway.rules.verdict) and the pool's health verdict (gateway.rules.pool).

Pure, like the planner they follow: the scenes come from the planner's own strategies
(:mod:`tests.slot_scenes`), the plan from the planner, and each code's facts are drawn to
agree with them. The rules under test:

* a problem is never raised and cleared at once, and only what differs is listed;
* ``access_code.set_on_device`` only for a code the lock was seen holding;
* statuses move only as the planner's findings allow;
* each event goes with its change (problem raised, status reached, PIN seen gone), one for one;
* level-triggered: judging the state a verdict leaves changes nothing more.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.base import SlotTable
from gateway.model import BackupState, CodeStatus, EventType, ProblemCode
from gateway.rules.pool import PoolFacts, PoolMember, PoolVerdict, judge_pool
from gateway.rules.reads import ReadState
from gateway.rules.schedule import Window, next_boundary
from gateway.rules.slots import CodeView, Plan, Written, plan
from gateway.rules.verdict import (
    EXTERNAL,
    ONGOING,
    PROGRESS_EVENTS,
    CodeFacts,
    CodeVerdict,
    Judging,
    at_rest,
    judge_code,
    judge_in_full,
    lingers,
)
from tests.slot_scenes import Scene, any_scene

P = ProblemCode
UNSET, SETTING, SET, REMOVING = (
    CodeStatus.UNSET,
    CodeStatus.SETTING,
    CodeStatus.SET,
    CodeStatus.REMOVING,
)
NOW = datetime(2025, 6, 1, 12, tzinfo=UTC)
DELAY = timedelta(seconds=60)
CODE_PROBLEMS = [
    P.FAILED_TO_SET_ON_DEVICE,
    P.FAILED_TO_REMOVE_FROM_DEVICE,
    P.DUPLICATE_CODE_ON_DEVICE,
    P.NO_SPACE_FOR_ACCESS_CODE_ON_DEVICE,
    P.CONFLICTING_EXTERNAL_MODIFICATION,
    P.EXTERNAL_MODIFICATION_IN_EFFECT,
    P.DELAY_IN_SETTING_ON_DEVICE,
    P.DELAY_IN_REMOVING_FROM_DEVICE,
]


def judging(*, online: bool = True, now: datetime = NOW) -> Judging:
    return Judging(now=now, online=online, max_attempts=3, delay_warning_after=DELAY)


def facts(status: CodeStatus = SETTING, **kw: Any) -> CodeFacts:
    return replace(CodeFacts("a", status, since=NOW - timedelta(seconds=5)), **kw)


# -- scenes: the planner's, with facts that agree ------------------------------------------------


@dataclass(frozen=True)
class Case:
    views: tuple[CodeView, ...]
    table: SlotTable
    written: tuple[Written, ...]
    facts: dict[str, CodeFacts]
    judging: Judging
    readable: bool  # False: judged with no plan (offline, or no table yet)

    def plan(self) -> Plan | None:
        return plan(self.views, self.table, self.written) if self.readable else None


def _window(draw: st.DrawFn, wanted: bool) -> tuple[Window, bool]:
    """A window and deletion flag that make the code wanted now, or not."""
    if wanted:
        return draw(st.sampled_from([ONGOING, Window(NOW - DELAY, NOW + DELAY)])), False
    ended = Window(NOW - 2 * DELAY, NOW - DELAY)
    later = Window(NOW + DELAY, NOW + 2 * DELAY)
    return draw(st.sampled_from([(ONGOING, True), (ended, False), (later, False), (ended, True)]))


@st.composite
def cases(draw: st.DrawFn) -> Case:
    scene: Scene = draw(any_scene)
    # A code with a slot is never unset in practice (it is set to setting before its write).
    views = tuple(
        replace(v, status=SETTING) if v.slot is not None and v.status is UNSET else v
        for v in scene.codes
    )
    written = tuple(
        Written(v.code_id, draw(st.integers(1, scene.table.capacity)), v.pin, draw(st.booleans()))
        for v in views
        if draw(st.integers(0, 3)) == 0
    )
    by_id: dict[str, CodeFacts] = {}
    for v in views:
        window, deleting = _window(draw, v.wanted)
        by_id[v.code_id] = CodeFacts(
            code_id=v.code_id,
            status=v.status,
            since=NOW - timedelta(seconds=draw(st.sampled_from([0, 30, 60, 600]))),
            slot=v.slot,
            window=window,
            on_lock=draw(st.booleans()),
            deleting=deleting,
            allow_external=v.allow_external,
            attempts=draw(st.integers(0, 4)),
            raised=frozenset(draw(st.sets(st.sampled_from(CODE_PROBLEMS), max_size=3))),
            has_writes=any(w.code_id == v.code_id for w in written),
        )
    readable = draw(st.booleans()) or draw(st.booleans())
    online = readable or draw(st.booleans())
    return Case(views, scene.table, written, by_id, judging(online=online), readable)


def applied(f: CodeFacts, v: CodeVerdict, now: datetime) -> CodeFacts:
    """The facts the next pass loads once ``v`` is in the store."""
    return replace(
        f,
        status=v.status,
        since=now if v.status is not f.status else f.since,
        slot=v.slot,
        on_lock=v.on_lock,
        attempts=0 if v.reset_attempts else f.attempts,
        raised=(f.raised - v.clears) | v.raises,
    )


def verdicts(case: Case) -> tuple[Plan | None, dict[str, CodeVerdict]]:
    result = case.plan()
    return result, {cid: judge_code(f, result, case.judging) for cid, f in case.facts.items()}


# -- properties -----------------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(cases())
def test_only_real_changes_are_listed_and_never_both_ways(case: Case) -> None:
    _, found = verdicts(case)
    for cid, v in found.items():
        f = case.facts[cid]
        assert not v.raises & v.clears
        assert not v.raises & f.raised, "raising what is raised is no change"
        assert v.clears <= f.raised, "clearing what is not raised is no change"
        assert len(v.events) == len(set(v.events)), v.events


@settings(max_examples=300, deadline=None)
@given(cases())
def test_set_on_device_only_for_a_code_seen_on_the_lock(case: Case) -> None:
    result, found = verdicts(case)
    for cid, v in found.items():
        if EventType.CODE_SET in v.events:
            assert result is not None
            assert cid in result.verified
        if v.status is SET and case.facts[cid].status is not SET:
            assert result is not None
            assert cid in result.verified
        if result is None:
            assert v.slot == case.facts[cid].slot, "nothing is learnt of slots without a read"


@settings(max_examples=300, deadline=None)
@given(cases())
def test_statuses_follow_the_plan(case: Case) -> None:
    result, found = verdicts(case)
    for cid, v in found.items():
        f = case.facts[cid]
        wanted = case.judging.wants(f.window, f.deleting)
        if v.forget:
            assert not wanted
            assert not lingers(f, result)
            assert f.deleting or f.window.ends_at is not None
            continue
        if v.status is f.status:
            continue
        if v.status is SETTING:
            assert wanted, "a code is programmed only while it belongs on the lock"
        elif v.status is REMOVING:
            assert not wanted
        elif v.status is UNSET:
            off = result is not None and (cid in result.gone or cid in result.no_space)
            assert off or not wanted


@settings(max_examples=300, deadline=None)
@given(cases())
def test_each_event_goes_with_its_change(case: Case) -> None:
    _, found = verdicts(case)
    for cid, v in found.items():
        f = case.facts[cid]
        for key, event in PROGRESS_EVENTS.items():
            assert (event in v.events) == (key in v.raises), (key, v)
        assert (EventType.CODE_MODIFIED_EXTERNALLY in v.events) == bool(v.raises & EXTERNAL)
        became_set = v.status is SET and f.status is not SET
        assert (EventType.CODE_SET in v.events) == became_set
        assert (EventType.CODE_REMOVED in v.events) == (f.on_lock and not v.on_lock)


@settings(max_examples=300, deadline=None)
@given(cases())
def test_judging_again_changes_nothing(case: Case) -> None:
    """Level-triggered: judged again on what it left, against the same sight of the lock, a
    verdict changes nothing more. (With the lock read again, the plan may move on: one code
    set can free another's way; that is the planner's business, not the verdict's.)"""
    result, found = verdicts(case)
    for cid, v in found.items():
        if v.forget:
            continue
        f = applied(case.facts[cid], v, NOW)
        again = judge_code(f, result, case.judging)
        assert (again.status, again.slot, again.on_lock) == (f.status, f.slot, f.on_lock), again
        assert (again.raises, again.clears, again.events) == (frozenset(), frozenset(), ())
        assert not again.reset_attempts
        assert not again.forget


@settings(max_examples=300, deadline=None)
@given(cases(), st.data())
def test_a_code_at_rest_is_answered_as_judging_it_in_full_would(
    case: Case, data: st.DataObject
) -> None:
    """The shortcut for codes at rest (most of a busy lock's codes, in every pass) says what
    judging them in full says. The scenes rarely hold such a code, so each verified code is
    also judged as if it were at rest."""
    result = case.plan()
    for f in case.facts.values():
        rested = replace(f, status=SET, on_lock=True, attempts=0, raised=frozenset())
        for one in (f, rested) if data.draw(st.booleans()) else (rested, f):
            window = next_boundary(one.window, case.judging.now, case.judging.program_ahead)
            full = judge_in_full(one, result, case.judging, () if window is None else (window,))
            assert judge_code(one, result, case.judging) == full


def test_a_set_code_seen_in_its_slot_is_at_rest_and_changes_nothing() -> None:
    view = CodeView("a", "4821", 1, SET, wanted=True)
    result = plan([view], SlotTable(capacity=2, slots={1: "4821", 2: None}))
    f = facts(SET, slot=1, on_lock=True, window=Window(NOW - DELAY, NOW + DELAY))
    assert at_rest(f, result)
    v = judge_code(f, result, judging())
    assert (v.status, v.slot, v.on_lock, v.events, v.raises, v.clears) == (
        SET, 1, True, (), frozenset(), frozenset()
    )
    assert v.deadlines == (NOW + DELAY,)
    for unsettled in (
        replace(f, attempts=1),
        replace(f, raised=frozenset({P.DELAY_IN_SETTING_ON_DEVICE})),
        replace(f, on_lock=False),
        replace(f, status=SETTING),
    ):
        assert not at_rest(unsettled, result)
    other = plan([view], SlotTable(capacity=2, slots={1: "9999", 2: None}))
    assert not at_rest(f, other), "a slot changed at the keypad is judged in full"
    twice = plan([view], SlotTable(capacity=2, slots={1: "4821", 2: "4821"}))
    assert "a" in twice.verified
    assert not at_rest(f, twice)
    assert judge_code(f, twice, judging()).raises == {P.DUPLICATE_CODE_ON_DEVICE}


# -- the subtle rules, one by one ----------------------------------------------------------------


def one(table_pin: str | None, f: CodeFacts, **kw: object) -> CodeVerdict:
    view = CodeView(
        f.code_id, "4821", f.slot, f.status, wanted=True, allow_external=f.allow_external
    )
    table = SlotTable(capacity=2, slots={1: table_pin, 2: None})
    written = kw.pop("written", ())
    assert isinstance(written, tuple)
    result = plan([view], table, written)
    return judge_code(f, result, judging(**kw))  # type: ignore[arg-type]


def test_failed_to_set_stays_until_the_code_is_set() -> None:
    stuck = facts(slot=1, attempts=0, raised=frozenset({P.FAILED_TO_SET_ON_DEVICE}))
    assert P.FAILED_TO_SET_ON_DEVICE not in one(None, stuck).clears
    done = one("4821", stuck)
    assert done.status is SET
    assert done.clears == {P.FAILED_TO_SET_ON_DEVICE}
    assert done.events == (EventType.CODE_SET,)


def test_an_offline_lock_fails_a_code_being_set_at_once() -> None:
    v = judge_code(facts(slot=1), None, judging(online=False))
    assert v.raises == {P.FAILED_TO_SET_ON_DEVICE}
    assert v.events == (EventType.CODE_FAILED_TO_SET,)


def test_delays_count_from_entering_the_status() -> None:
    old = facts(UNSET, slot=None, since=NOW - 10 * DELAY)  # waiting long, but not setting
    v = one(None, old)
    assert v.status is SETTING
    assert P.DELAY_IN_SETTING_ON_DEVICE not in v.raises
    assert NOW + DELAY in v.deadlines
    late = one(None, facts(slot=1, since=NOW - DELAY))
    assert late.raises == {P.DELAY_IN_SETTING_ON_DEVICE}
    assert late.events == (EventType.CODE_DELAY_SETTING,)


def test_an_evicted_backup_is_removed_once_its_pin_is_seen_overwritten() -> None:
    evicted = facts(UNSET, slot=None, on_lock=True)
    pending = (Written("a", 1, "4821", settled=True),)
    view = CodeView("a", "4821", None, UNSET, wanted=False, pooled_backup=True, is_backup=True)
    still = plan([view], SlotTable(capacity=1, slots={1: "4821"}), pending)
    assert EventType.CODE_REMOVED not in judge_code(evicted, still, judging()).events
    gone = plan([view], SlotTable(capacity=1, slots={1: "7777"}), pending)
    v = judge_code(evicted, gone, judging())
    assert v.events == (EventType.CODE_REMOVED,)
    assert not v.on_lock


def test_an_unreachable_lock_keeps_a_written_code_removing() -> None:
    deleted = facts(REMOVING, slot=None, deleting=True, has_writes=True)
    v = judge_code(deleted, None, judging(online=False))
    assert (v.status, v.forget) == (REMOVING, False)
    assert judge_code(replace(deleted, has_writes=False), None, judging()).forget


def test_a_code_not_yet_due_is_unset_not_forgotten() -> None:
    later = facts(SETTING, slot=None, window=Window(NOW + DELAY, None))
    v = judge_code(later, Plan(), judging())
    assert (v.status, v.forget) == (UNSET, False)
    assert NOW + DELAY in v.deadlines


def test_an_allowed_keypad_change_is_kept_and_said_once() -> None:
    kept = facts(SET, slot=1, allow_external=True)
    v = one("9999", kept)
    assert v.status is SET
    assert v.raises == {P.EXTERNAL_MODIFICATION_IN_EFFECT}
    assert v.events == (EventType.CODE_MODIFIED_EXTERNALLY,)
    assert one("9999", applied(kept, v, NOW)).events == ()


# -- the pool -------------------------------------------------------------------------------------


def pool_facts(**kw: Any) -> PoolFacts:
    base = PoolFacts(
        enabled=True,
        size=2,
        short_since=None,
        online=True,
        now=NOW,
        fill_grace=timedelta(seconds=30),
        many_active_threshold=2,
        max_attempts=3,
    )
    return replace(base, **kw)


members = st.lists(
    st.builds(
        PoolMember,
        code_id=st.sampled_from(["a", "b", "c", "d"]),
        state=st.sampled_from([None, BackupState.POOLED, BackupState.PULLED]),
        status=st.sampled_from(list(CodeStatus)),
        slot=st.none() | st.integers(1, 4),
        attempts=st.integers(0, 4),
        deleting=st.booleans(),
    ),
    max_size=5,
)
pool_problems = [
    P.EMPTY_BACKUP_ACCESS_CODE_POOL,
    P.PARTIAL_BACKUP_ACCESS_CODE_POOL,
    P.MANY_ACTIVE_BACKUP_CODES,
]


@st.composite
def pools(draw: st.DrawFn) -> tuple[list[PoolMember], frozenset[str], PoolFacts]:
    facts = pool_facts(
        enabled=draw(st.booleans()),
        size=draw(st.integers(1, 3)),
        short_since=draw(st.none() | st.sampled_from([NOW, NOW - timedelta(minutes=5)])),
        online=draw(st.booleans()),
        raised=frozenset(draw(st.sets(st.sampled_from(pool_problems)))),
    )
    return draw(members), frozenset(draw(st.sets(st.sampled_from(["a", "b"])))), facts


def raised_after(facts: PoolFacts, verdict: PoolVerdict) -> frozenset[str]:
    raised = set(facts.raised)
    for change in verdict.problems:
        (raised.add if change.active else raised.discard)(change.code)
    return frozenset(raised)


@settings(max_examples=300, deadline=None)
@given(pools())
def test_pool_verdicts_are_level_triggered(
    pool: tuple[list[PoolMember], frozenset[str], PoolFacts],
) -> None:
    found, no_space, facts = pool
    v = judge_pool(found, no_space, facts)
    codes = [c.code for c in v.problems]
    assert len(codes) == len(set(codes))
    raised = raised_after(facts, v)
    assert not {P.EMPTY_BACKUP_ACCESS_CODE_POOL, P.PARTIAL_BACKUP_ACCESS_CODE_POOL} <= raised
    for change in v.problems:  # a clear is listed only for what is raised
        assert change.active or change.code in facts.raised
    again = judge_pool(found, no_space, replace(facts, short_since=v.short_since, raised=raised))
    assert again.short_since == v.short_since
    # Still raised ones come back with their sentence only (kept current), never as a change.
    assert all(c.active and c.message and c.code in raised for c in again.problems)


@pytest.mark.parametrize(
    ("online", "attempts", "reason"),
    [
        (False, 0, "the lock is offline"),
        (True, 3, "programming backup codes on the lock keeps failing"),
        (True, 0, "filling it is taking longer than fill_grace"),
    ],
)
def test_a_short_pool_names_its_cause(online: bool, attempts: int, reason: str) -> None:
    backup = PoolMember("a", BackupState.POOLED, SETTING, slot=1, attempts=attempts)
    since = NOW - timedelta(minutes=5)
    v = judge_pool([backup], (), pool_facts(online=online, short_since=since, size=1))
    assert v.short_since == since
    [change] = v.problems
    assert change.code is P.EMPTY_BACKUP_ACCESS_CODE_POOL
    assert change.message is not None
    assert change.message.endswith(f": {reason}.")


def test_a_full_pool_is_not_short_and_clears_its_problem() -> None:
    backup = PoolMember("a", BackupState.POOLED, SET, slot=1)
    raised = frozenset({P.PARTIAL_BACKUP_ACCESS_CODE_POOL})
    v = judge_pool([backup], (), pool_facts(size=1, short_since=NOW, raised=raised))
    assert v.short_since is None
    assert [(c.code, c.active) for c in v.problems] == [(P.PARTIAL_BACKUP_ACCESS_CODE_POOL, False)]
    assert v.deadline is None


# -- the read-back schedule ------------------------------------------------------------------------


def test_failed_reads_back_off_and_a_good_one_ends_it() -> None:
    reads = ReadState()
    reads.failed(NOW)
    reads.failed(NOW)
    assert not reads.due
    assert reads.held_off_until(NOW) == NOW + timedelta(seconds=10)
    assert reads.held_off_until(NOW + timedelta(seconds=10)) is None
    reads.request(frozenset({2}))
    reads.succeeded(NOW, None)
    assert (reads.due, reads.scope, reads.failures, reads.held_off_until(NOW)) == (
        False,
        None,
        0,
        None,
    )
    assert reads.resync_at(900) == NOW + timedelta(seconds=900)
    assert reads.resync_at(0) is None
    assert ReadState().resync_at(900) is None
