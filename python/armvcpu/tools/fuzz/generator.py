"""Program generation: the guest layout, a deterministic random source and the
builder that turns ``(seed, index)`` into a program's bytes.

>>> p = generate(1, 0)
>>> p == generate(1, 0) and p.ident
'1:0'
"""

from __future__ import annotations

import array
import hashlib
import sys as _sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from ... import _core
from ...exits import disassemble
from .a64 import (
    B_SELF,
    BY_NAME,
    CLREX,
    DMB_SY,
    DSB_SY,
    ERET,
    HARMLESS_WRITES,
    ISB,
    MASK64,
    NOP,
    SEV,
    SEVL,
    SIDE_EFFECT_READS,
    SYSREGS,
    WFE,
    WFI,
    XZR,
    YIELD,
    SysReg,
    add_imm,
    adr,
    atomic,
    b_cond,
    branch,
    brk,
    cas,
    fmov_d_xzr,
    hlt,
    hvc,
    ldar,
    ldst_imm9,
    ldst_pair,
    ldst_reg,
    ldst_uimm,
    ldxr,
    mov64,
    movz,
    mrs,
    msr,
    msr_pstate,
    prfm,
    smc,
    stlr,
    stxr,
    subs_imm,
    svc,
    sys,
)

# -- guest memory layout (IPAs) ------------------------------------------------------------

GUEST_RAM = (0x4000_0000, 0x4400_0000)  # the runner's guest RAM (memory_mb=64)
ENTRY = 0x4000_0000  # the prologue
VECTORS = 0x4000_0800  # VBAR_EL1: 16 entries of 0x80 bytes
BODY = 0x4000_1000  # the random body, then the epilogue
#: At least this much of the program area is rewritten for every program
#: (stores into "code" addresses stay inside it).
PROGRAM_AREA = 0x2000
SCRATCH = 0x4001_0000  # data the structured loads and stores use
STACK_TOP = 0x4001_8000
HYP_ALIAS = _core.FIRMWARE_BASE  # where the firmware lives in physical memory
#: Guest RAM the prologue zeroes before every body (with guest stores): the
#: scratch area and stack, and the top of guest RAM. (The firmware's physical
#: address is no IPA of the guest's: stores there are faults, not state.)
ZERO_RANGES = ((SCRATCH, 0x8000), (GUEST_RAM[1] - 0x4000, 0x4000))

DONE_NR = 0xF0D0  # the epilogue's hypercall
REPORT_NR = 0xE100  # + vector index: the vector table's hypercall
SPSR_EL1H_MASKED = 0x3C5  # EL1h with D, A, I, F masked
SMCCC_NOT_SUPPORTED = MASK64  # -1

#: Hypercall/PSCI function IDs the structured calls pick from.
PSCI_IDS = (
    0x8400_0000,  # PSCI_VERSION
    0x8400_0001, 0xC400_0001,  # CPU_SUSPEND
    0x8400_0002,  # CPU_OFF
    0x8400_0003, 0xC400_0003,  # CPU_ON
    0x8400_0004, 0xC400_0004,  # AFFINITY_INFO
    0x8400_0005, 0xC400_0005,  # MIGRATE
    0x8400_0006,  # MIGRATE_INFO_TYPE
    0x8400_0007, 0xC400_0007,  # MIGRATE_INFO_UP_CPU
    0x8400_0008,  # SYSTEM_OFF
    0x8400_0009,  # SYSTEM_RESET
    0x8400_000A,  # PSCI_FEATURES
    0x8400_000C, 0xC400_000C,  # CPU_DEFAULT_SUSPEND
    0x8400_000E, 0xC400_000E,  # SYSTEM_SUSPEND
    0x8400_0012, 0xC400_0012,  # SYSTEM_RESET2
    0x8000_0000,  # SMCCC_VERSION
    0x8000_0001,  # SMCCC_ARCH_FEATURES
    0x8000_8000,  # SMCCC_ARCH_WORKAROUND_1
    0x8000_7FFF,  # SMCCC_ARCH_WORKAROUND_3
)  # fmt: skip
#: Calls that park the only vCPU (CPU_OFF) or wait for an interrupt
#: (CPU_SUSPEND): usually a hang, so picked rarely.
_PARKING_IDS = (0x8400_0001, 0xC400_0001, 0x8400_0002)

INTERESTING = (
    0, 1, 2, 0x7F, 0x80, 0xFF, 0xFFFF, 0x7FFF_FFFF, 0x8000_0000, 0xFFFF_FFFF, 0x1_0000_0000,
    0x7FFF_FFFF_FFFF_FFFF, 0x8000_0000_0000_0000, MASK64, MASK64 - 1, 0xDEAD_BEEF,
    0x4141_4141_4141_4141, 0x3C5, 0x30D0_0800,
)  # fmt: skip

# -- a deterministic random source ---------------------------------------------------------


class Rng:
    """SplitMix64 seeded from SHA-256 of ``(seed, index)``: the same numbers
    on every Python version and platform (``random`` makes no such promise
    for its helpers)."""

    def __init__(self, seed: int, index: int) -> None:
        digest = hashlib.sha256(f"armvcpu-fuzz/{seed}/{index}".encode()).digest()
        self.state = int.from_bytes(digest[:8], "little")

    def u64(self) -> int:
        self.state = (self.state + 0x9E37_79B9_7F4A_7C15) & MASK64
        z = self.state
        z = ((z ^ (z >> 30)) * 0xBF58_476D_1CE4_E5B9) & MASK64
        z = ((z ^ (z >> 27)) * 0x94D0_49BB_1331_11EB) & MASK64
        return z ^ (z >> 31)

    def below(self, n: int) -> int:
        return self.u64() % n

    def bits(self, k: int) -> int:
        return self.u64() >> (64 - k)

    def chance(self, p: float) -> bool:
        return self.u64() < int(p * (1 << 64))

    def pick(self, seq: Sequence[Any]) -> Any:
        return seq[self.below(len(seq))]

    def weighted(self, table: Sequence[tuple[Any, int]]) -> Any:
        r = self.below(sum(w for _, w in table))
        for item, w in table:
            if r < w:
                return item
            r -= w
        raise AssertionError("unreachable")


def tagged_rng(tag: str, seed: int, index: int) -> Rng:
    """A random stream of its own for ``tag`` (not the generator's for ``index``)."""
    rng = Rng(seed, index)
    digest = hashlib.sha256(f"armvcpu-fuzz-{tag}/{seed}/{index}".encode()).digest()
    rng.state = int.from_bytes(digest[:8], "little")
    return rng


# -- what a word can leave behind ----------------------------------------------------------


def word_leaves_state(word: int) -> bool:
    """Whether executing this instruction word may leave state that the
    prologue and the reload do not reset: any load/store (it may write guest
    RAM anywhere) and any system instruction except hints and barriers
    (MSR/MRS, DC/IC/TLBI/AT, PSTATE writes). Registers, flags and PSTATE are
    reset for every program; everything else stays as it was."""
    if (word >> 25) & 0b0101 == 0b0100:  # the loads and stores encoding group
        return True
    if word & 0xFFC0_0000 == 0xD500_0000:  # system instructions
        hint = word & 0xFFFF_F01F == 0xD503_201F
        barrier = word & 0xFFFF_F01F == 0xD503_301F
        return not (hint or barrier)
    return False


def touches_gic_cpu_interface(word: int) -> bool:
    """MRS/MSR of an ICC_* register (op0 3, op1 0, CRn 12 with CRm 8..15, or ICC_PMR_EL1):
    a program without one leaves the prologue's timer interrupt pending and
    signalled."""
    if word & 0xFFD0_0000 != 0xD510_0000 or not word >> 19 & 1:  # MRS/MSR with op0 = 3
        return False
    op1, crn, crm = word >> 16 & 7, word >> 12 & 0xF, word >> 8 & 0xF
    return op1 == 0 and ((crn == 12 and crm >= 8) or (crn == 4 and crm == 6))


def _branchy(word: int) -> bool:
    """Branches, exception generation and system instructions (op0 101x)."""
    return (word >> 26) & 0b111 == 0b101


# -- programs ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Program:
    """One fuzz program: the random body between the fixed prologue and epilogue.

    ``clean`` is True when the program cannot leave state behind that a
    following program could observe (then a session may run the next program
    after it). ``traps`` are extra HCR_EL2/MDCR_EL2 trap bits its session runs with.
    ``gic`` is the GIC version the prologue sets up (a Runner's own).
    ``its``: an ITS program (:mod:`.its`): it runs with the ITS and the
    emulated GIC, in a session of its own, and its prologue fires no timer.
    """

    body: tuple[int, ...]
    seed: int | None = None
    index: int | None = None
    flavor: str = "custom"
    clean: bool = False
    traps: tuple[int, int] = (0, 0)
    notes: tuple[tuple[int, str], ...] = ()  # (word index, what the item is)
    name: str = ""
    gic: int = 3
    its: bool = False

    @classmethod
    def from_words(cls, words: Iterable[int], *, name: str = "custom",
                   traps: tuple[int, int] = (0, 0)) -> Program:  # fmt: skip
        """A handcrafted body; it counts as clean only if no word may leave state."""
        body = tuple(w & 0xFFFF_FFFF for w in words)
        clean = not any(word_leaves_state(w) for w in body)
        return cls(body, flavor="custom", clean=clean, traps=traps, name=name)

    @property
    def ident(self) -> str:
        """``seed:index`` (what ``armvcpu fuzz --replay`` takes), or the name."""
        if self.seed is not None and self.index is not None:
            return f"{self.seed}:{self.index}"
        return self.name or "custom"

    @property
    def interrupt_pending(self) -> bool:
        """True when the prologue's virtual timer interrupt is still pending
        (and signalled) wherever the body is: no word touches the GIC CPU
        interface, so nothing acknowledges, masks or disables it. A GICv2's
        CPU interface is memory-mapped (GICC): there, no word may load or
        store either (A64 encoding group op0 = x1x0). An ITS program's
        prologue fires no timer."""
        if self.its:
            return False
        if self.gic == 2 and any((w >> 25) & 0b0101 == 0b0100 for w in self.body):
            return False
        return not any(touches_gic_cpu_interface(w) for w in self.body)

    @property
    def epilogue(self) -> int:
        return BODY + 4 * len(self.body)

    @property
    def done_pc(self) -> int:
        """The address of the epilogue's HVC (``Exit.pc`` of its exit)."""
        return self.epilogue + 4

    @cached_property
    def image(self) -> bytes:
        """Prologue, vector table, body and epilogue, from ENTRY."""
        out = bytearray(_words_bytes(prologue_words(self.epilogue, self.gic, its=self.its)))
        if len(out) > VECTORS - ENTRY:
            raise AssertionError("the prologue overlaps the vector table")
        out += bytes(VECTORS - ENTRY - len(out))
        out += _words_bytes(vector_words())
        out += _words_bytes(self.body) + _words_bytes(epilogue_words())
        return bytes(out)

    def listing(self) -> str:
        """The body, disassembled, with the generator's notes."""
        notes = dict(self.notes)
        lines = []
        for i, word in enumerate(self.body):
            if i in notes:
                lines.append(f"                          // {notes[i]}")
            text = disassemble(word.to_bytes(4, "little"), BODY + 4 * i)
            lines.append(f"  {BODY + 4 * i:#010x}  {word:08x}  {text}")
        return "\n".join(lines)


def _words_bytes(words: Iterable[int]) -> bytes:
    # array packs in C: a program's image is built for every program run.
    out = array.array("I", [w & 0xFFFF_FFFF for w in words])
    if _sys.byteorder != "little":
        out.byteswap()
    return out.tobytes()


#: QEMU virt's GICv2 CPU interface, where a GICv2 guest finds the hardware GICV.
GICC = 0x0801_0000


def prologue_words(epilogue: int, gic: int = 3, *, its: bool = False) -> list[int]:
    """What runs before every body, from a known state to a known state.

    Masks interrupts, enables FP/SIMD, points VBAR_EL1 at the reporting
    vector table and ELR_EL1/SPSR_EL1 at the epilogue (a bare ERET ends the
    program), zeroes FP state, enables the virtual GIC CPU interface (GICv3:
    its ICC_* registers; ``gic`` 2: GICC_PMR and GICC_CTLR at the GICC
    address) and fires the virtual timer once, then waits for it with WFI:
    its interrupt stays pending (IRQs are masked), so every later WFI returns
    at once. Then it zeroes the scratch ranges, sets the stacks and clears
    x0..x30. With ``its`` (an ITS program, whose VM has the emulated GIC,
    where the timer's interrupt waits for enables the prologue does not
    make) no timer and no WFI: the only interrupts are the program's LPIs.
    """
    r = BY_NAME.__getitem__
    w = [msr_pstate(3, 6, 0xF)]  # msr daifset, #0xf
    w += [movz(0, 0x30, 1), msr(r("CPACR_EL1"), 0), ISB]  # FPEN = 0b11
    w += [*mov64(0, VECTORS), msr(r("VBAR_EL1"), 0)]
    w += [*mov64(0, epilogue), msr(r("ELR_EL1"), 0)]
    w += [movz(0, SPSR_EL1H_MASKED), msr(r("SPSR_EL1"), 0)]
    w += [msr(r("FPCR"), XZR), msr(r("FPSR"), XZR)] + [fmov_d_xzr(d) for d in range(32)]
    if gic == 2:
        # str w1, [x0, #4] (GICC_PMR) ; str w1, [x0] (GICC_CTLR.EnableGrp0)
        w += [*mov64(0, GICC), movz(1, 0xFF), ldst_uimm(2, 0, 1, 0, 1)]
        w += [movz(1, 1), ldst_uimm(2, 0, 0, 0, 1)]
    else:
        w += [movz(0, 1), msr(r("ICC_SRE_EL1"), 0), ISB]
        w += [movz(0, 0xFF), msr(r("ICC_PMR_EL1"), 0), movz(0, 1), msr(r("ICC_IGRPEN1_EL1"), 0)]
    if not its:
        w += [msr(r("CNTV_TVAL_EL0"), XZR), movz(0, 1), msr(r("CNTV_CTL_EL0"), 0), ISB, WFI]
    for start, length in ZERO_RANGES:
        w += mov64(0, start) + mov64(1, length // 16)
        # 1: stp xzr, xzr, [x0], #16 ; subs x1, x1, #1 ; b.ne 1b
        w += [ldst_pair(True, False, 2, XZR, 0, XZR, 1), subs_imm(1, 1, 1), b_cond(1, -8)]
    w += [*mov64(0, STACK_TOP), add_imm(31, 0, 0)]  # mov sp, x0
    w += [msr(r("SP_EL0"), XZR), msr(r("NZCV"), XZR)]
    w += [movz(n, 0) for n in range(31)] + [ISB]
    w.append(branch(BODY - (ENTRY + 4 * len(w))))
    return w


def vector_words() -> list[int]:
    """16 entries: each reports ESR/ELR/FAR/SPSR_EL1 with hypercall REPORT_NR + k."""
    r = BY_NAME.__getitem__
    out: list[int] = []
    for k in range(16):
        entry = [mrs(1, r("ESR_EL1")), mrs(2, r("ELR_EL1")), mrs(3, r("FAR_EL1")),
                 mrs(4, r("SPSR_EL1")), movz(0, REPORT_NR + k), hvc(0xE1), B_SELF]  # fmt: skip
        out += entry + [B_SELF] * (32 - len(entry))
    return out


REPORT_HVC_INDEX = 5  # the HVC's word in each vector entry


def epilogue_words() -> list[int]:
    return [movz(0, DONE_NR), hvc(DONE_NR), B_SELF]


# -- the generator -------------------------------------------------------------------------

#: Where structured loads and stores go: (name, weight, lowest address, span,
#: whether stores there are reset for the next program).
TARGETS: tuple[tuple[str, int, int, int, bool], ...] = (
    ("scratch RAM", 12, SCRATCH, 0x4000, True),
    ("own code", 4, ENTRY, PROGRAM_AREA - 0x100, True),
    ("firmware PA as IPA", 8, HYP_ALIAS, 0x3F00, True),
    ("top of guest RAM", 6, GUEST_RAM[1] - 0x40, 0x80, True),
    ("any guest RAM", 4, GUEST_RAM[0], GUEST_RAM[1] - GUEST_RAM[0], False),
    ("GIC distributor", 8, 0x0800_0000, 0x1_0000, True),
    ("GIC ITS", 2, 0x0808_0000, 0x2_0000, True),
    ("GIC redistributors", 6, 0x080A_0000, 0x4_0000, True),
    ("PL011", 8, 0x0900_0000, 0x1000, True),
    ("RTC/fw_cfg/GPIO", 3, 0x0901_0000, 0x3_0000, True),
    ("virtio-mmio", 2, 0x0A00_0000, 0x4000, True),
    ("flash", 3, 0x0000_0000, 0x0800_0000, True),
    ("PCIe", 2, 0x1000_0000, 0x2F00_0000, True),
    # Config space: ECAM low (bus 0's headers at its start: the BARs at
    # 0x10..0x27 of each function) and high.
    ("PCIe ECAM", 3, 0x3F00_0000, 0x0100_0000, True),
    ("PCIe ECAM header (BARs)", 2, 0x3F00_0000, 0x40, True),
    ("PCIe ECAM (high)", 1, 0x40_1000_0000, 0x1000_0000, True),
    # A GICv2's CPU interface (GICC; the guest's is the GICV behind it);
    # nothing there on a GICv3.
    ("GICv2 CPU interface", 2, 0x0801_0000, 0x2000, True),
    ("just past guest RAM", 4, GUEST_RAM[1], 0x0400_0000, True),
    ("another VM's RAM", 4, _core.EXTRA_VM_RAM_BASE, 0x0800_0000, True),
    ("unmapped below 4 GiB", 4, 0x4800_0000, 0xB800_0000, True),
    ("beyond the IPA size", 3, 0x1_0000_0000, 0xFFFF_0000_0000, True),
    ("top of the address space", 2, MASK64 - 0xFFFF, 0x1_0000, True),
)

_FLAVORS: dict[str, tuple[tuple[str, int], ...]] = {
    "mixed": (("sysreg", 20), ("sys", 3), ("memory", 25), ("call", 14), ("exception", 3),
              ("wait", 8), ("eret", 2), ("random", 18), ("pstate", 3)),
    "sysreg": (("sysreg", 70), ("sys", 10), ("pstate", 5), ("wait", 10), ("memory", 5)),
    "memory": (("memory", 88), ("wait", 8), ("call", 4)),
    "calls": (("call", 70), ("wait", 20), ("exception", 3), ("eret", 4)),
    "random": (("random", 100),),
}  # fmt: skip
_FLAVOR_WEIGHTS = (("mixed", 35), ("sysreg", 15), ("memory", 20), ("calls", 15), ("random", 15))

#: Extra traps some programs run with, so trapped MSR/MRS, cache maintenance
#: and TLBI reach the classifier and the host: HCR_EL2 TID1, TID2, TID3,
#: TIDCP, TACR, TSW, TPCP, TPU, TTLB, TVM, TDZ; MDCR_EL2 TPMCR, TPM, TDA,
#: TDOSA, TDRA. Not TRVM (the vector table reads ESR_EL1) nor TWI (a
#: trapped WFI waits for a physical interrupt).
TRAPS_HCR = sum(1 << b for b in (16, 17, 18, 20, 21, 22, 23, 24, 25, 26, 28))
TRAPS_MDCR = sum(1 << b for b in (5, 6, 9, 10, 11))


@dataclass
class _Builder:
    rng: Rng
    words: list[int] = field(default_factory=list)
    notes: list[tuple[int, str]] = field(default_factory=list)
    tainted: bool = False
    stores: bool = False
    wild: bool = False  # control may leave the straight line (random branches, ERET anywhere)

    def emit(self, note: str, words: Sequence[int], *, taints: bool = False) -> None:
        self.notes.append((len(self.words), note))
        self.words += list(words)
        self.tainted |= taints

    def reg(self, avoid: Sequence[int] = ()) -> int:
        while True:
            r = self.rng.below(31)
            if r not in avoid:
                return r

    def value(self) -> int:
        rng = self.rng
        kind = rng.weighted((("interesting", 4), ("random", 3), ("address", 2), ("small", 1)))
        if kind == "interesting":
            return int(rng.pick(INTERESTING))
        if kind == "random":
            return rng.u64()
        if kind == "address":
            return self.address()[0]
        return rng.below(256)

    def address(self) -> tuple[int, str, bool]:
        name, _, low, span, reset = self.rng.weighted([(t, t[1]) for t in TARGETS])
        addr = (low + self.rng.below(span)) & MASK64
        if self.rng.chance(0.8):
            addr &= ~7
        return addr, name, reset

    # -- items ------------------------------------------------------------------------

    def sysreg(self) -> None:
        rng = self.rng
        if rng.chance(0.75):
            reg = rng.pick(SYSREGS)
        else:  # any encoding, mostly unallocated
            reg = SysReg("random", 2 + rng.below(2), rng.below(8), rng.below(16), rng.below(16),
                         rng.below(8))  # fmt: skip
        rt = XZR if rng.chance(0.1) else self.reg()
        if rng.chance(0.5):
            taints = reg.name == "random" or reg.name in SIDE_EFFECT_READS
            self.emit(f"MRS {reg.name}", [mrs(rt, reg)], taints=taints)
            return
        value = self._sysreg_value(reg)
        words = ([] if rt == XZR else mov64(rt, value)) + [msr(reg, rt)]
        self.emit(f"MSR {reg.name}", words, taints=reg.name not in HARMLESS_WRITES)

    def _sysreg_value(self, reg: SysReg) -> int:
        rng = self.rng
        if rng.chance(0.3):
            return self.value()
        if reg.kind == "sgi":  # INTID, TargetList, Aff1, IRM, RS
            return (rng.below(16) << 24 | rng.bits(16) | (rng.below(4) << 16 if rng.chance(0.2)
                    else 0) | (1 << 40 if rng.chance(0.2) else 0)
                    | (rng.below(16) << 44 if rng.chance(0.1) else 0))  # fmt: skip
        if reg.kind == "intid":
            return int(rng.pick((27, 30, 0, 5, 1023, rng.below(1 << 24))))
        if reg.kind == "addr":
            return self.address()[0]
        if reg.kind == "ctl":
            return rng.bits(8) if rng.chance(0.7) else rng.bits(32)
        if reg.kind == "sctlr":
            return 0x30D0_0800 | (rng.bits(32) & rng.bits(32))
        if reg.kind == "spsr":
            return int(rng.pick((0x3C0, 0x3C4, 0x3C5, 0x3C9, 0x3D0, 0x10, rng.bits(32))))
        return self.value()

    def sys(self) -> None:
        rng = self.rng
        ops = (
            ("DC ZVA", 3, 7, 4, 1),
            ("DC CIVAC", 3, 7, 14, 1),
            ("DC IVAC", 0, 7, 6, 1),
            ("DC CSW", 0, 7, 10, 2),
            ("IC IALLU", 0, 7, 5, 0),
            ("IC IVAU", 3, 7, 5, 1),
            ("TLBI VMALLE1", 0, 8, 7, 0),
            ("TLBI VAE1", 0, 8, 7, 1),
            ("AT S1E1R", 0, 7, 8, 0),
            ("AT S1E1W", 0, 7, 8, 1),
            ("AT S12E1R (EL2 only)", 4, 7, 8, 4),
            ("TLBI ALLE2 (EL2 only)", 4, 8, 7, 0),
        )
        name, op1, crn, crm, op2 = rng.pick(ops)
        rt = self.reg()
        addr, where, reset = self.address()
        # AT writes PAR_EL1; DC ZVA writes memory; cache and TLB maintenance
        # change nothing a program can see with its MMU off.
        taints = name.startswith("AT") or (name == "DC ZVA" and not reset)
        self.stores |= name == "DC ZVA"
        self.emit(f"{name} {where}", [*mov64(rt, addr), sys(op1, crn, crm, op2, rt)],
                  taints=taints)  # fmt: skip

    def pstate(self) -> None:
        rng = self.rng
        fields = (("DAIFSet", 3, 6), ("DAIFClr", 3, 7), ("SPSel", 0, 5), ("PAN", 0, 4),
                  ("UAO", 0, 3), ("DIT", 3, 2), ("SSBS", 3, 1), ("TCO", 3, 4))  # fmt: skip
        name, op1, op2 = rng.pick(fields)
        # PSTATE only: the host sets it again when the next program starts.
        self.emit(f"MSR {name}", [msr_pstate(op1, op2, rng.bits(4))])

    def memory(self) -> None:
        rng = self.rng
        addr, where, reset = self.address()
        rn = self.reg()
        rt = self.reg(avoid=(rn,)) if rng.chance(0.9) else XZR
        size = rng.below(4)
        form = rng.weighted((("uimm", 30), ("unscaled", 10), ("writeback", 8), ("register", 8),
                             ("pair", 10), ("exclusive", 8), ("acquire", 6), ("atomic", 8),
                             ("simd", 6), ("prefetch", 3)))  # fmt: skip
        store = rng.chance(0.5) and form != "prefetch"
        pre: list[int] = []
        if store and rt != XZR and rng.chance(0.6):
            pre += mov64(rt, self.value())
        opc = 0 if store else rng.pick(((1,), (1, 2), (1, 2, 3), (1, 2, 3))[3 - size])
        if form == "uimm":
            imm = rng.below(16)
            words = [*mov64(rn, addr - (imm << size)), ldst_uimm(size, opc, imm, rn, rt)]
        elif form == "unscaled":
            imm = rng.below(512) - 256
            words = [*mov64(rn, addr - imm), ldst_imm9(size, opc, imm, rn, rt, 0)]
        elif form == "writeback":
            imm = rng.below(512) - 256
            mode = rng.pick((1, 3))
            base = addr - imm if mode == 3 else addr
            words = [*mov64(rn, base), ldst_imm9(size, opc, imm, rn, rt, mode)]
        elif form == "register":
            rm = self.reg(avoid=(rn, rt))
            off = rng.below(0x1000)
            shift = rng.chance(0.3)
            words = (mov64(rn, addr - (off << size if shift else off)) + mov64(rm, off)
                     + [ldst_reg(size, opc, rm, rn, rt, shift)])  # fmt: skip
        elif form == "pair":
            x = rng.chance(0.7)
            rt2 = self.reg(avoid=(rn, rt))
            index = rng.pick((1, 2, 3))
            imm = rng.below(16) - 8
            base = addr if index == 1 else addr - imm * (8 if x else 4)
            words = [*mov64(rn, base), ldst_pair(x, not store, imm, rt2, rn, rt, index)]
        elif form == "exclusive":
            if store:
                rs = self.reg(avoid=(rn, rt))
                words = [*mov64(rn, addr), stxr(size, rs, rn, rt, rng.chance(0.5))]
            else:
                words = [*mov64(rn, addr), ldxr(size, rn, rt, rng.chance(0.5))]
        elif form == "acquire":
            words = [*mov64(rn, addr), stlr(size, rn, rt) if store else ldar(size, rn, rt)]
        elif form == "atomic":
            store = True  # an atomic writes memory
            rs = self.reg(avoid=(rn,))
            if rng.chance(0.2):
                words = [*mov64(rn, addr), cas(size, rs, rn, rt)]
            else:
                op = rng.pick((0, 1, 2, 3, 8))
                words = [*mov64(rn, addr), atomic(size, op, rs, rn, rt)]
        elif form == "simd":  # B/H/S/D/Q registers: never a described (ISV) abort
            q = rng.chance(0.3)
            vsize, vopc = (0, 2 | int(not store)) if q else (size, int(not store))
            imm = rng.below(8)
            scale = 4 if q else size
            access = ldst_uimm(vsize, vopc, imm, rn, rt, simd=True)
            words = [*mov64(rn, addr - (imm << scale)), access]
        else:
            words = [*mov64(rn, addr), prfm(0, rn, rng.below(32))]
        kind = "store" if store else "load"
        self.emit(f"{form} {kind} {1 << size if form != 'simd' else '?'} bytes, {where} "
                  f"{addr:#x}", pre + words, taints=store and not reset)  # fmt: skip
        self.stores |= store

    def call(self) -> None:
        rng = self.rng
        kind = rng.weighted((("psci", 50), ("hypercall", 25), ("smccc", 12), ("random", 13)))
        if kind == "psci":
            fid = int(rng.pick(PSCI_IDS))
            if fid in _PARKING_IDS and not rng.chance(0.1):
                fid = 0x8400_0000
        elif kind == "hypercall":
            fid = rng.below(0x20)
        elif kind == "smccc":  # a fast call of any owner
            fid = 0x8000_0000 | rng.bits(1) << 30 | rng.below(64) << 24 | rng.bits(16)
        else:
            fid = rng.u64()
        words = mov64(0, fid)
        if fid & ~(1 << 30) == 0x8400_0003:  # CPU_ON: target, entry, context
            target = int(rng.pick((0, 1, 2, 0x8000_0000, 0x8000_0001, 0xFF, rng.u64())))
            entry = int(rng.pick((ENTRY, BODY, SCRATCH, 0x0900_0000, rng.u64(), 1)))
            words += mov64(1, target) + mov64(2, entry) + mov64(3, self.value())
        else:
            for reg in range(1, 1 + rng.below(4)):
                words += mov64(reg, self.value())
        imm = 0 if rng.chance(0.7) else rng.bits(16)
        use_smc = rng.chance(0.35)
        words.append(smc(imm) if use_smc else hvc(imm))
        self.emit(f"{'SMC' if use_smc else 'HVC'} #{imm:#x} x0={fid:#x}", words)

    def exception(self) -> None:
        rng = self.rng
        what = rng.weighted((("SVC", 3), ("BRK", 3), ("HLT", 2), ("DCPS", 1), ("UDF", 3),
                             ("unallocated", 3)))  # fmt: skip
        imm = rng.bits(16)
        if what == "SVC":
            word = svc(imm)
        elif what == "BRK":
            word = brk(imm)
        elif what == "HLT":
            word = hlt(imm)
        elif what == "DCPS":
            word = 0xD4A0_0000 | imm << 5 | (1 + rng.below(3))
        elif what == "UDF":
            word = imm
        else:  # op0 0001 or 0011: unallocated
            word = rng.bits(32) & ~(0xF << 25) | rng.pick((1, 3)) << 25
        self.emit(what, [word])

    def wait(self) -> None:
        word = self.rng.pick((WFI, WFI, WFE, SEV, SEVL, YIELD, NOP, ISB, DSB_SY, DMB_SY, CLREX))
        self.emit("hint/barrier", [word])

    def eret(self) -> None:
        rng = self.rng
        how = rng.weighted((("bare", 3), ("to the next instruction", 4), ("anywhere", 2)))
        if how == "bare":
            self.emit("ERET (to ELR_EL1: the epilogue, unless an exception moved it)", [ERET])
            return
        spsr = int(rng.pick((0x3C0, 0x3C4, 0x3C5, 0x3C9, 0x3C8, 0x3D0, 0x10, 0x3C1,
                             rng.bits(32))))  # fmt: skip
        rt = self.reg()
        words = [*mov64(rt, spsr), msr(BY_NAME["SPSR_EL1"], rt)]
        if how == "anywhere":
            words += mov64(rt, self.address()[0])
            self.wild = True
        else:
            words.append(adr(rt, 12))  # past the MSR and the ERET
        words += [msr(BY_NAME["ELR_EL1"], rt), ERET]
        self.emit(f"ERET {how}, SPSR={spsr:#x}", words)

    def random(self) -> None:
        rng = self.rng
        out = []
        for _ in range(1 + rng.below(4)):
            word = rng.bits(32)
            if rng.chance(0.6):  # aim at an allocated encoding group
                group = rng.pick((0b1000, 0b1001, 0b1010, 0b1011, 0b0100, 0b0110, 0b1100,
                                  0b1110, 0b0101, 0b1101, 0b0111, 0b1111))  # fmt: skip
                word = word & ~(0xF << 25) | group << 25
            out.append(word)
            self.wild |= _branchy(word)
        self.emit("random words", out, taints=any(word_leaves_state(w) for w in out))


def generate(seed: int, index: int, length: int = 32) -> Program:
    """Program ``index`` of ``seed``: ``length`` items of the program's flavor."""
    rng = Rng(seed, index)
    flavor = rng.weighted(_FLAVOR_WEIGHTS)
    traps = (TRAPS_HCR, TRAPS_MDCR) if rng.chance(0.2) else (0, 0)
    b = _Builder(rng)
    table = _FLAVORS[flavor]
    for _ in range(length):
        getattr(b, rng.weighted(table))()
    # A store after a jump into the middle of an item could use any base
    # register: stores and wild control flow together are not clean.
    clean = not b.tainted and not (b.stores and b.wild)
    return Program(tuple(b.words), seed, index, flavor, clean, traps, tuple(b.notes))
