"""`armvcpu bench --quick`: each benchmark runs and prints its figures.

A smoke test: the figures are measurements of this machine, so no value is
asserted, only that each benchmark runs to the end and reports what it says.
linux-boot is left out: it needs a Linux kernel image (tests/test_linux_boot.py
boots one).
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from armvcpu.tools.bench import BENCHMARKS

QUICK_KINDS = sorted(set(BENCHMARKS) - {"linux-boot"})


def bench(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "armvcpu", "bench", *args, "--quick",
                           "--runs", "1"], capture_output=True, text=True, timeout=300)  # fmt: skip


def test_the_quick_kinds_are_the_documented_ones():
    assert QUICK_KINDS == ["el2", "exits", "startup", "trace", "transports"]


@pytest.mark.parametrize("kind", QUICK_KINDS)
def test_quick_bench_runs_and_reports_its_figures(kind, no_leaked_qemu):
    out = bench(kind, "--json")
    assert out.returncode == 0, out.stderr
    figures = json.loads(out.stdout)
    assert figures, "no figures"
    for figure in figures:
        assert set(figure) == {"name", "value", "unit", "runs", "note"}
        assert figure["name"] and figure["unit"]
        assert len(figure["runs"]) == 1 and figure["value"] == figure["runs"][0]


def test_quick_bench_prints_a_table(no_leaked_qemu):
    names = [f["name"] for f in json.loads(bench("startup", "--json").stdout)]
    out = bench("startup")
    assert out.returncode == 0, out.stderr
    assert "armvcpu bench startup" in out.stdout
    assert all(name in out.stdout for name in names)  # the same figures, as a table


def test_unknown_bench_is_a_usage_error():
    out = subprocess.run([sys.executable, "-m", "armvcpu", "bench", "nonsense"],
                         capture_output=True, text=True, timeout=60)  # fmt: skip
    assert out.returncode == 2
    assert "invalid choice: 'nonsense'" in out.stderr
