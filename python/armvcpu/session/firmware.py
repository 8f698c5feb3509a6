"""The EL2 firmware image: where it is and the symbols the host needs."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from elftools.common.exceptions import ELFError
from elftools.elf.elffile import ELFFile
from elftools.elf.sections import SymbolTableSection

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
            with p.open("rb") as f:
                elf = ELFFile(f)
                if elf["e_machine"] != "EM_AARCH64":
                    raise FirmwareError(f"{p} is not an AArch64 image ({elf['e_machine']})")
                symtab = elf.get_section_by_name(".symtab")
                if not isinstance(symtab, SymbolTableSection):
                    raise FirmwareError(f"{p} has no symbol table; was it stripped?")
                wanted = dict(_core.FIRMWARE_SYMBOLS)
                found: dict[str, int] = {}
                for key, name in wanted.items():
                    syms = symtab.get_symbol_by_name(name)
                    if not syms:
                        raise FirmwareError(f"{p} lacks the symbol {name}; is it armvcpu firmware?")
                    found[key] = int(syms[0]["st_value"])
                optional = {**dict(_core.FIRMWARE_OPTIONAL_SYMBOLS), **dict(_core.SCHED_SYMBOLS)}
                for key, name in optional.items():
                    syms = symtab.get_symbol_by_name(name)
                    if syms:
                        found[key] = int(syms[0]["st_value"])
        except OSError as exc:
            raise FirmwareError(f"cannot read firmware {p}: {exc}") from exc
        except ELFError as exc:
            raise FirmwareError(f"{p} is not a valid ELF file: {exc}") from exc
        return cls(path=p, **found)


#: Images already read, by (resolved path, mtime, size): Firmware is immutable.
_LOADED: dict[tuple[str, int, int], Firmware] = {}
