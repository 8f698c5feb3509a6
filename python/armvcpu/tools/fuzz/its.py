"""ITS programs: guest programs that drive the GICv3 ITS QEMU's virt has at
0x0808_0000, which the firmware passes through to VM 1 with the PCIe devices
(docs/architecture.md, "ITS and LPIs").

An ITS program sets up the redistributor's LPI tables (GICR_PROPBASER,
GICR_PENDBASER, GICR_CTLR.EnableLPIs: registers the firmware checks and
forwards to the physical redistributor), the ITS's command queue, device and
collection tables (GITS_CBASER, GITS_BASER<n>) in its own RAM, then writes
batches of ITS commands into the queue and GITS_CWRITER: mostly valid ones
(MAPD, MAPC, MAPTI, MAPI, INT, INV, INVALL, SYNC, DISCARD, CLEAR, MOVI,
MOVALL), some with DeviceIDs, EventIDs, collections, LPIs or targets out of
range, some garbage. INT raises an LPI without a device: the physical LPI is
taken at EL2 and put into a list register as a virtual LPI, which the
program acknowledges (ICC_IAR1_EL1, ICC_EOIR1_EL1) or takes by unmasking
IRQs (the vector table then reports an IRQ: the program ends there).

Encodings: Arm IHI 0069H, 5.3 (the ITS commands), 12.19 (GITS_*), 12.11
(GICR_CTLR, GICR_PROPBASER, GICR_PENDBASER); the same the C guest of
tests/its_guest.c uses.

>>> p = generate_its(1, 0)
>>> p.its and p == generate_its(1, 0)
True
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .a64 import BY_NAME, ISB, MASK64, NOP, ldst_uimm, mov64, mrs, msr, msr_pstate
from .generator import GUEST_RAM, HYP_ALIAS, Program, Rng, _Builder, tagged_rng

# -- the machine (QEMU virt, GICv3) ----------------------------------------------------------

GITS = 0x0808_0000  # the ITS's control frame
GITS_CTLR, GITS_IIDR, GITS_TYPER = 0x00, 0x04, 0x08
GITS_CBASER, GITS_CWRITER, GITS_CREADR = 0x80, 0x88, 0x90
GITS_BASER = 0x100  # GITS_BASER<n> at + 8n
GITS_TRANSLATER = 0x0809_0040  # the translation frame's doorbell
GICR = 0x080A_0000  # CPU 0's redistributor (RD_base)
GICR_CTLR, GICR_PROPBASER, GICR_PENDBASER = 0x00, 0x70, 0x78

#: LPI INTIDs start here (GICv3: 8192).
FIRST_LPI = 8192
#: GICR_PROPBASER.IDbits as the setup writes it: 14 INTID bits, LPIs 8192..16383.
ID_BITS = 14

# -- the program's tables, in its own RAM (above the program and scratch areas) ---------------

LPI_CONFIG = 0x4010_0000  # one byte per LPI (priority, enable): 8 KiB for 14 bits
LPI_PENDING = 0x4011_0000  # 64 KiB aligned (GICR_PENDBASER)
COMMAND_QUEUE = 0x4012_0000  # GITS_CBASER: one 4 KiB page, 128 commands of 32 bytes
DEVICE_TABLE = 0x4013_0000  # GITS_BASER0 (QEMU's device table): one 4 KiB page
COLLECTION_TABLE = 0x4014_0000  # GITS_BASER1 (collections): one 4 KiB page
ITTS = 0x4015_0000  # interrupt translation tables, 4 KiB apart
QUEUE_ENTRIES = 0x1000 // 32

#: ITS command numbers (IHI 0069H 5.3).
COMMANDS = {
    "MOVI": 0x01, "INT": 0x03, "CLEAR": 0x04, "SYNC": 0x05, "MAPD": 0x08, "MAPC": 0x09,
    "MAPTI": 0x0A, "MAPI": 0x0B, "INV": 0x0C, "INVALL": 0x0D, "MOVALL": 0x0E, "DISCARD": 0x0F,
}  # fmt: skip

#: Where a table register may point besides the program's own tables: what
#: the firmware refuses (GICR_*BASER outside the VM's RAM: its own image, past
#: the RAM) and what the ITS itself then reads (nothing there, flash, MMIO).
#: Never the firmware for the ITS's own tables: the ITS is a bus master the
#: firmware does not stand in front of (docs/threat-model.md), so writing there
#: is a known, documented power of VM 1, not a finding.
_BAD_LPI_TABLES = (HYP_ALIAS, HYP_ALIAS + 0x1_0000, GUEST_RAM[1], GUEST_RAM[1] - 0x1000, 0,
                   0x0800_0000, 0xF_FFFF_FFFF_F000, GUEST_RAM[0] - 0x1_0000)  # fmt: skip
_BAD_ITS_TABLES = (0, 0x0800_0000, 0x0900_0000, 0xF_FFFF_FFFF_F000, 0x1_0000_0000_0000 - 0x1000,
                   0x0808_0000)  # fmt: skip

_ITEMS = (("commands", 40), ("burst", 5), ("ack", 12), ("take", 6), ("config", 6),
          ("gits", 6), ("gicr", 5), ("translater", 3), ("wait", 4), ("sysreg", 3))  # fmt: skip

#: Share of a campaign's programs that are ITS programs with ``--its``.
ITS_SHARE = 0.3


def is_its_program(seed: int, index: int) -> bool:
    """Whether program ``index`` of an ITS campaign is an ITS program (a
    stream of its own: the other programs are those of a campaign without
    ``--its``)."""
    return tagged_rng("its", seed, index).chance(ITS_SHARE)


def command(name: str, *dwords: int) -> tuple[int, int, int, int]:
    """An ITS command's four doublewords, its number in DW0[7:0]."""
    d = [*dwords, 0, 0, 0, 0][:4]
    return (d[0] & ~0xFF | COMMANDS[name]) & MASK64, d[1] & MASK64, d[2] & MASK64, d[3] & MASK64


def _store(addr: int, value: int, size: int = 3) -> list[int]:
    """x9 = addr, x10 = value, then STR (size 3: 64-bit, 2: 32-bit, 0: a byte)."""
    return [*mov64(9, addr), *mov64(10, value), ldst_uimm(size, 0, 0, 9, 10)]


def _load(addr: int, size: int = 3) -> list[int]:
    return [*mov64(9, addr), ldst_uimm(size, 1, 0, 9, 10)]


@dataclass
class _ItsBuilder(_Builder):
    """The generator's builder with the ITS items; knows where the next
    command goes in the queue (the program writes it in order)."""

    queue_at: int = 0  # GITS_CWRITER's entry, as the program last wrote it

    def device(self) -> int:
        rng = self.rng
        kind = rng.weighted((("mapped", 6), ("other", 3), ("bad", 1)))
        if kind == "mapped":  # the set-up maps device 0
            return 0
        if kind == "other":
            return 1 + rng.below(7)
        return int(rng.pick((511, 512, 0xFFFF, 0x1_0000, 0xFFFF_FFFF, rng.bits(32))))

    def event(self) -> int:
        rng = self.rng
        if rng.chance(0.9):  # the set-up maps events 0..7 at most, MAPD allows 16 or more
            return rng.below(8) if rng.chance(0.8) else rng.below(16)
        return int(rng.pick((16, 0xFFFF, rng.bits(32))))

    def collection(self) -> int:
        rng = self.rng
        return rng.below(4) if rng.chance(0.9) else int(rng.pick((511, 512, 0xFFFF)))

    def lpi(self) -> int:
        rng = self.rng
        if rng.chance(0.9):
            return FIRST_LPI + rng.below(64)
        return int(rng.pick((0, 27, 1023, FIRST_LPI - 1, 1 << ID_BITS, 0xFFFF, rng.bits(32))))

    def rdbase(self) -> int:
        """A target redistributor (GITS_TYPER.PTA = 0: a processor number, in
        bits [50:16]): CPU 0 (the only one), sometimes one that is not there."""
        return (0 if self.rng.chance(0.9) else int(self.rng.pick((1, 7, 0x7FFFF)))) << 16

    def one_command(self) -> tuple[str, tuple[int, int, int, int]]:
        rng = self.rng
        name = rng.weighted((("MAPD", 8), ("MAPC", 6), ("MAPTI", 12), ("MAPI", 3), ("INT", 16),
                             ("INV", 4), ("INVALL", 3), ("SYNC", 5), ("DISCARD", 3),
                             ("CLEAR", 3), ("MOVI", 3), ("MOVALL", 2), ("garbage", 4)))  # fmt: skip
        dev = self.device() << 32
        valid = 0 if rng.chance(0.1) else 1 << 63
        if name == "MAPD":
            size = rng.below(5) if rng.chance(0.9) else rng.below(32)
            itt = ITTS + (dev >> 32 & 15) * 0x1000
            if rng.chance(0.05):
                itt = int(rng.pick(_BAD_ITS_TABLES))
            return name, command(name, dev, size, valid | itt & 0xF_FFFF_FFFF_FF00)
        if name == "MAPC":
            return name, command(name, 0, 0, valid | self.rdbase() | self.collection())
        if name == "MAPTI":
            return name, command(name, dev, self.lpi() << 32 | self.event(), self.collection())
        if name in ("MAPI", "MOVI"):
            return name, command(name, dev, self.event(), self.collection())
        if name in ("INT", "INV", "DISCARD", "CLEAR"):
            return name, command(name, dev, self.event())
        if name == "INVALL":
            return name, command(name, 0, 0, self.collection())
        if name == "SYNC":
            return name, command(name, 0, 0, self.rdbase())
        if name == "MOVALL":
            return name, command(name, 0, 0, self.rdbase(), self.rdbase())
        words = (rng.u64(), rng.u64(), rng.u64(), rng.u64())
        return f"garbage {words[0] & 0xFF:#04x}", words

    def write_commands(self, batch: Sequence[tuple[str, tuple[int, int, int, int]]],
                       cwriter: int | None = None) -> None:  # fmt: skip
        """Commands into the queue from GITS_CWRITER on, then GITS_CWRITER past them."""
        words: list[int] = []
        at = self.queue_at
        for _, dwords in batch:
            words += mov64(9, COMMAND_QUEUE + 32 * at)
            for k, d in enumerate(dwords):
                words += [*mov64(10, d), ldst_uimm(3, 0, k, 9, 10)]
            at = (at + 1) % QUEUE_ENTRIES
        self.queue_at = at
        value = 32 * at if cwriter is None else cwriter
        words += _store(GITS + GITS_CWRITER, value)
        names = " ".join(name for name, _ in batch)
        self.emit(f"ITS commands {names}, CWRITER={value:#x}", words)

    # -- items ------------------------------------------------------------------------

    def commands(self) -> None:
        rng = self.rng
        batch = [self.one_command() for _ in range(1 + rng.below(6))]
        cwriter = None
        if rng.chance(0.08):  # unaligned, past the queue, the entry it is at already
            after = 32 * ((self.queue_at + len(batch)) % QUEUE_ENTRIES)
            cwriter = int(rng.pick((after + 8, after | 1, 0x1000, 0xF_FFE0, rng.bits(20),
                                    32 * self.queue_at)))  # fmt: skip
        self.write_commands(batch, cwriter)

    def burst(self) -> None:
        """More LPIs at once than the four list registers hold: device 0's
        events mapped to distinct LPIs and each raised by INT (the firmware
        keeps those without a free list register for the underflow
        interrupt)."""
        rng = self.rng
        n = 5 + rng.below(8)
        first = rng.below(64 - n)
        batch = [("MAPTI", command("MAPTI", 0, (FIRST_LPI + first + e) << 32 | e, 0))
                 for e in range(n)]  # fmt: skip
        batch += [("INT", command("INT", 0, e)) for e in range(n)]
        self.write_commands(batch)

    def ack(self) -> None:
        """Acknowledge and end up to k interrupts with IRQs masked (a
        spurious 1023's EOI is ignored)."""
        words: list[int] = []
        iar, eoir = BY_NAME["ICC_IAR1_EL1"], BY_NAME["ICC_EOIR1_EL1"]
        k = 1 + self.rng.below(6)
        for _ in range(k):
            words += [mrs(11, iar), msr(eoir, 11)]
        self.emit(f"acknowledge and EOI {k} interrupts", words)

    def take(self) -> None:
        """Unmask IRQs for a few instructions: a pending LPI is taken (the
        vector table reports it and the program ends there)."""
        spin = 1 + self.rng.below(8)
        self.emit("take IRQs", [msr_pstate(3, 7, 2), ISB, *[NOP] * spin, msr_pstate(3, 6, 2)])

    def config(self) -> None:
        """LPI configuration bytes: priority [7:2], Enable [0] (read by the
        redistributor, by the firmware for the virtual LPI's priority)."""
        rng = self.rng
        first = rng.below(64) & ~7
        value = rng.u64() if rng.chance(0.5) else 0xA1A1_A1A1_A1A1_A1A1 & (rng.u64() | 0x0101)
        self.emit(f"LPI config {FIRST_LPI + first}..+7 = {value:#x}",
                  _store(LPI_CONFIG + first, value))  # fmt: skip

    def gits(self) -> None:
        rng = self.rng
        off = int(rng.pick((GITS_CTLR, GITS_IIDR, GITS_TYPER, GITS_CBASER, GITS_CWRITER,
                            GITS_CREADR, GITS_BASER, GITS_BASER + 8, GITS_BASER + 0x10,
                            0xFFD0, rng.below(0x1_0000) & ~3)))  # fmt: skip
        size = int(rng.pick((2, 3)))
        if size == 3:
            off &= ~7
        if rng.chance(0.5):
            self.emit(f"read GITS+{off:#x}", _load(GITS + off, size))
            return
        value = int(rng.pick((0, 1, rng.u64(), 1 << 63 | COMMAND_QUEUE, 1 << 63)))
        self.emit(f"write GITS+{off:#x} = {value:#x}", _store(GITS + off, value, size))

    def gicr(self) -> None:
        """The LPI registers the firmware checks and forwards: any value, 32-bit
        halves, other widths."""
        rng = self.rng
        off = int(rng.pick((GICR_CTLR, GICR_PROPBASER, GICR_PROPBASER + 4, GICR_PENDBASER,
                            GICR_PENDBASER + 4)))  # fmt: skip
        size = 2 if off % 8 or off == GICR_CTLR or rng.chance(0.2) else 3
        if rng.chance(0.4):
            self.emit(f"read GICR+{off:#x}", _load(GICR + off, size))
            return
        value = int(rng.pick((0, 1, rng.u64(), *_BAD_LPI_TABLES, LPI_CONFIG | ID_BITS - 1,
                              LPI_PENDING, LPI_CONFIG | 31)))  # fmt: skip
        self.emit(f"write GICR+{off:#x} = {value:#x}", _store(GICR + off, value, size))

    def translater(self) -> None:
        """A CPU write to GITS_TRANSLATER: an MSI with the CPU's DeviceID."""
        event = self.event()
        self.emit(f"GITS_TRANSLATER = {event}", _store(GITS_TRANSLATER, event, 2))

    # -- the set-up ---------------------------------------------------------------------

    def setup(self, wrong: int = -1, events: int = 1) -> None:
        """LPI tables, the ITS's tables and queue, both enabled; device 0's
        ``events`` first events mapped to LPIs 8192 on (MAPD, MAPC, MAPTI,
        SYNC). ``wrong`` 0..11: one step wrong (a table outside the RAM,
        invalid, missing)."""
        rng = self.rng
        enable = 0xA1A1_A1A1_A1A1_A1A1  # priority 0xA0, enabled
        words: list[int] = []
        for n in range(0, 64, 8):
            words += _store(LPI_CONFIG + n, enable)
        self.emit("LPI config: LPIs 8192..8255 enabled, priority 0xa0", words)
        prop = LPI_CONFIG | ID_BITS - 1
        pend = LPI_PENDING
        if wrong == 0:
            prop = int(rng.pick(_BAD_LPI_TABLES)) | ID_BITS - 1
        elif wrong == 1:
            pend = int(rng.pick(_BAD_LPI_TABLES))
        elif wrong == 2:
            prop = LPI_CONFIG | 31  # 32 INTID bits: a table larger than the RAM
        self.emit(f"GICR_PROPBASER = {prop:#x}", _store(GICR + GICR_PROPBASER, prop))
        self.emit(f"GICR_PENDBASER = {pend:#x}", _store(GICR + GICR_PENDBASER, pend))
        if wrong != 3:
            self.emit("GICR_CTLR.EnableLPIs", _store(GICR + GICR_CTLR, 1, 2))
        tables = [DEVICE_TABLE, COLLECTION_TABLE]
        if wrong in (4, 5):
            tables[wrong - 4] = int(rng.pick(_BAD_ITS_TABLES))
        for n, table in enumerate(tables):
            valid = 0 if wrong == 6 + n else 1 << 63
            # Type and Entry_Size are read-only; 4 KiB pages, one of them.
            value = valid | table & 0xF_FFFF_FFFF_F000
            self.emit(f"GITS_BASER{n} = {value:#x}", _store(GITS + GITS_BASER + 8 * n, value))
        queue = COMMAND_QUEUE if wrong != 8 else int(rng.pick(_BAD_ITS_TABLES))
        cbaser = (0 if wrong == 9 else 1 << 63) | queue & 0xF_FFFF_FFFF_F000
        self.emit(f"GITS_CBASER = {cbaser:#x}", _store(GITS + GITS_CBASER, cbaser))
        if wrong != 10:
            self.emit("GITS_CTLR.Enabled", _store(GITS + GITS_CTLR, 1, 2))
        # A collection on CPU 0 and device 0's first events mapped, as a driver
        # would before raising anything: most programs then reach LPIs.
        dev0 = 0
        batch = [("MAPD", command("MAPD", dev0, 3, 1 << 63 | ITTS)),
                 ("MAPC", command("MAPC", 0, 0, 1 << 63)),
                 *[("MAPTI", command("MAPTI", dev0, (FIRST_LPI + e) << 32 | e, 0))
                   for e in range(events)],
                 ("SYNC", command("SYNC"))]  # fmt: skip
        if wrong != 11:
            self.write_commands(batch)


def generate_its(seed: int, index: int, length: int = 32) -> Program:
    """ITS program ``index`` of ``seed``: the set-up, then ``length`` ITS items
    (mostly command batches), then IRQs unmasked once."""
    rng = tagged_rng("its-program", seed, index)
    b = _ItsBuilder(rng)
    b.setup(wrong=rng.below(12) if rng.chance(0.25) else -1, events=1 + rng.below(8))
    for _ in range(length):
        getattr(b, rng.weighted(_ITEMS))()
    b.take()
    return Program(tuple(b.words), seed, index, "its", False, (0, 0), tuple(b.notes), its=True)


def its_item(rng: Rng) -> tuple[str, tuple[int, ...]]:
    """One ITS item for a mutation of an ITS program (its queue position
    unknown: commands start at entry 0's neighbourhood, which is a test of
    CWRITER going backwards too)."""
    b = _ItsBuilder(rng, queue_at=rng.below(QUEUE_ENTRIES))
    getattr(b, rng.weighted(_ITEMS))()
    return (b.notes[0][1] if b.notes else "?"), tuple(b.words)
