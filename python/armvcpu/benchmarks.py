"""Benchmarks, run on demand: ``armvcpu bench NAME [--json]``.

Speed is measured, never asserted: these print figures (medians of several
runs) for notes and comparisons, on whatever machine runs them.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Literal

from .exits import ExitKind
from .firmware import example_guest_path
from .guest import Guest
from .hypervisor import Hypervisor

KIND_HOST = 0  # hypercall 1: a round trip to the host
KIND_FIRMWARE = 1  # PSCI_VERSION: answered in the firmware


@dataclass
class Figure:
    name: str
    value: float
    unit: str
    runs: list[float] = field(default_factory=list)
    note: str = ""


def _loop_guest(count: int, kind: int) -> Guest:
    base = Guest.from_elf(example_guest_path("exit_loop"))
    return Guest(base.segments, base.entry, "exit_loop", x0=count | (kind << 48))


def host_round_trips(transport: Literal["shm", "gdb"], count: int) -> float:
    """Exits per second to a Python handler that answers each one."""
    with Hypervisor(transport=transport, timeout=120) as hv:
        hv.load(_loop_guest(count, KIND_HOST))
        first = last = 0.0
        seen = 0
        for exit in hv.exits():
            if exit.kind == ExitKind.Hypercall and exit.reason.nr == 1:
                if seen == 0:
                    first = time.perf_counter()
                seen += 1
                last = time.perf_counter()
                exit.resume(x0=0)
    # seen - 1 intervals between the first and the last exit
    return (seen - 1) / (last - first)


def firmware_exits(count: int) -> float:
    """Exits per second answered inside EL2 (PSCI_VERSION), by difference:
    the same guest with `count` exits against one with none."""

    def run(n: int) -> float:
        with Hypervisor(transport="shm", timeout=300) as hv:
            hv.load(_loop_guest(n, KIND_FIRMWARE))
            start = time.perf_counter()
            for exit in hv.exits():
                if exit.kind == ExitKind.Hypercall and exit.reason.nr == 2:
                    elapsed = time.perf_counter() - start
                    exit.resume(x0=0)
        return elapsed

    return count / max(run(count) - run(0), 1e-9)


def startup() -> float:
    """Seconds from `Hypervisor()` to the first delivered exit."""
    start = time.perf_counter()
    with Hypervisor() as hv:
        hv.load(_loop_guest(1, KIND_HOST))
        for _exit in hv.exits():
            elapsed = time.perf_counter() - start
            break
    return elapsed


def _median(name: str, unit: str, runs: int, fn: Callable[[], float], note: str = "") -> Figure:
    values = [fn() for _ in range(runs)]
    return Figure(name, statistics.median(values), unit, values, note)


def bench_exits(runs: int = 3, quick: bool = False) -> list[Figure]:
    scale = 10 if quick else 1
    figures = [
        _median("firmware (PSCI_VERSION in EL2)", "exits/s", runs,
                lambda: firmware_exits(200_000 // scale)),
        _median("shared-memory round trip to Python", "exits/s", runs,
                lambda: host_round_trips("shm", 50_000 // scale)),
        _median("gdbstub round trip to Python", "exits/s", runs,
                lambda: host_round_trips("gdb", 5_000 // scale)),
    ]  # fmt: skip
    base = figures[2].value
    for f in figures:
        f.note = f"{f.value / base:.1f}x the gdbstub round trip"
    return figures


def bench_startup(runs: int = 5, quick: bool = False) -> list[Figure]:
    return [_median("Hypervisor() to the first exit", "s", runs, startup)]


BENCHMARKS: dict[str, Callable[..., list[Figure]]] = {
    "exits": bench_exits,
    "startup": bench_startup,
}


def as_dicts(figures: list[Figure]) -> list[dict[str, object]]:
    return [asdict(f) for f in figures]
