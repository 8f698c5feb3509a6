"""A passed-through PCIe device's DMA stays inside its VM (``-M
virt,iommu=smmuv3``): the firmware programs QEMU's SMMUv3 so a device
reaches its VM's RAM and nothing else of the machine.

The device is QEMU's ``edu`` (its DMA engine copies between its own 4 KiB
buffer and memory it is told to); the guest is a raw image that finds it on
bus 0, copies a pattern into the buffer and back into its own RAM, then
points the DMA at machine memory outside its RAM (where other VMs' RAM lies).
The same with ``edu`` behind a ``pcie-root-port``: the guest numbers the
port's secondary bus 1, so edu's requester ID (the SMMU's StreamID) is
01:00.0.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
from armvcpu import _core
from armvcpu.guests.guest import Guest
from armvcpu.session.hypervisor import Hypervisor

OUTSIDE = int(_core.EXTRA_VM_RAM_BASE) + 0x10_0000  # machine RAM, not the guest's
INSIDE = 0x4100_0000
EDU = ["-device", "edu,dma_mask=0xffffffffff"]  # edu clamps to 28 bits by default
EDU_BEHIND_ROOT_PORT = ["-device", "pcie-root-port,id=rp0", "-device",
                        "edu,bus=rp0,dma_mask=0xffffffffff"]  # fmt: skip

# x21: the ECAM of the bus edu is looked for on.
_ON_BUS_0 = r"""
    ldr x21, =0x4010000000        // ECAM: bus 0
"""

# QEMU's pcie-root-port (1b36:000c) found on bus 0 and set up as firmware
# would: primary bus 0, secondary and subordinate bus 1, its memory window
# 0x1000_0000..0x100f_ffff (where edu's BAR goes), memory space and bus
# master on (a bridge forwards its bus's DMA only then).
_BEHIND_ROOT_PORT = r"""
    ldr x26, =0x4010000000        // ECAM: bus 0
    mov x27, #0
4:  lsl x28, x27, #15
    add x28, x28, x26
    ldr w24, [x28]
    ldr w0, =0x000c1b36
    cmp w24, w0
    b.eq 5f
    add x27, x27, #1
    cmp x27, #32
    b.lt 4b
    adr x1, s_noport
    bl puts
    b off
5:  ldr w0, =0x00010100           // bus numbers: subordinate 1, secondary 1, primary 0
    str w0, [x28, #0x18]
    ldr w0, =0x10001000           // memory limit and base: 0x1000_0000, 1 MiB
    str w0, [x28, #0x20]
    mov w0, #6
    strh w0, [x28, #4]            // COMMAND: memory space, bus master
    add x21, x26, #(1 << 20)      // ECAM: bus 1
"""

_GUEST = r"""
    ldr x20, =0x09000000          // PL011 data register
FIND_BUS
    mov x22, #0
1:  lsl x23, x22, #15
    add x23, x23, x21             // config space of 00:<dev>.0
    ldr w24, [x23]
    ldr w0, =0x11e81234           // edu: vendor 1234, device 11e8
    cmp w24, w0
    b.eq 2f
    add x22, x22, #1
    cmp x22, #32
    b.lt 1b
    adr x1, s_none
    bl puts
    b off
2:  ldr w0, =0x10000000           // BAR 0 in the low MMIO window
    str w0, [x23, #0x10]
    mov w0, #6                    // COMMAND: memory space, bus master
    strh w0, [x23, #4]
    ldr x25, =0x10000000
    adr x0, pattern               // RAM -> the device's buffer (0x40000)
    mov x1, #0x40000
    mov x2, #1
    bl dma
    mov x0, #0x40000              // the buffer -> RAM inside
    ldr x1, =INSIDE
    mov x2, #3
    bl dma
    adr x1, s_in
    bl puts
    ldr x1, =INSIDE
    bl puts
    mov x0, #0x40000              // the buffer -> machine memory outside
    ldr x1, =OUTSIDE
    mov x2, #3
    bl dma
    adr x1, s_done
    bl puts
off:
    ldr x0, =0x84000008           // PSCI SYSTEM_OFF
    hvc #0
    b .
dma:                              // x0 source, x1 destination, x2 command
    str x0, [x25, #0x80]
    str x1, [x25, #0x88]
    mov x0, #8
    str x0, [x25, #0x90]
    str x2, [x25, #0x98]
3:  ldr x0, [x25, #0x98]          // bit 0 clears when the copy is done
    tbnz x0, #0, 3b
    ret
puts:
    ldrb w0, [x1], #1
    cbz w0, 9f
    str w0, [x20]
    b puts
9:  ret
    .align 3
pattern: .asciz "DMA-OK!"
s_in: .asciz "in="
s_done: .asciz "\ndone\n"
s_none: .asciz "no edu\n"
s_noport: .asciz "no root port\n"
    .ltorg
""".replace("=INSIDE", f"={INSIDE:#x}").replace("=OUTSIDE", f"={OUTSIDE:#x}")


def _image(find_bus: str) -> bytes:
    (segment,) = Guest.from_asm(_GUEST.replace("FIND_BUS\n", find_bus), 0x4008_0000).segments
    return bytes(segment.data)


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return _image(_ON_BUS_0)


@pytest.fixture(scope="module")
def image_behind_root_port(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return _image(_BEHIND_ROOT_PORT)


def _run(image: bytes, iommu: bool,
         devices: list[str] = EDU) -> tuple[str, bytes, list, list[int]]:  # fmt: skip
    vectors = []
    with Hypervisor(memory_mb=128, uart="emulate", iommu=iommu, extra_args=devices,
                    timeout=60) as hv:  # fmt: skip
        hv.boot(image, devices=("pcie",))
        for exit in hv.exits(claim_hypercalls=False):
            if exit.kind == _core.ExitKind.ExternalInterrupt:
                vectors.append(exit.reason.vector)
            if exit.kind == _core.ExitKind.SystemDown:
                break
        return hv.guest_console, hv._read_phys(OUTSIDE, 8), hv.dma_faults(), vectors


def test_without_an_smmu_a_device_writes_outside_its_vm(image, no_leaked_qemu):
    """What the SMMU is for: with none, the DMA lands in machine memory that
    is not the VM's."""
    console, outside, faults, _ = _run(image, iommu=False)
    assert "in=DMA-OK!" in console and "done" in console
    assert outside == b"DMA-OK!\0"
    assert faults == []


def test_with_the_smmu_dma_reaches_the_vms_ram_and_nothing_else(image, no_leaked_qemu):
    console, outside, faults, vectors = _run(image, iommu=True)
    assert "in=DMA-OK!" in console and "done" in console  # inside: as before
    assert outside == bytes(8)  # outside: untouched
    # One fault per transaction the device made (QEMU's edu writes 8 bytes
    # as two 4-byte transactions), each stopped at the SMMU.
    assert faults and faults[0].address == OUTSIDE
    for fault in faults:
        assert OUTSIDE <= fault.address < OUTSIDE + 8 and fault.write
        assert fault.event == 0x10  # SMMUv3 F_TRANSLATION: nothing mapped there
        assert fault.stream_id == faults[0].stream_id
    # The requester ID is edu's: 00:<dev>.0, the slot the guest found it in.
    assert faults[0].stream_id >> 8 == 0 and faults[0].stream_id & 7 == 0
    assert "blocked" in str(faults[0])
    # The host saw it as an exit: the SMMU's event-queue interrupt.
    assert int(_core.DMA_FAULT_INTID) in vectors


def test_without_an_smmu_a_device_behind_a_root_port_writes_outside_its_vm(
    image_behind_root_port, no_leaked_qemu
):
    console, outside, faults, _ = _run(image_behind_root_port, False, EDU_BEHIND_ROOT_PORT)
    assert "in=DMA-OK!" in console and "done" in console, console
    assert outside == b"DMA-OK!\0"
    assert faults == []


def test_with_the_smmu_a_device_behind_a_root_port_is_confined_too(
    image_behind_root_port, no_leaked_qemu
):
    """Bus 1's requester IDs translate through the VM's map as bus 0's do:
    DMA inside the VM works, outside it is blocked and reported."""
    console, outside, faults, vectors = _run(image_behind_root_port, True, EDU_BEHIND_ROOT_PORT)
    assert "in=DMA-OK!" in console and "done" in console, console
    assert outside == bytes(8)
    assert faults and faults[0].address == OUTSIDE
    for fault in faults:
        assert OUTSIDE <= fault.address < OUTSIDE + 8 and fault.write
        assert fault.event == 0x10  # F_TRANSLATION, not C_BAD_STREAMID (0x02)
        assert fault.stream_id == 0x100  # 01:00.0, behind the root port
    assert "01:00.0" in str(faults[0])
    assert int(_core.DMA_FAULT_INTID) in vectors


@pytest.mark.parametrize("behind_root_port", [False, True], ids=["bus0", "root-port"])
def test_the_command_line_run_reports_the_blocked_dma(
    behind_root_port, image, image_behind_root_port, tmp_path, no_leaked_qemu
):
    """`armvcpu run -M virt,iommu=smmuv3 ...` as on bare QEMU: the guest
    prints the same, and armvcpu says which DMA it blocked."""
    devices = EDU_BEHIND_ROOT_PORT if behind_root_port else EDU
    (tmp_path / "edu.bin").write_bytes(image_behind_root_port if behind_root_port else image)
    args = ["-M", "virt,iommu=smmuv3", "-cpu", "max", "-m", "128M", "-nographic", *devices,
            "-kernel", "edu.bin"]  # fmt: skip
    bare = subprocess.run(["qemu-system-aarch64", *args], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120)  # fmt: skip
    ours = subprocess.run([sys.executable, "-m", "armvcpu", "run", *args], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert bare.returncode == 0 and ours.returncode == 0, ours.stderr
    assert "in=DMA-OK!" in bare.stdout and ours.stdout == bare.stdout
    assert f"DMA write at {OUTSIDE:#x} blocked" in ours.stderr
    if behind_root_port:
        assert "PCI device 01:00.0 DMA write" in ours.stderr
