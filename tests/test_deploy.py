"""docs/deploy.md (issue 12, point 7): a backup of the database taken the way the page says,
with the ``sqlite3`` tool while the gateway runs, restores the hub; and the page, docs/fleet.md
and the README point at what exists.

The restore is what a user notices at the locks: a code deleted after the backup is put back on
its lock, and a code created after it is found on the lock as one the gateway did not put there
(unmanaged), left as it is, never silently lost or cleared.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from gateway.clock import ManualClock
from gateway.config import Config
from gateway.model import Json
from tests.backup_pool_helpers import gateway_site
from tests.conftest import ConfigFactory
from tests.contract import ROOT
from tests.harness import Site, new_code, ok, running_simulator

pytestmark = pytest.mark.slow

#: The two ways docs/deploy.md gives, as the sqlite3 command line it runs.
BACKUPS = {
    "backup": ".backup {target}",
    "vacuum_into": "VACUUM INTO '{target}'",
}


def sqlite3_backup(database: Path, target: Path, how: str) -> None:
    if shutil.which("sqlite3") is None:
        pytest.skip("the sqlite3 command-line tool is not installed (apt-get install sqlite3)")
    subprocess.run(
        ["sqlite3", str(database), BACKUPS[how].format(target=target)],
        check=True,
        capture_output=True,
        timeout=60,
    )


def restore(backup: Path, database: Path) -> None:
    """As docs/deploy.md says: the WAL files of the old database go, the copy takes its place."""
    for suffix in ("-wal", "-shm"):
        Path(f"{database}{suffix}").unlink(missing_ok=True)
    shutil.copy(backup, database)


async def pins_on(site: Site, device_id: str = "front_door") -> set[str]:
    return {pin for pin in site.lock(device_id).slots.values() if pin}


async def unmanaged_pins(site: Site) -> set[str]:
    reply = ok(await site.api.call("access_codes/unmanaged/list", device_id="front_door"))
    return {code["code"] for code in reply["access_codes"]}


async def managed(site: Site) -> list[Json]:
    found: list[Json] = ok(await site.api.call("access_codes/list", device_id="front_door"))[
        "access_codes"
    ]
    return found


@pytest.mark.parametrize("how", sorted(BACKUPS))
async def test_a_backup_taken_while_running_restores_the_hub(
    make_config: ConfigFactory, tmp_path: Path, how: str
) -> None:
    config: Config = make_config()
    backup = tmp_path / "backups" / "lockgate.db"
    backup.parent.mkdir(mode=0o700)
    clock = ManualClock()
    async with running_simulator(config) as sim:
        async with gateway_site(config, clock, sim) as site:
            kept = await new_code(site, "482916", name="Kept")
            gone_later = await new_code(site, "730155", name="Deleted after the backup")
            await site.settled()
            sqlite3_backup(config.database, backup, how)  # the gateway is running
            await new_code(site, "905521", name="Created after the backup")
            ok(await site.api.call("access_codes/delete", access_code_id=gone_later))
            await site.settled()
            assert await pins_on(site) == {"482916", "905521"}

        restore(backup, config.database)
        async with gateway_site(config, clock, sim) as site:
            await site.settled()
            names = {code["access_code_id"]: code["name"] for code in await managed(site)}
            assert names == {kept: "Kept", gone_later: "Deleted after the backup"}
            # What the backup holds is back on the lock; what came after it is left there, shown
            # as a PIN the gateway did not put on the lock.
            assert await pins_on(site) == {"482916", "730155", "905521"}
            assert await unmanaged_pins(site) == {"905521"}


LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


@pytest.mark.parametrize("page", ["docs/fleet.md", "docs/deploy.md"])
def test_the_page_is_in_the_readme_and_its_links_lead_somewhere(page: str) -> None:
    readme = (ROOT / "README.md").read_text()
    assert f"]({page})" in readme
    path = ROOT / page
    for target in LINK.findall(path.read_text()):
        if "://" not in target:
            assert (path.parent / target).exists(), target
