"""`armvcpu fuzz`: random guests against the real firmware.

The generator must be deterministic and encode what it says; each outcome
class must be recognised from a handcrafted program; a small campaign on two
workers must classify every program with no hypervisor failure; session
reuse (the firmware's snapshot restore) must not change outcomes; and
stopping a run must leave no QEMU and no /dev/shm file behind.

Handcrafted programs run on both GIC versions (``Runner(gic=2)``: a GICv2
machine, the prologue sets up GICC); what depends on the GICv3 (its ICC_*
registers, the snapshot's GICv3 virtual interface behind session reuse, the
campaigns and the command line, which run GICv3 sessions) stays GICv3-only.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import signal
import subprocess
import sys
import time

import pytest
from armvcpu.exits import disassemble
from armvcpu.tools import fuzz
from armvcpu.tools.fuzz import (
    ERET,
    WFI,
    Program,
    Runner,
    branch,
    hvc,
    ldst_uimm,
    mov64,
    movz,
    msr,
    msr_pstate,
    smc,
)
from armvcpu.tools.fuzz.generator import GICC

from .conftest import qemu_pids, shm_files
from .test_interrupts import GICS

REG = {r.name: r for r in fuzz.SYSREGS}


def run_one(words, *, timeout=2.0, budget=200, traps=(0, 0), **kw):
    """One handcrafted program in a fresh session, with a timeout that holds
    on a busy machine: a hang is only told apart (looping, vCPU off, halted)
    once the guest has reached it."""
    with Runner(timeout=timeout, budget=budget, reuse=False, **kw) as runner:
        return runner.run(Program.from_words(words, traps=traps))


# -- the generator ---------------------------------------------------------------------------


def test_program_i_of_seed_s_is_always_the_same_bytes():
    a, b = fuzz.generate(1, 0), fuzz.generate(1, 0)
    assert a.image == b.image and a.flavor == b.flavor and a.clean == b.clean
    assert fuzz.generate(1, 1).image != a.image
    assert fuzz.generate(2, 0).image != a.image
    assert len(fuzz.generate(1, 0, length=8).body) < len(a.body)
    # Pinned: the generator depends on nothing but (seed, index, length), on
    # any Python, so a seed:index from an old report still names its program.
    digest = hashlib.sha256(b"".join(fuzz.generate(1, i).image for i in range(20))).hexdigest()
    # (Changed when the memory map moved: the targets "just past guest RAM",
    # "another VM's RAM" and the firmware's address are new addresses; and
    # when PCIe config space and a GICv2's CPU interface became targets.)
    assert digest[:16] == "bf3d45f7958b376d"


def test_programs_cover_what_the_generator_promises():
    notes = " ".join(n for i in range(300) for _, n in fuzz.generate(9, i).notes)
    for expected in ("MRS ICC_SGI1R_EL1", "MSR ICC_SGI1R_EL1", "CNTV_CTL_EL0", "SCTLR_EL1",
                     "ID_AA64", "MDSCR_EL1", "PMCR_EL0", "HCR_EL2", "MRS random",
                     "GIC distributor", "PL011", "firmware PA as IPA", "another VM's RAM",
                     "PCIe ECAM", "PCIe ECAM header (BARs)", "PCIe ECAM (high)",
                     "GICv2 CPU interface",
                     "x0=0x84000008", "x0=0xc4000003", "x0=0x84000000", "SVC", "BRK", "HLT",
                     "UDF", "unallocated", "ERET", "random words", "pair store", "exclusive",
                     "atomic", "simd"):  # fmt: skip
        assert expected in notes, expected
    flavors = {fuzz.generate(9, i).flavor for i in range(300)}
    assert flavors == {"mixed", "sysreg", "memory", "calls", "random"}


@pytest.mark.parametrize(
    ("word", "text"),
    [
        (fuzz.msr(REG["ICC_SGI1R_EL1"], 2), "msr icc_sgi1r_el1, x2"),
        (fuzz.mrs(3, REG["CNTV_CTL_EL0"]), "mrs x3, cntv_ctl_el0"),
        (fuzz.mrs(4, REG["MDSCR_EL1"]), "mrs x4, mdscr_el1"),
        (fuzz.mrs(6, REG["ID_AA64PFR0_EL1"]), "mrs x6, id_aa64pfr0_el1"),
        (fuzz.msr(REG["HCR_EL2"], 7), "msr hcr_el2, x7"),
        (msr_pstate(3, 6, 0xF), "msr daifset, #0xf"),
        (fuzz.movk(3, 0xBEEF, 3), "movk x3, #0xbeef, lsl #48"),
        (hvc(0x42), "hvc #0x42"),
        (smc(1), "smc #1"),
        (ERET, "eret"),
        (fuzz.ldst_imm9(1, 1, -2, 1, 2, 3), "ldrh w2, [x1, #-2]!"),
        (fuzz.ldst_reg(3, 1, 4, 1, 2, True), "ldr x2, [x1, x4, lsl #3]"),
        (fuzz.ldst_pair(True, False, 2, 31, 0, 31, 1), "stp xzr, xzr, [x0], #0x10"),
        (fuzz.stxr(3, 4, 1, 2), "stxr w4, x2, [x1]"),
        (fuzz.atomic(2, 8, 4, 1, 2), "swp w4, w2, [x1]"),
        (fuzz.cas(3, 4, 1, 2), "cas x4, x2, [x1]"),
        (ldst_uimm(0, 3, 1, 1, 2, simd=True), "ldr q2, [x1, #0x10]"),
        (fuzz.sys(3, 7, 4, 1, 1), "dc zva, x1"),
    ],
)
def test_encodings_match_an_independent_disassembler(word, text):
    assert disassemble(word.to_bytes(4, "little")) == text


def test_what_may_leave_state_behind():
    assert not fuzz.word_leaves_state(WFI)
    assert not fuzz.word_leaves_state(0xD5033FDF)  # isb
    assert not fuzz.word_leaves_state(movz(1, 5))
    assert fuzz.word_leaves_state(ldst_uimm(3, 0, 0, 1, 2))  # str x2, [x1]
    assert fuzz.word_leaves_state(msr(REG["SCTLR_EL1"], 0))
    assert fuzz.touches_gic_cpu_interface(msr(REG["ICC_PMR_EL1"], 0))
    assert fuzz.touches_gic_cpu_interface(fuzz.mrs(0, REG["ICC_IAR1_EL1"]))
    assert not fuzz.touches_gic_cpu_interface(msr(REG["VBAR_EL1"], 0))


def test_the_gicv2_prologue_uses_gicc_not_the_icc_registers():
    """On a GICv2 the ICC_* registers do not exist (UNDEFINED at EL1): the
    prologue enables the CPU interface through GICC_PMR and GICC_CTLR."""
    v2 = fuzz.prologue_words(0x4000_2000, gic=2)
    assert not any(fuzz.touches_gic_cpu_interface(w) for w in v2)
    text = [disassemble(w.to_bytes(4, "little")) for w in v2]
    assert "movk x0, #0x801, lsl #16" in text  # GICC = 0x0801_0000
    assert "str w1, [x0, #4]" in text and "str w1, [x0]" in text
    assert any(fuzz.touches_gic_cpu_interface(w) for w in fuzz.prologue_words(0x4000_2000))
    # The same program, for a GICv2: only the prologue differs.
    program = Program.from_words([WFI])
    assert dataclasses.replace(program, gic=2).image != program.image


def test_a_runner_refuses_a_gic_version_the_machine_has_not():
    with pytest.raises(ValueError, match="gic must be 2 or 3, not 4"):
        Runner(gic=4)


# -- each outcome class, from a handcrafted program -------------------------------------------


@GICS
def test_an_empty_body_completes_with_one_exit(gic, no_leaked_qemu):
    out = run_one([], gic=gic)
    assert (out.outcome, out.exits, out.failure) == (fuzz.COMPLETED, 1, False)


@GICS
def test_system_off_stops_the_program(gic, no_leaked_qemu):
    out = run_one([*mov64(0, 0x8400_0008), hvc(0)], gic=gic)
    assert (out.outcome, out.detail) == (fuzz.STOPPED, "SystemDown (off)")


@GICS
def test_an_undefined_instruction_is_an_el1_exception(gic, no_leaked_qemu):
    # Inside the body the host returns past it, and the program goes on ...
    out = run_one([0x0000_0000, WFI], gic=gic)
    assert out.outcome == fuzz.COMPLETED
    assert out.el1_skipped == {"EC 0x00 Unknown": 1}
    # ... but not once control has left the body (here into zeroed RAM).
    out = run_one([branch(0x2000)], gic=gic)
    assert (out.outcome, out.detail) == (fuzz.EL1_EXCEPTION, "EC 0x00 Unknown outside the body")


@GICS
def test_an_unmasked_interrupt_is_an_el1_exception(gic, no_leaked_qemu):
    # The prologue leaves the virtual timer's interrupt pending, IRQs masked.
    out = run_one([msr_pstate(3, 7, 2)], gic=gic)  # msr daifclr, #2
    assert (out.outcome, out.detail) == (fuzz.EL1_EXCEPTION, "IRQ (from EL1h)")


@GICS
def test_a_loop_without_exits_is_a_timeout(gic, no_leaked_qemu):
    out = run_one([branch(0)], gic=gic)  # b .
    assert (out.outcome, out.detail) == (fuzz.TIMEOUT, "no exit in time, guest looping at EL1")
    assert not out.failure


@GICS
def test_an_mmio_loop_uses_up_the_exit_budget(gic, no_leaked_qemu):
    # x2 = the PL011; 1: ldr w1, [x2] ; b 1b
    out = run_one(
        [*mov64(2, 0x0900_0000), ldst_uimm(2, 1, 0, 2, 1), branch(-4)], budget=30, gic=gic
    )
    assert (out.outcome, out.exits) == (fuzz.BUDGET, 30)


@GICS
def test_a_jump_to_unmapped_memory_stops_at_the_fetch_fault(gic, no_leaked_qemu):
    out = run_one([*mov64(1, 0x1000_0000), 0xD61F_0020], gic=gic)  # br x1
    assert (out.outcome, out.detail) == (fuzz.STOPPED, "NestedPageFault (instruction fetch)")


@GICS
def test_cpu_off_of_the_only_vcpu_is_the_guests_doing(gic, no_leaked_qemu):
    out = run_one([*mov64(0, 0x8400_0002), hvc(0)], gic=gic)
    assert out.outcome == fuzz.TIMEOUT
    assert out.detail == "vCPU off (PSCI CPU_OFF), its CPU waits in EL2"


@GICS
def test_cpu_suspend_without_a_signalled_interrupt_is_a_timeout(gic, no_leaked_qemu):
    # The CPU interface's group disabled first (GICv3: ICC_IGRPEN1_EL1 = 0;
    # GICv2: str wzr, [GICC_CTLR]): nothing can wake the vCPU, as on hardware.
    if gic == 2:
        disable = [*mov64(1, GICC), ldst_uimm(2, 0, 0, 1, 31)]
    else:
        disable = [msr(REG["ICC_IGRPEN1_EL1"], 31)]
    out = run_one([*disable, *mov64(0, 0xC400_0001), hvc(0)], gic=gic)
    assert out.outcome == fuzz.TIMEOUT
    assert out.detail.startswith("vCPU halted in EL2")


@GICS
def test_cpu_suspend_returns_when_an_interrupt_is_pending(gic, no_leaked_qemu):
    """Found by the fuzzer (seed 1, index 276), fixed in the firmware: a
    virtual interrupt pending in a list register wakes a halted vCPU."""
    out = run_one([*mov64(0, 0xC400_0001), hvc(0)], timeout=30, gic=gic)
    assert out.outcome == fuzz.COMPLETED, out.detail


@GICS
def test_unknown_smc_is_answered_not_supported(gic, no_leaked_qemu):
    seen = []
    out = run_one([*mov64(0, 0x1234), smc(0), WFI], on_exit=lambda e, a: seen.append(a), gic=gic)
    assert out.outcome == fuzz.COMPLETED
    assert seen[0] == "x0=NOT_SUPPORTED"  # a Hypercall exit, already past the SMC


# -- sessions ---------------------------------------------------------------------------------


def test_reused_session_runs_the_new_code(no_leaked_qemu):
    # QEMU keeps translated code until it sees the memory change: the
    # firmware's restore writes the next program with its own stores so
    # that the second program's own instructions run, not the first one's.
    first = Program.from_words([*mov64(0, 0x11), hvc(0)], name="first")
    second = Program.from_words([*mov64(0, 0x22), hvc(0)], name="second")
    nrs = []

    def record(exit, answer):
        if exit.reason.__class__.__name__ == "Hypercall" and exit.reason.nr < 0x100:
            nrs.append(exit.reason.nr)

    with Runner(timeout=2.0, on_exit=record) as runner:
        assert first.clean and second.clean
        outcomes = [runner.run(p) for p in (first, second, first)]
    assert [o.outcome for o in outcomes] == [fuzz.COMPLETED] * 3
    assert [o.fresh_session for o in outcomes] == [True, False, False]
    assert nrs == [0x11, 0x22, 0x11]
    assert runner.sessions == 1


def test_reuse_does_not_change_outcomes(no_leaked_qemu):
    programs = [p for p in (fuzz.generate(4, i, 16) for i in range(60)) if p.clean][:10]
    assert len(programs) == 10

    def key(o):
        return (o.outcome, o.detail, o.exits, o.el1_skipped)

    with Runner(timeout=2.0, reuse=True) as runner:
        reused = [key(runner.run(p)) for p in programs]
    assert runner.sessions < len(programs)
    with Runner(timeout=2.0, reuse=False) as runner:
        fresh = [key(runner.run(p)) for p in programs]
    assert reused == fresh


def test_a_program_that_may_leave_state_needs_no_fresh_session(no_leaked_qemu):
    # The snapshot's restore takes back what it left (tests/test_fuzz_reset.py).
    dirty = Program.from_words([msr(REG["SCTLR_EL1"], 31)], name="dirty")
    clean = Program.from_words([], name="clean")
    with Runner(timeout=2.0) as runner:
        outs = [runner.run(p) for p in (clean, dirty, clean)]
    assert not dirty.clean
    assert [o.fresh_session for o in outs] == [True, False, False]
    assert [o.outcome for o in outs] == [fuzz.COMPLETED] * 3


# -- campaigns and the command line -----------------------------------------------------------


@pytest.mark.timeout(120)
def test_fixed_seed_batch_on_two_workers_classifies_everything(no_leaked_qemu):
    config = fuzz.FuzzConfig(seed=2024, programs=40, workers=2, timeout=0.5)
    summary = fuzz.run_campaign(config)
    assert summary.done == 40 and not summary.interrupted
    assert sum(summary.counts.values()) == 40
    kinds = {outcome for outcome, _ in summary.counts}
    assert kinds <= {fuzz.COMPLETED, fuzz.STOPPED, fuzz.EL1_EXCEPTION, fuzz.BUDGET, fuzz.TIMEOUT}
    assert summary.failures == []
    assert summary.fresh_sessions < 40  # some programs ran in a reused session


def run_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "armvcpu", "fuzz", *args], capture_output=True,
                          text=True, timeout=timeout)  # fmt: skip


def test_cli_json_summary_parses(no_leaked_qemu):
    out = run_cli("--seed", "3", "--programs", "6", "--workers", "1", "--json")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["seed"] == 3 and report["programs_run"] == 6
    assert sum(row["count"] for row in report["outcomes"]) == 6
    assert report["failures"] == [] and report["programs_per_second"] > 0


def test_cli_replay_shows_the_program_and_its_exits(no_leaked_qemu):
    out = run_cli("--replay", "3:1")
    assert out.returncode == 0, out.stderr
    assert "program 3:1 (length 32)" in out.stdout
    assert "outcome: " in out.stdout
    assert run_cli("--replay", "banana").returncode == 2


def test_sigint_stops_everything_and_leaks_nothing(no_leaked_qemu, tmp_path):
    before, files_before = qemu_pids(), shm_files()
    log = tmp_path / "stderr.log"  # the run's log; its first line says a program has run
    with log.open("w") as stderr:
        proc = subprocess.Popen([sys.executable, "-m", "armvcpu", "fuzz", "--seed", "5",
                                 "--programs", "100000", "--workers", "2", "--json"],
                                stdout=subprocess.PIPE, stderr=stderr, text=True)  # fmt: skip
    try:
        # Wait for the event (a program has run), not the clock; the deadline
        # only bounds a hang.
        deadline = time.monotonic() + 60
        while " 1/100000 programs" not in log.read_text() and proc.poll() is None:
            assert time.monotonic() < deadline, f"no program ran: {log.read_text()}"
            time.sleep(0.05)
        # Sessions come and go between programs: wait until one is up, so the
        # interrupt meets a live QEMU.
        while not qemu_pids() - before:
            assert time.monotonic() < deadline, "no QEMU of the campaign came up"
            time.sleep(0.01)
        os.kill(proc.pid, signal.SIGINT)
        stdout, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, log.read_text()
    report = json.loads(stdout)
    assert report["interrupted"] and 0 < report["programs_run"] < 100000
    deadline = time.monotonic() + 5
    while qemu_pids() - before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not qemu_pids() - before
    assert not shm_files() - files_before


def test_save_failures_writes_a_report_and_the_image(tmp_path):
    outcome = fuzz.Outcome("7:3", fuzz.HV_DIED, "QEMU exited with signal 11", log="...")
    path = fuzz.save_failure(tmp_path, outcome, 32)
    report = json.loads(path.read_text())
    assert report["replay"] == "armvcpu fuzz --replay 7:3 --length 32"
    assert report["outcome"]["failure"] is True
    image = (tmp_path / "fuzz-7-3.bin").read_bytes()
    assert image == fuzz.generate(7, 3).image == bytes.fromhex(report["program"]["image"])


def test_qemu_survives_a_bpr1_write_with_res0_bits(no_leaked_qemu):
    # msr icc_bpr1_el1, x1 (= 8) ; mrs x2, icc_iar1_el1 -- acknowledges the
    # prologue's timer interrupt. QEMU 7.2 alone would store VBPR1 = 0 and
    # abort on the acknowledge (docs/fuzzing.md); the firmware traps the
    # Group 1 registers (ICH_HCR_EL2.TALL1) and applies the architecture's
    # rule: RES0 bits ignored, BinaryPoint 0 raised to the minimum.
    body = [*mov64(1, 8), msr(REG["ICC_BPR1_EL1"], 1), fuzz.mrs(2, REG["ICC_IAR1_EL1"])]
    out = run_one(body)
    assert out.outcome == fuzz.COMPLETED, (out.outcome, out.detail)


@GICS
def test_trapped_system_register_reads_reach_the_host(gic, no_leaked_qemu):
    seen = []
    body = [fuzz.mrs(5, REG["ID_AA64PFR0_EL1"])]
    out = run_one(
        body, traps=(1 << 18, 0), on_exit=lambda e, a: seen.append(repr(e.reason)), gic=gic
    )
    assert out.outcome == fuzz.COMPLETED
    assert seen[0].startswith("SysRegRead") and "ID_AA64PFR0_EL1" in seen[0]


@GICS
def test_policy_answers_a_trapped_mrs_to_xzr(gic, no_leaked_qemu):
    """Found by the fuzzer (seed 1, index 50), fixed in Exit/Policy."""
    out = run_one([fuzz.mrs(31, REG["ID_AA64PFR0_EL1"])], traps=(1 << 18, 0), gic=gic)
    assert out.outcome == fuzz.COMPLETED, out.detail


def test_programs_reach_pcie_config_space(no_leaked_qemu):
    # ECAM is not the guest's (no PCIe passed through): its accesses are exits.
    programs = [
        p
        for p in (fuzz.generate(9, i) for i in range(400))
        if any("PCIe ECAM 0x3f" in n for _, n in p.notes)
    ]
    addresses: list[int] = []

    def record(exit, answer):
        reason = exit.reason
        if exit.kind.name in ("MmioRead", "MmioWrite", "NestedPageFault"):
            addresses.append(int(reason.addr))

    with Runner(timeout=2.0, on_exit=record) as runner:
        for program in programs[:6]:
            assert not runner.run(program).failure
    low = [a for a in addresses if 0x3F00_0000 <= a < 0x4000_0000]
    assert low, [hex(a) for a in addresses]


def test_an_injected_abort_into_vectors_that_are_not_there_stops_the_program(no_leaked_qemu):
    """Found by the fuzzer (seed 1, index 3364) once unmapped accesses became
    aborts: the firmware marks the fetch fault at the vector of the abort it
    just injected (ACCESS_AT_INJECTED_VECTOR), which the syndrome alone cannot
    say; the host's check took the mark for a disagreement."""
    words = [
        *mov64(1, 0x1_0000_0000),  # beyond the guest's RAM: nothing to fetch there
        msr(REG["VBAR_EL1"], 1),
        *mov64(2, 0x4800_0000),  # the RAM window past the guest's RAM
        ldst_uimm(3, 1, 0, 2, 3),  # ldr x3, [x2]: an external abort, to VBAR_EL1
    ]
    program = Program.from_words(words)
    with Runner(timeout=5.0) as runner:
        outs = [runner.run(program) for _ in range(2)]  # the host's answer, then the firmware's
    for out in outs:
        assert (out.outcome, out.detail) == (fuzz.STOPPED, "NestedPageFault (instruction fetch)")
