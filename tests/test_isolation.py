"""A hostile guest reaches for what is not its own and changes nothing.

The guest only has stage-2 mappings for its RAM (IPA = PA 0x4000_0000, as
large as memory_mb): the firmware's image above it (PA 0x2_0000_0000), its
page tables, the GIC's distributor and redistributors (0x0800_0000,
0x080A_0000) and the EL2 system registers are out of its reach. Each attempt must end in an exit
or a fault inside the guest, and the firmware's memory must read back the
same afterwards (checked through the shared RAM mapping).
"""

from __future__ import annotations

import hashlib

import armvcpu
from armvcpu import ExitKind, Guest, Hypervisor
from armvcpu.session.hypervisor import RAM_BASE
from elftools.elf.elffile import ELFFile


# Each probe is followed by a hypercall 7 reporting x1 = probe number, so the
# host can tell which probe an exit belongs to; faults are skipped over.
def _symbol(name: str) -> int:
    with armvcpu.firmware_path().open("rb") as f:
        symtab = ELFFile(f).get_section_by_name(".symtab")
        sym = next(s for s in symtab.iter_symbols() if name in s.name)
        return int(sym["st_value"])


POOL = _symbol("g_table_pool")  # the stage-2 tables
PROBES = [
    # 1: write over where the firmware lives in physical memory: for the
    #    guest that IPA is nothing (not mapped: an MMIO exit).
    f"ldr x2, ={armvcpu._core.FIRMWARE_BASE:#x}\n    mov x3, #0xdead\n    str x3, [x2]",
    # 2: the firmware's page tables, by physical address
    f"ldr x2, ={POOL:#x}\n    str x3, [x2]",
    # 3: the GIC distributor (not mapped: an MMIO exit)
    "movz x2, #0x0800, lsl #16\n    str w3, [x2]",
    # 4: the GIC redistributors
    "movz x2, #0x080a, lsl #16\n    ldr w4, [x2]",
    # 5: beyond guest RAM (IPA 0x4400_0000): nothing there
    "movz x2, #0x4400, lsl #16\n    str x3, [x2]",
    # 6: guest RAM's own last word: allowed, and stays inside guest RAM
    "movz x2, #0x43ff, lsl #16\n    movk x2, #0xfff8\n    str x3, [x2]",
]


def _guest_source() -> str:
    lines = []
    for i, probe in enumerate(PROBES, 1):
        lines += [f"    {probe}", "    mov x0, #7", f"    mov x1, #{i}", "    hvc #0"]
    # An EL2 register from EL1 is UNDEFINED (Arm ARM D17.2.48: HCR_EL2 is
    # accessible at EL2 and above only): the exception goes to the guest's own
    # EL1 vector, which is unmapped, so the host sees a fault there.
    lines += ["    msr hcr_el2, xzr", "    .ltorg"]
    return "\n".join(lines)


def _protected_ranges() -> list[tuple[int, int]]:
    """The firmware's code and initialised data, and every page table it
    built (stage 2 for the guest, stage 1 for EL2), from its symbol table."""
    with armvcpu.firmware_path().open("rb") as f:
        symtab = ELFFile(f).get_section_by_name(".symtab")
        start = symtab.get_symbol_by_name("__image_start")[0]["st_value"]
        bss = symtab.get_symbol_by_name("__bss_start")[0]["st_value"]
        ranges = [(int(start), int(bss))]
        for sym in symtab.iter_symbols():
            if any(t in sym.name for t in ("g_table_pool", "g_l1", "g_l2_firmware", "g_l3_guard")):
                ranges.append((int(sym["st_value"]), int(sym["st_value"] + sym["st_size"])))
    assert len(ranges) == 5, ranges
    return ranges


def _digest(ram, ranges: list[tuple[int, int]]) -> str:
    h = hashlib.sha256()
    for lo, hi in ranges:
        h.update(ram[lo - RAM_BASE : hi - RAM_BASE])
    return h.hexdigest()


def test_hostile_guest_changes_nothing_of_the_hypervisor(no_leaked_qemu):
    ranges = _protected_ranges()
    before = None
    with Hypervisor(memory_mb=64) as hv:  # guest RAM ends at 0x4400_0000
        assert hv.ram is not None
        hv.load(Guest.from_asm(_guest_source()))
        reported = []
        faults = []
        for exit in hv.exits():
            if before is None:  # the firmware has built its tables by the first exit
                before = _digest(hv.ram, ranges)
            if exit.kind == ExitKind.Hypercall and exit.reason.nr == 7:
                reported.append(exit.reason.args[0])
                exit.resume(x0=0)
            elif exit.kind in (ExitKind.MmioRead, ExitKind.MmioWrite):
                faults.append((len(reported) + 1, exit.reason.addr))
                exit.resume()  # the "device" ignores it
            else:
                faults.append((len(reported) + 1, exit.kind))
                break  # the EL2-register attempt: the guest faulted into its own vector
        after = _digest(hv.ram, ranges)
    assert reported == [1, 2, 3, 4, 5, 6]
    assert faults[:5] == [(1, armvcpu._core.FIRMWARE_BASE), (2, POOL), (3, 0x0800_0000),
                          (4, 0x080A_0000), (5, 0x4400_0000)]  # fmt: skip
    assert faults[5] == (7, ExitKind.NestedPageFault)  # the UNDEF went to VBAR_EL1 = 0
    assert before == after, "the firmware image or its page tables changed"
