#!/usr/bin/env python3
"""MSIs through the ITS: bare QEMU (A) against ``armvcpu run`` (B), the same
command line, alternately A B A B ...; medians and ratios. Measured, never
asserted (docs/architecture.md, "ITS and LPIs", quotes a run).

    .venv/bin/python bench/its.py [PAIRS]

The guest is tests/its_guest.c with BENCH on: it maps the edu device's MSI
to an LPI through the ITS, then times (with the generic timer's counter)
2000 MSIs from the device's register write to the guest's EOI, 500 ITS
commands (INV and SYNC) through the command queue, and 5000 reads of an ITS
register (passed through under armvcpu) and of a distributor register
(emulated in EL2 under armvcpu: one trap per access). Each run's wall and
CPU time (user + system of the process and its children, os.wait4) is
reported too.
"""

from __future__ import annotations

import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from armvcpu import Guest

HERE = Path(__file__).resolve().parent.parent
ARGS = ["-M", "virt,gic-version=3", "-cpu", "max", "-m", "128M", "-nographic",
        "-device", "edu", "-kernel", "its.bin"]  # fmt: skip
RUNS = {"A bare": ["qemu-system-aarch64", *ARGS],
        "B armvcpu": [sys.executable, "-m", "armvcpu", "run", *ARGS]}  # fmt: skip


def run(argv: list[str], cwd: Path) -> dict[str, float]:
    start = time.perf_counter()
    child = subprocess.Popen(argv, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                             stdin=subprocess.DEVNULL, text=True)  # fmt: skip
    out = child.stdout.read() if child.stdout else ""
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - start
    if status != 0 or "received=05" not in out:
        raise SystemExit(f"{argv[0]} failed:\n{out[-2000:]}")
    figures = {k: float(v) for k, v in re.findall(r"(bench_\w+)=(\d+)", out)}
    figures["wall_s"] = wall
    figures["cpu_s"] = usage.ru_utime + usage.ru_stime
    return figures


LINUX_INIT_BODY = """start=$(/bin/busybox cut -d' ' -f1 /proc/uptime)
/bin/busybox dd if=/dev/vda of=/dev/null bs=1M 2>/dev/null
end=$(/bin/busybox cut -d' ' -f1 /proc/uptime)
echo "received=05 bench_dd_start=${start%.*}${start#*.}0 bench_dd_end=${end%.*}${end#*.}0"
/bin/busybox grep ITS-MSI /proc/interrupts
"""


def linux_setup(work: Path) -> None:
    from armvcpu.guests.debian import (
        VIRTIO_PCI_DISK,
        build_initramfs,
        device_init,
        fetch_linux_assets,
    )

    assets = fetch_linux_assets()
    files = {f"lib/{m.name}": m.read_bytes() for m in assets.modules}
    (work / "initrd.gz").write_bytes(
        build_initramfs(assets.busybox, device_init(LINUX_INIT_BODY, VIRTIO_PCI_DISK), files)
    )
    with (work / "disk.img").open("wb") as disk:
        disk.truncate(64 << 20)
    args = ["-M", "virt,gic-version=3", "-cpu", "cortex-a57", "-m", "512M", "-nographic",
            "-kernel", str(assets.kernel), "-initrd", "initrd.gz", "-append", "console=ttyAMA0",
            "-drive", "if=none,id=d0,format=raw,file=disk.img",
            "-device", "virtio-blk-pci,drive=d0"]  # fmt: skip
    RUNS["A bare"] = ["qemu-system-aarch64", *args]
    RUNS["B armvcpu"] = [sys.executable, "-m", "armvcpu", "run", *args]


def main() -> None:
    linux = "--linux" in sys.argv
    numbers = [a for a in sys.argv[1:] if a != "--linux"]
    pairs = int(numbers[0]) if numbers else 5
    source = (
        (HERE / "tests" / "its_guest.c").read_text().replace("#define BENCH 0", "#define BENCH 1")
    )
    (segment,) = Guest.from_c(source, 0x4008_0000).segments
    results: dict[str, list[dict[str, float]]] = {name: [] for name in RUNS}
    print(f"load before: {os.getloadavg()}")
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "its.bin").write_bytes(segment.data)
        if linux:
            linux_setup(Path(tmp))
        for i in range(pairs):
            for name, argv in RUNS.items():
                figures = run(argv, Path(tmp))
                if linux:  # /proc/uptime's centiseconds with a 0 appended: milliseconds
                    ms = figures.pop("bench_dd_end") - figures.pop("bench_dd_start")
                    figures["dd_MiB_per_s"] = 64 / (ms / 1000) if ms > 0 else float("inf")
                results[name].append(figures)
                print(f"pair {i + 1} {name}: {results[name][-1]}", flush=True)
    print(f"load after: {os.getloadavg()}")
    keys = list(results["A bare"][0])
    print(f"{'median':32} {'A bare':>12} {'B armvcpu':>12} {'B/A':>7}")
    for key in keys:
        a = statistics.median(r[key] for r in results["A bare"])
        b = statistics.median(r[key] for r in results["B armvcpu"])
        print(f"{key:32} {a:12.3f} {b:12.3f} {b / a:7.2f}")


if __name__ == "__main__":
    main()
