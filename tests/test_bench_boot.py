"""`armvcpu bench boot`: a QEMU command line on bare QEMU and under `armvcpu
run`, alternately, with the runs behind each median.

The times are this machine's, so no value is asserted: only that the command
runs both sides the number of times asked, in alternation, and reports every
run and the medians; and that bad input is a clear error with no QEMU left.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
from armvcpu.guests.guest import Guest

BENCH = [sys.executable, "-m", "armvcpu", "bench", "boot"]

# A raw image (where QEMU puts one: RAM + 0x80000) that prints a line on the
# PL011 and powers off with PSCI SYSTEM_OFF over HVC, the conduit QEMU's
# device tree names without EL2 and the one armvcpu answers.
_HELLO = r"""
    ldr x20, =0x09000000
    adr x1, text
1:  ldrb w0, [x1], #1
    cbz w0, 2f
    str w0, [x20]
    b 1b
2:  ldr x0, =0x84000008
    hvc #0
    b .
text: .asciz "bench-boot-hello\n"
    .ltorg
"""


@pytest.fixture
def qemu_args(tmp_path: Path) -> list[str]:
    (segment,) = Guest.from_asm(_HELLO, 0x4008_0000).segments
    image = tmp_path / "hello.bin"
    image.write_bytes(segment.data)
    return ["-M", "virt", "-cpu", "cortex-a57", "-m", "128M", "-nographic", "-kernel",
            str(image)]  # fmt: skip


def bench(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*BENCH, *args], capture_output=True, text=True, timeout=300,
                          stdin=subprocess.DEVNULL)  # fmt: skip


def test_runs_both_sides_alternately_and_reports_every_run(qemu_args, no_leaked_qemu):
    out = bench("--pairs", "2", "--marker", "bench-boot-hello", "--json", "--", *qemu_args)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["pairs"] == 2
    assert result["qemu"]["command"] == ["qemu-system-aarch64", *qemu_args]
    assert result["armvcpu"]["command"][-len(qemu_args) - 1 :] == ["run", *qemu_args]
    for side in ("qemu", "armvcpu"):
        runs = result[side]["runs"]
        assert [r["side"] for r in runs] == [side, side]
        assert all(r["status"] == 0 and r["wall_s"] > 0 and r["cpu_s"] > 0 for r in runs)
        assert all(r["cpu_s"] == pytest.approx(r["user_s"] + r["system_s"]) for r in runs)
        assert all(r["load"] >= 0 for r in runs)  # the 1-minute load average at its end
        assert result[side]["wall_s"] == statistics.median(r["wall_s"] for r in runs)
        assert result[side]["cpu_s"] == statistics.median(r["cpu_s"] for r in runs)
    assert result["wall_ratio"] == pytest.approx(result["armvcpu"]["wall_s"]
                                                 / result["qemu"]["wall_s"])  # fmt: skip
    assert result["cpu_ratio"] == pytest.approx(result["armvcpu"]["cpu_s"]
                                                / result["qemu"]["cpu_s"])  # fmt: skip
    # A B A B: the progress lines on stderr say the order they ran in.
    order = [line.split()[2].rstrip(":") for line in out.stderr.splitlines()
             if line.startswith("pair ")]  # fmt: skip
    assert order == ["qemu", "armvcpu", "qemu", "armvcpu"]
    # The machine's load averages (1, 5, 15 minutes) around the runs.
    for when in ("load_before", "load_after"):
        assert len(result[when]) == 3 and all(x >= 0 for x in result[when])


def test_prints_a_table_with_the_runs_and_the_ratios(qemu_args, no_leaked_qemu):
    # QEMU's options may follow bench's own without `--`.
    out = bench("--pairs", "1", *qemu_args)
    assert out.returncode == 0, out.stderr
    assert "armvcpu bench boot: 1 pairs" in out.stdout
    for column in ("A wall s", "A cpu s", "B wall s", "B cpu s", "B/A wall", "B/A cpu"):
        assert column in out.stdout
    assert "median" in out.stdout
    assert "ratio of the medians (B/A): wall" in out.stdout
    assert "load average (1, 5, 15 min):" in out.stdout


def test_a_run_without_the_marker_is_an_error_naming_it(qemu_args, no_leaked_qemu):
    out = bench("--pairs", "1", "--marker", "never-printed", "--", *qemu_args)
    assert out.returncode == 1
    assert "qemu: the marker 'never-printed' is not in its output" in out.stderr
    assert "bench-boot-hello" in out.stderr  # the run's last lines


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "no QEMU command line"),
        (["--pairs", "0", "-M", "virt"], "--pairs must be at least 1, not 0"),
        (["--pairs", "x", "-M", "virt"], "invalid int value: 'x'"),
        (["--qemu", "/nonexistent/qemu", "-M", "virt"], "/nonexistent/qemu"),
    ],
)
def test_bad_input_is_a_usage_error(args, message, no_leaked_qemu):
    out = bench(*args)
    assert out.returncode == 2, out.stderr
    assert message in out.stderr
    assert not out.stdout
