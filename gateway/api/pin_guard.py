"""Slows PIN guessing: every way a client can test whether a PIN is on a lock spends a token of
that lock's bucket and of the client's; an empty bucket answers ``rate_limited`` and tells
nothing about the PIN. A client is known by where its replies go (its reply topic): a request
nobody hears the answer to reveals nothing and is not limited."""

from __future__ import annotations

from gateway.api.errors import ApiError
from gateway.clock import Clock
from gateway.config import PinLookupLimits
from gateway.logs import get_logger
from gateway.mqtt import shown_topic
from gateway.rules.rate import Buckets

log = get_logger("gateway.api")


class PinGuard:
    def __init__(self, limits: PinLookupLimits, clock: Clock) -> None:
        self._clock = clock
        self._devices = Buckets(limits.per_device)
        self._clients = Buckets(limits.per_client)
        self._limited: set[tuple[str, str]] = set()  # (bucket kind, key) refusing right now

    def check(self, device_id: str, client: str | None) -> None:
        """One PIN test of ``client`` against ``device_id``: raises ``rate_limited`` past
        either limit. Both buckets are asked, so one noisy client cannot hide behind another."""
        if client is None:
            return
        now = self._clock.monotonic()
        seen = {"device_id": device_id, "client": shown_topic(client)}
        device_ok = self._take("device", self._devices, device_id, now, seen)
        client_ok = self._take("client", self._clients, client, now, seen)
        if not (device_ok and client_ok):
            rate = self._devices.rate if not device_ok else self._clients.rate
            whose = f"on device '{device_id}'" if not device_ok else "from this client"
            raise ApiError(
                "rate_limited",
                f"code: too many PIN lookups {whose} (at most {rate.per_minute} a minute after"
                f" a burst of {rate.burst}); try again later",
            )

    def screen(self, refusal: ApiError, client: str | None) -> ApiError:
        """A refusal that says a PIN is taken on a device is a PIN test too: past the limit
        it becomes ``rate_limited`` instead, which says nothing about the PIN."""
        device_id = refusal.pin_device
        if device_id is None:
            return refusal
        try:
            self.check(device_id, client)
        except ApiError as limited:
            return limited
        return refusal

    def _take(
        self, kind: str, buckets: Buckets, key: str, now: float, seen: dict[str, str]
    ) -> bool:
        if buckets.take(key, now):
            self._limited.discard((kind, key))
            return True
        if (kind, key) not in self._limited:  # one warning per burst, not one per request
            self._limited.add((kind, key))
            if len(self._limited) > buckets.max_keys:
                self._limited.clear()
            log.warning("api.pin_lookups_limited", limit=f"per_{kind}", **seen)
        return False
