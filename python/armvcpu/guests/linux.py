"""Booting a Linux kernel (or any image that follows the arm64 boot protocol)
as a guest: where the kernel, its initramfs and its device tree go in guest
RAM, and what the first vCPU's registers are.

The rules are the kernel's own, from Documentation/arm64/booting.rst: the
Image is placed ``text_offset`` bytes above a 2 MiB-aligned base in RAM and
entered at its first byte at EL1h with the MMU and caches off, x0 holding the
device tree's address (8-byte aligned, at most 2 MiB) and x1..x3 zero; the
initramfs may go anywhere in RAM that the kernel image does not cover.

>>> image = LinuxImage.parse(Path("vmlinuz").read_bytes())    # doctest: +SKIP
>>> plan = BootPlan.make(LinuxImage.raw(bytes(4096)), ram_base=0x4000_0000,
...                      ram_size=256 << 20, initrd_size=1 << 20, dtb_size=8 << 10)
>>> hex(plan.kernel), hex(plan.initrd), hex(plan.dtb)   # as QEMU places them for -m 256M
('0x40080000', '0x48000000', '0x48200000')
"""

from __future__ import annotations

import gzip
import struct
import zlib
from dataclasses import dataclass

from ..errors import GuestImageError

#: "ARM\\x64" at offset 0x38 of an arm64 Image.
IMAGE_MAGIC = 0x644D5241
_HEADER = struct.Struct("<IIQQQQQQII")
_2M = 2 << 20
#: The largest device tree the boot protocol allows.
MAX_DTB_SIZE = 2 << 20
#: Where QEMU puts a raw -kernel image above the base of RAM.
RAW_TEXT_OFFSET = 0x80000


@dataclass(frozen=True)
class LinuxImage:
    """An arm64 kernel Image and what its header says about placing it."""

    data: bytes
    text_offset: int
    image_size: int  # bytes the kernel occupies once running (BSS included)
    big_endian: bool
    anywhere: bool  # flags bit 3: the 2 MiB base may be anywhere in RAM

    @staticmethod
    def is_image(data: bytes) -> bool:
        """True for an arm64 Image (plain or gzip-compressed)."""
        if data[:2] == b"\x1f\x8b":
            return True
        # The magic at 0x38 is enough: a truncated Image is still an Image
        # (one that parse() then refuses, saying why).
        return data[0x38:0x3C] == IMAGE_MAGIC.to_bytes(4, "little")

    @classmethod
    def parse(cls, data: bytes) -> LinuxImage:
        """Reads the header (booting.rst, "Call the kernel image"); a
        gzip-compressed Image (Image.gz) is decompressed first."""
        if data[:2] == b"\x1f\x8b":
            try:
                data = gzip.decompress(data)
            except (OSError, EOFError, zlib.error) as exc:
                raise GuestImageError(f"the kernel looks gzip-compressed but isn't: {exc}") from exc
        return cls._from_header(data, len(data), data)

    @classmethod
    def parse_header(cls, head: bytes, file_size: int) -> LinuxImage:
        """What :meth:`parse` says of an uncompressed Image file of
        ``file_size`` bytes, from its first bytes alone; ``data`` is left empty
        for the caller to copy the file itself (a distribution kernel is tens
        of MiB, and reading it into Python costs a boot more than copying it
        into guest RAM in the kernel does)."""
        return cls._from_header(head, file_size, b"")

    @classmethod
    def _from_header(cls, head: bytes, length: int, data: bytes) -> LinuxImage:
        if length < _HEADER.size or len(head) < _HEADER.size:
            raise GuestImageError(f"a {length}-byte file is too short for an arm64 Image")
        _code0, _code1, text_offset, image_size, flags, _r2, _r3, _r4, magic, _r5 = (
            _HEADER.unpack_from(head)
        )
        if magic != IMAGE_MAGIC:
            if head[:2] == b"MZ" and head[4:8] == b"zimg":
                raise GuestImageError(
                    "this is an EFI zboot kernel (vmlinuz.efi); armvcpu boots the plain or "
                    "gzip-compressed arm64 Image"
                )
            raise GuestImageError(
                f"not an arm64 Image: magic {magic:#x} at offset 0x38, expected {IMAGE_MAGIC:#x}"
            )
        if image_size == 0:
            # Kernels before 3.17 leave image_size zero; text_offset is then 0x80000.
            text_offset, image_size = 0x80000, length
        if flags & 1:
            raise GuestImageError("this Image is big-endian; armvcpu runs little-endian guests")
        if image_size < length:
            raise GuestImageError(
                f"the Image header says it needs {image_size:#x} bytes but the file has "
                f"{length:#x}: the image is malformed"
            )
        return cls(data, text_offset, image_size, False, bool(flags & 8))

    @classmethod
    def raw(cls, data: bytes) -> LinuxImage:
        """Any other -kernel file, as QEMU's arm boot code takes it: booted like
        an Image whose header would say text_offset 0x80000 (``hw/arm/boot.c``'s
        KERNEL64_LOAD_ADDR), entered at its first byte with x0 = the device tree."""
        if not data:
            raise GuestImageError("the kernel file is empty")
        return cls(data, RAW_TEXT_OFFSET, len(data), False, False)


@dataclass(frozen=True)
class BootPlan:
    """Where everything goes in guest RAM (guest physical addresses)."""

    ram_base: int
    ram_size: int
    kernel: int
    kernel_end: int
    initrd: int | None
    initrd_end: int | None
    dtb: int

    @classmethod
    def make(cls, image: LinuxImage, *, ram_base: int, ram_size: int, initrd_size: int | None,
             dtb_size: int) -> BootPlan:  # fmt: skip
        """Where QEMU's ``-kernel`` puts things (``hw/arm/boot.c``), so a guest
        finds them where it would on bare QEMU: the kernel ``text_offset``
        above the base of RAM; the initramfs at the base + min(RAM / 2,
        128 MiB), page-aligned and above the kernel; the device tree on the
        next 2 MiB boundary after the initramfs (where the initramfs would
        start when there is none)."""
        if ram_base % _2M:
            raise GuestImageError(f"guest RAM at {ram_base:#x} is not 2 MiB aligned")
        if dtb_size > MAX_DTB_SIZE:
            raise GuestImageError(f"the device tree is {dtb_size} bytes; the limit is 2 MiB")
        kernel = ram_base + image.text_offset
        kernel_end = kernel + image.image_size
        ram_end = ram_base + ram_size
        initrd_at = max(ram_base + min(ram_size // 2, 128 << 20), kernel_end)
        initrd_at = (initrd_at + 0xFFF) & ~0xFFF
        initrd = initrd_end = None
        if initrd_size is not None:
            initrd, initrd_end = initrd_at, initrd_at + initrd_size
        dtb = (initrd_at + (initrd_size or 0) + _2M - 1) & ~(_2M - 1)
        if dtb + max(dtb_size, 1) > ram_end:
            need = (dtb + max(dtb_size, 64 << 10) - ram_base + (1 << 20) - 1) >> 20
            raise GuestImageError(
                f"the kernel ({image.image_size >> 20} MiB), initramfs and device tree need "
                f"about {need} MiB of guest RAM, but it has {ram_size >> 20} MiB: give the "
                "machine more memory (-m)"
            )
        return cls(ram_base, ram_size, kernel, kernel_end, initrd, initrd_end, dtb)
