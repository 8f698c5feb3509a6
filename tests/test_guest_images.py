"""Guest images: good ones load, bad ones fail with GuestImageError."""

from __future__ import annotations

import shutil

import armvcpu
import pytest
from armvcpu import Guest, GuestImageError


def test_example_guest_is_an_aarch64_elf_at_guest_ram(hypercalls_guest):
    assert hypercalls_guest.entry == 0x40000000
    assert hypercalls_guest.segments[0].addr == 0x40000000


def test_from_binary():
    g = Guest.from_binary(b"\x00\x00\x00\x14", addr=0x40001000)
    assert g.entry == 0x40001000
    with pytest.raises(GuestImageError, match="empty"):
        Guest.from_binary(b"")
    with pytest.raises(GuestImageError, match="aligned"):
        Guest.from_binary(b"\x00" * 4, addr=0x40000002)


def test_from_asm_uses_the_cross_assembler():
    g = Guest.from_asm("hvc #0x12\nb .")
    # HVC #0x12 = 0xd4000242, B . = 0x14000000 (Arm ARM C6.2), little-endian.
    assert g.segments[0].data[:8] == bytes.fromhex("42020 0d4 00000014".replace(" ", ""))


def test_from_asm_reports_assembler_errors():
    with pytest.raises(GuestImageError, match="as failed"):
        Guest.from_asm("this is not an instruction")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "not a valid ELF"),
        (b"hello world, not an ELF at all", "not a valid ELF"),
        (b"\x7fELF" + b"\x02\x01\x01" + b"\x00" * 9, "ELF"),  # header cut short
    ],
)
def test_malformed_elf(data, message):
    with pytest.raises(GuestImageError, match=message):
        Guest.from_elf(data)


def test_elf_for_another_machine_is_rejected():
    host_binary = shutil.which("true")
    assert host_binary is not None
    with pytest.raises(GuestImageError, match="not AArch64"):
        Guest.from_elf(host_binary)


def test_truncated_elf_is_rejected():
    raw = armvcpu.example_guest_path("hypercalls").read_bytes()
    with pytest.raises(GuestImageError):
        Guest.from_elf(raw[:100])


def test_missing_file():
    with pytest.raises(GuestImageError, match="cannot read"):
        Guest.from_elf("/nonexistent/guest.elf")


def test_from_c_reports_compiler_errors():
    with pytest.raises(GuestImageError, match="gcc failed"):
        Guest.from_c("int main(void) { return undeclared; }")
