"""The shape shared by the outbox and the device publisher: catch up whenever kicked.

Kicks coalesce (ten commits while a publish is under way cause one more round, not ten), a
broker outage parks the pump until the session is back, and ``drained`` tells tests (and the
shutdown) when everything is out.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib

from gateway.logs import get_logger
from gateway.mqtt import MqttSession, NotConnected

log = get_logger("gateway.pump")

#: After an unexpected error in a round, wait this long before the next one.
FAILURE_PAUSE = 1.0
#: After a publish refused or unacknowledged while the session still counts itself connected:
#: the longest wait for the session to see the connection gone before trying again.
REFUSED_PAUSE = 1.0
#: Messages a pump publishes at once: its ack waits and payloads stay this few in memory.
PUBLISH_BATCH = 500


class Pump(abc.ABC):
    def __init__(self, session: MqttSession) -> None:
        self._session = session
        self._wake = asyncio.Event()
        self._wake.set()  # catch up with what an earlier run left behind
        #: Set while there is nothing left to send.
        self.drained = asyncio.Event()

    def kick(self) -> None:
        self.drained.clear()
        self._wake.set()

    async def run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            await self._session.wait_connected()
            try:
                await self.catch_up()
            except (NotConnected, TimeoutError) as exc:
                log.info("pump.waiting_for_broker", pump=type(self).__name__, reason=str(exc))
                # Not at once: paho can refuse before the session has seen the connection end,
                # and a round that fails without awaiting anything would hold the event loop
                # (the session would never see it) in a loop of refusals.
                with contextlib.suppress(TimeoutError):
                    await self._session.wait_disconnected(REFUSED_PAUSE)
                self._wake.set()
                continue
            except Exception:
                # A database that cannot be written (a full disk) must not end the daemon: what
                # was not marked published goes out again on a later round (at least once).
                log.exception("pump.failed", pump=type(self).__name__)
                await asyncio.sleep(FAILURE_PAUSE)
                self._wake.set()
                continue
            if not self._wake.is_set() and self.caught_up():
                self.drained.set()

    def caught_up(self) -> bool:
        """Whether a round that sent everything leaves nothing behind (kick when it changes)."""
        return True

    @abc.abstractmethod
    async def catch_up(self) -> None:
        """Send everything pending; raise NotConnected/TimeoutError to be retried later."""
