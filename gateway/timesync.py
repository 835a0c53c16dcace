"""Whether the system clock is synchronised, as the kernel says (``adjtimex``; systemd's
``NTPSynchronized`` follows the same flag). Information for the operator, never a brake: codes
go on and come off by the gateway's clock either way (see ``gateway.clock.SteadyClock``), because
many machines that keep good time report an unsynchronised clock.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from pathlib import Path

#: ``adjtimex``'s answer for a clock the kernel considers unsynchronised, and the status bit.
TIME_ERROR = 5
STA_UNSYNC = 0x0040
#: systemd-timesyncd touches this once it has synchronised the clock (the fallback where a
#: hardened unit may not call ``adjtimex``: ``ProtectClock=`` filters it).
TIMESYNCD_FLAG = Path("/run/systemd/timesync/synchronized")


class _Timex(ctypes.Structure):
    """The head of ``struct timex`` (``long`` is the platform's), and room for the rest."""

    _fields_ = (
        ("modes", ctypes.c_uint),
        ("offset", ctypes.c_long),
        ("freq", ctypes.c_long),
        ("maxerror", ctypes.c_long),
        ("esterror", ctypes.c_long),
        ("status", ctypes.c_int),
        ("rest", ctypes.c_byte * 256),
    )


def clock_synchronized() -> bool:
    """The kernel's word where it may be asked (``modes`` 0: read only), else timesyncd's."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        timex = _Timex()
        state = libc.adjtimex(ctypes.byref(timex))
    except (OSError, AttributeError):
        state = -1
    if state >= 0:
        return state != TIME_ERROR and not timex.status & STA_UNSYNC
    return TIMESYNCD_FLAG.exists()
