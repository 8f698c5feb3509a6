"""Benchmarks, run on demand: ``armvcpu bench NAME [--json]``.

Speed is measured, never asserted: these print figures (medians of several
runs) for notes and comparisons, on whatever machine runs them.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from ..analysis.trace import Trace
from ..assets import example_guest_path
from ..errors import ArmvcpuError
from ..exits import ExitKind
from ..guests.guest import Guest
from ..session.hypervisor import Hypervisor
from ..session.transport import HandoffMode
from .sched_guest import state_guest

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


def host_round_trips(transport: Literal["shm", "gdb"], count: int,
                     handoff: HandoffMode = "auto") -> float:  # fmt: skip
    """Exits per second to a Python handler that answers each one (``handoff``:
    how the gdb transport stops the CPU)."""
    with Hypervisor(transport=transport, timeout=120, handoff=handoff) as hv:
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


def exit_loop_round_trips(count: int) -> float:
    """Exits per second through the main API as a script writes it,
    ``for exit in hv.exits(): exit.resume(x0=0)`` (shared memory), from the
    first exit to the last."""
    with Hypervisor(transport="shm", timeout=120) as hv:
        hv.load(_loop_guest(count, KIND_HOST))
        first = last = 0
        seen = 0
        for exit in hv.exits():
            exit.resume(x0=0)
            last = time.perf_counter_ns()
            if seen == 0:
                first = last
            seen += 1
    return (seen - 1) / max(last - first, 1) * 1e9


def exit_loop_against_el2(runs: int, count: int) -> Figure:
    """The main API's rate as a fraction of the EL2-answered rate, the two
    measured alternately in one run (this machine's load moves both); the
    EL2 runs make 5x the exits, as they are that much faster."""
    ratios = []
    for _ in range(runs):
        el2 = firmware_exits(5 * count)
        ratios.append(exit_loop_round_trips(count) / el2)
    return Figure("hv.exits() + exit.resume(x0=0), against exits answered in EL2",
                  statistics.median(ratios), "x EL2", ratios, "target >= 0.20")  # fmt: skip


def policy_round_trips(count: int) -> float:
    """Exits per second through ``hv.run(policy)`` with one ``@on.hypercall``
    handler answering each hypercall (x0 = 0), from the first to the last:
    the policy rides the same loop as ``hv.exits()``."""
    from ..policy.policy import Policy, on

    seen, first, last = 0, 0, 0

    def hypercall(exit: Any) -> int:
        nonlocal seen, first, last
        last = time.perf_counter_ns()
        if seen == 0:
            first = last
        seen += 1
        return 0

    with Hypervisor(transport="shm", timeout=120) as hv:
        hv.load(_loop_guest(count, KIND_HOST))
        hv.run(Policy().add(on.hypercall(nr=1), hypercall))
    return (seen - 1) / max(last - first, 1) * 1e9


def policy_against_el2(runs: int, count: int) -> Figure:
    """A policy's rate as a fraction of the EL2-answered rate, alternately
    in one run, as for :func:`exit_loop_against_el2`."""
    ratios = []
    for _ in range(runs):
        el2 = firmware_exits(5 * count)
        ratios.append(policy_round_trips(count) / el2)
    return Figure("hv.run(Policy with @on.hypercall), against exits answered in EL2",
                  statistics.median(ratios), "x EL2", ratios)  # fmt: skip


def served_round_trips(count: int) -> float:
    """Exits per second to a Python function answering each hypercall through
    Hypervisor.serve_hypercalls (the record answered in place, no Exit)."""
    with Hypervisor(transport="shm", timeout=120) as hv:
        hv.load(_loop_guest(count, KIND_HOST))
        start = time.perf_counter()
        served = hv.serve_hypercalls(lambda nr, *args: 0 if nr == 1 else None)
        elapsed = time.perf_counter() - start
        for exit in hv.exits():  # hypercall 2, then SYSTEM_OFF (its default: stop)
            if exit.kind == ExitKind.Hypercall:
                exit.resume(x0=0)
    return served / elapsed


_GDB_HANDLER = r"""
import time, gdb
state = {"n": 0, "first": 0.0, "last": 0.0}

class Handoff(gdb.Breakpoint):
    def stop(self):
        # What a gdb-based tool does at each exit: read the record through
        # the DWARF-typed value, answer the hypercall, let the CPU go on.
        rec = gdb.parse_and_eval("armvcpu_exit_records[0]")
        if int(rec["reason"]["kind"]) == 1 and int(rec["reason"]["hypercall"]["nr"]) == 1:
            gdb.execute("set var armvcpu_exit_records[0].frame.gpr_[0] = 0")
            gdb.execute("set var armvcpu_exit_records[0].action = 1")
            now = time.perf_counter()
            if state["n"] == 0:
                state["first"] = now
            state["n"] += 1
            state["last"] = now
        # The answer is complete: the hand-off waits for ack == seq.
        gdb.execute("set var armvcpu_exit_records[0].ack = armvcpu_exit_records[0].seq")
        return False

gdb.execute("set var armvcpu_guest_config[0].x0 = COUNT")
gdb.execute("set var armvcpu_host_attached = 1")
# Every hypercall reaches the host (unclaimed ones get NOT_SUPPORTED in EL2).
gdb.execute("set var armvcpu_hypercall_claims.all = 1")
Handoff("armvcpu_host_handoff")
try:
    gdb.execute("continue")
except gdb.error:
    pass
n = state["n"]
print("ARMVCPU_RATE %f" % ((n - 1) / (state["last"] - state["first"])))
"""


def gdb_python_round_trips(count: int) -> float:
    """Exits per second for a gdb-multiarch Python-API breakpoint handler
    doing the same work (the way gdb-based tools script a target)."""
    import re
    import subprocess
    import tempfile

    from ..assets import firmware_path
    from ..session.qemu import QemuConfig, QemuProcess

    guest = Guest.from_elf(example_guest_path("exit_loop"))
    with tempfile.TemporaryDirectory(prefix="armvcpu-bench-") as tmp:
        image = Path(tmp) / "guest.bin"
        image.write_bytes(guest.segments[0].data)
        script = Path(tmp) / "handler.py"
        script.write_text(_GDB_HANDLER.replace("COUNT", str(count)))
        # The firmware's standalone defaults enter the guest at 0x4020_0000
        # (guest RAM is identity-mapped; QEMU's device tree is below it).
        config = QemuConfig(extra_args=("-device", f"loader,file={image},addr=0x40200000"))
        qemu = QemuProcess(config, firmware_path())
        try:
            qemu.wait_for_socket()
            out = subprocess.run(
                ["gdb-multiarch", "-batch", "-nx", "-ex", f"file {firmware_path()}",
                 "-ex", f"target remote {qemu.gdb_socket}", "-ex", f"source {script}"],
                capture_output=True, text=True, timeout=600,
            )  # fmt: skip
        finally:
            qemu.terminate()
    m = re.search(r"ARMVCPU_RATE ([0-9.]+)", out.stdout)
    if m is None:
        raise RuntimeError(
            f"gdb-multiarch did not report a rate: {out.stdout[-500:]} {out.stderr[-500:]}"
        )
    return float(m.group(1))


def firmware_exits(count: int, *, fast_rule: bool = False) -> float:
    """Exits per second answered inside EL2, by difference: the same guest
    with `count` exits against one with none. PSCI_VERSION (the core
    answers it), or with ``fast_rule`` hypercall 1 answered by a host-
    installed fast rule."""

    def run(n: int) -> float:
        with Hypervisor(transport="shm", timeout=300) as hv:
            if fast_rule:
                hv.rules.hypercall(1, result=0)
            hv.load(_loop_guest(n, KIND_HOST if fast_rule else KIND_FIRMWARE))
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


def _recorded_trace(count: int) -> Trace:
    """A real trace (UART writes, hypercalls, PSCI) tiled to `count` exits."""
    import numpy as np

    from ..policy.devices import Pl011

    source = (
        "movz x10, #0x0900, lsl #16\nmov x11, #64\n1: mov x12, #0x41\nstr w12, [x10]\n"
        "mov x0, #1\nhvc #0\nsubs x11, x11, #1\nb.ne 1b\nldr x0, =0x84000008\nhvc #0"
    )
    trace = Trace()
    uart = Pl011()
    with Hypervisor() as hv:
        hv.load(Guest.from_asm(source))
        hv.run(uart.policy() + _hypercalls_answered(), trace=trace)
    cols = trace.columns
    reps = -(-count // len(trace))
    tiled = Trace(trace.meta)
    tiled._frozen = {k: np.concatenate([v] * reps)[:count] for k, v in cols.items()}
    return tiled


def _hypercalls_answered() -> Any:
    from ..policy.policy import Policy, on

    p = Policy()
    p.add(on.hypercall(), lambda exit: 0)
    return p


def trace_summary_seconds(trace: Trace) -> float:
    start = time.perf_counter()
    trace.summary()
    return time.perf_counter() - start


def _median(name: str, unit: str, runs: int, fn: Callable[[], float], note: str = "") -> Figure:
    values = [fn() for _ in range(runs)]
    return Figure(name, statistics.median(values), unit, values, note)


def bench_exits(runs: int = 3, quick: bool = False) -> list[Figure]:
    scale = 10 if quick else 1
    figures = [
        _median("firmware (PSCI_VERSION in EL2)", "exits/s", runs,
                lambda: firmware_exits(200_000 // scale)),
        _median("fast rule (hypercall answered in EL2)", "exits/s", runs,
                lambda: firmware_exits(200_000 // scale, fast_rule=True)),
        _median("shared-memory round trip to Python", "exits/s", runs,
                lambda: host_round_trips("shm", 50_000 // scale)),
        _median("shared-memory hypercall server (Python function)", "exits/s", runs,
                lambda: served_round_trips(200_000 // scale)),
        _median("hv.exits() + exit.resume(x0=0)", "exits/s", runs,
                lambda: exit_loop_round_trips(20_000 // scale)),
        _median("hv.run(Policy with @on.hypercall)", "exits/s", runs,
                lambda: policy_round_trips(20_000 // scale)),
        _median("gdbstub round trip to Python", "exits/s", runs,
                lambda: host_round_trips("gdb", 5_000 // scale)),
    ]  # fmt: skip
    base = figures[-1].value
    for f in figures:
        f.note = f"{f.value / base:.1f}x the gdbstub round trip"
    figures.append(exit_loop_against_el2(runs, 20_000 // scale))
    figures.append(policy_against_el2(runs, 20_000 // scale))
    return figures


def bench_startup(runs: int = 5, quick: bool = False) -> list[Figure]:
    return [_median("Hypervisor() to the first exit", "s", runs, startup)]


def bench_transports(runs: int = 3, quick: bool = False) -> list[Figure]:
    scale = 10 if quick else 1
    figures = [
        _median("shared-memory transport, Python handler", "exits/s", runs,
                lambda: host_round_trips("shm", 50_000 // scale)),
        _median("shared-memory hypercall server, Python function", "exits/s", runs,
                lambda: served_round_trips(200_000 // scale)),
        _median("gdbstub transport, Python handler", "exits/s", runs,
                lambda: host_round_trips("gdb", 3_000 // scale)),
        _median("gdbstub transport, breakpoint hand-off (the fallback)", "exits/s", runs,
                lambda: host_round_trips("gdb", 1_000 // scale, "breakpoint")),
        _median("gdb-multiarch Python-API breakpoint handler", "exits/s", runs,
                lambda: gdb_python_round_trips(2_000 // scale)),
    ]  # fmt: skip
    base = figures[-1].value
    for f in figures:
        f.note = f"{f.value / base:.1f}x the gdb-multiarch handler"
    return figures


def el2_instructions_per_exit(count: int, *, fast_rule: bool = False) -> float:
    """EL2 instructions from vector entry to ERET for a null hypercall handled
    in the firmware, counted by the PMU (INST_RETIRED filtered to EL2) under
    -icount shift=0, by difference between two runs. PSCI_VERSION (answered
    by the vectors' fast path), or with ``fast_rule`` a hypercall answered by
    a fast rule (the whole run loop and the core's classifier)."""

    def run(n: int) -> int:
        with Hypervisor(extra_args=("-icount", "shift=0"), timeout=300) as hv:
            if fast_rule:
                hv.rules.hypercall(1, result=0)
            hv.load(_loop_guest(n, KIND_HOST if fast_rule else KIND_FIRMWARE))
            hv.request_selftest("count-el2")
            total = 0
            for exit in hv.exits():
                if exit.kind == ExitKind.Hypercall and exit.reason.nr == 2:
                    total = hv.el2_instructions()
                    exit.resume(x0=0)
        return total

    return (run(count) - run(0)) / count


def el2_instructions_per_world_switch(*, sve: bool = False) -> float:
    """EL2 instructions per world switch between two vCPUs time-sharing one
    CPU (the firmware's own count, PMU INST_RETIRED at EL2 under -icount
    shift=0): from the outgoing vCPU's save to the incoming one's return into
    its thread, the lazy FP/SIMD hand-over not included."""
    with Hypervisor(smp=2, host_cpus=1, extra_args=("-icount", "shift=0"), timeout=300) as hv:
        hv.load(Guest.from_asm(state_guest(sve, rounds=8)))
        hv.request_selftest("count-el2")
        hv.run(lambda e: 0 if e.kind == ExitKind.Hypercall else None)
        costs = hv.world_switch_costs()
    if costs.measured == 0:
        raise ArmvcpuError("no world switch was counted")
    return costs.per_switch


def bench_el2(runs: int = 3, quick: bool = False) -> list[Figure]:
    count = 1_000 if quick else 10_000
    return [
        _median("EL2 instructions per null hypercall (PSCI_VERSION, vector fast path)",
                "instructions", runs, lambda: el2_instructions_per_exit(count),
                "target <= 70, full TrapFrame saved"),
        _median("EL2 instructions per fast-rule hypercall (run loop + core)", "instructions",
                runs, lambda: el2_instructions_per_exit(count, fast_rule=True)),
        _median("EL2 instructions per world switch (2 vCPUs on 1 CPU, FP lazily)",
                "instructions", runs, el2_instructions_per_world_switch,
                "EL1 context, vGIC, PAuth keys, timers; MTE where on"),
    ]  # fmt: skip


def bench_trace(runs: int = 3, quick: bool = False) -> list[Figure]:
    count = 100_000 if quick else 1_000_000
    trace = _recorded_trace(count)
    return [_median(f"summarise a {count:,}-exit trace", "s", runs,
                    lambda: trace_summary_seconds(trace))]  # fmt: skip


def _time_to_marker(console: Path, marker: bytes, start: float, done: Callable[[], bool],
                    timeout: float) -> float:  # fmt: skip
    """Seconds from ``start`` until ``marker`` is in the console file, polled
    every millisecond (the same way for both sides of a comparison)."""
    while time.perf_counter() - start < timeout:
        try:
            if marker in console.read_bytes():
                return time.perf_counter() - start
        except FileNotFoundError:
            pass
        if done():
            break
        time.sleep(0.001)
    raise RuntimeError(f"the marker never appeared in {console}")


@dataclass
class LinuxBoot:
    kernel: Path
    initrd: Path
    cpu: str = "cortex-a57"
    smp: int = 1
    memory_mb: int = 512
    append: str = "console=ttyAMA0"


def bare_qemu_boot(boot: LinuxBoot, workdir: Path) -> float:
    """The kernel straight on QEMU (no hypervisor), to the marker."""
    import subprocess

    from ..guests.debian import MARKER

    console = workdir / "bare-console.log"
    console.unlink(missing_ok=True)
    start = time.perf_counter()
    proc = subprocess.Popen(
        ["qemu-system-aarch64", "-machine", "virt,gic-version=3", "-cpu", boot.cpu,
         "-smp", str(boot.smp), "-m", f"{boot.memory_mb}M", "-nodefaults", "-display", "none",
         "-no-reboot", "-serial", f"file:{console}", "-kernel", str(boot.kernel),
         "-initrd", str(boot.initrd), "-append", boot.append],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
    try:
        return _time_to_marker(console, MARKER.encode(), start, lambda: proc.poll() is not None,
                               120)  # fmt: skip
    finally:
        proc.wait(60)


def armvcpu_boot(boot: LinuxBoot) -> tuple[float, Any]:
    """The kernel under armvcpu, to the marker; also the firmware's exit log."""
    import threading

    from ..guests.debian import MARKER

    start = time.perf_counter()
    with Hypervisor(cpu=boot.cpu, smp=boot.smp, memory_mb=boot.memory_mb, timeout=60) as hv:
        hv.enable_exit_log()
        hv.load_linux(boot.kernel, initrd=boot.initrd, append=boot.append)
        assert hv.qemu is not None
        finished = threading.Event()
        result: list[float] = []
        console = hv.qemu.console_path

        def watch() -> None:
            result.append(_time_to_marker(console, MARKER.encode(), start, finished.is_set, 120))

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        try:
            hv.run()
        finally:
            finished.set()
            watcher.join(5)
        log = hv.firmware_exits()
    if not result:
        raise RuntimeError("the marker never appeared under armvcpu")
    return result[0], log


def bench_linux_boot(runs: int = 3, quick: bool = False, *, kernel: str | None = None,
                     initrd: str | None = None, cpu: str = "cortex-a57", smp: int = 1,
                     append: str = "console=ttyAMA0") -> list[Figure]:  # fmt: skip
    """Boot time to the marker under armvcpu and on bare QEMU, alternating in
    one run, and the boot's exits per second by kind. Without a kernel,
    Debian's arm64 kernel and a busybox marker initramfs are used."""
    import tempfile

    import numpy as np

    from .. import _core
    from ..guests.debian import build_initramfs, fetch_linux_assets

    with tempfile.TemporaryDirectory(prefix="armvcpu-bench-") as tmp:
        work = Path(tmp)
        if kernel is None or initrd is None:
            assets = fetch_linux_assets()
            kernel = kernel or str(assets.kernel)
            if initrd is None:
                (work / "initrd.gz").write_bytes(build_initramfs(assets.busybox))
                initrd = str(work / "initrd.gz")
        boot = LinuxBoot(Path(kernel), Path(initrd), cpu=cpu, smp=smp, append=append)
        bare: list[float] = []
        under: list[float] = []
        log: Any = None
        for _ in range(1 if quick else runs):
            bare.append(bare_qemu_boot(boot, work))
            seconds, log = armvcpu_boot(boot)
            under.append(seconds)
    ratio = statistics.median(under) / statistics.median(bare)
    figures = [
        Figure("bare QEMU, boot to marker", statistics.median(bare), "s", bare,
               f"-cpu {cpu} -smp {smp}"),
        Figure("armvcpu, boot to marker", statistics.median(under), "s", under,
               f"{ratio:.2f}x bare QEMU (target <= 1.2x)"),
    ]  # fmt: skip
    span = statistics.median(under)
    kinds, counts = np.unique(log["kind"], return_counts=True)
    for kind, count in sorted(zip(kinds, counts, strict=True), key=lambda kc: -kc[1]):
        name = _core.ExitKind(int(kind)).name
        figures.append(Figure(f"exits during boot: {name}", float(count) / span, "exits/s",
                              [float(count)], f"{count} in the last run"))  # fmt: skip
    return figures


BENCHMARKS: dict[str, Callable[..., list[Figure]]] = {
    "linux-boot": bench_linux_boot,
    "exits": bench_exits,
    "startup": bench_startup,
    "trace": bench_trace,
    "transports": bench_transports,
    "el2": bench_el2,
}


def as_dicts(figures: list[Figure]) -> list[dict[str, object]]:
    return [asdict(f) for f in figures]
