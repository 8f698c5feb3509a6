"""Fast rules and host-chosen traps, under real QEMU, over both transports."""

from __future__ import annotations

import pytest
from armvcpu import ExitKind, Guest, Hypervisor, _core

REPORT = 3
HCR_TID3 = 1 << 18  # Arm ARM D17.2.48: trap ID group 3 registers (ID_AA64*) to EL2
MDCR_TDA = 1 << 9  # Arm ARM D17.2.59: trap debug register accesses (MDSCR_EL1, ...) to EL2

GUEST = """
    mov x0, #0x10
    hvc #0                          // fast rule: x0 = 42
    mov x1, x0
    mov x0, #3
    hvc #0                          // report 42
    movz x10, #0x0900, lsl #16
    ldr w2, [x10, #4]               // fast rule: reads 0x1234
    mov x1, x2
    mov x0, #3
    hvc #0                          // report 0x1234
    str w2, [x10]                   // fast rule: write ignored
    mrs x5, id_aa64isar0_el1        // trapped by TID3, fast rule: 0x77
    mov x1, x5
    mov x0, #3
    hvc #0                          // report 0x77
    mrs x6, id_aa64pfr0_el1         // trapped, no rule: the host answers
    mov x1, x6
    mov x0, #3
    hvc #0                          // report the host's value
    mov x7, #0x5
    msr mdscr_el1, x7               // trapped by TDA, no rule: a SysRegWrite exit
    ldr x0, =0x84000008
    hvc #0
"""


def test_rules_answer_inside_the_firmware(transport, no_leaked_qemu):
    with Hypervisor(transport=transport) as hv:
        hv.load(Guest.from_asm(GUEST))
        hv.set_traps(hcr_el2=HCR_TID3, mdcr_el2=MDCR_TDA)
        hc = hv.rules.hypercall(0x10, result=42)
        uart = hv.rules.mmio(0x0900_0000, 0x0900_1000, read=0x1234)
        isar = hv.rules.sysreg("ID_AA64ISAR0_EL1", read=0x77)
        exits = []
        for exit in hv.exits():
            exits.append(exit)
            assert repr(exit.reclassify()) == repr(exit.reason)  # firmware == host core
            if exit.kind == ExitKind.SysRegRead:
                exit.resume(**{f"x{exit.reason.reg}": 0x55})
            elif exit.kind == ExitKind.SysRegWrite:
                exit.resume()
            elif exit.kind == ExitKind.SystemDown:
                hits = (hc.hits, uart.hits, isar.hits)  # while the VM still exists
    kinds = [e.kind for e in exits]
    reports = [e.reason.args[0] for e in exits if e.kind == ExitKind.Hypercall]
    assert reports == [42, 0x1234, 0x77, 0x55]
    assert kinds.count(ExitKind.SysRegRead) == 1
    read = next(e for e in exits if e.kind == ExitKind.SysRegRead)
    assert _core.sysreg_name(read.reason.addr) == "ID_AA64PFR0_EL1"
    assert read.reason.reg == 6
    write = next(e for e in exits if e.kind == ExitKind.SysRegWrite)
    assert _core.sysreg_name(write.reason.addr) == "MDSCR_EL1"
    assert write.reason.value == 5
    assert ExitKind.MmioRead not in kinds and ExitKind.MmioWrite not in kinds
    assert hits == (1, 2, 1)  # the MMIO rule answered one read and one write


def test_count_only_rules_count_and_forward(transport, no_leaked_qemu):
    guest = Guest.from_asm(
        "mov x0, #0x20\nhvc #0\nmov x0, #0x20\nhvc #0\nldr x0, =0x84000008\nhvc #0"
    )
    with Hypervisor(transport=transport) as hv:
        hv.load(guest)
        counter = hv.rules.hypercall(0x20, result=0, count_only=True)
        seen = []
        for exit in hv.exits():
            seen.append(exit.kind)
            if exit.kind == ExitKind.SystemDown:
                assert counter.hits == 2
            else:
                exit.resume(x0=0)
    assert seen == [ExitKind.Hypercall, ExitKind.Hypercall, ExitKind.SystemDown]


def test_rule_arguments_are_checked():
    with Hypervisor() as hv:
        with pytest.raises(ValueError, match="empty MMIO range"):
            hv.rules.mmio(0x1000, 0x1000)
        with pytest.raises(KeyError):
            hv.rules.sysreg("NO_SUCH_REG")
        for i in range(_core.MAX_FAST_RULES):
            hv.rules.hypercall(0x100 + i, result=i)
        with pytest.raises(ValueError, match="at most"):
            hv.rules.hypercall(0x999, result=0)


def test_host_side_table_applies_rules_like_the_firmware():
    table = _core.FastRuleTable()
    table.set(
        0, _core.FastRule(_core.RuleKind.Mmio, _core.RULE_READS, 0x900_0000, 0x900_1000, 0xFF)
    )
    frame = _core.TrapFrame()
    frame.elr = 0x4000_0000
    # LDRSB x3 (ISV=1, SAS=0, SSE=1, SRT=3, SF=1) at 0x0900_0010, stage-2 translation fault
    iss = (1 << 24) | (1 << 21) | (3 << 16) | (1 << 15) | 0b000101
    syndrome = _core.Syndrome(esr=(0x24 << 26) | (1 << 25) | iss, far=0x900_0010, hpfar=0x90000)
    reason, frame = _core.classify_sync(frame, syndrome)
    handled, frame = table.apply(reason, frame)
    assert handled
    assert frame.gpr(3) == 0xFFFF_FFFF_FFFF_FFFF  # 0xFF sign-extended by LDRSB
    assert table.get(0).hits == 1
