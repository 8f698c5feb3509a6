"""The fuzzer's reset without QEMU: VM 1's snapshot in the firmware.

A fixed-seed batch must end program by program the same way whether every
program gets a fresh QEMU or the session's snapshot is restored between
programs (a differential check); a restore must take back what a program
changed (RAM it wrote, system registers, traps); asking for a restore with
no snapshot is a clear error; and nothing (QEMU, /dev/shm file) stays behind.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
from armvcpu import Guest, Hypervisor, SnapshotError
from armvcpu.errors import ArmvcpuError
from armvcpu.tools import fuzz
from armvcpu.tools.fuzz import (
    ENTRY,
    Program,
    Runner,
    add_imm,
    b_cond,
    branch,
    hvc,
    ldst_uimm,
    mov64,
    mrs,
    msr,
    subs_imm,
)

REG = {r.name: r for r in fuzz.SYSREGS}
#: Guest RAM no prologue zeroes and no program area covers.
FAR_RAM = 0x4100_0000


def comparable(o: fuzz.Outcome) -> tuple[object, ...]:
    """What must not depend on how the session was reset. A hang is a hang:
    where the CPU happened to be when the host looked is not compared, nor
    how many exits a program that is still making them got in before the
    clock ran out."""
    if o.outcome == fuzz.TIMEOUT:
        return (o.outcome,)
    return (o.outcome, o.detail, o.exits, o.el1_skipped)


@pytest.mark.timeout(600)
def test_a_fixed_seed_batch_ends_the_same_with_the_reset_as_with_fresh_qemu(no_leaked_qemu):
    # Length 16 and a 3 s timeout: a program that keeps making exits uses up
    # its budget on a busy machine too, instead of racing the clock.
    # The watchdog at 2 s of guest time for the same reason.
    programs = [fuzz.generate(11, i, 16) for i in range(30)]
    with Runner(timeout=3.0, watchdog=2.0, reuse=False) as runner:
        fresh = [runner.run(p) for p in programs]
    assert runner.sessions == len(programs)
    with Runner(timeout=3.0, watchdog=2.0, reuse=True) as runner:
        reset = [runner.run(p) for p in programs]
        status = runner.hv.snapshot.status() if runner.hv is not None else None
    assert [comparable(o) for o in reset] == [comparable(o) for o in fresh]
    assert not any(o.failure for o in fresh + reset)
    # Only a program that left no exit to answer (a hang) costs a new QEMU.
    # Only a hang the watchdog cannot end (a vCPU off, or stuck in EL2) costs
    # a new QEMU.
    hangs = sum(o.outcome == fuzz.TIMEOUT and "in EL2" in o.detail for o in reset[:-1])
    assert runner.sessions <= 1 + hangs
    assert runner.reused_programs >= len(programs) - 1 - hangs
    assert {o.flavor for o in programs} >= {"mixed", "memory", "sysreg"}  # it saw variety
    if status is not None:
        assert status.state == "taken" and status.error == ""


def _counter_program() -> Program:
    """Adds one to a word of far RAM and reports the new value as x0 of a hypercall."""
    return Program.from_words(
        [
            *mov64(2, FAR_RAM),
            ldst_uimm(3, 1, 0, 2, 1),
            add_imm(1, 1, 1),
            ldst_uimm(3, 0, 0, 2, 1),
            add_imm(0, 1, 0),
            hvc(0),
        ],
        name="counter",
    )


def test_restore_takes_back_what_a_program_wrote(no_leaked_qemu):
    counter = _counter_program()
    seen = []

    def record(exit, answer):
        if exit.kind.name == "Hypercall" and exit.reason.nr < 0x100:
            seen.append(int(exit.reason.nr))

    with Runner(timeout=3.0, on_exit=record) as runner:
        outs = [runner.run(counter) for _ in range(3)]
        status = runner.hv.snapshot.status()
    # Each run starts from the snapshot's RAM: the counter is 1 every time.
    assert seen == [1, 1, 1]
    assert [o.fresh_session for o in outs] == [True, False, False]
    assert runner.sessions == 1
    assert status.state == "taken" and status.restores == 2
    # The far page, the program area, the scratch and stack pages and the
    # top of RAM: saved at their first write, copied back at each restore.
    assert status.pages_restored >= 2 * 3
    assert 0 < status.dirty_pages < status.page_capacity


def test_restore_takes_back_system_registers_and_traps(no_leaked_qemu):
    # A program sets TPIDR_EL1 and CONTEXTIDR_EL1; the next one reads them.
    set_regs = Program.from_words([*mov64(1, 0x1234_5678), msr(REG["TPIDR_EL1"], 1),
                                   msr(REG["CONTEXTIDR_EL1"], 1)], name="set")  # fmt: skip
    read_regs = Program.from_words(
        [mrs(0, REG["TPIDR_EL1"]), hvc(0), mrs(0, REG["CONTEXTIDR_EL1"]), hvc(0)], name="read"
    )
    # With TID3 (HCR_EL2 bit 18) the ID registers trap; without it they do not.
    read_id = Program.from_words([mrs(0, REG["ID_AA64MMFR0_EL1"])], name="id",
                                 traps=(1 << 18, 0))  # fmt: skip
    read_id_untrapped = Program.from_words([mrs(0, REG["ID_AA64MMFR0_EL1"])], name="id-untrapped")

    def run(runner: Runner, programs: list[Program]) -> list[tuple[str, list[str]]]:
        out = []
        for p in programs:
            kinds: list[str] = []
            runner.on_exit = lambda exit, answer, kinds=kinds: kinds.append(
                f"{exit.kind.name}:{getattr(exit.reason, 'nr', '')}"
            )
            o = runner.run(p)
            out.append((o.outcome, kinds))
        return out

    sequence = [set_regs, read_regs, read_id, read_id_untrapped, read_regs]
    with Runner(timeout=3.0) as runner:
        reset = run(runner, sequence)
        assert runner.sessions == 1
    with Runner(timeout=3.0, reuse=False) as runner:
        fresh = run(runner, sequence)
    assert reset == fresh
    # The trapped read reached the host; the untrapped one did not.
    assert any(k.startswith("SysRegRead") for k in reset[2][1])
    assert not any(k.startswith("SysRegRead") for k in reset[3][1])


def _guest() -> Guest:
    return Guest.from_binary(Program.from_words([hvc(0)], name="hvc").image, ENTRY, name="hvc")


def test_restore_without_a_snapshot_is_a_clear_error(no_leaked_qemu):
    with Hypervisor(memory_mb=64, timeout=10) as hv:
        hv.load(_guest())
        assert hv.snapshot.status().state == "none"
        exit = next(iter(hv.exits()))
        with pytest.raises(SnapshotError, match=r"snapshot\.request\(\)"):
            hv.snapshot.restore(exit)
        # The exit is still unanswered: the session goes on as before.
        assert not exit.resolved
        exit.stop()


def test_snapshot_bad_requests_are_clear_errors(no_leaked_qemu):
    with Hypervisor(memory_mb=64, timeout=10) as hv:
        hv.load(_guest())
        hv.snapshot.request()
        exit = next(iter(hv.exits()))
        with pytest.raises(ArmvcpuError, match="before the first exits"):
            hv.snapshot.request()
        with pytest.raises(ValueError, match="at most"):
            hv.snapshot.restore(exit, load=(ENTRY, bytes(0x10001)))
        with pytest.raises(ValueError, match="not inside VM 1's RAM"):
            hv.snapshot.restore(exit, load=(0x8000_0000, b"\0" * 4))
        assert not exit.resolved
        hv.snapshot.restore(exit)  # a good one still works after the bad ones
        again = next(iter(hv.exits()))
        assert again.kind.name == "Hypercall" and again.pc == exit.pc  # the same, again
        assert hv.snapshot.status().restores == 1
        again.stop()
    with (
        Hypervisor(memory_mb=64, smp=2, timeout=10) as hv,
        pytest.raises(ArmvcpuError, match="one vCPU"),
    ):
        hv.snapshot.request()


def test_a_guest_looping_without_exits_keeps_its_session(no_leaked_qemu):
    # After the timeout the host sends the looping guest to an HVC, and the
    # next program's restore answers that exit: no new QEMU.
    loop = Program.from_words([branch(0)], name="loop")  # b .
    seen = []

    def record(exit, answer):
        if exit.kind.name == "Hypercall" and exit.reason.nr < 0x100:
            seen.append(int(exit.reason.nr))

    with Runner(timeout=2.0, on_exit=record) as runner:
        outs = [runner.run(p) for p in (loop, _counter_program(), loop, _counter_program())]
    assert [o.outcome for o in outs] == [fuzz.TIMEOUT, fuzz.COMPLETED] * 2
    assert outs[0].detail == "no exit in time, guest looping at EL1"
    assert runner.sessions == 1
    assert seen == [1, 1]


def test_a_program_that_writes_more_pages_than_the_firmware_saves_gets_a_fresh_session(
    no_leaked_qemu,
):
    # 1100 pages of far RAM, one store each: more than the save area holds
    # (page_capacity, 1024). The program still runs as without a snapshot;
    # the next one cannot be restored into it and gets a new QEMU.
    pages = 1100
    many = Program.from_words(
        [
            *mov64(2, FAR_RAM),
            *mov64(3, pages),
            ldst_uimm(3, 0, 0, 2, 3),  # 1: str x3, [x2]
            add_imm(2, 2, 0x800),
            add_imm(2, 2, 0x800),  # next page
            subs_imm(3, 3, 1),
            b_cond(1, -16),  # b.ne 1b
            hvc(0),
        ],
        name="many pages",
    )
    with Runner(timeout=10.0) as runner:
        first = runner.run(many)
        status = runner.hv.snapshot.status()
        second = runner.run(_counter_program())
    assert first.outcome == fuzz.COMPLETED
    assert status.state == "failed" and "more pages" in status.error
    assert status.page_capacity < pages
    assert second.outcome == fuzz.COMPLETED and second.fresh_session
    assert runner.sessions == 2


def test_the_watchdog_ends_hangs_without_a_new_qemu(no_leaked_qemu):
    # Hangs with no exit to answer: a loop at EL1, a WFI that nothing wakes
    # (Group 1 off, so the prologue's pending interrupt is not signalled),
    # CPU_SUSPEND with nothing to wake the vCPU in EL2, and CPU_OFF of the
    # only vCPU. The firmware's watchdog (the EL2 physical timer) takes each
    # one back to EL2 after its guest time, as an exit the next program's
    # restore answers (turning the vCPU on again).
    group1_off = msr(REG["ICC_IGRPEN1_EL1"], 31)
    hangs = {
        "no exit in time, guest looping at EL1": [branch(0)],
        "no exit in time, guest at EL1 in a WFI nothing wakes": [group1_off, fuzz.WFI],
        "vCPU halted in EL2 (PSCI CPU_SUSPEND), no interrupt wakes it":
            [group1_off, *mov64(0, 0xC400_0001), hvc(0)],
        "vCPU off (PSCI CPU_OFF), its CPU waits in EL2": [*mov64(0, 0x8400_0002), hvc(0)],
    }  # fmt: skip
    programs = []
    for words in hangs.values():
        programs += [Program.from_words(words), _counter_program()]
    # A host timeout far beyond the watchdog's: only the watchdog ends these.
    with Runner(timeout=60.0, watchdog=0.05) as runner:
        outs = [runner.run(p) for p in programs]
        fired = runner.hv.snapshot.status().restores if runner.hv is not None else 0
    assert [(o.outcome, o.detail) for o in outs[::2]] == [(fuzz.TIMEOUT, d) for d in hangs]
    assert [o.outcome for o in outs[1::2]] == [fuzz.COMPLETED] * 4
    assert runner.sessions == 1 and [o.fresh_session for o in outs[1:]] == [False] * 7
    assert fired == 7


def test_a_bad_watchdog_is_a_clear_error(no_leaked_qemu):
    with pytest.raises(ValueError, match="watchdog"):
        Runner(watchdog=0)
    out = subprocess.run([sys.executable, "-m", "armvcpu", "fuzz", "--programs", "1",
                          "--watchdog", "-5"], capture_output=True, text=True,
                         timeout=120)  # fmt: skip
    assert out.returncode == 2 and "--watchdog" in out.stderr


def test_the_firmware_answers_a_restored_programs_exits_as_the_host_would(no_leaked_qemu):
    # Two EL1 exceptions the program goes on from (UDF, and SVC, whose
    # ELR_EL1 is past it already), an MMIO read and write (the PL011) and a
    # load from IPA space with nothing behind it (answered with an external
    # abort, which the program goes on from too), then the epilogue.
    udf = 0x0000_0000  # UDF #0
    words = [
        udf,
        fuzz.svc(0),
        *mov64(2, 0x0900_0000),
        ldst_uimm(2, 1, 0, 2, 1),  # ldr w1, [x2]
        ldst_uimm(2, 0, 0, 2, 1),  # str w1, [x2]
        *mov64(3, 0x4800_0000),
        ldst_uimm(3, 1, 0, 3, 4),  # ldr x4, [x3]
    ]
    program = Program.from_words(words, name="answers")
    outs = {}
    for el2 in (False, True):
        with Runner(timeout=10.0, el2_answers=el2) as runner:
            outs[el2] = [runner.run(program) for _ in range(2)]
    host, firmware = outs[False][1], outs[True][1]
    assert not host.fresh_session and not firmware.fresh_session
    assert (firmware.outcome, firmware.exits, firmware.el1_skipped) == (
        host.outcome, host.exits, host.el1_skipped)  # fmt: skip
    assert host.outcome == fuzz.COMPLETED
    labels = sorted(host.el1_skipped)
    assert labels[:2] == ["EC 0x00 Unknown", "EC 0x15 SVC64"] and len(labels) == 3
    assert labels[2].startswith("EC 0x25 ")  # a data abort from the current EL
    # Only the epilogue's hypercall reached the host; a fresh session's
    # first program is the host's alone.
    assert host.answered_in_el2 == outs[True][0].answered_in_el2 == 0
    assert firmware.answered_in_el2 == firmware.exits - 1


def test_the_firmware_leaves_the_exit_budget_to_the_host(no_leaked_qemu):
    # 1: udf ; b 1b (the vector table returns past the UDF each time)
    loop = Program.from_words([0x0000_0000, branch(-4)], name="udf loop")
    with Runner(timeout=10.0, budget=50) as runner:
        first, second = runner.run(loop), runner.run(loop)
    assert (first.outcome, first.exits) == (second.outcome, second.exits) == (fuzz.BUDGET, 50)
    assert first.answered_in_el2 == 0 and second.answered_in_el2 == 49


def test_a_snapshot_on_a_gicv2_machine_is_a_clear_error(no_leaked_qemu):
    # The firmware keeps a GICv3's virtual CPU interface; asking on a GICv2
    # used to end in a FATAL exception in EL2 at the first guest entry.
    with Hypervisor(memory_mb=64, timeout=10, gic=2) as hv:
        hv.load(_guest())
        with pytest.raises(ArmvcpuError, match="needs a GICv3"):
            hv.snapshot.request()
    with pytest.raises(ValueError, match="gic=4"):
        fuzz.run_campaign(fuzz.FuzzConfig(seed=1, programs=1, gic=4))
    with pytest.raises(ValueError, match="not 4"):
        Runner(gic=4)
