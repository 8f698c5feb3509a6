"""The firmware on its own: no host, the guest placed by QEMU's loader device."""

from __future__ import annotations

import subprocess

import armvcpu


def test_runs_the_example_guest_with_default_answers(tmp_path, hypercalls_guest):
    (segment,) = hypercalls_guest.segments
    image = tmp_path / "guest.bin"
    image.write_bytes(segment.data)
    result = subprocess.run(
        ["qemu-system-aarch64", "-machine", "virt,virtualization=on,gic-version=3",
         "-cpu", "max", "-nodefaults", "-no-user-config", "-display", "none", "-m", "8G",
         "-serial", "stdio", "-kernel", str(armvcpu.firmware_path()),
         # 0x40200000: the firmware's standalone entry (guest RAM is identity-
         # mapped; QEMU's device tree takes the first MiB); the guest is PIC
         "-device", f"loader,file={image},addr=0x40200000"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    log = result.stdout.replace("\r\n", "\n")
    assert result.returncode == 0, result.stderr
    assert "armvcpu EL2 firmware" in log and "(standalone)" in log
    hypercalls = [line for line in log.splitlines() if ": Hypercall nr=0x1 " in line]
    assert len(hypercalls) == 8
    # Every answer was SMCCC NOT_SUPPORTED (-1), as QEMU virt answers without
    # a hypervisor: the guest's checksum (checksum * 31 + x0) of eight of them.
    checksum = 0
    for _ in range(8):
        checksum = (checksum * 31 + (1 << 64) - 1) & ((1 << 64) - 1)
    assert f"exit 9: Hypercall nr=0x2 x1={checksum:#x}" in log
    assert "exit 10: SystemDown" in log
    assert "VM 1 stopped after 10 exits (last: SystemDown)" in log


def test_the_image_lies_where_the_core_says_above_any_guest_ram():
    """linker.ld and host_interface.hpp name the firmware's place once each;
    they must agree, and the image must fit the room the host leaves it."""
    from elftools.elf.elffile import ELFFile

    core = armvcpu._core
    with armvcpu.firmware_path().open("rb") as f:
        symtab = ELFFile(f).get_section_by_name(".symtab")
        start = symtab.get_symbol_by_name("__image_start")[0]["st_value"]
        end = symtab.get_symbol_by_name("__image_end")[0]["st_value"]
    assert start == core.FIRMWARE_BASE == 0x2_0000_0000
    assert end <= core.FIRMWARE_BASE + core.FIRMWARE_SIZE
    assert core.RAM_BASE + core.MAX_GUEST_RAM == core.FIRMWARE_BASE  # guest RAM ends below it
