"""Guest images: what is loaded into a VM's memory and where it starts."""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import GuestImageError

#: Where guest RAM starts as the guest sees it (QEMU virt's RAM base).
DEFAULT_GUEST_BASE = 0x4000_0000


@dataclass(frozen=True)
class Segment:
    """Bytes placed at a guest physical address (IPA)."""

    addr: int
    data: bytes
    memsz: int  # bytes the segment occupies; past len(data) it is zero-filled

    @property
    def end(self) -> int:
        return self.addr + self.memsz


@dataclass(frozen=True)
class Guest:
    """A guest program: its segments and its entry point (both IPAs).

    >>> g = Guest.from_binary(bytes.fromhex("02000014"), addr=0x40000000)
    >>> hex(g.entry), len(g.segments)
    ('0x40000000', 1)
    """

    segments: tuple[Segment, ...]
    entry: int
    name: str = "guest"
    x0: int = 0
    meta: dict[str, str] = field(default_factory=dict, compare=False)

    @classmethod
    def from_binary(
        cls,
        data: bytes,
        addr: int = DEFAULT_GUEST_BASE,
        *,
        entry: int | None = None,
        name: str = "binary",
    ) -> Guest:
        """Raw AArch64 code or data at ``addr``; execution starts at ``entry`` or ``addr``."""
        if not data:
            raise GuestImageError("guest image is empty")
        if addr % 4:
            raise GuestImageError(f"guest load address {addr:#x} is not 4-byte aligned")
        start = addr if entry is None else entry
        return cls((Segment(addr, bytes(data), len(data)),), start, name)

    @classmethod
    def from_asm(cls, source: str, addr: int = DEFAULT_GUEST_BASE, *, name: str = "asm") -> Guest:
        """AArch64 assembly, assembled and linked at ``addr`` with the cross toolchain.

        A source without a ``_start`` label starts at its first instruction.

        >>> g = Guest.from_asm("hvc #0\\nb .")  # doctest: +SKIP
        """
        from .toolchain import assemble

        guest = cls.from_elf(assemble(source, addr))
        return cls(guest.segments, guest.entry, name)

    @classmethod
    def from_c(cls, source: str, addr: int = DEFAULT_GUEST_BASE, *, name: str = "c") -> Guest:
        """A freestanding C guest, compiled with the cross GCC and linked at
        ``addr``. ``#include <armvcpu_guest.h>`` gives hypercalls, MMIO and
        console helpers; when ``main`` returns, its value is reported with
        hypercall 0 (x1) and the guest powers off.

        >>> g = Guest.from_c("int main(void) { return 42; }")  # doctest: +SKIP
        """
        from .toolchain import compile_c

        guest = cls.from_elf(compile_c(source, addr))
        return cls(guest.segments, guest.entry, name)

    @classmethod
    def from_elf(cls, source: str | Path | bytes) -> Guest:
        """An AArch64 ELF executable: its PT_LOAD segments at their physical addresses."""
        if isinstance(source, bytes):
            raw, name = source, "elf"
        else:
            path = Path(source)
            try:
                raw = path.read_bytes()
            except OSError as exc:
                raise GuestImageError(f"cannot read guest image {path}: {exc}") from exc
            name = path.stem
        # Imported here: pyelftools costs every session (a Linux boot loads no
        # ELF) about 30 ms of start-up.
        from elftools.common.exceptions import ELFError
        from elftools.elf.elffile import ELFFile

        try:
            elf = ELFFile(io.BytesIO(raw))
            if elf.elfclass != 64 or not elf.little_endian:
                raise GuestImageError(f"{name}: not a 64-bit little-endian ELF")
            if elf["e_machine"] != "EM_AARCH64":
                raise GuestImageError(f"{name}: ELF machine is {elf['e_machine']}, not AArch64")
            segments = []
            for seg in elf.iter_segments():
                if seg["p_type"] != "PT_LOAD" or seg["p_memsz"] == 0:
                    continue
                data = seg.data()
                if len(data) != seg["p_filesz"]:
                    raise GuestImageError(f"{name}: segment at {seg['p_paddr']:#x} is truncated")
                segments.append(Segment(int(seg["p_paddr"]), data, int(seg["p_memsz"])))
            entry = int(elf["e_entry"])
        except ELFError as exc:
            raise GuestImageError(f"{name}: not a valid ELF file ({exc})") from exc
        except (ValueError, KeyError, IndexError) as exc:  # pyelftools on corrupt headers
            raise GuestImageError(f"{name}: malformed ELF ({exc})") from exc
        if not segments:
            raise GuestImageError(f"{name}: ELF has no loadable segments")
        return cls(tuple(segments), entry, name)
