"""vCPUs time-sharing physical CPUs: the EL2 scheduler and the full world
switch (issue 15). Every guest checks its own state in a loop while the
other vCPU on the same CPU runs, and reports how many values it found
changed; the switches themselves are read back from the firmware's log."""

from __future__ import annotations

import pytest
from armvcpu import ArmvcpuError, ExitKind, Guest, Hypervisor

from .test_interrupts import GIC_SETUP, VECTORS

CPU_ON = 0xC4000003
CPU_OFF = 0x84000002
SYSTEM_OFF = 0x84000008
REPORT = 0x10  # hypercall 0x10 + vCPU index: x1 = values found changed, x2 = loops, x3 = VL

# Each vCPU fills V0-V30 with its own pattern, Z31 with an SVE index vector
# at its own vector length (ZCR_EL1.LEN 1 or 3), and its own TPIDR_EL1,
# TPIDR_EL0, CONTEXTIDR_EL1 and virtual timer (CVAL, masked CTL); then it
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
_SYSREGS = ("tpidr_el1", "tpidr_el0", "contextidr_el1")


def _state_guest(sve: bool, rounds: int = 4) -> str:
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


def _reports(exits: list) -> dict[int, tuple[int, int, int]]:
    out = {}
    for e in exits:
        if e.kind == ExitKind.Hypercall and e.reason.nr in (REPORT, REPORT + 1):
            out[e.reason.nr - REPORT] = tuple(e.reason.args[:3])
    return out


@pytest.mark.parametrize("sve", [False, True], ids=["fpsimd", "sve"])
def test_two_vcpus_on_one_cpu_keep_their_own_state(sve, no_leaked_qemu):
    with Hypervisor(smp=2, host_cpus=1) as hv:
        assert hv.config.smp == 1  # QEMU's machine has one CPU
        hv.load(Guest.from_asm(_state_guest(sve)))
        exits = hv.run(lambda e: 0 if e.kind == ExitKind.Hypercall else None)
        switches = hv.world_switches()
        assert hv.placement() == [0, 0]
    reports = _reports(exits)
    assert set(reports) == {0, 1}
    for vcpu, (changed, passes, _) in reports.items():
        assert changed == 0, f"vCPU {vcpu} found {changed} of its values changed"
        assert passes > 0
    if sve:
        # Each kept its own vector length: 256 and 512 bits (4 and 8 doublewords).
        assert reports[0][2] == 4 and reports[1][2] == 8
    # Both ran on CPU 0, and each handed it to the other.
    assert {(s.from_vcpu, s.to_vcpu) for s in switches} >= {((1, 0), (1, 1)), ((1, 1), (1, 0))}
    assert all(s.cpu == 0 and s.ran_s >= 0 for s in switches)
    assert "slice" in {s.reason for s in switches}
    assert exits[-1].kind == ExitKind.SystemDown


# vCPU 1 sleeps in WFI with its virtual timer armed for 10 ms; vCPU 0 spins
# without a single exit until vCPU 1 is back. Only the scheduler's EL2 timer,
# set to vCPU 1's deadline, can give vCPU 1 the CPU again.
WFI_GUEST = f"""
    ldr x0, ={CPU_ON:#x}
    mov x1, #1
    adr x2, secondary
    mov x3, #0
    hvc #0
    adr x10, done
1:  ldr x11, [x10]                  // spin, no exits, until vCPU 1 woke
    cbz x11, 1b
    ldr x0, ={SYSTEM_OFF:#x}
    hvc #0
secondary:
{GIC_SETUP}
    mrs x20, cntfrq_el0
    mov x0, #100
    udiv x23, x20, x0               // 10 ms of counter ticks
    mrs x19, cntvct_el0
    add x24, x19, x23               // the deadline
    msr cntv_cval_el0, x24
    mov x0, #1                      // CNTV_CTL_EL0.ENABLE, not masked
    msr cntv_ctl_el0, x0
    isb
    msr daifclr, #2
2:  wfi
    cbz x21, 2b
    mrs x22, cntvct_el0
    mov x0, #0x20
    mov x1, x21                     // the INTID taken
    sub x2, x22, x24                // how long after the deadline it woke (>= 0)
    hvc #0
    adr x10, done
    mov x11, #1
    str x11, [x10]
    ldr x0, ={CPU_OFF:#x}
    hvc #0
    b .
{VECTORS}
    .balign 8
done: .quad 0
"""


def test_sleeping_vcpu_wakes_on_its_timer_while_another_runs(no_leaked_qemu):
    with Hypervisor(smp=2, host_cpus=1) as hv:
        hv.load(Guest.from_asm(WFI_GUEST))
        exits = hv.run(lambda e: 0 if e.kind == ExitKind.Hypercall else None)
        switches = hv.world_switches()
    woke = next(e for e in exits if e.kind == ExitKind.Hypercall and e.reason.nr == 0x20)
    assert woke.vcpu_id == 1
    assert woke.reason.args[0] == 27  # the virtual timer's PPI
    assert woke.reason.args[1] < 2**63  # not before its deadline
    assert ((1, 1), (1, 0)) in {(s.from_vcpu, s.to_vcpu) for s in switches}
    assert exits[-1].kind == ExitKind.SystemDown


def test_host_cpus_is_checked(no_leaked_qemu):
    for bad in (0, 9, "2", True):
        with pytest.raises(ValueError, match=r"host_cpus must be 1\.\.8"):
            Hypervisor(smp=2, host_cpus=bad)  # type: ignore[arg-type]


def test_add_vm_cpus_are_checked(no_leaked_qemu):
    with Hypervisor(smp=2, host_cpus=2) as hv:
        guest = Guest.from_asm(f"ldr x0, ={SYSTEM_OFF:#x}\n hvc #0")
        hv.load(guest)
        with pytest.raises(ValueError, match="cpus: 2 is not a CPU of this machine"):
            hv.add_vm(guest, cpus={2})
        with pytest.raises(ValueError, match="at least one physical CPU"):
            hv.add_vm(guest, cpus=set())
        with pytest.raises(TypeError, match="set of physical CPU numbers"):
            hv.add_vm(guest, cpus="0")  # type: ignore[arg-type]
        with pytest.raises(ArmvcpuError, match="VMs need at least 3 vCPUs"):
            hv.add_vm(guest, vcpus=2)
