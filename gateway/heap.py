"""The garbage collector while a gateway starts: paused, then what start-up built is frozen.

Nearly everything a start builds lives as long as the process: the configuration, a driver and a
worker per lock, each lock's slot table. CPython walks all of it in every full collection and
starts one each time the heap has grown by a quarter, so at 10,000 locks a start ran about 20 of
them, 2.4-3.2 s in all, each holding every thread (the database writer's and the urgent lane's
too) for up to a quarter of a second (docs/benchmarks.md). So the collector is paused from the
start until every lock has been looked at once; then one collection clears the cyclic garbage of
the start, what is left is frozen (never walked again), and collection resumes for what comes
and goes. A start that does not settle within :data:`PAUSE_MAX` resumes it all the same:
cyclic garbage must not pile up for good. A stopped gateway leaves nothing paused or frozen
behind (a test process goes on after it).
"""

from __future__ import annotations

import gc

#: The longest the collector stays paused at start (seconds).
PAUSE_MAX = 60.0


class StartPause:
    """The collector across one gateway's life: paused at start, resumed (at the latest when
    the gateway stops), the start's objects frozen once it has settled."""

    def __init__(self) -> None:
        self._paused = False

    def pause(self) -> None:
        if gc.isenabled():
            gc.disable()
            self._paused = True

    def resume(self) -> None:
        if self._paused:
            self._paused = False
            gc.enable()

    def settle(self) -> int:
        """The start is over: its garbage collected (a frozen object never is), what is left
        frozen, collection resumed. Returns how many objects were frozen."""
        gc.collect()
        gc.freeze()
        self.resume()
        return gc.get_freeze_count()

    def stop(self) -> None:
        gc.unfreeze()
        self.resume()
