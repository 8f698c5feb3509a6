"""Two VMs side by side: each its own stage-2 tables and VMID, its own RAM
slice, its own CPU. Each writes a pattern over all of its RAM it can name
and must find the other's untouched, and the hypervisor's image unchanged."""

from __future__ import annotations

import armvcpu
import pytest
from armvcpu import ArmvcpuError, ExitKind, Guest, GuestImageError, Hypervisor
from armvcpu.session.vm import VM, VCpu

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


@pytest.mark.parametrize("gic", [3, 2], ids=["gicv3", "gicv2"])
def test_two_vms_are_isolated(gic, no_leaked_qemu):
    # (shm: the test reads both VMs' RAM and the firmware through the mapping)
    a, b = 0xAAAA_0000_AAAA_0001, 0xBBBB_0000_BBBB_0002
    with Hypervisor(smp=2, gic=gic) as hv:
        hv.load(_guest(a))
        vm_a = hv.vms[1]
        vm_b = hv.add_vm(_guest(b))
        assert isinstance(vm_b, VM) and vm_b.id == 2 and hv.vms[2] is vm_b
        # The firmware puts the VMs on consecutive CPUs, VM 1 first.
        assert vm_a.vcpus == (VCpu(index=0, cpu=0),)
        assert vm_b.vcpus == (VCpu(index=0, cpu=1),)
        assert not vm_a.running  # not before the first exits()
        reports: dict[int, tuple[int, int]] = {}
        image = None
        ranges = _protected_ranges()  # code, data and every page table
        for exit in hv.exits():
            if image is None:
                image = _digest(hv.ram, ranges)
            assert exit.vm is hv.vms[exit.vm_id] and exit.vm.running
            if exit.kind == ExitKind.Hypercall and exit.reason.nr == 3:
                reports[exit.vm_id] = exit.reason.args[:2]
                # Both VMs have written their patterns: look at both RAM slices.
                if len(reports) == 2:
                    seen_a = vm_a.read(0x4010_0000, 8)
                    seen_b = vm_b.read(0x4010_0000, 8)
                    end_a = vm_a.read(0x401F_FFF8, 8)
                    end_b = vm_b.read(0x401F_FFF8, 8)
                    after = _digest(hv.ram, ranges)
                exit.resume()
        assert not vm_a.running and not vm_b.running  # both powered off
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
        for n in range(3):  # VM 1 keeps one CPU; the machine has RAM for every VM
            hv.add_vm(_guest(n + 1))
        with pytest.raises(ArmvcpuError, match="at most 4 VMs"):
            hv.add_vm(_guest(2))
        assert sorted(hv.vms) == [1, 2, 3, 4]  # the refused VM is not there
        with pytest.raises(ValueError, match="at least one vCPU"):
            hv.add_vm(_guest(2), vcpus=0)


def test_a_vm_is_addressed_by_its_own_ipas(no_leaked_qemu):
    with Hypervisor(smp=2) as hv:
        vm1 = hv.vms[1]
        vm2 = hv.add_vm(_guest(2))
        # Same IPA, different machine RAM: VM 1's is identity-mapped, VM 2's
        # slice lies above the firmware.
        assert vm1.ipa_to_pa(0x4000_0000) == 0x4000_0000
        assert vm2.ipa_to_pa(0x4000_0000) == armvcpu._core.EXTRA_VM_RAM_BASE
        vm2.write(0x4010_0000, b"vm two")
        assert vm2.read(0x4010_0000, 6) == b"vm two"
        assert vm1.read(0x4010_0000, 6) != b"vm two"
        with pytest.raises(GuestImageError, match="outside VM 2's RAM"):
            vm2.read(0x3FFF_F000, 8)
        with pytest.raises(ArmvcpuError, match="boots VM 1"):
            vm2.load_linux(b"")
        assert 3 not in hv.vms


def test_two_vms_over_both_transports(transport, no_leaked_qemu):
    """Each VM's exits arrive with its own VM id, on either transport."""
    with Hypervisor(smp=2, transport=transport) as hv:
        hv.load(_guest(0x1111))
        vm2 = hv.add_vm(_guest(0x2222))
        exits = hv.run(lambda e: 0 if e.kind == ExitKind.Hypercall else None)
    assert {e.vm for e in exits} == {hv.vms[1], vm2}
    reports = {e.vm_id: e.reason.args[:2] for e in exits if e.kind == ExitKind.Hypercall}
    assert reports == {1: (0x1111, 0x1111), 2: (0x2222, 0x2222)}
    assert sorted(e.vm_id for e in exits if e.kind == ExitKind.SystemDown) == [1, 2]
