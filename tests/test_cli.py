"""The armvcpu command line, run as a user would run it."""

from __future__ import annotations

import json
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
    assert "'banana' is not a 64-bit value" in out.stderr


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


# -- armvcpu run / trace / doctor -------------------------------------------------------

HELLO = """
    movz x10, #0x0900, lsl #16
    adr x11, msg
1:  ldrb w12, [x11], #1
    cbz w12, 2f
    str w12, [x10]
    b 1b
2:  mov x0, #1
    hvc #0
    mov x1, x0
    mov x0, #2
    hvc #0
    ldr x0, =0x84000008
    hvc #0
msg: .asciz "hello from the guest\\n"
"""

POLICY = """
from armvcpu import Policy, on

class Answers(Policy):
    @on.hypercall(nr=1)
    def one(self, exit):
        return 41

    @on.hypercall(nr=2)
    def two(self, exit):
        print(f"guest says {exit.reason.args[0]}")
        return 0
"""


def _image(tmp_path, source: str, name: str = "guest.elf"):
    from armvcpu.guests import toolchain

    path = tmp_path / name
    path.write_bytes(toolchain.assemble(source, 0x4000_0000))
    return path


def test_run_streams_the_console_applies_a_policy_and_records(tmp_path, no_leaked_qemu):
    guest = _image(tmp_path, HELLO)
    policy = tmp_path / "policy.py"
    policy.write_text(POLICY)
    out = run_cli("run", str(guest), "--policy", str(policy), "--trace", str(tmp_path / "t"))
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("hello from the guest\n")
    assert "guest says 41" in out.stdout
    assert "trace of 24 exits saved" in out.stderr  # 21 chars, 2 hypercalls, SYSTEM_OFF

    summary = run_cli("trace", "summary", str(tmp_path / "t.npz"), "--json")
    rows = {r["kind"]: r["count"] for r in json.loads(summary.stdout)}
    assert rows == {"MmioWrite": 21, "Hypercall": 2, "SystemDown": 1}
    shown = run_cli("trace", "show", str(tmp_path / "t.npz"), "--limit", "2")
    assert "MmioWrite(addr=0x9000000" in shown.stdout
    exported = run_cli("trace", "export", str(tmp_path / "t.npz"), str(tmp_path / "t.json"))
    assert exported.returncode == 0
    events = json.loads((tmp_path / "t.json").read_text())["traceEvents"]
    assert sum(e["ph"] == "X" for e in events) == 24


def test_run_exit_statuses(tmp_path, no_leaked_qemu):
    hang = _image(tmp_path, "b .", "hang.elf")
    out = run_cli("run", str(hang), "--timeout", "1")
    assert out.returncode == 3
    assert "timeout" in out.stderr and "no exit within 1 s" in out.stderr

    crash = _image(tmp_path, "brk #1", "crash.elf")
    out = run_cli("run", str(crash))
    assert out.returncode == 1
    assert "the VM stopped at NestedPageFault(addr=0x200" in out.stderr

    out = run_cli("run", str(crash), "--cpu", "no-such-cpu")
    assert out.returncode == 4
    assert "QEMU failed" in out.stderr

    out = run_cli("run", str(tmp_path / "missing.elf"))
    assert out.returncode == 2 and "not found" in out.stderr

    bad_policy = tmp_path / "bad.py"
    bad_policy.write_text("x = 1\n")
    out = run_cli("run", str(crash), "--policy", str(bad_policy))
    assert out.returncode == 2 and "defines no `policy`" in out.stderr


def test_trace_of_a_non_trace_file(tmp_path):
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"junk")
    out = run_cli("trace", "summary", str(junk))
    assert out.returncode == 2
    assert "not an armvcpu trace" in out.stderr


def test_doctor_reports_tools_and_the_firmware():
    out = run_cli("doctor", "--json")
    report = json.loads(out.stdout)
    programs = {t["program"]: t for t in report["tools"]}
    assert programs["qemu-system-aarch64"]["version"].startswith("QEMU emulator version")
    assert report["firmware"].endswith("armvcpu-firmware.elf")
    assert out.returncode == (0 if not report["missing_packages"] else 1)
