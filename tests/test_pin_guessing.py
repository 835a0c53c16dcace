"""PIN guessing is slowed (issue 12, point 4): lookups by PIN, and refusals that say a PIN is
taken, spend tokens of the device's bucket and the client's; past either, ``rate_limited``,
which says nothing about the PIN, and one warning per burst."""

from __future__ import annotations

import json

import pytest

from gateway.client import connect
from gateway.config import ConfigError
from gateway.model import Json
from tests.conftest import ConfigFactory
from tests.harness import Site, create, ok, running_site

LIMITS = {
    "per_device": {"burst": 3, "per_minute": 6},
    "per_client": {"burst": 100, "per_minute": 60},
}


async def lookup(site: Site, pin: str, device_id: str = "front_door") -> Json:
    return await site.api.call("access_codes/get", device_id=device_id, code=pin)


def error_type(reply: Json) -> str | None:
    return None if reply["ok"] else reply["error"]["type"]


def warnings(out: str) -> list[Json]:
    lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    return [line for line in lines if line["event"] == "api.pin_lookups_limited"]


async def test_lookups_by_pin_are_limited_per_device_and_refilled(
    make_config: ConfigFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    async with running_site(make_config(pin_lookups=LIMITS)) as site:
        code = await create(site, device_id="front_door", code="4821")
        capsys.readouterr()
        answers = [error_type(await lookup(site, pin)) for pin in ("1111", "2222", "4821")]
        assert answers == ["access_code_not_found", "access_code_not_found", None]
        # Past the burst, the right PIN and a wrong one get the same answer.
        for pin in ("4821", "3333", "4821"):
            reply = await lookup(site, pin)
            assert error_type(reply) == "rate_limited"
            assert "code" in reply["error"]["message"]
            assert "4821" not in json.dumps(reply)
        said = warnings(capsys.readouterr().out)
        assert len(said) == 1  # one warning for the whole burst
        assert said[0]["level"] == "warning"
        assert said[0]["device_id"] == "front_door"
        assert "4821" not in json.dumps(said)
        # Other ways in are not limited: by id, and lookups on another lock.
        assert ok(await site.api.call("access_codes/get", access_code_id=code["access_code_id"]))
        assert error_type(await lookup(site, "1111", "back_door")) == "access_code_not_found"
        # One try comes back every 10 s (6 a minute).
        await site.advance(10)
        assert error_type(await lookup(site, "4821")) is None
        assert error_type(await lookup(site, "4821")) == "rate_limited"
        assert len(warnings(capsys.readouterr().out)) == 1  # a new burst, a new warning


async def test_one_client_is_limited_and_another_is_not(make_config: ConfigFactory) -> None:
    limits = {"per_device": {"burst": 100}, "per_client": {"burst": 2, "per_minute": 1}}
    async with running_site(make_config(pin_lookups=limits)) as site:
        await create(site, device_id="front_door", code="4821")
        answers = [error_type(await lookup(site, "4821")) for _ in range(3)]
        assert answers == [None, None, "rate_limited"]
        async with connect(site.config.mqtt, site.config.prefix) as other:
            reply = await other.call("access_codes/get", device_id="front_door", code="4821")
            assert reply["ok"] is True


async def test_a_refusal_that_a_pin_is_taken_counts_and_is_then_hidden(
    make_config: ConfigFactory,
) -> None:
    async with running_site(make_config(pin_lookups=LIMITS)) as site:
        await create(site, device_id="front_door", code="4821")
        taken = [
            error_type(
                await site.api.call("access_codes/create", device_id="front_door", code="4821")
            )
            for _ in range(4)
        ]
        assert taken == ["duplicate_access_code"] * 3 + ["rate_limited"]
        # Creates with free PINs are never limited: they test nothing.
        for n in range(5):
            await create(site, device_id="front_door", code=f"90{n}1")
        listed = ok(await site.api.call("access_codes/list", device_id="front_door"))
        assert len(listed["access_codes"]) == 6


async def test_bad_limits_are_refused_with_their_key(make_config: ConfigFactory) -> None:
    with pytest.raises(ConfigError) as refused:
        make_config(pin_lookups={"per_device": {"burst": 0}, "per_client": {"rate": 5}})
    problems = "\n".join(refused.value.problems)
    assert "pin_lookups.per_device.burst" in problems
    assert "pin_lookups.per_client.rate: unknown key" in problems
