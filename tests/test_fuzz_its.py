"""The fuzzer's ITS surface (``armvcpu fuzz --its``): programs that set up the
LPI tables and QEMU's ITS, write ITS commands and take LPIs, each in a fresh
QEMU with the ITS passed through (docs/fuzzing.md, "The ITS surface").

Real QEMU and the real firmware throughout; what an LPI is, is what QEMU's
ITS and GICv3 make of the commands (Arm IHI 0069H), read back by the guest.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest
from armvcpu.tools import fuzz
from armvcpu.tools.fuzz.coverage import CoverageMap
from armvcpu.tools.fuzz.generator import Program, Rng
from armvcpu.tools.fuzz.its import FIRST_LPI, _ItsBuilder, command

IAR1, EOIR1 = fuzz.BY_NAME["ICC_IAR1_EL1"], fuzz.BY_NAME["ICC_EOIR1_EL1"]


def test_command_numbers_are_the_architectures():
    # Arm IHI 0069H, 5.3: the command numbers in DW0[7:0].
    assert {name: command(name)[0] for name in fuzz.its.COMMANDS} == {
        "MOVI": 0x01, "INT": 0x03, "CLEAR": 0x04, "SYNC": 0x05, "MAPD": 0x08, "MAPC": 0x09,
        "MAPTI": 0x0A, "MAPI": 0x0B, "INV": 0x0C, "INVALL": 0x0D, "MOVALL": 0x0E,
        "DISCARD": 0x0F,
    }  # fmt: skip


def test_its_programs_are_functions_of_the_seed_and_leave_the_others_alone():
    its = [i for i in range(60) if fuzz.is_its_program(4, i)]
    assert 5 < len(its) < 40  # a share of the programs, not all, not none
    for i in range(60):
        p = fuzz.build_program(4, (i,), its=True)
        assert p == fuzz.build_program(4, (i,), its=True)
        if i in its:
            assert p.its and p.flavor == "its" and p == fuzz.generate_its(4, i)
            assert not p.interrupt_pending  # its prologue fires no timer
            assert fuzz.WFI not in fuzz.prologue_words(p.epilogue, its=True)
        else:  # the same program a campaign without --its runs
            assert p == fuzz.generate(4, i) and not p.its
    # A mutated ITS program stays one (it needs the ITS's session).
    mutated = fuzz.build_program(4, (its[0], 99), its=True)
    assert mutated.its and mutated.body != fuzz.generate_its(4, its[0]).body


def _run(builder: _ItsBuilder, reads: int) -> tuple[fuzz.Outcome, Any]:
    """``reads`` acknowledgements (x12 up), each ended, then the epilogue:
    the program alone in its session; its outcome and its last exit's registers."""
    words = []
    for n in range(reads):
        words += [fuzz.mrs(12 + n, IAR1), fuzz.msr(EOIR1, 12 + n)]
    builder.emit("acknowledge", words)
    program = Program(tuple(builder.words), notes=tuple(builder.notes), its=True, name="its")
    seen: list[Any] = []
    with fuzz.Runner(timeout=5.0, on_exit=lambda e, a: seen.append(e)) as runner:
        out = runner.run(program)
    return out, seen[-1].regs


def test_int_commands_arrive_as_the_lpis_the_guest_mapped(no_leaked_qemu):
    """Device 0's events 0..6 mapped (MAPD, MAPC, MAPTI) to LPIs 8192..8198
    and raised at once by seven INT commands: more LPIs than the four list
    registers hold. The guest acknowledges each of the seven once
    (ICC_IAR1_EL1; in an order the architecture leaves open, as they share
    a priority), then reads spurious (1023)."""
    b = _ItsBuilder(Rng(0, 0))
    b.setup(events=7)
    b.write_commands([("INT", command("INT", 0, e)) for e in range(7)])
    out, regs = _run(b, 10)
    assert (out.outcome, out.lpis) == (fuzz.COMPLETED, 7), (out.outcome, out.detail, out.log)
    got = [getattr(regs, f"x{12 + n}") for n in range(10)]
    # An LPI reaches the list registers once the CPU takes it at EL2, after
    # the CWRITER write: the first read may come before that (spurious).
    lpis = [x for x in got if x != 1023]
    assert sorted(lpis) == list(range(FIRST_LPI, FIRST_LPI + 7)), got
    assert got[-1] == 1023


def test_lpis_stay_off_until_both_lpi_tables_are_in_the_vms_ram(no_leaked_qemu):
    """Found by the ITS surface: GICR_PENDBASER aimed outside the VM's RAM
    is refused (the register keeps its reset value, PA 0), and a following
    GICR_CTLR.EnableLPIs used to go through: the redistributor then kept its
    pending bits at PA 0 (the flash), and an INT started a storm of LPIs
    nobody raised (tens of thousands, the guest starved). Now EnableLPIs
    reads 0 until both tables name the VM's RAM, the INT raises nothing;
    with the pending table where it belongs, the next INT is the LPI."""
    from armvcpu.tools.fuzz.its import GICR, GICR_CTLR, GICR_PENDBASER, LPI_PENDING, _store

    b = _ItsBuilder(Rng(0, 0))
    b.setup(wrong=1)  # a GICR_PENDBASER outside the RAM, then EnableLPIs
    read_ctlr = [*fuzz.mov64(9, GICR + GICR_CTLR), fuzz.ldst_uimm(2, 1, 0, 9, 20)]
    b.emit("x20 = GICR_CTLR", read_ctlr)
    b.write_commands([("INT", command("INT", 0, 0))])
    b.emit("x21 = ICC_IAR1_EL1", [fuzz.mrs(21, IAR1), fuzz.mrs(21, IAR1)])
    b.emit("PENDBASER", _store(GICR + GICR_PENDBASER, LPI_PENDING))
    b.emit("EnableLPIs", _store(GICR + GICR_CTLR, 1, 2))
    b.emit("x22 = GICR_CTLR", [*read_ctlr[:-1], fuzz.ldst_uimm(2, 1, 0, 9, 22)])
    b.write_commands([("INT", command("INT", 0, 0))])
    out, regs = _run(b, 3)
    assert (out.outcome, out.lpis) == (fuzz.COMPLETED, 1), (out.outcome, out.detail, out.lpis)
    assert (regs.x20 & 1, regs.x21, regs.x22 & 1) == (0, 1023, 1)
    assert FIRST_LPI in (regs.x12, regs.x13, regs.x14)


@pytest.fixture(scope="module")
def cmap() -> CoverageMap:
    return CoverageMap.load()


def _its_lines(cmap: CoverageMap, outcomes: list[fuzz.Outcome]) -> set[tuple[str, int]]:
    lines = (cmap.lines.line_at(cmap.address(p)) for o in outcomes for p in o.coverage)
    return {(f, n) for f, n in lines if f.endswith("firmware/its.cpp")}


@pytest.mark.timeout(300)
def test_a_fixed_seed_its_batch_reaches_the_firmwares_lpi_code(cmap, no_leaked_qemu):
    its = [fuzz.build_program(1, (i,), its=True) for i in range(40) if fuzz.is_its_program(1, i)]
    plain = [fuzz.generate(1, i) for i in range(len(its))]
    with fuzz.Runner(timeout=2.0, coverage=cmap) as runner:
        its_outs = [runner.run(p) for p in its]
        plain_outs = [runner.run(p) for p in plain]
    assert not any(o.failure for o in its_outs + plain_outs), [
        (o.ident, o.outcome, o.detail) for o in its_outs + plain_outs if o.failure
    ]
    assert all(o.fresh_session for o in its_outs)
    # LPIs reached the guest: delivered by the firmware, and taken (the
    # vector table's IRQ report ends a program: nothing but LPIs can
    # interrupt an ITS program, whose VM has the emulated GIC and no enables).
    assert sum(o.lpis for o in its_outs) > 0
    assert any(o.detail == "IRQ (from EL1h)" and o.lpis for o in its_outs)
    reached, without = _its_lines(cmap, its_outs), _its_lines(cmap, plain_outs)
    functions = {cmap.lines.function_at(cmap.address(p)) for o in its_outs for p in o.coverage}
    # The LPI register checks and forwarding, the physical LPI made virtual
    # with the guest's priority, LPIs that waited for a free list register:
    # none of it without ITS programs.
    assert {"fw::its::access_lpi_register", "fw::its::take_lpi", "fw::its::lpi_priority",
            "fw::its::inject_waiting_lpis"} <= functions, sorted(functions)  # fmt: skip
    assert len(reached - without) > 10, sorted(reached - without)


@pytest.mark.timeout(600)
def test_a_batch_with_its_programs_ends_the_same_with_the_reset_as_with_fresh_qemu(
    no_leaked_qemu,
):
    """test_fuzz_reset's differential check with the ITS surface: an ITS
    program gets a fresh QEMU of its own either way (the restore does not
    reset the ITS), and the session of the other programs is still reused
    around it."""
    from .test_fuzz_reset import comparable

    programs = [fuzz.build_program(11, (i,), 16, its=True) for i in range(30)]
    its = sum(p.its for p in programs)
    assert 3 <= its < len(programs)
    with fuzz.Runner(timeout=3.0, watchdog=2.0, reuse=False) as runner:
        fresh = [runner.run(p) for p in programs]
    with fuzz.Runner(timeout=3.0, watchdog=2.0, reuse=True) as runner:
        reset = [runner.run(p) for p in programs]
    assert [comparable(o) for o in reset] == [comparable(o) for o in fresh]
    assert not any(o.failure for o in fresh + reset)
    assert all(o.fresh_session for o, p in zip(reset, programs, strict=True) if p.its)
    assert runner.reused_programs >= len(programs) - its - 3


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "armvcpu", "fuzz", *args], capture_output=True,
                          text=True, timeout=240)  # fmt: skip


def test_cli_its_campaign_and_replay(no_leaked_qemu):
    out = run_cli("--its", "--seed", "1", "--programs", "30", "--workers", "2", "--json")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["its"] is True and report["programs_run"] == 30 and report["lpis"] > 0
    assert report["failures_total"] == 0
    ident = next(f"1:{i}" for i in range(30) if fuzz.is_its_program(1, i))
    replay = run_cli("--replay", ident, "--its")
    assert replay.returncode == 0, replay.stderr
    assert f"program {ident} (length 32): flavor its (ITS program)" in replay.stdout
    assert "LPIs the firmware delivered: " in replay.stdout


def test_its_with_a_gicv2_is_a_clear_error(no_leaked_qemu):
    out = run_cli("--its", "--gic", "2", "--programs", "1")
    assert out.returncode == 2 and "--its needs a GICv3" in out.stderr
    with pytest.raises(ValueError, match="needs a GICv3"):
        fuzz.run_campaign(fuzz.FuzzConfig(seed=1, programs=1, gic=2, its=True))
    with pytest.raises(ValueError, match="needs a GICv3"):
        fuzz.Runner(gic=2, its=True)
