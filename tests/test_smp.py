"""Several physical CPUs, a VM with several vCPUs, PSCI CPU_ON/CPU_OFF/
AFFINITY_INFO answered inside EL2 by the core's state rules (DEN0022 5.6),
and SGIs between vCPUs, on a GICv3 and on a GICv2 machine.

On a GICv3 a guest sends SGIs with ICC_SGI1R_EL1 (trapped, decoded by the
core into SendIpi); on a GICv2 it writes GICD_SGIR (IHI 0048B, 4.3.15) in its
emulated distributor (``vgic=True``), which it enables for Group 0 first.
"""

from __future__ import annotations

import pytest
from armvcpu import ExitKind, Guest, Hypervisor

from .test_interrupts import GIC_SETUP_V2, GIC_SETUP_V3, GICS, VECTORS_V2, VECTORS_V3

GICD = 0x0800_0000  # QEMU virt's distributor (GICv2: emulated with vgic=True)

SMP_GUEST = """
    ldr x0, =0xC4000003         // CPU_ON, SMC64 convention
    mov x1, #1                  // target: MPIDR Aff0 = 1
    adr x2, secondary
    mov x3, #0x55               // context id, the target's x0
    hvc #0
    mov x19, x0                 // SUCCESS
    adr x10, flag
1:  ldr x11, [x10]              // wait until vCPU 1 has run
    cbz x11, 1b
2:  ldr x0, =0xC4000004         // AFFINITY_INFO(1, level 0)
    mov x1, #1
    mov x2, #0
    hvc #0
    cmp x0, #1                  // wait for vCPU 1's CPU_OFF to land
    b.ne 2b
    mov x20, x0                 // OFF
    ldr x0, =0xC4000003         // CPU_ON for a CPU that does not exist
    mov x1, #7
    adr x2, secondary
    hvc #0
    mov x21, x0                 // INVALID_PARAMETERS
    mov x0, #3
    mov x1, x19
    mov x2, x20
    mov x3, x21
    hvc #0
    ldr x0, =0x84000008
    hvc #0
secondary:
    mov x5, x0
    mrs x6, mpidr_el1
    mov x0, #7
    mov x1, x5
    mov x2, x6
    hvc #0                      // hello from vCPU 1
    adr x10, flag
    mov x11, #1
    str x11, [x10]
    ldr x0, =0x84000002         // CPU_OFF
    hvc #0
    b .
    .balign 8
flag: .quad 0
"""

MASK = 2**64 - 1


@GICS
def test_guest_starts_a_second_vcpu(gic, transport, no_leaked_qemu):
    with Hypervisor(smp=2, transport=transport, gic=gic) as hv:
        hv.load(Guest.from_asm(SMP_GUEST))
        exits = hv.run(lambda e: 0 if e.kind == ExitKind.Hypercall else None)
    hello = next(e for e in exits if e.kind == ExitKind.Hypercall and e.reason.nr == 7)
    report = next(e for e in exits if e.kind == ExitKind.Hypercall and e.reason.nr == 3)
    assert hello.vcpu_id == 1 and report.vcpu_id == 0
    assert hello.reason.args[0] == 0x55  # the context id arrived in x0
    assert hello.reason.args[1] & 0xFF00FFFFFF == 1  # its MPIDR says Aff0 = 1
    on, off, missing = report.reason.args[:3]
    assert on == 0  # SUCCESS
    assert off == 1  # AFFINITY_INFO: OFF after its CPU_OFF
    assert missing == (-2) & MASK  # INVALID_PARAMETERS
    assert "2 CPUs, VM 1 has 2 vCPUs" in hv.console
    assert exits[-1].kind == ExitKind.SystemDown


def test_smp_range():
    with pytest.raises(ValueError, match=r"smp must be 1\.\.8"):
        Hypervisor(smp=9)


def send_sgi(gic: int, intid: str) -> str:
    """Assembly sending SGI ``intid`` (an immediate or a w-register) to vCPU 1."""
    if gic == 2:
        # GICD_SGIR: TargetListFilter 0, CPUTargetList [23:16] = vCPU 1.
        load = f"mov w0, #{intid[1:]}" if intid.startswith("#") else f"mov w0, {intid}"
        return f"""
    {load}
    orr w0, w0, #(1 << 17)
    mov x9, #{GICD:#x}
    str w0, [x9, #0xf00]"""
    # ICC_SGI1R_EL1: INTID [27:24], TargetList = Aff0 1.
    load = f"mov x0, {intid}" if intid.startswith("#") else f"mov x0, {intid.replace('w', 'x')}"
    return f"""
    {load}
    lsl x0, x0, #24
    orr x0, x0, #(1 << 1)
    msr icc_sgi1r_el1, x0
    isb"""


def gic_setup(gic: int) -> str:
    """vCPU 1's CPU interface set-up; on a GICv2 also its distributor's Group 0 enable."""
    if gic == 2:
        return (
            GIC_SETUP_V2
            + f"""
    mov x9, #{GICD:#x}
    mov w0, #1
    str w0, [x9]                // GICD_CTLR.EnableGrp0
"""
        )
    return GIC_SETUP_V3


# vCPU 1 sets up its GIC CPU interface and IRQ vector exactly as the
# interrupt tests' guests do (GIC_SETUP_V*, VECTORS_V*).
# vCPU 0 starts vCPU 1, waits until it is ready, sends it SGI 3, waits
# until it took it and powers off; `secondary:` follows.
SGI_PRIMARY_TEMPLATE = """
    ldr x0, =0xC4000003         // CPU_ON vCPU 1
    mov x1, #1
    adr x2, secondary
    mov x3, #0
    hvc #0
    adr x10, ready
1:  ldr x11, [x10]              // wait until vCPU 1 can take interrupts
    cbz x11, 1b
    SEND_SGI_3
    adr x10, done
2:  ldr x11, [x10]              // wait until vCPU 1 took it
    cbz x11, 2b
    ldr x0, =0x84000008
    hvc #0
secondary:
"""

# The GICv3 primary other suites use.
SGI_PRIMARY = SGI_PRIMARY_TEMPLATE.replace("SEND_SGI_3", send_sgi(3, "#3"))

SGI_SECONDARY = """
    adr x10, ready
    mov x11, #1
    str x11, [x10]
3:  cbnz x21, 8f                // checked with PSTATE.I masked, so the SGI
    wfi                         // cannot be taken between the check and
    msr daifclr, #2             // the WFI and leave it waiting for nothing
    isb
    msr daifset, #2
    b 3b
8:  mov x0, #7
    mov x1, x21
    hvc #0                      // report the INTID taken
    adr x10, done
    mov x11, #1
    str x11, [x10]
4:  wfi
    b 4b
"""

SGI_DATA = """
    .balign 8
ready: .quad 0
done: .quad 0
"""


def sgi_guest(gic: int) -> str:
    primary = SGI_PRIMARY_TEMPLATE.replace("SEND_SGI_3", send_sgi(gic, "#3"))
    vectors = VECTORS_V2 if gic == 2 else VECTORS_V3
    return primary + gic_setup(gic) + SGI_SECONDARY + vectors + SGI_DATA


@GICS
@pytest.mark.parametrize("trap_wfi", [False, True], ids=["wfi-native", "wfi-trapped"])
def test_sgi_between_vcpus(gic, trap_wfi, transport, no_leaked_qemu):
    """vCPU 0 writes ICC_SGI1R_EL1 (GICv3: trapped, decoded by the core into
    SendIpi) or GICD_SGIR (GICv2: its emulated distributor); the firmware
    delivers SGI 3 to vCPU 1 through its CPU's list registers, kicking that
    CPU out of the guest (or out of its WFI wait)."""
    with Hypervisor(smp=2, transport=transport, gic=gic, vgic=gic == 2) as hv:
        hv.load(Guest.from_asm(sgi_guest(gic)))
        if trap_wfi:
            hv.set_traps(hcr_el2=1 << 13)
        exits = hv.run(lambda e: 0 if e.kind == ExitKind.Hypercall else None)
    taken = [e for e in exits if e.kind == ExitKind.Hypercall and e.reason.nr == 7]
    assert len(taken) == 1 and taken[0].vcpu_id == 1
    # GICv2's GICC_IAR carries the requesting CPU in [12:10]: vCPU 0.
    assert taken[0].reason.args[0] == 3
    kinds = {e.kind for e in exits}
    assert ExitKind.SendIpi not in kinds and ExitKind.MmioWrite not in kinds  # all in EL2


# vCPU 1 keeps IRQs masked while vCPU 0 sends it SGIs 1..8 (more than the
# four list registers QEMU's GICv3 has), then unmasks and collects them.
MANY_SGIS = """
    ldr x0, =0xC4000003
    mov x1, #1
    adr x2, secondary
    mov x3, #0
    hvc #0
    adr x10, ready
1:  ldr x11, [x10]
    cbz x11, 1b
    mov x12, #1                 // INTID
2:  SEND_SGI_W12
    add x12, x12, #1
    cmp x12, #9
    b.ne 2b
    adr x10, sent
    mov x11, #1
    str x11, [x10]
    adr x10, done
3:  ldr x11, [x10]
    cbz x11, 3b
    ldr x0, =0x84000008
    hvc #0
secondary:
    SECONDARY_SETUP
    mov x22, #0                 // bitmask of INTIDs taken
    adr x10, ready
    mov x11, #1
    str x11, [x10]
    adr x10, sent
4:  ldr x11, [x10]              // wait, IRQs masked, until all 8 were sent
    cbz x11, 4b
    mov x23, #0x1fe             // INTIDs 1..8
5:  cmp x22, x23                // checked with PSTATE.I masked (see
    b.eq 6f                     // SGI_SECONDARY)
    wfi
    msr daifclr, #2
    isb
    msr daifset, #2
    b 5b
6:
    mov x0, #7
    mov x1, x22
    hvc #0
    adr x10, done
    mov x11, #1
    str x11, [x10]
7:  wfi
    b 7b
    .balign 2048
vectors:
    .skip 0x280
    ACKNOWLEDGE_X21
    and x25, x21, #0x3ff        // the INTID (GICv2: without the source CPU)
    mov x24, #1
    lsl x24, x24, x25
    orr x22, x22, x24
    END_X21
    isb
    eret
    .balign 8
ready: .quad 0
sent: .quad 0
done: .quad 0
"""


def many_sgis(gic: int) -> str:
    if gic == 2:
        ack = "mov x9, #0x08010000\n    ldr w21, [x9, #0xc]       // GICC_IAR"
        end = "str w21, [x9, #0x10]        // GICC_EOIR"
    else:
        ack, end = "mrs x21, icc_iar1_el1", "msr icc_eoir1_el1, x21"
    return (
        MANY_SGIS.replace("SEND_SGI_W12", send_sgi(gic, "w12"))
        .replace("SECONDARY_SETUP", gic_setup(gic))
        .replace("ACKNOWLEDGE_X21", ack)
        .replace("END_X21", end)
    )


@GICS
def test_more_interrupts_than_list_registers(gic, transport, no_leaked_qemu):
    """Eight SGIs pending at once overflow QEMU's four list registers; the
    rest wait in EL2 and are refilled on the underflow maintenance interrupt
    (ICH_HCR_EL2.UIE / GICH_HCR.UIE, PPI 25), so none is lost."""
    with Hypervisor(smp=2, transport=transport, timeout=10, gic=gic, vgic=gic == 2) as hv:
        hv.load(Guest.from_asm(many_sgis(gic)))
        exits = hv.run(lambda e: 0 if e.kind == ExitKind.Hypercall else None)
    taken = next(e for e in exits if e.kind == ExitKind.Hypercall and e.reason.nr == 7)
    assert taken.reason.args[0] == 0x1FE  # INTIDs 1..8, each taken
