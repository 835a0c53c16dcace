"""A private mosquitto on a free loopback port, for the demo and the tests.

The gateway itself never starts a broker; ``lockgate demo`` and the test fixtures do, so that
neither depends on (or disturbs) a broker already running on the machine.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

CANDIDATES = ("mosquitto", "/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto")


def mosquitto_binary() -> str:
    for name in CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    raise RuntimeError("mosquitto is not installed: 'bash .ci/dev setup' installs it")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Broker:
    """One mosquitto process; ``stop``/``start`` keep the port so clients can come back."""

    def __init__(
        self,
        workdir: Path,
        port: int | None = None,
        *,
        listener_options: str = "",
        allow_anonymous: bool = True,
    ) -> None:
        """``listener_options``: extra lines for the listener (TLS files, a password file)."""
        self.host = "127.0.0.1"
        self.port = port or free_port()
        self.workdir = workdir
        self.conf = workdir / "mosquitto.conf"
        self.conf.write_text(
            f"listener {self.port} 127.0.0.1\n"
            f"{listener_options}"
            # As root, mosquitto would switch to its own user and lose access to our files.
            f"{'user root' if os.geteuid() == 0 else ''}\n"
            f"allow_anonymous {'true' if allow_anonymous else 'false'}\n"
            "set_tcp_nodelay true\n"
            "persistence false\n"
            "max_queued_messages 100000\n"
            "max_inflight_messages 0\n"
            "log_dest none\n"
        )
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 10.0) -> None:
        self._proc = subprocess.Popen(  # noqa: S603 (our own binary and config)
            [mosquitto_binary(), "-c", str(self.conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                err = self._proc.stderr.read().decode() if self._proc.stderr else ""
                raise RuntimeError(f"mosquitto exited at start: {err}")
            with (
                contextlib.suppress(OSError),
                socket.create_connection((self.host, self.port), timeout=0.2),
            ):
                return
            time.sleep(0.005)  # polling the port, not waiting for time to pass
        raise RuntimeError(f"mosquitto did not listen on {self.port} within {timeout}s")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        proc.send_signal(sig)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stderr:
            proc.stderr.close()

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    def restart(self) -> None:
        self.stop()
        self.start()
