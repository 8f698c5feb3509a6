"""armvcpu's gdb extension: real gdb-multiarch attached to a real, live session.

The session takes an exit, hands QEMU's gdbstub over (release_gdbstub()),
gdb-multiarch reads the same exit through the firmware's symbols and DWARF,
detaches, and the session answers the exit and runs to the end.
"""

from __future__ import annotations

import doctest
import re
import subprocess
import tempfile
import time
from pathlib import Path

import armvcpu
import pytest
from armvcpu import ExitKind, Hypervisor, _core
from armvcpu.errors import ToolNotFoundError
from armvcpu.tools import gdb_launch

from .conftest import live_pids

GDB_TIMEOUT = 40  # seconds for one gdb-multiarch -batch run
MARK = "@@armvcpu-test@@"
MASK64 = (1 << 64) - 1


def gdb_pids() -> set[int]:
    """Every live gdb-multiarch process of this user."""
    return live_pids("gdb-multiarch")


@pytest.fixture
def no_leaked_gdb():
    """Fails the test if it leaves a gdb-multiarch process behind."""
    before = gdb_pids()
    yield
    deadline = time.monotonic() + 5
    while (leaked := gdb_pids() - before) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not leaked, f"leaked gdb-multiarch processes: {sorted(leaked)}"


def run_gdb(argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv, capture_output=True, text=True, timeout=GDB_TIMEOUT, stdin=subprocess.DEVNULL
    )


def gdb_batch(socket: str, firmware: Path, commands: list[str]) -> tuple[list[str], str]:
    """Runs gdb-multiarch -batch on the session: each command's stdout (in
    order), and stderr. An ``echo`` marker before each command splits the output.
    """
    extra = ["-nx", "-batch"]
    for index, command in enumerate(commands):
        extra += ["-ex", f"echo {MARK}{index}\\n", "-ex", command]
    proc = run_gdb(gdb_launch.gdb_command(socket, firmware, extra))
    assert proc.returncode == 0, f"gdb failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    chunks = proc.stdout.split(MARK)[1:]
    assert [int(c.partition("\n")[0]) for c in chunks] == list(range(len(commands))), proc.stdout
    return [c.partition("\n")[2] for c in chunks], proc.stderr


class GdbBatch:
    """gdb-multiarch -batch running in the background, so a test can wait
    until gdb has done some of its commands (gdb's ``echo`` flushes its
    output) instead of sleeping for a guessed while. Its output goes to
    files: gdb drops bytes when a pipe it writes to is not drained at once."""

    def __init__(self, socket: str, firmware: Path, commands: list[str]) -> None:
        extra = ["-nx", "-batch"]
        for index, command in enumerate(commands):
            extra += ["-ex", f"echo {MARK}{index}\\n", "-ex", command]
        self.commands = commands
        # Open for gdb's lifetime, closed by result().
        self._out = tempfile.TemporaryFile("w+")  # noqa: SIM115
        self._err = tempfile.TemporaryFile("w+")  # noqa: SIM115
        self.proc = subprocess.Popen(
            gdb_launch.gdb_command(socket, firmware, extra), stdin=subprocess.DEVNULL,
            stdout=self._out, stderr=self._err, text=True,
        )  # fmt: skip

    def _stdout(self) -> str:
        self._out.seek(0)
        return self._out.read()

    def wait_until_command(self, index: int) -> None:
        """Returns once gdb has finished every command before ``commands[index]``
        (its marker is out); the deadline only bounds a hang."""
        marker = f"{MARK}{index}\n"
        deadline = time.monotonic() + GDB_TIMEOUT
        while marker not in self._stdout() and self.proc.poll() is None:
            assert time.monotonic() < deadline, f"gdb hung before command {index}"
            time.sleep(0.02)
        assert marker in self._stdout(), f"gdb ended before command {index}:\n{self._stdout()}"

    def result(self) -> tuple[list[str], str]:
        """Each command's stdout (in order), and stderr, once gdb has ended."""
        try:
            self.proc.wait(timeout=GDB_TIMEOUT)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
        stdout = self._stdout()
        self._err.seek(0)
        stderr = self._err.read()
        self._out.close()
        self._err.close()
        assert self.proc.returncode == 0, f"gdb failed ({self.proc.returncode}):\n{stdout}{stderr}"
        chunks = stdout.split(MARK)[1:]
        indices = [int(c.partition("\n")[0]) for c in chunks]
        assert indices == list(range(len(self.commands))), stdout
        return [c.partition("\n")[2] for c in chunks], stderr


def fold(values: list[int]) -> int:
    """The hypercalls guest's checksum rule (checksum * 31 + answer, mod 2^64)."""
    checksum = 0
    for v in values:
        checksum = (checksum * 31 + v) & MASK64
    return checksum


def test_gdb_shows_the_exit_python_sees(hypercalls_guest, no_leaked_qemu, no_leaked_gdb):
    first_answer, later_answer = 0x1234, 7
    with Hypervisor(transport="shm") as hv:
        hv.load(hypercalls_guest)
        exits = hv.exits()
        first = next(exits)
        assert first.kind == ExitKind.Hypercall and first.reason.nr == 1
        assert (first.regs.x1, first.regs.x2, first.regs.x3) == (0, 0, 0xC0FFEE)
        socket = hv.release_gdbstub()

        commands = [
            "armvcpu vcpus",
            "armvcpu exit",
            "armvcpu exit 0",
            "armvcpu frame",
            "print armvcpu_exit_records[0]",
            "set print pretty on",
            "print armvcpu_exit_records[0]",
            "armvcpu rules",
            "armvcpu exit 9",
            "detach",
        ]
        texts, err = gdb_batch(socket, hv.firmware.path, commands)
        vcpus, exit_text, exit_0, frame_text, one_line, _, pretty, rules, _, detach = texts
        ec_name = _core.exception_class_name(first.esr.ec)
        assert ec_name == "HVC64"

        lines = vcpus.splitlines()
        assert len(lines) == 2  # the header, vCPU 0
        assert re.match(rf"0\s+1\s+Hypercall\s+{first.return_address:#018x}\s", lines[1]), lines
        assert "waiting for the host" in lines[1]

        assert exit_text.startswith("vCPU 0, vm 1: exit #1 Hypercall (Synchronous exception)")
        assert "  nr = 0x1\n" in exit_text
        assert "  args = [0x0, 0x0, 0xc0ffee, 0x0, 0x0, 0x0]" in exit_text
        assert f"ESR_EL2 = 0x5a000000 (EC 0x16 {ec_name}, IL 1, ISS 0x0)" in exit_text
        assert f"resumes at {first.return_address:#x}" in exit_text
        assert f"ELR_EL2 = {first.elr:#x}" in exit_text
        assert exit_0 == exit_text

        assert "(EL1h, DAIF masked: D A I F" in frame_text
        assert f"pc {first.return_address:#x}" in frame_text
        assert re.search(r"\bx3\s+= 0x0*c0ffee\b", frame_text)
        gprs = {int(n): int(v, 16) for n, v in re.findall(r"\bx(\d+)\s+= (0x\w+)", frame_text)}
        assert gprs == {i: first.regs[f"x{i}"] for i in range(31)}  # gdb's view is Python's

        assert one_line.startswith("$1 = vCPU 0 exit #1: Hypercall = {magic = 0x58455641 (valid")
        assert len(one_line.splitlines()) == 1
        assert pretty.startswith("$2 = vCPU 0 exit #1: Hypercall = {\n")
        assert f"  esr = 0x5a000000 (EC 0x16 {ec_name}, IL 1, ISS 0x0),\n" in pretty
        assert "  reason = Hypercall = {\n    nr = 0x1,\n" in pretty
        assert "(EL1h, DAIF masked: D A I F" in pretty
        assert re.search(
            r"\n    x0\s+= 0x0*1  x1\s+= 0x0+  x2\s+= 0x0+  x3\s+= 0x0*c0ffee,\n", pretty
        )

        assert rules.startswith("armvcpu_fast_rules: 0 of 64 slots in use")
        assert "vCPU 9 is out of range: the firmware has exit records for vCPUs 0..7" in err
        assert "detached" in detach

        # gdb has gone: the session answers the exit it held and runs to the end.
        first.resume(x0=first_answer)
        exits.close()
        rest = hv.run(lambda e: later_answer if e.kind == ExitKind.Hypercall else None)
    assert [e.kind for e in rest] == [ExitKind.Hypercall] * 8 + [ExitKind.SystemDown]
    assert [e.reason.args[0] for e in rest[:7]] == list(range(1, 8))
    report = rest[7].reason
    assert report.nr == 2
    assert report.args == (fold([first_answer] + [later_answer] * 7), 8, 0xC0FFEE, 0, 0, 0)
    assert "VM 1 stopped after 10 exits" in hv.console


def test_gdb_lists_fast_rules(hypercalls_guest, no_leaked_qemu, no_leaked_gdb, capfd):
    with Hypervisor(transport="shm") as hv:
        hv.rules.hypercall(0x77, result=1)
        hv.rules.sysreg("CNTV_CTL_EL0", read=5)
        hv.rules.mmio(0x0900_0000, 0x0900_1000, read=0)
        hv.load(hypercalls_guest)
        exits = hv.exits()
        first = next(exits)
        socket = hv.release_gdbstub()
        texts, _ = gdb_batch(socket, hv.firmware.path, ["armvcpu rules", "detach"])
        rules = texts[0].splitlines()
        assert rules[0].startswith("armvcpu_fast_rules: 3 of 64 slots in use")
        assert re.match(r"0\s+Hypercall\s+nr 0x77\s+0x1\s+0\s+0x0$", rules[2]), rules
        assert re.match(r"1\s+SysReg\s+CNTV_CTL_EL0 \(0x\w+\)\s+0x5\s+0\s", rules[3]), rules
        assert re.match(r"2\s+Mmio\s+\[0x9000000, 0x9001000\)\s+0x0\s+0\s+0x6", rules[4]), rules
        assert "(reads, writes)" in rules[4]

        # launch() runs the same command line with gdb on this terminal.
        capfd.readouterr()
        extra = ["-nx", "-batch", "-ex", "armvcpu vcpus", "-ex", "detach"]
        code = gdb_launch.launch(socket, hv.firmware.path, extra)
        assert code == 0
        assert re.search(r"^0\s+1\s+Hypercall\s", capfd.readouterr().out, re.MULTILINE)

        first.resume(x0=0)
        exits.close()
        rest = hv.run()
    assert rest[-1].kind == ExitKind.SystemDown


def test_without_firmware_symbols_the_commands_say_what_to_load(no_leaked_gdb):
    site = str(gdb_launch.site_packages())
    argv = ["gdb-multiarch", "-nx", "-batch",
            "-ex", f"python import sys; sys.path.insert(0, {site!r})",
            "-ex", "python import armvcpu.tools.gdb",
            "-ex", "armvcpu exit",
            "-ex", f"file {armvcpu.firmware_path()}",
            "-ex", "armvcpu vcpus",
            "-ex", "armvcpu rules",
            "-ex", "armvcpu exit 8"]  # fmt: skip
    proc = run_gdb(argv)
    assert "no armvcpu firmware symbols are loaded" in proc.stderr
    assert "load the firmware ELF with `file $(armvcpu firmware)`" in proc.stderr
    assert str(armvcpu.firmware_path()) in proc.stderr
    # The ELF alone (no target): the records are zero, the rule table is empty.
    assert "no vCPU has reported an exit yet" in proc.stdout
    assert "armvcpu_fast_rules: 0 of 64 slots in use" in proc.stdout
    assert "vCPU 8 is out of range" in proc.stderr


def test_gdb_command_has_every_piece():
    fw = Path("/opt/fw dir/armvcpu-firmware.elf")
    argv = gdb_launch.gdb_command("/tmp/x/gdb.sock", fw, ["-batch", "-ex", "armvcpu vcpus"])
    assert argv[0] == "gdb-multiarch"
    commands = [argv[i + 1] for i, a in enumerate(argv[:-1]) if a == "-ex"]
    site = str(Path(armvcpu.__file__).resolve().parent.parent)
    assert commands[0].startswith("python import sys; sys.path.insert(0, ")
    assert repr(site) in commands[0]
    assert commands[1:] == [
        "python import armvcpu.tools.gdb",
        'file "/opt/fw dir/armvcpu-firmware.elf"',
        "target remote /tmp/x/gdb.sock",
        "armvcpu vcpus",
    ]
    assert argv[-3:] == ["-batch", "-ex", "armvcpu vcpus"]  # extra comes last, as given
    plain = gdb_launch.gdb_command("/s", Path("/fw.elf"), gdb="/usr/bin/gdb-multiarch")
    assert plain[0] == "/usr/bin/gdb-multiarch" and plain[-2:] == ["-ex", "target remote /s"]
    result = doctest.testmod(gdb_launch, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0 and result.attempted >= 2


def test_launch_without_gdb_multiarch_names_the_package(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # a PATH with no gdb-multiarch on it
    with pytest.raises(ToolNotFoundError, match="gdb-multiarch"):
        gdb_launch.launch("/nonexistent.sock", Path("/nonexistent.elf"))


def test_gdb_decodes_sysreg_and_mmio_exits(no_leaked_qemu, no_leaked_gdb):
    guest = armvcpu.Guest.from_asm(
        """
        mrs x5, id_aa64isar0_el1   // trapped by HCR_EL2.TID3: SysRegRead
        movz x1, #0x0900, lsl #16
        ldr w2, [x1]               // the PL011, not mapped for the guest: MmioRead
        b .
        """
    )
    with Hypervisor(transport="shm") as hv:
        hv.load(guest)
        hv.set_traps(hcr_el2=1 << 18)  # TID3
        exits = hv.exits()
        sysreg = next(exits)
        assert sysreg.kind == ExitKind.SysRegRead
        socket = hv.release_gdbstub()
        (text, _), _ = gdb_batch(socket, hv.firmware.path, ["armvcpu exit", "detach"])
        key = _core.sysreg_encoding("ID_AA64ISAR0_EL1").key
        assert "exit #1 SysRegRead" in text
        assert f"  addr = ID_AA64ISAR0_EL1 ({key:#x})\n" in text
        assert "  reg = 5 (x5)\n" in text
        assert f"(EC 0x18 {_core.exception_class_name(0x18)}, " in text
        sysreg.resume(x5=0x1111)

        mmio = next(exits)
        assert mmio.kind == ExitKind.MmioRead
        # QEMU's gdbstub takes the next client on the same socket.
        (text, _), _ = gdb_batch(socket, hv.firmware.path, ["armvcpu exit", "detach"])
        assert "exit #2 MmioRead" in text
        assert "  addr = 0x9000000\n" in text
        assert "  width = 0x4\n" in text
        assert "  reg = 2 (x2)\n" in text
        assert "ISV=0x1" in text  # the data abort's ISS fields, named
        mmio.stop()
        exits.close()


def test_gdb_unwinds_through_the_world_switch(hypercalls_guest, no_leaked_qemu, no_leaked_gdb):
    """The CFI in vectors.S: stopped inside armvcpu_run_guest (after its
    prologue has pushed the frame record), gdb's backtrace walks back through
    the core's VCpu::run into the firmware's run loop and fw_main; stopped in
    armvcpu_guest_exit (entered from a vector, where the guest's x30 means
    nothing to EL2), the backtrace ends there instead of inventing frames."""
    with Hypervisor(transport="shm") as hv:
        hv.load(hypercalls_guest)
        exits = hv.exits()
        first = next(exits)
        socket = hv.release_gdbstub()
        commands = [
            "break *(armvcpu_run_guest + 8)",  # after `stp x29, x30, [sp, #-96]!`
            "continue",
            "bt",
            "delete",
            "break armvcpu_guest_exit",
            "continue",
            "bt",
            "delete",
            "detach",
        ]
        gdb = GdbBatch(socket, hv.firmware.path, commands)
        gdb.wait_until_command(1)  # attached, the breakpoint set, about to continue
        first.resume(x0=1)  # the CPU re-enters the guest: the breakpoint
        texts, _ = gdb.result()
        exits.close()
        rest = hv.run(lambda e: 1 if e.kind == ExitKind.Hypercall else None)
    inner, outer = texts[2], texts[6]
    names = re.findall(r"^#\d+\s+(?:0x\w+ in )?(.+?) \(", inner, re.M)
    assert names == [
        "armvcpu_run_guest",
        "fw::FwHal::enter_guest",
        "armvcpu::VCpu<fw::FwHal>::run",
        "(anonymous namespace)::run_vcpu",
        "fw_main",
        "_start",
    ], inner
    assert "??" not in inner and "corrupt" not in inner
    outer_frames = re.findall(r"^#\d+", outer, re.M)
    assert outer_frames == ["#0"], outer
    assert "armvcpu_guest_exit" in outer
    assert rest[-1].kind == ExitKind.SystemDown


def test_armvcpu_gdb_attaches_to_a_live_session(hypercalls_guest, no_leaked_qemu, no_leaked_gdb):
    """`armvcpu gdb SOCKET -- GDB-ARGS`: real gdb-multiarch, started by the
    command, on the socket release_gdbstub() gave, with the extension loaded
    (``armvcpu exit`` works) and the package's firmware symbols; after its
    detach the session answers the exit and runs to the end."""
    import sys

    with Hypervisor(transport="shm") as hv:
        hv.load(hypercalls_guest)
        exits = hv.exits()
        first = next(exits)
        socket = hv.release_gdbstub()
        gdb_args = ["-nx", "-batch", "-ex", "armvcpu exit",
                    "-ex", "print/x armvcpu_exit_records[0].seq", "-ex", "detach"]  # fmt: skip
        proc = subprocess.run([sys.executable, "-m", "armvcpu", "gdb", socket, "--", *gdb_args],
                              capture_output=True, text=True, timeout=GDB_TIMEOUT,
                              stdin=subprocess.DEVNULL)  # fmt: skip
        first.resume(x0=0x1234)
        exits.close()
        rest = hv.run(lambda e: 7 if e.kind == ExitKind.Hypercall else None)
    assert proc.returncode == 0, proc.stderr
    assert "exit #1 Hypercall (Synchronous exception)" in proc.stdout
    assert "  args = [0x0, 0x0, 0xc0ffee, 0x0, 0x0, 0x0]" in proc.stdout  # what Python saw
    assert re.search(r"^\$1 = 0x1$", proc.stdout, re.M), proc.stdout  # the firmware's symbols
    assert "detached" in proc.stdout + proc.stderr
    assert rest[-1].kind == ExitKind.SystemDown
    assert rest[-2].reason.args[0] == fold([0x1234] + [7] * 7)  # the guest's checksum
