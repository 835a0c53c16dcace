"""``lockgate demo`` as the README tells a new user to run it: the whole story, told right."""

from __future__ import annotations

import asyncio
import re
import sys

from tests.contract import ROOT

DEMO_TIMEOUT = 120.0


def line(output: str, label: str) -> str:
    """The value the demo printed beside ``label``."""
    found = re.search(rf"^\s+{re.escape(label)}\s+(.*)$", output, re.MULTILINE)
    assert found, f"the demo printed no {label!r}:\n{output}"
    return found.group(1)


async def test_the_demo_tells_the_backup_story_and_who_opened_the_door() -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "gateway",
        "demo",
        "-c",
        str(ROOT / "config" / "demo.yaml"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        cwd=ROOT,
    )
    async with asyncio.timeout(DEMO_TIMEOUT):
        out, _ = await process.communicate()
    output = out.decode()
    assert process.returncode == 0, output
    assert line(output, "errors") == "failed_to_set_on_device"
    backup_pin = re.fullmatch(r"(\d+) \(slot (\d+)\)", line(output, "backup PIN for the guest"))
    assert backup_pin, output
    assert line(output, "door opens") == f"True (slot {backup_pin.group(2)})"
    # Step 4: the lock's entry event names the backup code that opened the door.
    slot = backup_pin.group(2)
    assert line(output, "lock.unlocked") == f"by keycode, slot {slot}"
    assert re.fullmatch(
        r"Backup [0-9a-f]{4}, standing in for Guest: A\. Jensen", line(output, "opened by")
    ), output
    story = line(output, "the guest's timeline").split(", ")
    # The backup's own story (set in the pool) comes with it, before the guest's.
    assert story.index("created") < story.index("failed_to_set_on_device")
    assert story.index("backup_access_code_pulled") < story.index("unlocked")
    assert line(output, "backup PIN still opens the door") == "False"
