"""``armvcpu bench boot``: one QEMU command line on bare QEMU and under
``armvcpu run``, alternately, whole process against whole process.

::

    armvcpu bench boot [--pairs N] [--marker TEXT] [--json] [--] QEMU-ARGS...

runs ``qemu-system-aarch64 QEMU-ARGS`` (A) and ``armvcpu run QEMU-ARGS`` (B)
as A B A B ... (``--pairs`` pairs, 5 by default) and prints, for each side,
the median wall time (launch to exit) and the median CPU time (user + system
of the child and every descendant it waited for: QEMU under ``armvcpu run``
is one), the ratios B/A of those medians, and every run behind them.
Alternating spreads a loaded machine's noise over both sides alike.

Each run's console goes to a file; a run that ends with another status than
the first bare run's, or (``--marker``) without printing the marker, stops
the benchmark with an error, since its times would describe a different run.
Measured, never asserted.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

#: bench boot's own options, and whether each takes a value.
OWN_OPTIONS = {"--pairs": True, "--marker": True, "--timeout": True, "--qemu": True,
               "--json": False}  # fmt: skip
DEFAULT_PAIRS = 5
EXIT_USAGE = 2
EXIT_FAILED_RUN = 1


class BenchError(Exception):
    """A run the benchmark cannot use (it failed, or timed out)."""


@dataclass
class Run:
    """One whole-process run of one side."""

    side: str  # "qemu" (A) or "armvcpu" (B)
    wall_s: float
    cpu_s: float  # user + system, the child and the descendants it waited for
    user_s: float
    system_s: float
    status: int
    #: The 1-minute load average when the run ended.
    load: float = 0.0


@dataclass
class Side:
    """One side's medians and the runs behind them, in the order they ran."""

    command: list[str]
    wall_s: float
    cpu_s: float
    runs: list[Run] = field(default_factory=list)


@dataclass
class Result:
    pairs: int
    qemu: Side
    armvcpu: Side
    #: armvcpu's median over bare QEMU's median.
    wall_ratio: float
    cpu_ratio: float
    #: The median of the pairs' own ratios (each pair ran back to back).
    pair_wall_ratio: float
    pair_cpu_ratio: float
    #: The machine's load averages (1, 5, 15 minutes, as ``uptime`` prints
    #: them) when the first run started and when the last one ended: the
    #: figures describe a machine this busy.
    load_before: tuple[float, float, float] = (0.0, 0.0, 0.0)
    load_after: tuple[float, float, float] = (0.0, 0.0, 0.0)


def split(argv: list[str]) -> tuple[list[str], list[str]]:
    """bench boot's options and QEMU's, in their order; everything after
    ``--`` is QEMU's."""
    own: list[str] = []
    qemu: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            qemu += argv[i + 1 :]
            break
        name, eq, _ = arg.partition("=")
        if name in OWN_OPTIONS:
            takes = OWN_OPTIONS[name] and not eq
            own += argv[i : i + 1 + takes]
            i += 1 + takes
        else:
            qemu.append(arg)
            i += 1
    return own, qemu


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="armvcpu bench boot",
        description="Run a QEMU command line on bare qemu-system-aarch64 and under "
        "`armvcpu run`, alternately, and print the medians of wall and CPU time and "
        "their ratios.",
    )
    parser.add_argument("--pairs", type=int, default=DEFAULT_PAIRS,
                        help=f"A B pairs to run (default {DEFAULT_PAIRS})")  # fmt: skip
    parser.add_argument("--marker", help="text each run's console must contain")
    parser.add_argument("--timeout", type=float, default=600.0,
                        help="seconds one run may take (default 600)")  # fmt: skip
    parser.add_argument("--qemu", default="qemu-system-aarch64", help="the bare QEMU binary")
    parser.add_argument("--json", action="store_true",
                        help="print the result as JSON on stdout instead of a table")  # fmt: skip
    return parser


def measure(side: str, argv: list[str], cwd: Path, timeout: float,
            marker: str | None) -> tuple[Run, str]:  # fmt: skip
    """Run ``argv`` to its end; its times and its console (stdout and stderr)."""
    with tempfile.TemporaryFile(prefix="armvcpu-bench-") as out:
        start = time.perf_counter()
        # Its own session: on a timeout the whole group goes (QEMU with it).
        proc = subprocess.Popen(argv, cwd=cwd, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
        deadline = start + timeout
        while True:
            # wait4, not Popen.wait: the resource usage comes with the status.
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() >= deadline:
                os.killpg(proc.pid, signal.SIGKILL)
                os.wait4(proc.pid, 0)
                proc.returncode = -signal.SIGKILL
                raise BenchError(f"{side}: no end within {timeout:g} s: {' '.join(argv)}")
            time.sleep(0.002)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        console = out.read().decode(errors="replace")
    if marker is not None and marker not in console:
        raise BenchError(f"{side}: the marker {marker!r} is not in its output "
                         f"(status {proc.returncode}); its last lines:\n"
                         + "\n".join(console.splitlines()[-10:]))  # fmt: skip
    run = Run(side, wall, usage.ru_utime + usage.ru_stime, usage.ru_utime, usage.ru_stime,
              proc.returncode, os.getloadavg()[0])  # fmt: skip
    return run, console


def compare(qemu_args: list[str], *, pairs: int = DEFAULT_PAIRS, marker: str | None = None,
            timeout: float = 600.0, qemu: str = "qemu-system-aarch64",
            cwd: Path | None = None, progress: TextIO | None = None) -> Result:  # fmt: skip
    """Run bare QEMU and ``armvcpu run`` with ``qemu_args``, alternately."""
    if pairs < 1:
        raise ValueError(f"--pairs must be at least 1, not {pairs}")
    bare_cmd = [qemu, *qemu_args]
    ours_cmd = [sys.executable, "-m", "armvcpu", "run", *qemu_args]
    where = cwd if cwd is not None else Path.cwd()
    bare: list[Run] = []
    ours: list[Run] = []
    load_before = os.getloadavg()
    for i in range(pairs):
        for side, argv, runs in (("qemu", bare_cmd, bare), ("armvcpu", ours_cmd, ours)):
            run, console = measure(side, argv, where, timeout, marker)
            first = bare[0].status if bare else run.status
            if run.status != first:
                raise BenchError(f"{side}: ended with status {run.status}, the first bare run "
                                 f"with {first}; its last lines:\n"
                                 + "\n".join(console.splitlines()[-10:]))  # fmt: skip
            runs.append(run)
            if progress is not None:
                print(f"pair {i + 1}/{pairs} {side}: wall {run.wall_s:.3f} s, "
                      f"cpu {run.cpu_s:.3f} s, load {run.load:.2f}",
                      file=progress, flush=True)  # fmt: skip

    def summary(command: list[str], runs: list[Run]) -> Side:
        return Side(command, statistics.median(r.wall_s for r in runs),
                    statistics.median(r.cpu_s for r in runs), runs)  # fmt: skip

    load_after = os.getloadavg()
    a, b = summary(bare_cmd, bare), summary(ours_cmd, ours)
    return Result(
        pairs, a, b, b.wall_s / a.wall_s, b.cpu_s / a.cpu_s,
        statistics.median(y.wall_s / x.wall_s for x, y in zip(bare, ours, strict=True)),
        statistics.median(y.cpu_s / x.cpu_s for x, y in zip(bare, ours, strict=True)),
        load_before, load_after,
    )  # fmt: skip


def print_table(result: Result) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"armvcpu bench boot: {result.pairs} pairs, alternating "
                  "(A = bare QEMU, B = armvcpu run)")  # fmt: skip
    for col in ("pair", "A wall s", "A cpu s", "B wall s", "B cpu s", "B/A wall", "B/A cpu"):
        table.add_column(col, justify="right")
    for i, (x, y) in enumerate(zip(result.qemu.runs, result.armvcpu.runs, strict=True)):
        table.add_row(str(i + 1), f"{x.wall_s:.3f}", f"{x.cpu_s:.3f}", f"{y.wall_s:.3f}",
                      f"{y.cpu_s:.3f}", f"{y.wall_s / x.wall_s:.3f}",
                      f"{y.cpu_s / x.cpu_s:.3f}")  # fmt: skip
    table.add_section()
    table.add_row("median", f"{result.qemu.wall_s:.3f}", f"{result.qemu.cpu_s:.3f}",
                  f"{result.armvcpu.wall_s:.3f}", f"{result.armvcpu.cpu_s:.3f}",
                  f"{result.pair_wall_ratio:.3f}", f"{result.pair_cpu_ratio:.3f}")  # fmt: skip
    console = Console()
    console.print(table)
    console.print(f"ratio of the medians (B/A): wall {result.wall_ratio:.3f}x, "
                  f"cpu {result.cpu_ratio:.3f}x", highlight=False)  # fmt: skip
    console.print("load average (1, 5, 15 min): "
                  f"{', '.join(f'{x:.2f}' for x in result.load_before)} before, "
                  f"{', '.join(f'{x:.2f}' for x in result.load_after)} after",
                  highlight=False)  # fmt: skip
    console.print(f"A: {' '.join(result.qemu.command)}", highlight=False, soft_wrap=True)
    console.print(f"B: {' '.join(result.armvcpu.command)}", highlight=False, soft_wrap=True)


def main(argv: list[str]) -> int:
    """``armvcpu bench boot ARGS``; returns the exit status."""
    own, qemu_args = split(argv)
    parser = _parser()
    args = parser.parse_args(own)
    if not qemu_args:
        print("armvcpu bench boot: no QEMU command line: give it after the options, e.g. "
              "armvcpu bench boot -- -M virt -cpu max -m 512M -nographic -kernel Image",
              file=sys.stderr)  # fmt: skip
        return EXIT_USAGE
    if args.pairs < 1:
        print(f"armvcpu bench boot: --pairs must be at least 1, not {args.pairs}",
              file=sys.stderr)  # fmt: skip
        return EXIT_USAGE
    try:
        result = compare(qemu_args, pairs=args.pairs, marker=args.marker, timeout=args.timeout,
                         qemu=args.qemu, progress=sys.stderr)  # fmt: skip
    except BenchError as exc:
        print(f"armvcpu bench boot: {exc}", file=sys.stderr)
        return EXIT_FAILED_RUN
    except FileNotFoundError as exc:
        print(f"armvcpu bench boot: {exc.strerror}: {exc.filename}", file=sys.stderr)
        return EXIT_USAGE
    if args.json:
        from .jsonout import print_json

        print_json(result)
    else:
        print_table(result)
    return 0
