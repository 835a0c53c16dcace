"""A private RabbitMQ node with its MQTT plugin, on free loopback ports, as a fleet's central
broker in the tests.

It runs from the installed RabbitMQ (``/usr/lib/rabbitmq/bin/rabbitmq-server``, not the Debian
wrapper, which would switch to the ``rabbitmq`` user) with every file it writes in its own
directory: its own node name, ports, database, logs, Erlang cookie and plugin list. The
machine's RabbitMQ service and its files are never touched.
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

from gateway.broker import free_port

SERVER = Path("/usr/lib/rabbitmq/bin/rabbitmq-server")
#: Measured here: a first start takes 12-15 s, a restart about 8 s, on two busy cores.
START_TIMEOUT = 45.0


def rabbitmq_missing() -> str | None:
    """Why the RabbitMQ case cannot run here, in one line; None when it can."""
    if not SERVER.exists() or shutil.which("erl") is None:
        return f"RabbitMQ is not installed ({SERVER} and erl are needed)"
    plugins = list(Path("/usr/lib/rabbitmq/lib").glob("rabbitmq_server-*/plugins/rabbitmq_mqtt-*"))
    if not plugins:
        return "RabbitMQ's MQTT plugin (rabbitmq_mqtt) is not installed"
    return None


class RabbitMQ:
    """One RabbitMQ node speaking MQTT 3.1.1; ``stop``/``start`` keep its ports and its data."""

    def __init__(self, workdir: Path) -> None:
        self.host = "127.0.0.1"
        self.port = free_port()
        self.workdir = workdir
        amqp_port = free_port()
        (workdir / "rabbitmq.conf").write_text(
            f"listeners.tcp.default = 127.0.0.1:{amqp_port}\n"
            f"mqtt.listeners.tcp.default = 127.0.0.1:{self.port}\n"
            "mqtt.allow_anonymous = true\n"
            "loopback_users = none\n"
            "log.console = false\n"
            "log.file.level = warning\n"
        )
        (workdir / "rabbitmq-env.conf").write_text("")  # instead of /etc/rabbitmq's
        self.env = {
            **os.environ,
            "HOME": str(workdir),  # its Erlang cookie goes here, not into ours
            "RABBITMQ_CONF_ENV_FILE": str(workdir / "rabbitmq-env.conf"),
            "RABBITMQ_CONFIG_FILE": str(workdir / "rabbitmq.conf"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(workdir / "advanced.config"),
            "RABBITMQ_NODENAME": f"lockgate-test-{self.port}@localhost",
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(amqp_port),
            "RABBITMQ_DIST_PORT": str(free_port()),
            "RABBITMQ_MNESIA_BASE": str(workdir / "mnesia"),
            "RABBITMQ_LOG_BASE": str(workdir / "log"),
            "RABBITMQ_PID_FILE": str(workdir / "rabbitmq.pid"),
            "RABBITMQ_ENABLED_PLUGINS": "rabbitmq_mqtt",
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(workdir / "enabled_plugins"),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
        }
        self._proc: subprocess.Popen[bytes] | None = None
        self._log = workdir / "server.log"

    def start(self, timeout: float = START_TIMEOUT) -> None:
        with self._log.open("ab") as log:
            self._proc = subprocess.Popen(  # the installed server, our own config
                [str(SERVER)],
                env=self.env,
                cwd=self.workdir,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its Erlang children go with it on stop
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                tail = self._log.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"RabbitMQ exited at start:\n{tail}")
            with (
                contextlib.suppress(OSError),
                socket.create_connection((self.host, self.port), timeout=0.2),
            ):
                return
            time.sleep(0.05)  # polling the port, not waiting for time to pass
        self.stop()
        raise RuntimeError(f"RabbitMQ's MQTT listener was not up within {timeout}s")

    def stop(self) -> None:
        """Stop the node (SIGTERM: it closes every connection, as a broker going down does)."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        pid_file = self.workdir / "rabbitmq.pid"
        beam = int(pid_file.read_text().strip() or 0) if pid_file.exists() else 0
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        # The Erlang VM may outlive the script that started it by a moment: a start right
        # after must not find the old node still holding its name and ports.
        deadline = time.monotonic() + 20
        while beam and time.monotonic() < deadline:
            try:
                os.kill(beam, 0)
            except ProcessLookupError:
                break
            time.sleep(0.05)
