"""The notify protocol against a real datagram socket, as systemd would listen."""

from __future__ import annotations

import os
import socket
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.sdnotify import Notifier


def _receive(sock: socket.socket) -> str:
    # AF_UNIX datagrams are queued during sendto(), so a non-blocking read needs no waiting.
    return sock.recv(4096).decode()


@pytest.fixture
def listener(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[socket.socket]:
    path = tmp_path / "notify"
    if len(str(path)) >= 100:  # sun_path holds 108 bytes; deep tmp dirs do not fit
        path = Path(tempfile.mkdtemp(prefix="sdn")) / "notify"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.setblocking(False)
    monkeypatch.setenv("NOTIFY_SOCKET", str(path))
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    with sock:
        yield sock
    path.unlink(missing_ok=True)


def test_messages_reach_the_socket(listener: socket.socket) -> None:
    notifier = Notifier()
    assert notifier.enabled

    assert notifier.ready()
    assert _receive(listener) == "READY=1"
    assert notifier.status("connected to broker 127.0.0.1:1883")
    assert _receive(listener) == "STATUS=connected to broker 127.0.0.1:1883"
    assert notifier.watchdog()
    assert _receive(listener) == "WATCHDOG=1"
    assert notifier.stopping()
    assert _receive(listener) == "STOPPING=1"


def test_status_stays_one_assignment(listener: socket.socket) -> None:
    Notifier().status("broker down\nREADY=1")
    assert _receive(listener) == "STATUS=broker down READY=1"


def test_abstract_namespace(monkeypatch: pytest.MonkeyPatch) -> None:
    name = f"lockgate-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.setblocking(False)
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        assert Notifier().ready()
        assert _receive(sock) == "READY=1"


def test_without_notify_socket_nothing_happens(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    monkeypatch.setenv("WATCHDOG_USEC", "30000000")
    notifier = Notifier()
    assert not notifier.enabled
    assert not notifier.ready()
    assert not notifier.status("x")
    assert not notifier.watchdog()
    assert not notifier.stopping()
    assert notifier.watchdog_interval() is None


def test_send_errors_do_not_raise(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "nobody-listens"))
    notifier = Notifier()
    assert notifier.enabled
    assert not notifier.ready()
    assert not notifier.watchdog()


def test_send_to_a_full_queue_does_not_block(listener: socket.socket) -> None:
    notifier = Notifier()
    sent = 0
    while notifier.watchdog():  # never drained: the queue fills, then sends fail at once
        sent += 1
        assert sent < 100_000
    assert sent > 0


@pytest.mark.parametrize(
    ("usec", "pid", "expected"),
    [
        ("30000000", None, 15.0),
        ("30000000", "self", 15.0),
        ("30000000", "other", None),
        ("30000000", "not-a-pid", None),
        ("500000", None, 0.25),
        (None, None, None),
        ("0", None, None),
        ("soon", None, None),
    ],
)
def test_watchdog_interval(
    listener: socket.socket,
    monkeypatch: pytest.MonkeyPatch,
    usec: str | None,
    pid: str | None,
    expected: float | None,
) -> None:
    if usec is not None:
        monkeypatch.setenv("WATCHDOG_USEC", usec)
    if pid == "self":
        monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    elif pid == "other":
        monkeypatch.setenv("WATCHDOG_PID", str(os.getpid() + 1))
    elif pid is not None:
        monkeypatch.setenv("WATCHDOG_PID", pid)
    assert Notifier().watchdog_interval() == expected
