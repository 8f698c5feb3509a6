"""The emulated GIC (Hypervisor(vgic=True)) seen from real guests: its
registers read back as the GICv3 specification (IHI 0069H, chapter 12) says,
and interrupts reach a guest only as its own GIC programming allows.

What is not GICv3-specific runs on both GIC versions (``gic`` 3 and 2: on a
GICv2 machine the guest gets a vGICv2, IHI 0048B); the GICv2 distributor's
registers against bare QEMU are tests/test_gicv2.py's.

All of it is answered inside EL2: the guests' GICD/GICR accesses never reach
the host, which sees only their hypercalls.
"""

from __future__ import annotations

import pytest
from armvcpu import ExitKind, Guest, Hypervisor

from .test_interrupts import GIC_SETUP, GICS, VECTORS, gic_program
from .test_smp import SGI_PRIMARY

GICD = 0x0800_0000
GICR0 = 0x080A_0000

REGISTERS = """
    ldr x9, =0x08000000         // GICD
    ldr x10, =0x080A0000        // vCPU 0's redistributor, RD_base
    add x11, x10, #0x10000      // ... and its SGI_base
    ldr w1, [x9]                // GICD_CTLR
    ldr w2, [x9, #0x4]          // GICD_TYPER
    add x12, x9, #0xf000
    ldr w3, [x12, #0xfe8]       // GICD_PIDR2
    ldr w4, [x9, #0x8]          // GICD_IIDR
    mov x0, #1
    hvc #0

    mov w5, #2                  // GICD_CTLR.EnableGrp1 (DS = 1 layout)
    str w5, [x9]
    mov w5, #6                  // GICD_ISENABLER1: INTIDs 33 and 34
    str w5, [x9, #0x104]
    mov w5, #2                  // GICD_ICENABLER1: INTID 33 off again
    str w5, [x9, #0x184]
    mov w5, #0xa0               // GICD_IPRIORITYR, byte of INTID 33
    strb w5, [x9, #0x421]
    mov w5, #8                  // GICD_ICFGR2: INTID 33 edge-triggered
    str w5, [x9, #0xc08]
    add x12, x9, #0x6000
    mov x5, #0x80000000         // GICD_IROUTER33: IRM, any PE
    str x5, [x12, #(33 * 8)]
    ldr w1, [x9]
    ldr w2, [x9, #0x104]
    ldr w3, [x9, #0x184]
    ldr w4, [x9, #0x420]        // priorities of INTIDs 32..35
    ldr w5, [x9, #0xc08]
    ldr x6, [x12, #(33 * 8)]
    mov x0, #2
    hvc #0

    ldr x1, [x10, #0x8]         // GICR_TYPER (64-bit)
    ldr w2, [x10, #0x14]        // GICR_WAKER at reset
    str wzr, [x10, #0x14]       // ProcessorSleep = 0 ...
    ldr w3, [x10, #0x14]        // ... and ChildrenAsleep follows
    add x12, x10, #0xf000
    ldr w4, [x12, #0xfe8]       // GICR_PIDR2
    add x12, x11, #0xc00
    ldr w5, [x12]               // GICR_ICFGR0: SGIs, edge
    mov x0, #3
    hvc #0
    ldr x0, =0x84000008
    hvc #0
"""


def test_gic_registers_read_back_per_the_specification(transport, no_leaked_qemu):
    """GICv3 only: the redistributors and their identity registers (the
    vGICv2's distributor is compared with bare QEMU in test_gicv2.py)."""
    with Hypervisor(vgic=True, transport=transport) as hv:
        hv.load(Guest.from_asm(REGISTERS))
        exits = hv.run(lambda e: 0 if e.kind == ExitKind.Hypercall else None)
    assert [e.kind for e in exits] == [ExitKind.Hypercall] * 3 + [ExitKind.SystemDown]
    ctlr, typer, pidr2, iidr = exits[0].reason.args[:4]
    assert ctlr == (1 << 4) | (1 << 6)  # ARE and DS read as one; groups disabled at reset
    # Bare QEMU 7.2 (-M virt,gic-version=3) reads GICD_TYPER = 0x037A0007:
    # ITLinesNumber 7 (256 INTIDs), IDbits 15, A3V, No1N, and LPIS for its
    # ITS. The emulated GIC presents the same, without LPIS (no LPIs).
    assert typer == 0x037A_0007 & ~(1 << 17)
    assert (pidr2 >> 4) & 0xF == 3  # ArchRev: GICv3
    assert iidr & 0xFFF == 0x43B  # Implementer: Arm
    ctlr, isen, icen, prio, icfgr, irouter = exits[1].reason.args[:6]
    assert ctlr & 3 == 2  # EnableGrp1
    assert isen == icen == 1 << 2  # only INTID 34 stayed enabled
    assert (prio >> 8) & 0xFF == 0xA0  # INTID 33's priority byte
    assert icfgr == 8  # Int_config[1] of INTID 33
    assert irouter == 0x8000_0000  # IRM
    typer, waker_reset, waker_awake, pidr2, icfgr0 = exits[2].reason.args[:5]
    # Bare QEMU reads GICR_TYPER = 0x0100_0011 (CommonLPIAff 1, Last,
    # PLPIS): the same here without PLPIS (no LPIs).
    assert typer == 0x0100_0011 & ~1
    assert waker_reset == 0b110 and waker_awake == 0
    assert (pidr2 >> 4) & 0xF == 3
    assert icfgr0 == 0xAAAA_AAAA


# The virtual timer fires while its PPI is disabled in the guest's GIC: no
# interrupt until the guest enables it (GIC_ENABLE_PPI_27), then at once.
TIMER_GATED_BODY = """
    mrs x20, cntfrq_el0
    mov x0, #200
    udiv x23, x20, x0           // 5 ms of counter ticks
    msr cntv_tval_el0, x23
    mov x0, #1                  // CNTV_CTL_EL0.ENABLE
    msr cntv_ctl_el0, x0
    isb
    msr daifclr, #2
    mrs x19, cntvct_el0
    lsl x24, x23, #3            // wait 40 ms: the timer fires at 5
1:  mrs x22, cntvct_el0
    sub x22, x22, x19
    cmp x22, x24
    b.lo 1b
    mov x0, #1
    mov x1, x21                 // no interrupt yet: PPI 27 is disabled
    hvc #0
GIC_ENABLE_PPI_27
2:  cbz x21, 2b                 // taken at once: the timer fired long ago
    mov x0, #2
    mov x1, x21
    hvc #0
    ldr x0, =0x84000008
    hvc #0
"""

ENABLE_PPI_27 = {
    3: """
    ldr x9, =0x08000000
    mov w5, #2
    str w5, [x9]                // GICD_CTLR.EnableGrp1
    ldr x10, =0x080B0000        // vCPU 0's SGI_base
    mov w5, #-1
    str w5, [x10, #0x80]        // GICR_IGROUPR0: all Group 1
    mov w5, #0xa0
    strb w5, [x10, #0x41b]      // GICR_IPRIORITYR: PPI 27's priority
    mov w5, #(1 << 27)
    str w5, [x10, #0x100]       // GICR_ISENABLER0: the virtual timer's PPI
""",
    # GICv2: the PPIs are banked in the distributor; the guest's CPU
    # interface takes Group 0 (GIC_SETUP_V2).
    2: """
    ldr x9, =0x08000000
    mov w5, #1
    str w5, [x9]                // GICD_CTLR.EnableGrp0
    mov w5, #0xa0
    strb w5, [x9, #0x41b]       // GICD_IPRIORITYR: PPI 27's priority
    mov w5, #(1 << 27)
    str w5, [x9, #0x100]        // GICD_ISENABLER0: the virtual timer's PPI
""",
}


def timer_gated(gic: int) -> str:
    return gic_program(gic, TIMER_GATED_BODY.replace("GIC_ENABLE_PPI_27\n", ENABLE_PPI_27[gic]))


@GICS
def test_timer_interrupt_waits_until_the_guest_enables_its_ppi(gic, transport, no_leaked_qemu):
    with Hypervisor(vgic=True, gic=gic, transport=transport) as hv:
        hv.load(Guest.from_asm(timer_gated(gic)))
        exits = hv.run(lambda e: 0 if e.kind == ExitKind.Hypercall else None)
    calls = [(e.reason.nr, e.reason.args[0]) for e in exits if e.kind == ExitKind.Hypercall]
    assert calls == [(1, 0), (2, 27)]
    assert {e.kind for e in exits} == {ExitKind.Hypercall, ExitKind.SystemDown}


SGI_GATED = (
    """
    ldr x9, =0x08000000
    mov w5, #2
    str w5, [x9]                // GICD_CTLR.EnableGrp1
"""
    + SGI_PRIMARY
    + GIC_SETUP
    + """
    ldr x12, =0x080D0000        // vCPU 1's SGI_base
    mov w5, #-1
    str w5, [x12, #0x80]        // GICR_IGROUPR0: Group 1, SGI 3 not enabled yet
    msr daifclr, #2
    adr x10, ready
    mov x11, #1
    str x11, [x10]
    mrs x20, cntfrq_el0
    lsr x24, x20, #5            // wait ~30 ms with SGI 3 pending but disabled
    mrs x19, cntvct_el0
3:  mrs x22, cntvct_el0
    sub x22, x22, x19
    cmp x22, x24
    b.lo 3b
    mov x0, #7
    mov x1, x21
    hvc #0
    mov w5, #(1 << 3)
    str w5, [x12, #0x100]       // GICR_ISENABLER0: SGI 3
4:  cbz x21, 4b
    mov x0, #8
    mov x1, x21
    hvc #0
    adr x10, done
    mov x11, #1
    str x11, [x10]
5:  wfi
    b 5b
"""
    + VECTORS
    + """
    .balign 8
ready: .quad 0
done: .quad 0
"""
)


@pytest.mark.parametrize("trap_wfi", [False, True], ids=["wfi-native", "wfi-trapped"])
def test_sgi_waits_until_the_target_enables_it(trap_wfi, transport, no_leaked_qemu):
    """GICv3 only: a GICv2's SGIs are always enabled (GICD_ISENABLER0
    [15:0] RAO/WI in QEMU's GICv2 and the vGICv2), so there is nothing to
    wait for there."""
    with Hypervisor(smp=2, vgic=True, transport=transport) as hv:
        hv.load(Guest.from_asm(SGI_GATED))
        if trap_wfi:
            hv.set_traps(hcr_el2=1 << 13)
        exits = hv.run(lambda e: 0 if e.kind == ExitKind.Hypercall else None)
    calls = [(e.vcpu_id, e.reason.nr, e.reason.args[0]) for e in exits
             if e.kind == ExitKind.Hypercall and e.reason.nr in (7, 8)]  # fmt: skip
    assert calls == [(1, 7, 0), (1, 8, 3)]
    assert not {ExitKind.MmioRead, ExitKind.MmioWrite, ExitKind.SendIpi} & {e.kind for e in exits}


# -- the vectors' fast path ---------------------------------------------------------------

SMCCC_QUERIES = """
    ldr x0, =0x84000000         // PSCI_VERSION
    hvc #0
    mov x19, x0
    ldr x0, =0x80000000         // SMCCC_VERSION
    hvc #0
    mov x20, x0
    ldr x0, =0x84000000         // again, with a non-zero immediate
    hvc #7
    mov x21, x0
    mov x0, #1
    mov x1, x19
    mov x2, x20
    mov x3, x21
    hvc #0
    ldr x0, =0x84000008
    hvc #0
"""


@GICS
@pytest.mark.parametrize("logged", [False, True], ids=["fast-path", "exit-log"])
def test_psci_and_smccc_versions_answer_the_same_with_or_without_the_fast_path(logged, gic):
    """PSCI_VERSION and SMCCC_VERSION are answered in the vector code unless
    the exit log must see every exit; the guest gets the core's answers
    (PSCI 1.1, SMCCC 1.1: 0x10001) either way, and the log shows the calls."""
    with Hypervisor(gic=gic) as hv:
        if logged:
            hv.enable_exit_log()
        hv.load(Guest.from_asm(SMCCC_QUERIES))
        exits = hv.run(lambda e: 0 if e.kind == ExitKind.Hypercall else None)
        log = hv.firmware_exits() if logged else None
    assert exits[0].reason.args[:3] == (0x10001, 0x10001, 0x10001)
    if log is not None:
        answered = log[log["kind"] == int(ExitKind.Nothing)]
        assert len(answered) == 3 and set((answered["esr"] >> 26).tolist()) == {0x16}


@pytest.mark.parametrize("logged", [False, True], ids=["fast-path", "exit-log"])
def test_a_guest_booted_as_qemu_boots_it_has_qemus_smccc(logged):
    """Booted as QEMU's -kernel boots a raw image (hv.boot), the guest gets
    QEMU 7.2's own PSCI: PSCI 1.1 and no SMCCC_VERSION (NOT_SUPPORTED, as bare
    qemu-system-aarch64 7.2 answers), from the vector code's fast path too."""
    with Hypervisor() as hv:
        if logged:
            hv.enable_exit_log()
        hv.boot(Guest.from_asm(SMCCC_QUERIES).segments[0].data)
        exits = hv.run(lambda e: 0 if e.kind == ExitKind.Hypercall else None)
    assert exits[0].reason.args[:3] == (0x10001, 0xFFFF_FFFF_FFFF_FFFF, 0x10001)


# -- isolation: the guest's GIC is not the machine's ---------------------------------------

HOSTILE_GIC = """
    adr x0, el1_vectors
    msr vbar_el1, x0
    isb
    ldr x9, =0x08000000
    str wzr, [x9]               // GICD_CTLR = 0: every group off
    mov w5, #-1
    str w5, [x9, #0x184]        // GICD_ICENABLER1..3: every SPI off
    str w5, [x9, #0x188]
    str w5, [x9, #0x18c]
    ldr x10, =0x080A0000
    mov w5, #2
    str w5, [x10, #0x14]        // GICR_WAKER.ProcessorSleep: put the redistributor to sleep
    add x11, x10, #0x10000
    mov w5, #-1
    str w5, [x11, #0x180]       // GICR_ICENABLER0: every SGI and PPI off
    mov x0, #1
    hvc #0                      // the host compares the physical GIC now
    mrs x1, ich_vtr_el2         // the hypervisor's own GIC interface: UNDEFINED at EL1
    mov x0, #9                  // (never reached)
    hvc #0
    .balign 2048
el1_vectors:
    .skip 0x200                 // current EL with SP_ELx, synchronous
    mrs x1, esr_el1
    mov x0, #2
    hvc #0
    ldr x0, =0x84000008
    hvc #0
"""


def _physical_gic(hv: Hypervisor) -> tuple[int, int, int, int]:
    """GICD_CTLR, GICD_ISENABLER1, GICR_WAKER and GICR_ISENABLER0 of the
    machine's GIC (CPU 0), read through the gdbstub while the CPU is stopped."""

    def word(addr: int) -> int:
        return int.from_bytes(hv.gdb.read_memory(addr, 4), "little")  # type: ignore[union-attr]

    return (word(GICD), word(GICD + 0x104), word(GICR0 + 0x14), word(GICR0 + 0x10100))


def test_guest_gic_writes_never_reach_the_machines_gic(no_leaked_qemu):
    """GICv3 only: the machine state checked is its redistributor's and the
    guest's way in is ICH_VTR_EL2 (tests/test_gicv2.py checks that a GICv2
    guest cannot reach GICH)."""
    with Hypervisor(vgic=True, transport="gdb") as hv:
        hv.load(Guest.from_asm(HOSTILE_GIC))
        after = None
        esr_el1 = None
        for exit in hv.exits():
            if exit.kind == ExitKind.Hypercall and exit.reason.nr == 1:
                after = _physical_gic(hv)
                exit.resume(x0=0)
            elif exit.kind == ExitKind.Hypercall and exit.reason.nr == 2:
                esr_el1 = exit.reason.args[0]
                exit.resume(x0=0)
    assert after is not None
    ctlr, _, waker, private = after
    assert ctlr & 0b10  # the machine's Group 1 is still on
    assert waker & 0b110 == 0  # its redistributor is awake
    assert private & (1 << 8)  # the firmware's kick SGI is still enabled
    # The guest's attempt at ICH_VTR_EL2 was UNDEFINED in the guest itself
    # (ESR_EL1.EC = 0: unknown reason), not a way into EL2.
    assert esr_el1 is not None and esr_el1 >> 26 == 0
