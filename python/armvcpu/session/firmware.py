"""The EL2 firmware image: where it is and the symbols the host needs."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

from .. import _core
from ..assets import firmware_path
from ..errors import FirmwareError


@dataclass(frozen=True)
class Firmware:
    """A firmware image and the addresses of its host-interface symbols."""

    path: Path
    exit_records: int
    guest_config: int
    host_attached: int
    host_handoff: int
    fast_rules: int
    guest_console: int
    pending_irq: int
    el2_instructions: int
    exit_log: int
    # The gdb transport's watchpoint hand-off; None in images that predate it.
    host_doorbell: int | None = None
    host_doorbell_store: int | None = None
    # The hypercall claims table; None in images that predate it (there
    # every hypercall reaches the host).
    hypercall_claims: int | None = None
    # The DMA-fault log (SMMU); None in images that predate it.
    dma_faults: int | None = None
    # VM snapshots (session/snapshot.py); None in images that predate them.
    snapshot: int | None = None
    snapshot_staging: int | None = None
    # The shared-memory host's doorbell flag; None in images that predate it
    # (there the host only polls).
    host_sleeping: int | None = None
    # The EL2 scheduler's placement request, switch log and each CPU's
    # current vCPU slot; None in images without the scheduler.
    sched_config: int | None = None
    switch_log: int | None = None
    current_slot: int | None = None

    @classmethod
    def load(cls, path: Path | str | None = None) -> Firmware:
        p = Path(path) if path is not None else firmware_path()
        # pyelftools takes about 0.3 s to find the symbols; a fuzzer starts a
        # session per hang. The image is read again when its file changed.
        try:
            st = p.stat()
        except OSError as exc:
            raise FirmwareError(f"cannot read firmware {p}: {exc}") from exc
        key = (str(p.resolve()), st.st_mtime_ns, st.st_size)
        cached = _LOADED.get(key)
        if cached is None or cached.path != p:
            cached = _LOADED[key] = cls._load(p)
        return cached

    @classmethod
    def _load(cls, p: Path) -> Firmware:
        try:
            raw = p.read_bytes()
        except OSError as exc:
            raise FirmwareError(f"cannot read firmware {p}: {exc}") from exc
        symbols = elf_symbols(raw, str(p))
        found: dict[str, int] = {}
        for key, name in dict(_core.FIRMWARE_SYMBOLS).items():
            if name not in symbols:
                raise FirmwareError(f"{p} lacks the symbol {name}; is it armvcpu firmware?")
            found[key] = symbols[name]
        optional = {**dict(_core.FIRMWARE_OPTIONAL_SYMBOLS), **dict(_core.SCHED_SYMBOLS)}
        for key, name in optional.items():
            if name in symbols:
                found[key] = symbols[name]
        return cls(path=p, **found)


# ELF64 (System V gABI, "Object Files"): the header's fields this reader needs,
# a section header, a symbol. All little-endian: the firmware is AArch64.
_EHDR = struct.Struct("<16sHHIQQQIHHHHHH")  # e_ident .. e_shstrndx (64 bytes)
_SHDR = struct.Struct("<IIQQQQIIQQ")  # sh_name .. sh_entsize (64 bytes)
_SYM = struct.Struct("<IBBHQQ")  # st_name, st_info, st_other, st_shndx, st_value, st_size
_EM_AARCH64 = 183
_SHT_SYMTAB = 2


def elf_symbols(raw: bytes, name: str) -> dict[str, int]:
    """Every named symbol of a 64-bit little-endian AArch64 ELF image and its
    value (the first one of a name wins).

    A plain ``struct`` reading of the section headers and ``.symtab``: pyelftools
    took about a tenth of a second to import and parse the firmware's table,
    which every session paid before QEMU started."""

    def bad(why: str) -> FirmwareError:
        return FirmwareError(f"{name} is not a valid ELF file: {why}")

    if len(raw) < _EHDR.size or raw[:4] != b"\x7fELF":
        raise bad("no ELF header")
    ident, _type, machine, _ver, _entry, _phoff, shoff, _flags, _ehsize, _phentsize, _phnum, \
        shentsize, shnum, _shstrndx = _EHDR.unpack_from(raw)  # fmt: skip
    if ident[4] != 2 or ident[5] != 1:  # EI_CLASS ELFCLASS64, EI_DATA ELFDATA2LSB
        raise bad("not a 64-bit little-endian image")
    if machine != _EM_AARCH64:
        raise FirmwareError(f"{name} is not an AArch64 image (e_machine {machine})")
    if shentsize != _SHDR.size or shoff + shnum * _SHDR.size > len(raw):
        raise bad("its section headers lie outside the file")
    sections = [_SHDR.unpack_from(raw, shoff + i * _SHDR.size) for i in range(shnum)]
    symtab = next((s for s in sections if s[1] == _SHT_SYMTAB), None)
    if symtab is None:
        raise FirmwareError(f"{name} has no symbol table; was it stripped?")
    _, _, _, _, offset, size, link, _, _, entsize = symtab
    if entsize != _SYM.size or link >= shnum or offset + size > len(raw):
        raise bad("its symbol table is malformed")
    str_offset, str_size = sections[link][4], sections[link][5]
    if str_offset + str_size > len(raw):
        raise bad("its string table lies outside the file")
    strings = raw[str_offset : str_offset + str_size]
    symbols: dict[str, int] = {}
    for st_name, _info, _other, _shndx, value, _size in _SYM.iter_unpack(
        raw[offset : offset + size - size % _SYM.size]
    ):
        if st_name == 0 or st_name >= len(strings):
            continue
        end = strings.find(b"\0", st_name)
        sym = strings[st_name : end if end >= 0 else len(strings)].decode("ascii", "replace")
        symbols.setdefault(sym, value)
    return symbols


#: Images already read, by (resolved path, mtime, size): Firmware is immutable.
_LOADED: dict[tuple[str, int, int], Firmware] = {}
