"""The gateway says whether the clock is synchronised (issue 13, point 4): in the retained
``P/health`` (``P/status`` keeps the contract's exact payload), in the log at each change; never a
brake on the codes."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from gateway import service
from gateway.logs import configure_logging
from gateway.timesync import clock_synchronized
from tests.conftest import ConfigFactory
from tests.harness import create, running_site, wait_for_json


@pytest.fixture
def info_logs() -> Iterator[None]:
    """This test reads an info line; the suite logs warnings and up."""
    configure_logging("info", json=True)
    yield
    configure_logging("warning", json=True)


def test_the_kernel_can_be_asked_here() -> None:
    assert isinstance(clock_synchronized(), bool)


@pytest.mark.usefixtures("info_logs")
async def test_p_health_follows_the_kernels_word(
    make_config: ConfigFactory,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    synchronized = [False]
    monkeypatch.setattr(service, "clock_synchronized", lambda: synchronized[0])
    monkeypatch.setattr(service, "CLOCK_SYNC_EVERY", 0.01)
    config = make_config()
    async with running_site(config) as site:
        health = await site.api.subscribe(f"{config.prefix}/health")
        first = await wait_for_json(health, lambda s: "clock_synchronized" in s)
        assert first["clock_synchronized"] is False
        # Not a brake: a code still goes on the lock.
        code = await create(site, device_id="front_door", code="4821")
        await site.settled()
        assert "4821" in site.lock("front_door").slots.values()
        assert code["status"] in ("unset", "setting")

        synchronized[0] = True
        await wait_for_json(health, lambda s: s.get("clock_synchronized") is True)
    said = [
        json.loads(line)
        for line in capsys.readouterr().out.splitlines()
        if '"clock.synchronization"' in line
    ]
    assert [s["synchronized"] for s in said] == [False, True]  # once per change
