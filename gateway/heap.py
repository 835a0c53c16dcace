"""The garbage collector of a gateway: paused while it starts, then what start-up built is
frozen, and young collections less often than CPython's default.

Nearly everything a start builds lives as long as the process: the configuration, a driver and a
worker per lock, each lock's slot table. CPython walks all of it in every full collection and
starts one each time the heap has grown by a quarter, so at 10,000 locks a start ran about 20 of
them, 2.4-3.2 s in all, each holding every thread (the database writer's and the urgent lane's
too) for up to a quarter of a second (docs/benchmarks.md). So the collector is paused from the
start until every lock has been looked at once; then one collection clears the cyclic garbage of
the start, what is left is frozen (never walked again), and collection resumes for what comes
and goes. A start that does not settle within :data:`PAUSE_MAX` resumes it all the same:
cyclic garbage must not pile up for good.

CPython collects the young generation every 700 container objects allocated (net) and walks the
old one whenever it has grown by a quarter since the last full collection. After the freeze the
old generation starts empty, so a burst of codes (whose objects live on: slot tables, pools,
digests) set off a full collection every half second, 10-350 ms each, at 10,000 locks: 3 s of
a 22 s burst, and the longest waits of a pull. One young collection every
:data:`YOUNG_COLLECTION_EVERY` makes every collection ten times rarer; the gateway's own
messages leave almost no cyclic garbage behind for it to find (gateway.mqtt, gateway.topics).

A stopped gateway leaves nothing paused, frozen or retuned behind (a test process goes on after
it).
"""

from __future__ import annotations

import gc

#: The longest the collector stays paused at start (seconds).
PAUSE_MAX = 60.0
#: Container objects allocated (net) between two young collections (CPython's default: 700).
#: 5,000 and 20,000 measured alike (docs/benchmarks.md).
YOUNG_COLLECTION_EVERY = 10_000


class StartPause:
    """The collector across one gateway's life: paused at start, resumed (at the latest when
    the gateway stops), the start's objects frozen once it has settled; young collections every
    :data:`YOUNG_COLLECTION_EVERY` objects until the gateway stops."""

    def __init__(self) -> None:
        self._paused = False
        self._thresholds: tuple[int, int, int] | None = None  # the process's own, while retuned

    def pause(self) -> None:
        if self._thresholds is None:
            self._thresholds = gc.get_threshold()
            gc.set_threshold(YOUNG_COLLECTION_EVERY, *self._thresholds[1:])
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
        if self._thresholds is not None:
            gc.set_threshold(*self._thresholds)
            self._thresholds = None
