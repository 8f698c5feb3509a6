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
    assert "imm16       [15:0]   0x2a" in out.stdout


def test_decode_names_data_abort_fields_and_system_registers():
    # LDR w2 from a stage-2 translation fault: ISV 1, SAS 2, SRT 2, DFSC 0b000111
    out = run_cli(
        "decode", "esr", hex((0x24 << 26) | (1 << 25) | (1 << 24) | (2 << 22) | (2 << 16) | 7)
    )
    assert "ISV         [24]     0x1" in out.stdout
    assert "SAS         [23:22]  0x2" in out.stdout
    assert "DFSC        [5:0]    0x7" in out.stdout
    # MRS x5, CNTV_CTL_EL0 trapped (ISS from the Arm ARM field positions)
    out = run_cli("decode", "esr", "0x6232f8a7")
    assert "MRS (read) of CNTV_CTL_EL0, Rt = x5" in out.stdout


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
