"""``lockgate`` command line: run, check-config, sim, demo, call, events.

The daemon carries no harness: the simulator, the demo and their site are imported only by the
subcommands that use them, so ``lockgate run`` never loads them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from collections.abc import Callable, Sequence
from typing import Any

from gateway.client import connect
from gateway.config import Config, ConfigError, load_config
from gateway.instance import AlreadyRunning
from gateway.logs import configure_logging, get_logger
from gateway.service import Gateway
from gateway.store import StoreError

DEFAULT_CONFIG = "/etc/lockgate/lockgate.yaml"
EXIT_CONFIG = 2

log = get_logger("gateway.cli")


def _load(path: str, *, simulator: bool = False) -> Config:
    """The config file, or exit 2 with one line per problem. ``simulator``: check the
    ``simulator:`` section too, which the daemon itself does not read."""
    try:
        config = load_config(path)
        if simulator:
            from drivers.sim_settings import simulator_settings  # noqa: PLC0415 (not on the daemon's path)

            simulator_settings(config)
    except ConfigError as exc:
        for line in exc.problems:  # one line per problem, naming its key path, nothing else
            print(line, file=sys.stderr)
        raise SystemExit(EXIT_CONFIG) from None
    return config


def _run_until_signal(
    main: Callable[[asyncio.Event], Any], reload: Callable[[], None] | None = None
) -> None:
    """Run ``main(stop)`` with SIGTERM/SIGINT setting ``stop`` for an orderly shutdown, and
    SIGHUP calling ``reload`` (when given)."""

    async def runner() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        if reload is not None:
            loop.add_signal_handler(signal.SIGHUP, reload)
        await main(stop)

    asyncio.run(runner())


def cmd_run(args: argparse.Namespace) -> int:
    config = _load(args.config)
    configure_logging(args.log_level or config.log_level)
    try:
        gateway = Gateway(config, reset_clock_mark=args.reset_clock_mark)
        _run_until_signal(gateway.run, reload=gateway.request_reload)
    except StoreError as exc:
        print(f"lockgate: {exc}", file=sys.stderr)
        return 1
    except AlreadyRunning as exc:
        print(f"lockgate: {exc}", file=sys.stderr)
        return 2
    return 0


def cmd_check_config(args: argparse.Namespace) -> int:
    config = _load(args.config, simulator=True)
    print(f"{args.config}: ok ({len(config.devices)} devices, hub_id {config.hub_id})")
    return 0


def cmd_sim(args: argparse.Namespace) -> int:
    from drivers.sim import run_simulator  # noqa: PLC0415 (not on the daemon's path)

    config = _load(args.config, simulator=True)
    configure_logging(args.log_level or config.log_level)

    async def main(stop: asyncio.Event) -> None:
        task = asyncio.create_task(run_simulator(config), name="simulator")
        await stop.wait()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    _run_until_signal(main)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from gateway.demo import run_demo  # noqa: PLC0415 (not on the daemon's path)

    config = _load(args.config, simulator=True)
    configure_logging(args.log_level or "error")
    return asyncio.run(run_demo(config))


def parse_params(items: Sequence[str]) -> dict[str, Any]:
    """``key=text`` gives a string, ``key:=json`` a JSON value (``is_managed:=false``)."""
    params: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SystemExit(f"parameter '{item}' must be key=value or key:=json")
        if not key.endswith(":"):
            params[key] = value
            continue
        try:
            params[key[:-1]] = json.loads(value)
        except json.JSONDecodeError:
            raise SystemExit(f"{key[:-1]}: '{value}' is not valid JSON") from None
    return params


def cmd_call(args: argparse.Namespace) -> int:
    config = _load(args.config)
    params = parse_params(args.params)

    async def main() -> dict[str, Any]:
        async with connect(config.mqtt, config.prefix) as api:
            return await api.call(args.endpoint, timeout=args.timeout, **params)

    try:
        reply = asyncio.run(main())
    except TimeoutError:
        print(f"no reply from gateway {config.prefix} within {args.timeout}s", file=sys.stderr)
        return 1
    print(json.dumps(reply, indent=2))
    return 0 if reply.get("ok") else 1


def cmd_events(args: argparse.Namespace) -> int:
    config = _load(args.config)

    async def main(stop: asyncio.Event) -> None:
        async with connect(config.mqtt, config.prefix) as api:
            queue = await api.subscribe(f"{config.prefix}/events/#")
            print(f"listening on {config.prefix}/events/#", file=sys.stderr, flush=True)

            async def echo() -> None:
                while True:
                    payload = (await queue.get()).payload
                    print(payload.decode() if isinstance(payload, bytes) else payload, flush=True)

            async with asyncio.TaskGroup() as tg:
                printer = tg.create_task(echo(), name="events-printer")
                await stop.wait()
                printer.cancel()

    _run_until_signal(main)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lockgate", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    def command(name: str, handler: Callable[[argparse.Namespace], int], text: str) -> Any:
        sub = commands.add_parser(name, help=text, description=text)
        sub.add_argument("-c", "--config", default=DEFAULT_CONFIG, help="YAML configuration")
        sub.set_defaults(handler=handler)
        return sub

    subs = {}
    for name, handler, text in (
        ("run", cmd_run, "run the gateway daemon"),
        ("sim", cmd_sim, "run simulated locks for every device of the config"),
        ("demo", cmd_demo, "walk through the backup-code story against simulated locks"),
    ):
        subs[name] = command(name, handler, text)
        subs[name].add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    subs["run"].add_argument(
        "--reset-clock-mark",
        action="store_true",
        help="forget the latest time seen (after a clock that ran wrongly ahead): judge time by"
        " the wall clock from now on",
    )
    command("check-config", cmd_check_config, "validate the configuration and exit")
    call = command("call", cmd_call, "send one API request and print the reply")
    call.add_argument("endpoint", help="e.g. devices/get")
    call.add_argument("params", nargs="*", help="key=string or key:=json")
    call.add_argument("--timeout", type=float, default=10.0)
    command("events", cmd_events, "print events as they are published")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    code: int = args.handler(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
