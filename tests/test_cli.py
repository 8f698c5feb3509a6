"""The armvcpu command line, run as a user would run it."""

from __future__ import annotations

import subprocess
import sys


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "armvcpu", *args], capture_output=True, text=True, timeout=120
    )


def test_decode_esr_names_every_field():
    out = run_cli("decode", "esr", "0x5a00002a")
    assert out.returncode == 0
    assert "EC  [31:26] 0x16  HVC64" in out.stdout
    assert "IL  [25]    1" in out.stdout
    assert "imm16 [15:0] 0x2a" in out.stdout


def test_decode_rejects_garbage():
    out = run_cli("decode", "esr", "banana")
    assert out.returncode == 2
    assert "not a number" in out.stderr


def test_demo_prints_the_exit_table_and_a_matching_checksum():
    out = run_cli("demo")
    assert out.returncode == 0, out.stderr
    assert "Hypercall GET_VALUE" in out.stdout
    assert out.stdout.count("Hypercall GET_VALUE") == 8
    assert "SystemDown (PSCI)" in out.stdout
    assert "match" in out.stdout and "MISMATCH" not in out.stdout


def test_firmware_path_command():
    out = run_cli("firmware")
    assert out.returncode == 0
    assert out.stdout.strip().endswith("armvcpu-firmware.elf")
