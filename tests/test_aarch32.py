"""A guest that drops to AArch32 at EL0. EL1 always runs AArch64
(HCR_EL2.RW), but AArch32 code at EL0 is architecturally allowed. Its exits
come through the vectors' "lower EL, AArch32" entries and the core
classifies them by their syndrome like any other: a stage-2 fault on a load
is an MMIO exit, with AArch32's r2 being x2 (Arm ARM D1.20.1, "AArch32 to
AArch64 register mapping")."""

from __future__ import annotations

from armvcpu import ExitKind, Guest, Hypervisor

# SPSR_EL1 = 0x10: AArch32 User mode (M[4] = 1). The A32 code (Arm ARM F5.1
# encodings, cond AL): LDR r2, [r1]; STR r2, [r1, #4]; B .
AARCH32_EL0 = """
    mov x0, #0x10
    msr spsr_el1, x0
    adr x0, a32
    msr elr_el1, x0
    movz x1, #0x3000, lsl #16   // r1: an address outside guest RAM
    isb
    eret
    .balign 4
a32:
    .word 0xe5912000
    .word 0xe5812004
    .word 0xeafffffe
"""


def test_aarch32_el0_exits_are_classified_and_answered(transport, no_leaked_qemu):
    with Hypervisor(transport=transport, cpu="cortex-a57") as hv:
        hv.load(Guest.from_asm(AARCH32_EL0))
        seen = []
        for exit in hv.exits():
            seen.append(exit)
            assert exit.frame.spsr & 0x1F == 0x10  # taken from AArch32 User mode
            if exit.kind == ExitKind.MmioRead:
                assert exit.reason.addr == 0x3000_0000 and exit.reason.reg == 2
                exit.complete_read(0x1234_5678)
            elif exit.kind == ExitKind.MmioWrite:
                assert exit.reason.addr == 0x3000_0004
                assert exit.reason.data == 0x1234_5678  # r2, as the read left it
                exit.stop()
    assert [e.kind for e in seen] == [ExitKind.MmioRead, ExitKind.MmioWrite]
    assert "VM 1 stopped" in hv.console
