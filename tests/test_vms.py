"""Two VMs side by side: each its own stage-2 tables and VMID, its own RAM
slice, its own CPU. Each writes a pattern over all of its RAM it can name
and must find the other's untouched, and the hypervisor's image unchanged."""

from __future__ import annotations

import pytest
from armvcpu import ArmvcpuError, ExitKind, Guest, GuestImageError, Hypervisor

from .test_isolation import _digest, _protected_ranges

# Fills 1 MiB of its RAM after its code with its pattern, then reads the
# first word back and reports it with the pattern (hypercall 3), then powers
# off. The pattern comes in x0 (GuestConfig.x0).
PATTERN_GUEST = """
    mov x19, x0
    movz x10, #0x4010, lsl #16      // IPA 0x4010_0000
    mov x11, #(1 << 17)             // 128 Ki words = 1 MiB
1:  str x19, [x10], #8
    subs x11, x11, #1
    b.ne 1b
    movz x10, #0x4010, lsl #16
    ldr x12, [x10]
    mov x0, #3
    mov x1, x19
    mov x2, x12
    hvc #0
    ldr x0, =0x84000008
    hvc #0
"""


def _guest(pattern: int) -> Guest:
    g = Guest.from_asm(PATTERN_GUEST)
    return Guest(g.segments, g.entry, "pattern", x0=pattern)


def test_two_vms_are_isolated(no_leaked_qemu):
    # (shm: the test reads both VMs' RAM and the firmware through the mapping)
    a, b = 0xAAAA_0000_AAAA_0001, 0xBBBB_0000_BBBB_0002
    with Hypervisor(smp=2) as hv:
        hv.load(_guest(a))
        vm_b = hv.add_vm(_guest(b))
        assert vm_b == 2
        reports: dict[int, tuple[int, int]] = {}
        image = None
        ranges = _protected_ranges()  # code, data and every page table
        for exit in hv.exits():
            if image is None:
                image = _digest(hv.ram, ranges)
            if exit.kind == ExitKind.Hypercall and exit.reason.nr == 3:
                reports[exit.vm_id] = exit.reason.args[:2]
                # Both VMs have written their patterns: look at both RAM slices.
                if len(reports) == 2:
                    seen_a = hv.read_guest(0x4010_0000, 8, vm=1)
                    seen_b = hv.read_guest(0x4010_0000, 8, vm=2)
                    end_a = hv.read_guest(0x401F_FFF8, 8, vm=1)
                    end_b = hv.read_guest(0x401F_FFF8, 8, vm=2)
                    after = _digest(hv.ram, ranges)
                exit.resume()
        console = hv.console
    assert reports == {1: (a, a), 2: (b, b)}  # each read back its own pattern
    assert int.from_bytes(seen_a, "little") == a and int.from_bytes(end_a, "little") == a
    assert int.from_bytes(seen_b, "little") == b and int.from_bytes(end_b, "little") == b
    assert image == after
    assert "VM 1 has 1 vCPU; VM 2 has 1 vCPU" in console
    assert "VM 1 stopped" in console and "VM 2 stopped" in console


def test_add_vm_checks_cpus_and_memory(no_leaked_qemu):
    with Hypervisor(smp=1) as hv, pytest.raises(ArmvcpuError, match="smp=1"):
        hv.add_vm(_guest(1))
    with Hypervisor(smp=4, memory_mb=256) as hv:
        hv.add_vm(_guest(1))
        with pytest.raises(GuestImageError, match="memory_mb"):
            hv.add_vm(_guest(2))


def test_two_vms_over_both_transports(transport, no_leaked_qemu):
    """Each VM's exits arrive with its own VM id, on either transport."""
    with Hypervisor(smp=2, transport=transport) as hv:
        hv.load(_guest(0x1111))
        hv.add_vm(_guest(0x2222))
        exits = hv.run(lambda e: 0 if e.kind == ExitKind.Hypercall else None)
    reports = {e.vm_id: e.reason.args[:2] for e in exits if e.kind == ExitKind.Hypercall}
    assert reports == {1: (0x1111, 0x1111), 2: (0x2222, 0x2222)}
    assert sorted(e.vm_id for e in exits if e.kind == ExitKind.SystemDown) == [1, 2]
