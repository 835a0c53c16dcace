"""What one pass concludes about each code of a lock: status, problems, events. Pure.

The planner (:mod:`gateway.rules.slots`) says where each PIN is and what to send; the verdict turns
that into the truths users see. It is kept pure, like the planner, so that every rule can be
tested without a lock or a store: :class:`gateway.lock_pass.LockPass` loads the facts, calls
:func:`judge_code` and applies the :class:`CodeVerdict` to the store.

Verdicts are level-triggered: they state what is true, and list as changes only what differs
from the facts. Judging the state a verdict leaves behind yields a verdict that changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from gateway.domain import CodeStatus, EventType, ProblemCode
from gateway.rules.schedule import Window, belongs_on_lock, has_ended, next_boundary
from gateway.rules.slots import Plan

P = ProblemCode

#: The problems a code's progress raises, and the event each one's raising emits.
PROGRESS_EVENTS: dict[ProblemCode, EventType] = {
    P.FAILED_TO_SET_ON_DEVICE: EventType.CODE_FAILED_TO_SET,
    P.DELAY_IN_SETTING_ON_DEVICE: EventType.CODE_DELAY_SETTING,
    P.FAILED_TO_REMOVE_FROM_DEVICE: EventType.CODE_FAILED_TO_REMOVE,
    P.DELAY_IN_REMOVING_FROM_DEVICE: EventType.CODE_DELAY_REMOVING,
}
#: The window of an ongoing code: always on the lock.
ONGOING = Window(None, None)
#: Raising either of these emits ``access_code.modified_external_to_gateway``.
EXTERNAL = frozenset({P.CONFLICTING_EXTERNAL_MODIFICATION, P.EXTERNAL_MODIFICATION_IN_EFFECT})


@dataclass(frozen=True, slots=True)
class Judging:
    """What every code of one lock is judged against in one pass."""

    now: datetime
    online: bool  # the driver's flag: a code cannot be set on a lock that is away
    max_attempts: int
    delay_warning_after: timedelta
    program_ahead: timedelta = timedelta(0)
    managed: bool = True  # an unmanaged lock wants none of its codes

    def wants(self, window: Window, deleting: bool) -> bool:
        """The code belongs on the lock now: managed, not deleted, inside its window."""
        if deleting or not self.managed:
            return False
        return belongs_on_lock(window, self.now, self.program_ahead)


@dataclass(frozen=True, slots=True)
class CodeFacts:
    """What the store knows of one code at the start of the pass."""

    code_id: str
    status: CodeStatus
    since: datetime  # when it entered ``status``: delays are measured from then
    slot: int | None = None
    window: Window = ONGOING
    on_lock: bool = False  # seen on the lock, so its removal is worth an event
    deleting: bool = False
    allow_external: bool = False
    attempts: int = 0  # failed commands since it last succeeded
    raised: frozenset[str] = frozenset()  # its problems raised now (ProblemCode values)
    has_writes: bool = False  # a PIN of it is recorded as written (it may be on the lock)


@dataclass(frozen=True, slots=True)
class CodeVerdict:
    """What is true of one code after the pass, and what changed to get there."""

    code_id: str
    status: CodeStatus  # unchanged for a code that is forgotten
    slot: int | None
    on_lock: bool
    raises: frozenset[ProblemCode] = frozenset()  # raised now, not before
    clears: frozenset[ProblemCode] = frozenset()  # raised before, not now
    events: tuple[EventType, ...] = ()  # in the order they are stored
    forget: bool = False  # off the lock for good: the row goes (``access_code.deleted``)
    reset_attempts: bool = False  # its last command succeeded after failures
    deadlines: tuple[datetime, ...] = ()  # when judging it again may give another answer


@dataclass(slots=True)
class _Draft:
    """A verdict being built; ``problem`` answers whether a call changed anything."""

    facts: CodeFacts
    status: CodeStatus
    slot: int | None
    on_lock: bool
    problems: dict[ProblemCode, bool] = field(default_factory=dict)
    events: list[EventType] = field(default_factory=list)
    forget: bool = False
    reset_attempts: bool = False
    deadlines: list[datetime] = field(default_factory=list)

    def is_raised(self, key: ProblemCode) -> bool:
        return self.problems.get(key, key in self.facts.raised)

    def problem(self, key: ProblemCode, active: bool) -> bool:
        """Raise or clear; True when this call changed it (its event, if any, is due)."""
        changed = self.is_raised(key) != active
        self.problems[key] = active
        return changed

    def verdict(self) -> CodeVerdict:
        raised = self.facts.raised
        return CodeVerdict(
            code_id=self.facts.code_id,
            status=self.status,
            slot=self.slot,
            on_lock=self.on_lock,
            raises=frozenset(k for k, on in self.problems.items() if on and k not in raised),
            clears=frozenset(k for k, on in self.problems.items() if not on and k in raised),
            events=tuple(self.events),
            forget=self.forget,
            reset_attempts=self.reset_attempts,
            deadlines=tuple(self.deadlines),
        )


def lingers(facts: CodeFacts, result: Plan | None) -> bool:
    """A PIN of the code may still be on the lock (not knowing counts as maybe)."""
    if result is None:
        return facts.has_writes
    return facts.code_id in result.lingering


def judge_code(facts: CodeFacts, result: Plan | None, judging: Judging) -> CodeVerdict:
    """The verdict on one code: ``result`` is the pass's plan, None when the lock cannot be
    read (offline, or no table yet): then nothing is known of its slots.

    A code at rest (:func:`at_rest`) is answered without judging it in full: on a lock with
    200 guests, they are most of every pass, and the answer is known (a test holds the two
    equal)."""
    boundary = next_boundary(facts.window, judging.now, judging.program_ahead)
    deadlines = () if boundary is None else (boundary,)
    if at_rest(facts, result):
        return CodeVerdict(facts.code_id, facts.status, facts.slot, True, deadlines=deadlines)
    return judge_in_full(facts, result, judging, deadlines)


def at_rest(facts: CodeFacts, result: Plan | None) -> bool:
    """Set, seen in its slot by this very pass (so neither changed at the keypad nor short of
    space), its PIN in no other slot, nothing raised and no failure behind it: judging it
    changes nothing but when to look again."""
    cid = facts.code_id
    return (
        result is not None
        and facts.status is CodeStatus.SET
        and facts.on_lock
        and facts.slot is not None
        and facts.attempts == 0
        and not facts.raised
        and cid in result.verified
        and cid not in result.duplicates
    )


def judge_in_full(
    facts: CodeFacts, result: Plan | None, judging: Judging, deadlines: tuple[datetime, ...]
) -> CodeVerdict:
    """:func:`judge_code` for any code; ``deadlines`` are its window's."""
    draft = _Draft(facts, facts.status, facts.slot, facts.on_lock, deadlines=list(deadlines))
    still = lingers(facts, result)
    if facts.slot is None and facts.on_lock and not still:
        # Its slot was taken over (an evicted backup): off the lock once it is seen gone.
        draft.on_lock = False
        draft.events.append(EventType.CODE_REMOVED)
    _settle_status(draft, result, judging, still)
    if draft.forget:
        return draft.verdict()  # gone for good: nothing more is said about it
    if result is not None:
        _plan_problems(draft, result)
    # Delays are measured from entering the status, not before it.
    since = judging.now if draft.status is not facts.status else facts.since
    _progress_problems(draft, since, judging)
    return draft.verdict()


def _settle_status(draft: _Draft, result: Plan | None, judging: Judging, still: bool) -> None:
    facts, cid = draft.facts, draft.facts.code_id
    wanted = judging.wants(facts.window, facts.deleting)
    ended = facts.deleting or has_ended(facts.window, judging.now)
    if result is not None and cid in result.verified:
        _now_set(draft)
    elif result is not None and cid in result.gone:
        _now_off(draft, ended)
    elif _left_alone(facts, result, wanted):
        pass
    elif not wanted and facts.slot is None:
        if still:
            draft.status = CodeStatus.REMOVING
        elif ended:
            draft.forget = True
        else:
            draft.status = CodeStatus.UNSET
    elif not wanted:
        draft.status = CodeStatus.REMOVING
    elif result is not None and cid in result.no_space:
        draft.status = CodeStatus.UNSET
    else:
        draft.status = CodeStatus.SETTING


def _left_alone(facts: CodeFacts, result: Plan | None, wanted: bool) -> bool:
    """Its status stands: set and not readable now, or changed at the keypad as allowed."""
    if (
        wanted
        and facts.status is CodeStatus.SET
        and facts.slot is not None
        and (result is None or facts.slot in result.unreadable)
    ):
        return True  # on the lock as far as anyone knows; nothing to say until it is read
    # Changed at the keypad, and allowed to be: the gateway leaves it as it is.
    return result is not None and facts.code_id in result.external and facts.allow_external


def _now_set(draft: _Draft) -> None:
    if draft.status is not CodeStatus.SET:
        draft.status = CodeStatus.SET
        draft.events.append(EventType.CODE_SET)
    draft.on_lock = True
    draft.reset_attempts = draft.facts.attempts > 0
    for key in (
        P.FAILED_TO_SET_ON_DEVICE,
        P.CONFLICTING_EXTERNAL_MODIFICATION,
        P.DELAY_IN_SETTING_ON_DEVICE,
    ):
        draft.problem(key, False)


def _now_off(draft: _Draft, ended: bool) -> None:
    """The lock no longer holds the code (or its slot holds somebody else's PIN)."""
    if draft.on_lock:
        draft.events.append(EventType.CODE_REMOVED)
    draft.slot = None
    draft.on_lock = False
    draft.reset_attempts = draft.facts.attempts > 0
    if ended:
        draft.forget = True
        return
    draft.status = CodeStatus.UNSET
    draft.problem(P.FAILED_TO_REMOVE_FROM_DEVICE, False)
    draft.problem(P.DELAY_IN_REMOVING_FROM_DEVICE, False)


def _plan_problems(draft: _Draft, result: Plan) -> None:
    """What the plan found: duplicates, no space, changes made outside the gateway."""
    cid = draft.facts.code_id
    draft.problem(P.DUPLICATE_CODE_ON_DEVICE, cid in result.duplicates)
    draft.problem(P.NO_SPACE_FOR_ACCESS_CODE_ON_DEVICE, cid in result.no_space)
    if cid in result.external:
        key = (
            P.EXTERNAL_MODIFICATION_IN_EFFECT
            if draft.facts.allow_external
            else P.CONFLICTING_EXTERNAL_MODIFICATION
        )
        if draft.problem(key, True):
            draft.events.append(EventType.CODE_MODIFIED_EXTERNALLY)
    elif cid in result.verified:
        draft.problem(P.EXTERNAL_MODIFICATION_IN_EFFECT, False)


def _progress_problems(draft: _Draft, since: datetime, judging: Judging) -> None:
    """Failures after ``max_attempts``, an offline lock, and slowness, per status."""
    attempts = draft.facts.attempts
    if draft.status is CodeStatus.SETTING:
        # Once raised it stays until the code is finally set (contract section 7).
        failed = (
            attempts >= judging.max_attempts
            or not judging.online
            or draft.is_raised(P.FAILED_TO_SET_ON_DEVICE)
        )
        _progress(draft, P.FAILED_TO_SET_ON_DEVICE, failed)
        _delay(draft, since, P.DELAY_IN_SETTING_ON_DEVICE, judging)
    elif draft.status is CodeStatus.REMOVING:
        _progress(draft, P.FAILED_TO_REMOVE_FROM_DEVICE, attempts >= judging.max_attempts)
        _delay(draft, since, P.DELAY_IN_REMOVING_FROM_DEVICE, judging)
    else:
        for key in PROGRESS_EVENTS:
            draft.problem(key, False)


def _progress(draft: _Draft, key: ProblemCode, active: bool) -> None:
    if draft.problem(key, active) and active:
        draft.events.append(PROGRESS_EVENTS[key])


def _delay(draft: _Draft, since: datetime, key: ProblemCode, judging: Judging) -> None:
    due = since + judging.delay_warning_after
    late = judging.now >= due
    if not late:
        draft.deadlines.append(due)
    _progress(draft, key, late)
