"""Two armvcpu installs against bare QEMU in one alternating loop.

    .venv/bin/python bench/boot_ab.py CPU SMP ROUNDS PYTHON_BEFORE PYTHON_AFTER

Each round runs bare ``qemu-system-aarch64``, ``PYTHON_BEFORE -m armvcpu run``
and ``PYTHON_AFTER -m armvcpu run`` (A B C A B C ...) with Debian's kernel and
the marker initramfs (as bench/boot.sh), so that a before/after comparison
sees the same moments of a loaded machine. Prints every run, the medians and
both ratios (of the medians, and the median of each round's own ratio).
Measured, never asserted.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
from pathlib import Path

from armvcpu.guests.debian import build_initramfs, fetch_linux_assets
from armvcpu.tools.bench_boot import Run, measure


def main(argv: list[str]) -> int:
    cpu, smp, rounds, before, after = argv[0], argv[1], int(argv[2]), argv[3], argv[4]
    assets = fetch_linux_assets()
    with tempfile.TemporaryDirectory() as work:
        initrd = Path(work) / "initrd.gz"
        initrd.write_bytes(build_initramfs(assets.busybox))
        qemu_args = ["-M", "virt,gic-version=3", "-cpu", cpu, "-m", "512M", "-smp", smp,
                     "-nographic", "-kernel", str(assets.kernel), "-initrd", str(initrd),
                     "-append", "console=ttyAMA0"]  # fmt: skip
        sides = {"bare": ["qemu-system-aarch64", *qemu_args],
                 "before": [before, "-m", "armvcpu", "run", *qemu_args],
                 "after": [after, "-m", "armvcpu", "run", *qemu_args]}  # fmt: skip
        runs: dict[str, list[Run]] = {side: [] for side in sides}
        load_before = os.getloadavg()
        for i in range(rounds):
            for side, command in sides.items():
                run, _ = measure(side, command, Path(work), 600.0, "ARMVCPU-MARKER")
                runs[side].append(run)
                print(f"{i + 1} {side}: wall {run.wall_s:.3f} s, cpu {run.cpu_s:.3f} s, "
                      f"load {run.load:.2f}", flush=True)  # fmt: skip
    bare = runs["bare"]
    bare_wall = statistics.median(r.wall_s for r in bare)
    bare_cpu = statistics.median(r.cpu_s for r in bare)
    for side in ("before", "after"):
        ours = runs[side]
        wall = statistics.median(r.wall_s for r in ours)
        cpu_s = statistics.median(r.cpu_s for r in ours)
        round_wall = statistics.median(b.wall_s / a.wall_s for a, b in zip(bare, ours, strict=True))
        round_cpu = statistics.median(b.cpu_s / a.cpu_s for a, b in zip(bare, ours, strict=True))
        print(f"{side}: medians wall {wall:.3f} s, cpu {cpu_s:.3f} s (bare {bare_wall:.3f} s, "
              f"{bare_cpu:.3f} s); ratio of the medians: wall {wall / bare_wall:.3f}x, cpu "
              f"{cpu_s / bare_cpu:.3f}x; median of the rounds' ratios: wall {round_wall:.3f}x, "
              f"cpu {round_cpu:.3f}x")  # fmt: skip
    print("load average (1, 5, 15 min):", load_before, "before,", os.getloadavg(), "after")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
