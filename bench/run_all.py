"""Run every benchmark, each in a fresh process, and print (and optionally store) a summary.

A fresh process per run keeps the runs apart: no memory, tasks or warm caches carried over, and
the peak resident set reported by ``many_locks`` is its own. ``--best-of N`` runs each benchmark
N times and keeps the run with the best headline figure (the machine may be shared: a noisy
neighbour only ever makes a run worse); every run's headline is printed and stored too.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.common import Result, machine, now, print_table

BENCHMARKS = ("api_latency", "pull_latency", "many_locks")


def run_one(name: str, quick: bool) -> tuple[Result | None, float]:
    """One run of ``bench.<name>`` in a child process; its result (None if it failed), seconds."""
    with tempfile.TemporaryDirectory(prefix="lockgate-bench-run-") as tmp:
        out = Path(tmp) / "result.json"
        command = [sys.executable, "-m", f"bench.{name}", "--json", str(out)]
        if quick:
            command.append("--quick")
        started = now()
        finished = subprocess.run(command, check=False)
        seconds = now() - started
        if finished.returncode != 0 or not out.exists():
            print(f"bench.{name} failed with exit code {finished.returncode}", file=sys.stderr)
            return None, seconds
        return Result.from_json(json.loads(out.read_text())), seconds


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run_all")
    parser.add_argument("--quick", action="store_true", help="small runs (seconds each)")
    parser.add_argument("--json", type=Path, metavar="FILE", help="write every figure as JSON")
    parser.add_argument(
        "--best-of", type=int, default=1, metavar="N", help="run each N times, keep the best"
    )
    parser.add_argument(
        "--only", choices=BENCHMARKS, action="append", help="run just this one (repeatable)"
    )
    args = parser.parse_args(argv)
    names = args.only or list(BENCHMARKS)
    host = machine()
    print(
        f"lockgate benchmarks ({'quick' if args.quick else 'full'}, best of {args.best_of}), "
        f"code {host['code']}, on "
        f"{host['cpu']}, {host['cores']} cores, Python {host['python']}, {host['mosquitto']}; "
        f"load average {host['load_average']}"
    )

    failed: list[str] = []
    report: dict[str, Any] = {}
    best: dict[str, Result] = {}
    for name in names:
        runs: list[tuple[Result, float]] = []
        for _ in range(max(1, args.best_of)):
            result, seconds = run_one(name, args.quick)
            if result is None:
                failed.append(name)
                break
            runs.append((result, seconds))
        if not runs or name in failed:
            continue
        chosen = runs[0][0]
        for result, _ in runs[1:]:
            if result.better_than(chosen):
                chosen = result
        best[name] = chosen
        report[name] = {
            "best": chosen.to_json(),
            "runs": [{"headline": r.figures[r.headline], "seconds": round(s, 1)} for r, s in runs],
        }

    rows: list[tuple[str, ...]] = []
    for name, result in best.items():
        rows.append((name, "", ""))
        rows += [(f"  {label}", value, unit) for label, value, unit in result.rows]
    print_table("summary (the best run of each)", rows, ("measure", "value", "unit"))
    for name, result in best.items():
        headlines = ", ".join(f"{run['headline']:,.2f}" for run in report[name]["runs"])
        print(f"{name}: {result.headline} per run: {headlines} (the best run is shown)")
        for note in result.notes:
            print(f"  note: {note}")

    if args.json:
        document = {
            "machine": host,
            "quick": args.quick,
            "best_of": args.best_of,
            "benchmarks": report,
            "failed": failed,
        }
        args.json.write_text(json.dumps(document, indent=2) + "\n")
        print(f"figures written to {args.json}")
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
