"""The GIC at EL2, GICv3 and GICv2: the guest's virtual timer, WFI, and
interrupts the host injects.

Guests set up their (virtual) GIC CPU interface the architectural way. On a
GICv3: ICC_SRE_EL1.SRE, ICC_PMR_EL1, ICC_IGRPEN1_EL1 (GICv3 spec, 12.2),
acknowledge with ICC_IAR1_EL1 and end with ICC_EOIR1_EL1; with HCR_EL2.IMO
set these reach the virtual interface the firmware fills through
ICH_LR<n>_EL2. On a GICv2: GICC_PMR and GICC_CTLR.EnableGrp0 at the GICC
address (IHI 0048B, 4.4), acknowledge with GICC_IAR and end with GICC_EOIR;
stage 2 maps the hardware GICV there, which the firmware fills through
GICH_LR<n>.
"""

from __future__ import annotations

import pytest
from armvcpu import ExitKind, Guest, Hypervisor

GIC_SETUP_V3 = """
    adr x0, vectors
    msr vbar_el1, x0
    mov x0, #1
    msr icc_sre_el1, x0
    isb
    mov x0, #0xff
    msr icc_pmr_el1, x0
    mov x0, #1
    msr icc_igrpen1_el1, x0
    isb
    mov x21, #0
"""

# The IRQ vector (current EL with SP_ELx, offset 0x280) records the INTID in
# x21, stops the timer and ends the interrupt.
VECTORS_V3 = """
    .balign 2048
vectors:
    .skip 0x280
    mrs x21, icc_iar1_el1
    msr cntv_ctl_el0, xzr
    msr icc_eoir1_el1, x21
    isb
    eret
"""

GICC = 0x0801_0000  # QEMU virt's GICv2 CPU interface (the guest's GICV)

GIC_SETUP_V2 = f"""
    adr x0, vectors
    msr vbar_el1, x0
    mov x9, #{GICC:#x}
    mov w0, #0xff
    str w0, [x9, #4]            // GICC_PMR: all priorities
    mov w0, #1
    str w0, [x9]                // GICC_CTLR.EnableGrp0
    mov x21, #0
"""

VECTORS_V2 = f"""
    .balign 2048
vectors:
    .skip 0x280
    mov x9, #{GICC:#x}
    ldr w21, [x9, #0xc]         // GICC_IAR
    msr cntv_ctl_el0, xzr
    str w21, [x9, #0x10]        // GICC_EOIR
    isb
    eret
"""

# The GICv3 names other suites import.
GIC_SETUP, VECTORS = GIC_SETUP_V3, VECTORS_V3


def gic_program(gic: int, body: str) -> str:
    """``body`` between the CPU interface set-up and the IRQ vector of GIC version ``gic``."""
    if gic == 2:
        return GIC_SETUP_V2 + body + VECTORS_V2
    return GIC_SETUP_V3 + body + VECTORS_V3


VTIMER_BODY = """
    mrs x20, cntfrq_el0
    mov x0, #100
    udiv x23, x20, x0           // 10 ms of counter ticks
    mrs x19, cntvct_el0
    msr cntv_tval_el0, x23
    mov x0, #1                  // CNTV_CTL_EL0.ENABLE, not masked
    msr cntv_ctl_el0, x0
    isb
1:  cbnz x21, 2f                // checked with PSTATE.I masked, so the
    wfi                         // interrupt cannot be taken between the
    msr daifclr, #2             // check and the WFI (which a pending
    isb                         // interrupt ends, masked or not) and
    msr daifset, #2             // leave the WFI waiting for nothing
    b 1b
2:  mrs x22, cntvct_el0
    mov x0, #3
    sub x1, x22, x19
    mov x2, x21
    mov x3, x23
    hvc #0
    ldr x0, =0x84000008
    hvc #0
"""

INJECTED_BODY = """
    msr daifclr, #2
    mov x0, #1
    hvc #0                      // the host injects an interrupt here
1:  cbz x21, 1b                 // taken as soon as the guest runs again
    mov x0, #3
    mov x1, x21
    hvc #0
    ldr x0, =0x84000008
    hvc #0
"""


GICS = pytest.mark.parametrize("gic", [3, 2], ids=["gicv3", "gicv2"])


@GICS
@pytest.mark.parametrize("trap_wfi", [False, True], ids=["wfi-native", "wfi-trapped"])
def test_virtual_timer_wakes_a_waiting_guest(gic, trap_wfi, transport, no_leaked_qemu):
    with Hypervisor(transport=transport, gic=gic) as hv:
        hv.load(Guest.from_asm(gic_program(gic, VTIMER_BODY)))
        if trap_wfi:
            hv.set_traps(hcr_el2=1 << 13)  # TWI: the vCPU blocks in EL2 until its interrupt
        exits = hv.run()
    assert [e.kind for e in exits] == [ExitKind.Hypercall, ExitKind.SystemDown]
    elapsed, intid, programmed = exits[0].reason.args[:3]
    assert intid == 27  # the EL1 virtual timer's PPI
    assert elapsed >= programmed  # it fired no earlier than CNTV_TVAL said


@GICS
def test_host_injects_an_interrupt(gic, transport, no_leaked_qemu):
    with Hypervisor(transport=transport, gic=gic) as hv:
        hv.load(Guest.from_asm(gic_program(gic, INJECTED_BODY)))
        taken = None
        for exit in hv.exits():
            if exit.kind == ExitKind.Hypercall and exit.reason.nr == 1:
                exit.inject_interrupt(5)  # an SGI
                exit.resume()
            elif exit.kind == ExitKind.Hypercall and exit.reason.nr == 3:
                taken = exit.reason.args[0]
    assert taken == 5


def test_inject_checks_the_intid():
    from armvcpu import _core
    from armvcpu.exits import Exit

    exit = Exit(_core.ExitRecord(), lambda e, c: None)
    with pytest.raises(ValueError, match="INTID 1023"):
        exit.inject_interrupt(1023)
    with pytest.raises(RuntimeError, match="not attached"):
        exit.inject_interrupt(5)
