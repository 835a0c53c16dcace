from __future__ import annotations
import json
from tests.conftest import ConfigFactory
from tests.harness import running_site, payload_json

async def test_explore(make_config: ConfigFactory) -> None:
    config = make_config(simulator={"locks": {"front_door": {"initial_codes": {2: "5555"}}}})
    async with running_site(config) as site:
        ev = await site.api.subscribe(f"{config.prefix}/events/#")
        cmds = await site.api.subscribe("locks/front_door/command")
        r = await site.api.call("access_codes/create", device_id="front_door", name="a", code="1357")
        print(json.dumps(r, indent=1))
        await site.settled()
        r = await site.api.call("access_codes/get", access_code_id=r["access_code"]["access_code_id"])
        print(json.dumps(r, indent=1))
        print(site.lock("front_door").slots)
        while not ev.empty():
            print(payload_json(ev.get_nowait()))
        while not cmds.empty():
            print(payload_json(cmds.get_nowait()))
        print(await site.api.call("access_codes/unmanaged/list", device_id="front_door"))
        print(await site.api.call("devices/get", device_id="front_door"))
