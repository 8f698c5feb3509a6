"""What the command line promises a user and a script: `--json` where it
prints data, one clear line for each bad input, and help for everything.
Each runs the real `armvcpu` as a subprocess."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

import pytest
from armvcpu.tools.cli import _parser


def run_cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "armvcpu", *args], capture_output=True, text=True, timeout=timeout
    )


def one_line_error(out: subprocess.CompletedProcess[str]) -> str:
    """A usage failure: status 2, one line on stderr, no traceback."""
    assert out.returncode == 2, (out.stdout, out.stderr)
    assert "Traceback" not in out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    return lines[0]


# -- --json -------------------------------------------------------------------------------


def test_decode_esr_json_follows_the_arm_arm_layout():
    # HVC #0x2a from AArch64: EC 0x16 [31:26], IL 1 [25], ISS.imm16 0x2a [15:0].
    report = json.loads(run_cli("decode", "esr", "0x5a00002a", "--json").stdout)
    assert report["value"] == 0x5A00002A
    assert (report["ec"], report["ec_name"], report["il"]) == (0x16, "HVC64", 1)
    assert report["iss"] == 0x2A
    assert {"name": "imm16", "hi": 15, "lo": 0, "value": 0x2A} in report["iss_fields"]
    assert report["sysreg"] is None
    # MRS x5, CNTV_CTL_EL0: EC 0x18; ISS Op0 3, Op2 1, Op1 3, CRn 14, Rt 5, CRm 3, read.
    report = json.loads(run_cli("decode", "esr", "0x6232f8a7", "--json").stdout)
    assert report["ec"] == 0x18
    assert report["sysreg"] == {"name": "CNTV_CTL_EL0", "access": "read", "rt": 5}


def test_firmware_and_doctor_json():
    fw = json.loads(run_cli("firmware", "--json").stdout)
    assert fw["firmware"].endswith("armvcpu-firmware.elf")
    doctor = json.loads(run_cli("doctor", "--json").stdout)
    assert list(doctor) == ["armvcpu", "python", "firmware", "tools", "missing_packages"]
    tools = {t["program"]: t for t in doctor["tools"]}
    assert tools["dtc"]["package"] == "device-tree-compiler"  # the README asks for it
    assert set(tools["dtc"]) == {"program", "path", "version", "package", "for"}


HELLO = r"""
    movz x10, #0x0900, lsl #16
    adr x11, msg
1:  ldrb w12, [x11], #1
    cbz w12, 2f
    str w12, [x10]
    b 1b
2:  ldr x0, =0x84000008
    hvc #0
msg: .asciz "hi\n"
"""


@pytest.fixture
def hello_elf(tmp_path):
    from armvcpu.guests import toolchain

    path = tmp_path / "hello.elf"
    path.write_bytes(toolchain.assemble(HELLO, 0x4000_0000))
    return path


def test_run_and_trace_json(hello_elf, tmp_path, no_leaked_qemu):
    out = run_cli("run", str(hello_elf), "--trace", str(tmp_path / "t"), "--json")
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("hi\n")
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    assert summary["status"] == 0 and summary["outcome"] == "powered-off"
    assert summary["exits"] == 4  # three UARTDR writes, SYSTEM_OFF
    assert summary["last_kind"] == "SystemDown"
    assert summary["trace"].endswith("t.npz")

    shown = json.loads(run_cli("trace", "show", summary["trace"], "--json").stdout)
    assert [e["kind"] for e in shown] == ["MmioWrite"] * 3 + ["SystemDown"]
    assert set(shown[0]) == {"seq", "t_ns", "vcpu", "kind", "exit", "pc"}
    rows = json.loads(run_cli("trace", "summary", summary["trace"], "--json").stdout)
    assert {r["kind"]: r["count"] for r in rows} == {"MmioWrite": 3, "SystemDown": 1}
    assert all(r["source"] == "host" for r in rows)


def test_demo_bench_and_fuzz_json(no_leaked_qemu):
    demo = json.loads(run_cli("demo", "--json").stdout)
    assert demo["match"] is True and demo["checksum"] == demo["expected"]
    assert len(demo["exits"]) == 10  # 8 GET_VALUE, REPORT, SYSTEM_OFF
    bench = json.loads(run_cli("bench", "startup", "--runs", "1", "--quick", "--json").stdout)
    assert bench and set(bench[0]) == {"name", "value", "unit", "runs", "note"}
    fuzz = run_cli("fuzz", "--seed", "1", "--programs", "2", "--workers", "1", "--json")
    report = json.loads(fuzz.stdout)
    assert report["seed"] == 1 and report["programs_run"] == 2
    assert {"outcomes", "failures", "exits"} <= set(report)


# -- errors ---------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["-1", "zzz", str(1 << 64), "0x1_0000_0000_0000_0000"])
def test_decode_esr_refuses_what_is_not_a_64_bit_value(value):
    line = one_line_error(run_cli("decode", "esr", value))
    assert line == (f"armvcpu decode esr: {value!r} is not a 64-bit value "
                    "(give hex like 0x5a00002a or decimal)")  # fmt: skip


def test_run_names_missing_files(tmp_path, hello_elf, no_leaked_qemu):
    missing = tmp_path / "missing"
    assert one_line_error(run_cli("run", "--kernel", str(missing))) == (
        f"armvcpu run: guest image {missing} not found"
    )
    line = one_line_error(run_cli("run", "--kernel", str(missing), "--initrd", "x"))
    assert "not found" in line and "Linux Image" not in line
    line = one_line_error(run_cli("run", str(hello_elf), "--dtb", str(missing)))
    assert line == f"armvcpu run: --dtb {missing} not found"


def test_run_refuses_a_gic_version_qemu_has_not(hello_elf, no_leaked_qemu):
    line = one_line_error(run_cli("run", str(hello_elf), "--gic", "4"))
    assert "--gic 4" in line and "GICv2 (2) or GICv3 (3)" in line


TWO_POLICIES = """
from armvcpu import Policy, on

class Quiet(Policy):
    pass

class Loud(Policy):
    @on.kind()
    def never(self, exit):
        pass
"""


def test_a_policy_file_with_two_classes(tmp_path, hello_elf, no_leaked_qemu):
    policy = tmp_path / "two.py"
    policy.write_text(TWO_POLICIES)
    line = one_line_error(run_cli("run", str(hello_elf), "--policy", str(policy)))
    assert "defines 2 Policy classes (Quiet, Loud)" in line
    assert f"--policy {policy}:Quiet" in line
    out = run_cli("run", str(hello_elf), "--policy", f"{policy}:Loud")
    assert out.returncode == 0, out.stderr
    assert out.stdout == "hi\n"
    line = one_line_error(run_cli("run", str(hello_elf), "--policy", f"{policy}:Nope"))
    assert "defines no 'Nope'" in line


def test_gdb_options_need_a_double_dash():
    line = one_line_error(run_cli("gdb", "/nonexistent.sock", "-batch", "-ex", "quit"))
    assert "go after `--`" in line and "armvcpu gdb SOCKET -- -batch" in line
    assert "`--`" in run_cli("gdb", "--help").stdout


# -- help -----------------------------------------------------------------------------------


def _commands(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> list[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    found = [(path, parser)]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found += _commands(sub, (*path, name))
    return found


COMMANDS = _commands(_parser())


@pytest.mark.parametrize(
    ("path", "parser"), COMMANDS, ids=[" ".join(p) or "armvcpu" for p, _ in COMMANDS]
)
def test_every_command_and_argument_has_help(path, parser):
    assert parser.description, f"armvcpu {' '.join(path)} has no description"
    for action in parser._actions:
        assert action.help, f"armvcpu {' '.join(path)}: {action.dest} has no help"
    out = run_cli(*path, "--help", timeout=60)
    assert out.returncode == 0
    shown_defaults = [a for a in parser._actions if a.default not in (None, False, "")
                      and a.default is not argparse.SUPPRESS and a.option_strings]  # fmt: skip
    for action in shown_defaults:
        assert f"(default: {action.default})" in " ".join(out.stdout.split())


def test_all_subcommands_are_walked():
    names = {" ".join(p) for p, _ in COMMANDS}
    assert {"demo", "firmware", "doctor", "run", "trace show", "trace summary", "trace export",
            "decode", "bench", "gdb", "fuzz"} <= names  # fmt: skip
