"""The host's own cost per exit on the shared-memory path, step by step.

No QEMU: the exit record sits in a real anonymous mmap laid out as the
firmware lays out its records (``ExitRecord.OFFSETS``), and each step is
timed over many exits (median of 7 batches), so the figures are what the
host spends per exit, not the round trip. A "new" exit is made by setting
the transport's last seq back (the firmware would bump seq instead).

    .venv/bin/python bench/exit_path.py
"""

from __future__ import annotations

import collections
import mmap
import statistics
import time
from collections.abc import Callable
from typing import Any

from armvcpu import _core
from armvcpu.exits import Exit
from armvcpu.policy.policy import Policy, on
from armvcpu.session.transport import SharedMemoryTransport

N = 100_000
BASE = 0x100  # the record's offset in the mapping
OFF = dict(_core.ExitRecord.OFFSETS)


def mapping() -> mmap.mmap:
    """A published hypercall exit (nr 1), seq 5."""
    raw = bytearray(_core.ExitRecord().to_bytes())
    raw[OFF["reason"] : OFF["reason"] + 4] = int(_core.ExitKind.Hypercall).to_bytes(4, "little")
    raw[OFF["reason"] + 8 : OFF["reason"] + 16] = (1).to_bytes(8, "little")
    raw[OFF["seq"] : OFF["seq"] + 8] = (5).to_bytes(8, "little")
    ram = mmap.mmap(-1, 1 << 16)
    ram[BASE : BASE + len(raw)] = bytes(raw)
    return ram


def per_exit(fn: Callable[[], None]) -> float:
    """Nanoseconds per exit: the median of 7 batches of N."""
    times = []
    for _ in range(7):
        start = time.perf_counter_ns()
        fn()
        times.append((time.perf_counter_ns() - start) / N)
    return statistics.median(times)


class Session:
    """What exits() touches on the session each exit."""

    def __init__(self) -> None:
        self._finished = False
        self._end_expected = False
        self.last_exit: Any = None
        self.exit_count = 0
        self.recent_exits: collections.deque[Any] = collections.deque(maxlen=20)


def main() -> None:
    ram = mapping()
    transport = SharedMemoryTransport(ram, 0, BASE, 1)
    lasts = transport.last_seqs
    resolver = lambda exit, changed: None  # noqa: E731 (a resume never calls it)
    has_stream = hasattr(_core, "exit_stream")  # not before this branch: those rows are left out
    stream = (
        _core.exit_stream(Exit, ram, transport.record_offsets, lasts, resolver, None, -1, None)
        if has_stream
        else None
    )

    def loop_only() -> None:
        for _ in range(N):
            lasts[0] = 0

    def generator() -> None:
        def gen() -> Any:
            for _ in range(N):
                lasts[0] = 0
                yield 1

        for _ in gen():
            pass

    def wait_slot() -> None:
        for _ in range(N):
            lasts[0] = 0
            transport.wait_slot(0.1)

    def construct() -> None:
        for _ in range(N):
            lasts[0] = 0
            Exit(ram, BASE, 0, resolver, None)

    def resume() -> None:
        exits = [Exit(ram, BASE, 0, resolver, None) for _ in range(N)]
        start = time.perf_counter_ns()
        for exit in exits:
            exit.resume(x0=0)
        resume.ns = time.perf_counter_ns() - start  # type: ignore[attr-defined]

    def stream_next() -> None:
        for _ in range(N):
            lasts[0] = 0
            stream.next(0.1).resume()

    def bookkeeping() -> None:
        hv = Session()
        exit = Exit(ram, BASE, 0, resolver, None)
        for _ in range(N):
            lasts[0] = 0
            hv.last_exit = exit
            hv.recent_exits.append(exit)
            hv.exit_count += 1

    def old_loop() -> None:
        """exits() before: Python wait_slot, Exit(...), bookkeeping, .resolved."""
        hv = Session()

        def exits() -> Any:
            while not hv._finished and hv.exit_count < N:
                lasts[0] = 0
                slot = transport.wait_slot(0.1) if not hv._end_expected else None
                exit = Exit(ram, transport.record_offsets[slot], slot, resolver, hv)
                hv.last_exit = exit
                hv.recent_exits.append(exit)
                hv.exit_count += 1
                yield exit
                if not exit.resolved:
                    exit.resume_default()

        for exit in exits():
            exit.resume(x0=0)

    def new_loop() -> None:
        """exits() now: ExitStream.next, bookkeeping."""
        hv = Session()
        loop_stream = _core.exit_stream(Exit, ram, transport.record_offsets, lasts, resolver, hv,
                                        -1, None)  # fmt: skip

        def exits() -> Any:
            while not hv._finished and hv.exit_count < N:
                lasts[0] = 0
                exit = loop_stream.next(0.1) if not hv._end_expected else None
                hv.last_exit = exit
                hv.recent_exits.append(exit)
                hv.exit_count += 1
                yield exit

        for exit in exits():
            exit.resume(x0=0)

    class Answer(Policy):
        @on.mmio(0x0900_0000, 0x0900_1000)
        def uart(self, exit: Exit) -> int:
            return 0

        @on.hypercall(nr=2)
        def other(self, exit: Exit) -> int:
            return 0

        @on.hypercall(nr=1)
        def answer(self, exit: Exit) -> int:
            return 0

    policy = Answer()

    def with_policy() -> None:
        for _ in range(N):
            policy(Exit(ram, BASE, 0, resolver, None))

    def with_resume() -> None:
        for _ in range(N):
            Exit(ram, BASE, 0, resolver, None).resume(x0=0)

    base = per_exit(loop_only)
    print(f"host cost per exit, ns (a loop with the last-seq reset: {base:.0f} ns, subtracted)")
    rows = [
        ("generator frame (yield and resume)", generator),
        ("transport.wait_slot(): Python method + pybind11 mailbox_wait", wait_slot),
        ("Exit(ram, offset, ...) through pybind11 __init__, and its dealloc", construct),
        ("ExitStream.next() (wait + view in one call) + resume()", stream_next),
        ("bookkeeping: last_exit, recent_exits, exit_count", bookkeeping),
        ("whole loop as exits() was: wait_slot + Exit(...) + resume(x0=0)", old_loop),
        ("whole loop as exits() is: ExitStream.next + resume(x0=0)", new_loop),
    ]
    for name, fn in rows:
        if not has_stream and "ExitStream" in name:
            continue
        print(f"{per_exit(fn) - base:8.0f}  {name}", flush=True)
    per_exit(resume)
    print(f"{resume.ns / N:8.0f}  exit.resume(x0=0) alone")  # type: ignore[attr-defined]
    dispatch = per_exit(with_policy) - per_exit(with_resume)
    print(f"{dispatch:8.0f}  Policy dispatch (3 handlers, the last matching) over a bare resume")


if __name__ == "__main__":
    main()
