"""systemd's notify protocol (``Type=notify``, ``WatchdogSec=``) with the standard library.

The protocol is one datagram per message to ``$NOTIFY_SOCKET``; a package would add a
dependency for fifteen lines. Outside systemd every call is a no-op, and a failed send is only
logged: a missing READY or WATCHDOG lets systemd act, a crashed gateway helps nobody.
"""

from __future__ import annotations

import os
import socket
import time

from gateway.logs import get_logger

__all__ = ["Notifier", "StatusLine"]

_log = get_logger(__name__)


class Notifier:
    """Send state to systemd; ``$NOTIFY_SOCKET`` is read once, when created."""

    def __init__(self) -> None:
        path = os.environ.get("NOTIFY_SOCKET", "")
        # "@name" is Linux's abstract namespace, written with a leading NUL on the wire.
        self._address: str | None = ("\0" + path[1:] if path.startswith("@") else path) or None

    @property
    def enabled(self) -> bool:
        """Whether systemd is listening; callers can skip building status texts otherwise."""
        return self._address is not None

    def send(self, message: str) -> bool:
        """Send raw ``KEY=VALUE`` lines; True when the datagram went out."""
        if self._address is None:
            return False
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.setblocking(False)  # never stall the event loop on a full socket queue
                sock.sendto(message.encode(), self._address)
        except OSError as exc:
            _log.debug("sd_notify failed", message=message, error=str(exc))
            return False
        return True

    def ready(self) -> bool:
        """Tell systemd start-up is done, so units ordered after us may start."""
        return self.send("READY=1")

    def reloading(self) -> bool:
        """Tell systemd a reload has begun (``READY=1`` ends it), with the monotonic time the
        protocol asks for."""
        return self.send(f"RELOADING=1\nMONOTONIC_USEC={time.monotonic_ns() // 1000}")

    def status(self, text: str) -> bool:
        """Show ``text`` in ``systemctl status``; newlines would start new assignments."""
        return self.send("STATUS=" + " ".join(text.splitlines()))

    def stopping(self) -> bool:
        """Tell systemd shutdown has begun, so a slow stop is not taken for a hang."""
        return self.send("STOPPING=1")

    def watchdog(self) -> bool:
        """Prove liveness; systemd restarts us after ``WatchdogSec`` without one."""
        return self.send("WATCHDOG=1")

    def watchdog_interval(self) -> float | None:
        """Seconds between pings (half of ``WATCHDOG_USEC``), or None when none are wanted."""
        if self._address is None:
            return None
        pid = os.environ.get("WATCHDOG_PID")
        usec = os.environ.get("WATCHDOG_USEC")
        try:
            if pid is not None and int(pid) != os.getpid():
                return None  # the watchdog belongs to another process (e.g. our parent shell)
            micros = int(usec) if usec is not None else 0
        except ValueError:
            return None
        return micros / 2 / 1_000_000 if micros > 0 else None


class StatusLine:
    """What ``systemctl status`` shows is one line: the gateway's concerns side by side (a
    refused reload, the clock, the broker, the database), each kept until it is replaced."""

    ORDER = ("reload", "clock", "sync", "broker", "database")

    def __init__(self, notifier: Notifier) -> None:
        self._notifier = notifier
        self._parts: dict[str, str] = {}

    def set(self, part: str, text: str | None) -> None:
        if text is None:
            self._parts.pop(part, None)
        else:
            self._parts[part] = text
        if self._notifier.enabled:
            shown = [self._parts[p] for p in self.ORDER if p in self._parts]
            self._notifier.status("; ".join(shown))
