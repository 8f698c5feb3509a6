"""A guest for two vCPUs time-sharing one CPU (``Hypervisor(smp=2,
host_cpus=1)``) that checks its own state while the other runs: the tests'
no-leak check and ``armvcpu bench el2``'s world-switch figure."""

from __future__ import annotations

CPU_ON = 0xC4000003
CPU_OFF = 0x84000002
SYSTEM_OFF = 0x84000008
#: Hypercall REPORT + vCPU index: x1 = values found changed, x2 = passes,
#: x3 = SVE doublewords per vector (0 without SVE).
REPORT = 0x10

# Each vCPU fills V0-V30 with its own pattern, Z31 with an SVE index vector
# at its own vector length (ZCR_EL1.LEN 1 or 3), and its own TPIDR_EL1,
# TPIDR_EL0, CONTEXTIDR_EL1, two PAuth keys, GIC priority mask (ICC_PMR_EL1,
# kept in ICH_VMCR_EL2) and virtual timer (CVAL, masked CTL); then it
# checks all of them on every pass of a loop that ends only once it has seen
# the other vCPU's counter move `rounds` times, each move a switch away and
# back on their shared CPU.
_FILL = "\n".join(
    f"    add x9, x20, #{n}\n    fmov d{n}, x9\n    mov v{n}.d[1], x9" for n in range(31)
)
_CHECK = "\n".join(
    f"    add x9, x20, #{n}\n    fmov x10, d{n}\n    cmp x10, x9\n    cinc x24, x24, ne\n"
    f"    mov x10, v{n}.d[1]\n    cmp x10, x9\n    cinc x24, x24, ne"
    for n in range(31)
)
# EL1 registers, and two pointer-authentication keys (APIAKeyLo_EL1,
# APGAKeyLo_EL1: -cpu max has FEAT_PAuth, and the firmware leaves the keys
# to the guest with HCR_EL2.APK).
_SYSREGS = ("tpidr_el1", "tpidr_el0", "contextidr_el1", "S3_0_C2_C1_0", "S3_0_C2_C3_0")


#: QEMU virt's GICv2 CPU interface: on a GICv2 the guest's is the GICV there.
GICC = 0x0801_0000


# The MTE tag-check state (FEAT_MTE2, -M virt,mte=on): per vCPU, GCR_EL1
# (Exclude 0xff, RRND [16] for vCPU 1), RGSR_EL1 (SEED [23:8] 0xabcd or
# 0xabde, TAG [3:0] 5), TFSR_EL1 and TFSRE0_EL1 (TF0 [0] / TF1 [1]), each
# value computed into x9 from the vCPU index in x19 (Arm ARM D24.2).
_MTE_VALUES = (
    ("S3_0_C1_C0_6", "    mov x9, #0xff\n    add x9, x9, x19, lsl #16"),
    ("S3_0_C1_C0_5", "    ldr x9, =0xabcd05\n    mov x10, #0x1100\n    madd x9, x19, x10, x9"),
    ("S3_0_C5_C6_0", "    add x9, x19, #1"),
    ("S3_0_C5_C6_1", "    mov x9, #2\n    sub x9, x9, x19"),
)


def state_guest(sve: bool, rounds: int = 4, gic: int = 3, mte: bool = False) -> str:
    """Assembly for vCPUs 0 and 1 (vCPU 0 starts 1 with PSCI CPU_ON); ``sve``
    adds Z31 and ZCR_EL1, which needs a CPU with SVE. The priority mask is
    ICC_PMR_EL1 on a GICv3 (``gic=3``) and GICC_PMR (memory-mapped, kept in
    GICH_VMCR) on a GICv2. ``mte`` adds the MTE tag-check registers (a
    machine with ``mte=True``)."""
    mte_fill = "\n".join(f"{value}\n    msr {reg}, x9" for reg, value in _MTE_VALUES) if mte else ""
    mte_check = (
        "\n".join(
            f"{value}\n    mrs x11, {reg}\n    cmp x11, x9\n    cinc x24, x24, ne"
            for reg, value in _MTE_VALUES
        )
        if mte
        else ""
    )
    if gic == 2:
        pmr_set = f"""
    ldr x9, ={GICC:#x}
    mov x10, #0xf0
    sub x10, x10, x19, lsl #4       // priority mask 0xf0 or 0xe0
    str w10, [x9, #4]               // GICC_PMR"""
        pmr_get = f"""
    ldr x9, ={GICC:#x}
    ldr w10, [x9, #4]"""
    else:
        pmr_set = """
    mov x9, #1                      // ICC_SRE_EL1.SRE: the GIC's system registers
    msr icc_sre_el1, x9
    isb
    mov x9, #0xf0
    sub x9, x9, x19, lsl #4         // priority mask 0xf0 or 0xe0
    msr icc_pmr_el1, x9"""
        pmr_get = """
    mrs x10, icc_pmr_el1"""
    sve_fill = (
        """
    lsl x9, x19, #1
    add x9, x9, #1                  // ZCR_EL1.LEN: 1 (256 bits) or 3 (512 bits)
    msr S3_0_C1_C2_0, x9
    isb
    ptrue p1.d
    index z31.d, x20, #1
"""
        if sve
        else ""
    )
    sve_check = (
        """
    lastb x10, p1, z31.d            // its last element: pattern + elements - 1
    cntd x11
    add x11, x11, x20
    sub x11, x11, #1
    cmp x10, x11
    cinc x24, x24, ne
"""
        if sve
        else ""
    )
    sys_fill = "\n".join(
        f"    add x9, x20, #{i + 40}\n    msr {r}, x9" for i, r in enumerate(_SYSREGS)
    )
    sys_check = "\n".join(
        f"    add x9, x20, #{i + 40}\n    mrs x10, {r}\n    cmp x10, x9\n    cinc x24, x24, ne"
        for i, r in enumerate(_SYSREGS)
    )
    return f"""
{"    .arch armv8.2-a+sve" if sve else ""}
    mov x19, #0
    ldr x0, ={CPU_ON:#x}
    mov x1, #1
    adr x2, secondary
    mov x3, #0
    hvc #0
    b common
secondary:
    mov x19, #1
common:
    movz x9, #0x33, lsl #16         // CPACR_EL1.FPEN and ZEN: FP/SIMD and SVE untrapped
    msr cpacr_el1, x9
    isb
    add x20, x19, #1
    ldr x9, =0x1111111111111111
    mul x20, x20, x9                // this vCPU's pattern
{_FILL}
{sve_fill}
{sys_fill}
{mte_fill}
{pmr_set}
    lsl x9, x20, #4                 // a virtual timer far away, masked
    lsr x9, x9, #8
    msr cntv_cval_el0, x9
    mov x9, #3
    msr cntv_ctl_el0, x9
    isb
    adr x25, counters
    eor x26, x19, #1
    add x26, x25, x26, lsl #3       // the other vCPU's counter
    add x25, x25, x19, lsl #3       // mine
    mov x23, #0                     // passes
    mov x24, #0                     // values found changed
    mov x27, #0                     // moves of the other's counter seen
    ldr x28, [x26]
loop:
{_CHECK}
{sve_check}
{sys_check}
{mte_check}
{pmr_get}
    mov x9, #0xf0
    sub x9, x9, x19, lsl #4
    cmp x10, x9
    cinc x24, x24, ne
    mrs x10, cntv_ctl_el0
    and x10, x10, #3
    cmp x10, #3
    cinc x24, x24, ne
    mrs x10, cntv_cval_el0
    lsl x9, x20, #4
    lsr x9, x9, #8
    cmp x10, x9
    cinc x24, x24, ne
    add x23, x23, #1
    str x23, [x25]
    ldr x10, [x26]
    cmp x10, x28
    b.eq loop
    mov x28, x10
    add x27, x27, #1
    cmp x27, #{rounds}
    b.lo loop
    mov x0, #{REPORT}
    add x0, x0, x19
    mov x1, x24
    mov x2, x23
    mov x3, #0
{"    cntd x3" if sve else ""}
    hvc #0
    adr x10, done
    mov x11, #1
    str x11, [x10, x19, lsl #3]
    eor x12, x19, #1
finish:                             // keep my counter moving until both are done
    add x23, x23, #1
    str x23, [x25]
    ldr x11, [x10, x12, lsl #3]
    cbz x11, finish
    cbnz x19, 1f
    ldr x0, ={SYSTEM_OFF:#x}
    hvc #0
1:  ldr x0, ={CPU_OFF:#x}
    hvc #0
    b .
    .balign 8
counters: .quad 0, 0
done: .quad 0, 0
"""
