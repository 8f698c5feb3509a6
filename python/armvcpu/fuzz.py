"""Guest fuzzing: random EL1 programs against the real firmware.

Every program is a fixed prologue, a random body and a final hypercall. The
body is generated from ``(seed, index)`` alone, so program ``i`` of seed ``s``
is always the same bytes. Each program runs under the EL2 firmware in QEMU;
the host answers its exits the plain way (hypercalls return 0, MMIO reads
return 0, writes are ignored) and classifies how the program ended:

* the guest's doing (fine): it completed, ended at an exit the fuzzer does not
  continue from (``SystemDown``, ``GuestException``, an instruction fetch from
  unmapped memory), took an EL1 exception it cannot go on from (reported by
  the prologue's vector table; others are returned from), used up its exit
  budget, or made no exit in time (a hang);
* the hypervisor's failure (a finding): QEMU died, the firmware logged a
  FATAL, the exit transport broke, an exit the firmware should never hand
  over (or one the host's core classifies differently), the firmware's own
  memory changed, a halted vCPU was not woken by its pending interrupt, or
  the host library raised.

See docs/fuzzing.md.

>>> p = generate(1, 0)
>>> p == generate(1, 0) and p.ident
'1:0'
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import hashlib
import multiprocessing
import os
import queue
import signal
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from . import _core
from .errors import (
    ArmvcpuError,
    GdbProtocolError,
    GuestTimeout,
    QemuError,
    TargetConnectionError,
)
from .exits import Exit, ExitKind, disassemble

MASK64 = (1 << 64) - 1

# -- guest memory layout (IPAs) ------------------------------------------------------------

GUEST_RAM = (0x4000_0000, 0x4400_0000)  # the firmware's guest RAM window
ENTRY = 0x4000_0000  # the prologue
VECTORS = 0x4000_0800  # VBAR_EL1: 16 entries of 0x80 bytes
BODY = 0x4000_1000  # the random body, then the epilogue
#: At least this much of the program area is rewritten for every program
#: (stores into "code" addresses stay inside it).
PROGRAM_AREA = 0x2000
SCRATCH = 0x4001_0000  # data the structured loads and stores use
STACK_TOP = 0x4001_8000
HYP_ALIAS = 0x4020_0000  # where the firmware lives in *physical* memory
#: Guest RAM the prologue zeroes before every body (with guest stores): the
#: scratch area and stack, the firmware's physical address seen as an IPA,
#: and the top of guest RAM.
ZERO_RANGES = ((SCRATCH, 0x8000), (HYP_ALIAS, 0x4000), (GUEST_RAM[1] - 0x4000, 0x4000))

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


# -- A64 encodings (Arm ARM, "A64 Instruction Set Encoding") --------------------------------

NOP = 0xD503_201F
WFI = 0xD503_207F
WFE = 0xD503_205F
SEV = 0xD503_209F
SEVL = 0xD503_20BF
YIELD = 0xD503_203F
ISB = 0xD503_3FDF
DSB_SY = 0xD503_3F9F
DMB_SY = 0xD503_3FBF
CLREX = 0xD503_305F
ERET = 0xD69F_03E0
B_SELF = 0x1400_0000  # b .
XZR = 31


def movz(rd: int, imm16: int, hw: int = 0) -> int:
    return 0xD280_0000 | hw << 21 | (imm16 & 0xFFFF) << 5 | rd


def movk(rd: int, imm16: int, hw: int) -> int:
    return 0xF280_0000 | hw << 21 | (imm16 & 0xFFFF) << 5 | rd


def mov64(rd: int, value: int) -> list[int]:
    """MOVZ then a MOVK for each other non-zero halfword."""
    value &= MASK64
    words = [movz(rd, value & 0xFFFF)]
    words += [movk(rd, (value >> 16 * hw) & 0xFFFF, hw) for hw in (1, 2, 3)
              if (value >> 16 * hw) & 0xFFFF]  # fmt: skip
    return words


@dataclass(frozen=True)
class SysReg:
    """A system register by encoding (op0 is 2 or 3 for MRS/MSR)."""

    name: str
    op0: int
    op1: int
    crn: int
    crm: int
    op2: int
    kind: str = "any"  # what a plausible written value looks like

    @property
    def fields(self) -> int:
        return (
            (self.op0 & 1) << 19 | self.op1 << 16 | self.crn << 12 | self.crm << 8 | self.op2 << 5
        )


def mrs(rt: int, reg: SysReg) -> int:
    return 0xD530_0000 | reg.fields | rt


def msr(reg: SysReg, rt: int) -> int:
    return 0xD510_0000 | reg.fields | rt


def msr_pstate(op1: int, op2: int, imm4: int) -> int:
    """MSR <pstatefield>, #imm (DAIFSet is op1=3, op2=6)."""
    return 0xD500_401F | op1 << 16 | (imm4 & 0xF) << 8 | op2 << 5


def sys(op1: int, crn: int, crm: int, op2: int, rt: int) -> int:
    """SYS: DC, IC, TLBI, AT."""
    return 0xD508_0000 | op1 << 16 | crn << 12 | crm << 8 | op2 << 5 | rt


def hvc(imm16: int) -> int:
    return 0xD400_0002 | (imm16 & 0xFFFF) << 5


def smc(imm16: int) -> int:
    return 0xD400_0003 | (imm16 & 0xFFFF) << 5


def svc(imm16: int) -> int:
    return 0xD400_0001 | (imm16 & 0xFFFF) << 5


def brk(imm16: int) -> int:
    return 0xD420_0000 | (imm16 & 0xFFFF) << 5


def hlt(imm16: int) -> int:
    return 0xD440_0000 | (imm16 & 0xFFFF) << 5


def branch(offset: int) -> int:
    return 0x1400_0000 | (offset >> 2) & 0x3FF_FFFF


def b_cond(cond: int, offset: int) -> int:
    return 0x5400_0000 | ((offset >> 2) & 0x7FFFF) << 5 | cond


def adr(rd: int, offset: int) -> int:
    return 0x1000_0000 | (offset & 3) << 29 | ((offset >> 2) & 0x7FFFF) << 5 | rd


def add_imm(rd: int, rn: int, imm12: int) -> int:
    return 0x9100_0000 | imm12 << 10 | rn << 5 | rd


def subs_imm(rd: int, rn: int, imm12: int) -> int:
    return 0xF100_0000 | imm12 << 10 | rn << 5 | rd


def fmov_d_xzr(d: int) -> int:
    return 0x9E67_03E0 | d


def ldst_uimm(size: int, opc: int, imm12: int, rn: int, rt: int, *, simd: bool = False) -> int:
    """LDR/STR (unsigned offset): offset = imm12 << size (<< 4 for Q)."""
    return 0x3900_0000 | size << 30 | int(simd) << 26 | opc << 22 | imm12 << 10 | rn << 5 | rt


def ldst_imm9(size: int, opc: int, imm9: int, rn: int, rt: int, mode: int) -> int:
    """LDUR/STUR (mode 0), post-index (1) and pre-index (3) forms."""
    return 0x3800_0000 | size << 30 | opc << 22 | (imm9 & 0x1FF) << 12 | mode << 10 | rn << 5 | rt


def ldst_reg(size: int, opc: int, rm: int, rn: int, rt: int, shift: bool) -> int:
    """LDR/STR (register), LSL option."""
    return 0x3820_6800 | size << 30 | opc << 22 | rm << 16 | int(shift) << 12 | rn << 5 | rt


def ldst_pair(x: bool, load: bool, imm7: int, rt2: int, rn: int, rt: int, index: int) -> int:
    """LDP/STP; index 1 post, 2 signed offset, 3 pre (in units of the register size)."""
    return (0x2800_0000 | (2 if x else 0) << 30 | index << 23 | int(load) << 22
            | (imm7 & 0x7F) << 15 | rt2 << 10 | rn << 5 | rt)  # fmt: skip


def ldxr(size: int, rn: int, rt: int, acquire: bool = False) -> int:
    return 0x085F_7C00 | size << 30 | int(acquire) << 15 | rn << 5 | rt


def stxr(size: int, rs: int, rn: int, rt: int, release: bool = False) -> int:
    return 0x0800_7C00 | size << 30 | rs << 16 | int(release) << 15 | rn << 5 | rt


def ldar(size: int, rn: int, rt: int) -> int:
    return 0x08DF_FC00 | size << 30 | rn << 5 | rt


def stlr(size: int, rn: int, rt: int) -> int:
    return 0x089F_FC00 | size << 30 | rn << 5 | rt


def atomic(size: int, op: int, rs: int, rn: int, rt: int) -> int:
    """LSE LD<op>/SWP: op 0 ADD, 1 CLR, 2 EOR, 3 SET, 8 SWP."""
    return 0x3820_0000 | size << 30 | rs << 16 | (op & 8) << 12 | (op & 7) << 12 | rn << 5 | rt


def cas(size: int, rs: int, rn: int, rt: int) -> int:
    return 0x08A0_7C00 | size << 30 | rs << 16 | rn << 5 | rt


def prfm(imm12: int, rn: int, op: int) -> int:
    return 0xF980_0000 | imm12 << 10 | rn << 5 | op


def _reg(name: str, op0: int, op1: int, crn: int, crm: int, op2: int, kind: str = "any") -> SysReg:
    return SysReg(name, op0, op1, crn, crm, op2, kind)


#: Real registers (Arm ARM encodings): GIC CPU interface, timers, EL1 controls,
#: ID registers, debug and PMU, and EL2/EL3 registers that EL1 may not touch.
SYSREGS: tuple[SysReg, ...] = (
    _reg("ICC_SGI1R_EL1", 3, 0, 12, 11, 5, "sgi"), _reg("ICC_ASGI1R_EL1", 3, 0, 12, 11, 6, "sgi"),
    _reg("ICC_SGI0R_EL1", 3, 0, 12, 11, 7, "sgi"), _reg("ICC_IAR1_EL1", 3, 0, 12, 12, 0),
    _reg("ICC_EOIR1_EL1", 3, 0, 12, 12, 1, "intid"), _reg("ICC_HPPIR1_EL1", 3, 0, 12, 12, 2),
    _reg("ICC_BPR1_EL1", 3, 0, 12, 12, 3), _reg("ICC_CTLR_EL1", 3, 0, 12, 12, 4),
    _reg("ICC_SRE_EL1", 3, 0, 12, 12, 5), _reg("ICC_IGRPEN0_EL1", 3, 0, 12, 12, 6),
    _reg("ICC_IGRPEN1_EL1", 3, 0, 12, 12, 7), _reg("ICC_PMR_EL1", 3, 0, 4, 6, 0),
    _reg("ICC_DIR_EL1", 3, 0, 12, 11, 1, "intid"), _reg("ICC_RPR_EL1", 3, 0, 12, 11, 3),
    _reg("ICC_IAR0_EL1", 3, 0, 12, 8, 0), _reg("ICC_AP1R0_EL1", 3, 0, 12, 9, 0),
    _reg("CNTV_CTL_EL0", 3, 3, 14, 3, 1, "ctl"), _reg("CNTV_CVAL_EL0", 3, 3, 14, 3, 2),
    _reg("CNTV_TVAL_EL0", 3, 3, 14, 3, 0), _reg("CNTP_CTL_EL0", 3, 3, 14, 2, 1, "ctl"),
    _reg("CNTP_CVAL_EL0", 3, 3, 14, 2, 2), _reg("CNTP_TVAL_EL0", 3, 3, 14, 2, 0),
    _reg("CNTPCT_EL0", 3, 3, 14, 0, 1), _reg("CNTVCT_EL0", 3, 3, 14, 0, 2),
    _reg("CNTFRQ_EL0", 3, 3, 14, 0, 0), _reg("CNTKCTL_EL1", 3, 0, 14, 1, 0, "ctl"),
    _reg("SCTLR_EL1", 3, 0, 1, 0, 0, "sctlr"), _reg("ACTLR_EL1", 3, 0, 1, 0, 1),
    _reg("CPACR_EL1", 3, 0, 1, 0, 2, "ctl"), _reg("TTBR0_EL1", 3, 0, 2, 0, 0, "addr"),
    _reg("TTBR1_EL1", 3, 0, 2, 0, 1, "addr"), _reg("TCR_EL1", 3, 0, 2, 0, 2),
    _reg("MAIR_EL1", 3, 0, 10, 2, 0), _reg("VBAR_EL1", 3, 0, 12, 0, 0, "addr"),
    _reg("ESR_EL1", 3, 0, 5, 2, 0), _reg("FAR_EL1", 3, 0, 6, 0, 0, "addr"),
    _reg("PAR_EL1", 3, 0, 7, 4, 0), _reg("CONTEXTIDR_EL1", 3, 0, 13, 0, 1),
    _reg("TPIDR_EL1", 3, 0, 13, 0, 4), _reg("TPIDR_EL0", 3, 3, 13, 0, 2),
    _reg("SP_EL0", 3, 0, 4, 1, 0, "addr"), _reg("ELR_EL1", 3, 0, 4, 0, 1, "addr"),
    _reg("SPSR_EL1", 3, 0, 4, 0, 0, "spsr"), _reg("DAIF", 3, 3, 4, 2, 1, "ctl"),
    _reg("NZCV", 3, 3, 4, 2, 0), _reg("CurrentEL", 3, 0, 4, 2, 2),
    _reg("SPSel", 3, 0, 4, 2, 0, "ctl"), _reg("FPCR", 3, 3, 4, 4, 0), _reg("FPSR", 3, 3, 4, 4, 1),
    _reg("ZCR_EL1", 3, 0, 1, 2, 0), _reg("GCR_EL1", 3, 0, 1, 0, 6),
    _reg("APIAKeyLo_EL1", 3, 0, 2, 1, 0), _reg("RNDR", 3, 3, 2, 4, 0),
    _reg("MIDR_EL1", 3, 0, 0, 0, 0), _reg("MPIDR_EL1", 3, 0, 0, 0, 5),
    _reg("REVIDR_EL1", 3, 0, 0, 0, 6), _reg("ID_AA64PFR0_EL1", 3, 0, 0, 4, 0),
    _reg("ID_AA64PFR1_EL1", 3, 0, 0, 4, 1), _reg("ID_AA64ZFR0_EL1", 3, 0, 0, 4, 4),
    _reg("ID_AA64DFR0_EL1", 3, 0, 0, 5, 0), _reg("ID_AA64ISAR0_EL1", 3, 0, 0, 6, 0),
    _reg("ID_AA64ISAR1_EL1", 3, 0, 0, 6, 1), _reg("ID_AA64MMFR0_EL1", 3, 0, 0, 7, 0),
    _reg("ID_AA64MMFR1_EL1", 3, 0, 0, 7, 1), _reg("ID_AA64MMFR2_EL1", 3, 0, 0, 7, 2),
    _reg("ID_PFR0_EL1", 3, 0, 0, 1, 0), _reg("ID_DFR0_EL1", 3, 0, 0, 1, 2),
    _reg("CTR_EL0", 3, 3, 0, 0, 1), _reg("DCZID_EL0", 3, 3, 0, 0, 7),
    _reg("CLIDR_EL1", 3, 1, 0, 0, 1), _reg("CCSIDR_EL1", 3, 1, 0, 0, 0),
    _reg("CSSELR_EL1", 3, 2, 0, 0, 0),
    _reg("MDSCR_EL1", 2, 0, 0, 2, 2, "ctl"), _reg("DBGBVR0_EL1", 2, 0, 0, 0, 4, "addr"),
    _reg("DBGBCR0_EL1", 2, 0, 0, 0, 5, "ctl"), _reg("DBGWVR0_EL1", 2, 0, 0, 0, 6, "addr"),
    _reg("DBGWCR0_EL1", 2, 0, 0, 0, 7, "ctl"), _reg("MDCCSR_EL0", 2, 3, 0, 1, 0),
    _reg("DBGDTR_EL0", 2, 3, 0, 4, 0), _reg("OSLAR_EL1", 2, 0, 1, 0, 4, "ctl"),
    _reg("OSLSR_EL1", 2, 0, 1, 1, 4), _reg("OSDLR_EL1", 2, 0, 1, 3, 4, "ctl"),
    _reg("MDRAR_EL1", 2, 0, 1, 0, 0), _reg("DBGCLAIMSET_EL1", 2, 0, 7, 8, 6),
    _reg("PMCR_EL0", 3, 3, 9, 12, 0, "ctl"), _reg("PMCNTENSET_EL0", 3, 3, 9, 12, 1),
    _reg("PMCNTENCLR_EL0", 3, 3, 9, 12, 2), _reg("PMOVSCLR_EL0", 3, 3, 9, 12, 3),
    _reg("PMSWINC_EL0", 3, 3, 9, 12, 4), _reg("PMSELR_EL0", 3, 3, 9, 12, 5),
    _reg("PMCEID0_EL0", 3, 3, 9, 12, 6), _reg("PMCCNTR_EL0", 3, 3, 9, 13, 0),
    _reg("PMXEVTYPER_EL0", 3, 3, 9, 13, 1), _reg("PMXEVCNTR_EL0", 3, 3, 9, 13, 2),
    _reg("PMUSERENR_EL0", 3, 3, 9, 14, 0, "ctl"), _reg("PMINTENSET_EL1", 3, 0, 9, 14, 1),
    _reg("PMINTENCLR_EL1", 3, 0, 9, 14, 2), _reg("PMOVSSET_EL0", 3, 3, 9, 14, 3),
    _reg("PMEVCNTR0_EL0", 3, 3, 14, 8, 0), _reg("PMEVTYPER0_EL0", 3, 3, 14, 12, 0),
    _reg("PMCCFILTR_EL0", 3, 3, 14, 15, 7),
    _reg("HCR_EL2", 3, 4, 1, 1, 0), _reg("VTTBR_EL2", 3, 4, 2, 1, 0, "addr"),
    _reg("SCTLR_EL2", 3, 4, 1, 0, 0), _reg("VBAR_EL2", 3, 4, 12, 0, 0, "addr"),
    _reg("ICH_HCR_EL2", 3, 4, 12, 11, 0), _reg("ICH_LR0_EL2", 3, 4, 12, 12, 0),
    _reg("CNTHCTL_EL2", 3, 4, 14, 1, 0), _reg("MDCR_EL2", 3, 4, 1, 1, 1),
    _reg("ELR_EL2", 3, 4, 4, 0, 1, "addr"), _reg("SP_EL1", 3, 4, 4, 1, 0, "addr"),
    _reg("SCR_EL3", 3, 6, 1, 1, 0), _reg("SCTLR_EL12", 3, 5, 1, 0, 0),
)  # fmt: skip
_BY_NAME = {r.name: r for r in SYSREGS}
#: Reads with side effects (acknowledging an interrupt, draining a debug
#: channel) or from registers outside the list: they taint the session.
_SIDE_EFFECT_READS = frozenset({"ICC_IAR1_EL1", "ICC_IAR0_EL1", "DBGDTR_EL0"})
#: Writes that leave nothing behind: registers the prologue sets again for
#: every program (or PSTATE, which the host resets), and EL2/EL3 registers,
#: which are UNDEFINED at EL1.
_HARMLESS_WRITES = frozenset({
    "VBAR_EL1", "ELR_EL1", "SPSR_EL1", "SP_EL0", "NZCV", "DAIF", "SPSel", "FPCR", "FPSR",
    "CPACR_EL1", "CNTV_TVAL_EL0", "CNTV_CVAL_EL0", "CNTV_CTL_EL0", "ICC_PMR_EL1",
    "ICC_IGRPEN1_EL1", "HCR_EL2", "VTTBR_EL2", "SCTLR_EL2", "VBAR_EL2", "ICH_HCR_EL2",
    "ICH_LR0_EL2", "CNTHCTL_EL2", "MDCR_EL2", "ELR_EL2", "SP_EL1", "SCR_EL3", "SCTLR_EL12",
})  # fmt: skip


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
    """

    body: tuple[int, ...]
    seed: int | None = None
    index: int | None = None
    flavor: str = "custom"
    clean: bool = False
    traps: tuple[int, int] = (0, 0)
    notes: tuple[tuple[int, str], ...] = ()  # (word index, what the item is)
    name: str = ""

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
        interface, so nothing acknowledges, masks or disables it."""
        return not any(touches_gic_cpu_interface(w) for w in self.body)

    @property
    def epilogue(self) -> int:
        return BODY + 4 * len(self.body)

    @property
    def done_pc(self) -> int:
        """The exception PC of the epilogue's HVC (ELR_EL2 is past the HVC)."""
        return self.epilogue + 8

    @cached_property
    def image(self) -> bytes:
        """Prologue, vector table, body and epilogue, from ENTRY."""
        out = bytearray(_words_bytes(prologue_words(self.epilogue)))
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
    return b"".join((w & 0xFFFF_FFFF).to_bytes(4, "little") for w in words)


def prologue_words(epilogue: int) -> list[int]:
    """What runs before every body, from a known state to a known state.

    Masks interrupts, enables FP/SIMD, points VBAR_EL1 at the reporting
    vector table and ELR_EL1/SPSR_EL1 at the epilogue (a bare ERET ends the
    program), zeroes FP state, enables the virtual GIC CPU interface and
    fires the virtual timer once, then waits for it with WFI: its interrupt
    stays pending (IRQs are masked), so every later WFI returns at once.
    Then it zeroes the scratch ranges, sets the stacks and clears x0..x30.
    """
    r = _BY_NAME.__getitem__
    w = [msr_pstate(3, 6, 0xF)]  # msr daifset, #0xf
    w += [movz(0, 0x30, 1), msr(r("CPACR_EL1"), 0), ISB]  # FPEN = 0b11
    w += [*mov64(0, VECTORS), msr(r("VBAR_EL1"), 0)]
    w += [*mov64(0, epilogue), msr(r("ELR_EL1"), 0)]
    w += [movz(0, SPSR_EL1H_MASKED), msr(r("SPSR_EL1"), 0)]
    w += [msr(r("FPCR"), XZR), msr(r("FPSR"), XZR)] + [fmov_d_xzr(d) for d in range(32)]
    w += [movz(0, 1), msr(r("ICC_SRE_EL1"), 0), ISB]
    w += [movz(0, 0xFF), msr(r("ICC_PMR_EL1"), 0), movz(0, 1), msr(r("ICC_IGRPEN1_EL1"), 0)]
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
    r = _BY_NAME.__getitem__
    out: list[int] = []
    for k in range(16):
        entry = [mrs(1, r("ESR_EL1")), mrs(2, r("ELR_EL1")), mrs(3, r("FAR_EL1")),
                 mrs(4, r("SPSR_EL1")), movz(0, REPORT_NR + k), hvc(0xE1), B_SELF]  # fmt: skip
        out += entry + [B_SELF] * (32 - len(entry))
    return out


_REPORT_HVC_INDEX = 5  # the HVC's word in each vector entry


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
    ("guest RAM's own PA", 4, 0x4800_0000, 0x0400_0000, True),
    ("another VM's RAM", 4, 0x4C00_0000, 0x0800_0000, True),
    ("unmapped below 4 GiB", 4, 0x5400_0000, 0xAC00_0000, True),
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
            taints = reg.name == "random" or reg.name in _SIDE_EFFECT_READS
            self.emit(f"MRS {reg.name}", [mrs(rt, reg)], taints=taints)
            return
        value = self._sysreg_value(reg)
        words = ([] if rt == XZR else mov64(rt, value)) + [msr(reg, rt)]
        self.emit(f"MSR {reg.name}", words, taints=reg.name not in _HARMLESS_WRITES)

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
        words = [*mov64(rt, spsr), msr(_BY_NAME["SPSR_EL1"], rt)]
        if how == "anywhere":
            words += mov64(rt, self.address()[0])
            self.wild = True
        else:
            words.append(adr(rt, 12))  # past the MSR and the ERET
        words += [msr(_BY_NAME["ELR_EL1"], rt), ERET]
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


# -- outcomes ------------------------------------------------------------------------------

COMPLETED = "completed"
STOPPED = "stopped at exit"
EL1_EXCEPTION = "EL1 exception"
BUDGET = "exit budget"
TIMEOUT = "timeout"
NOT_WOKEN = "halted vCPU not woken"
#: The hypervisor's failures: each one is a finding.
HV_DIED = "hypervisor died"
FW_FATAL = "firmware FATAL"
PROTOCOL = "protocol error"
UNCLASSIFIED = "unclassified exit"
ISOLATION = "isolation breach"
HOST_ERROR = "host library error"
START_FAILED = "session start failed"
FAILURES = (
    HV_DIED,
    FW_FATAL,
    PROTOCOL,
    UNCLASSIFIED,
    ISOLATION,
    NOT_WOKEN,
    HOST_ERROR,
    START_FAILED,
)


@dataclass
class Outcome:
    """How one program ended."""

    ident: str
    outcome: str
    detail: str = ""
    exits: int = 0
    seconds: float = 0.0
    fresh_session: bool = True
    flavor: str = ""
    #: EL1 exceptions the program took inside its body and went on from, by EC.
    el1_skipped: dict[str, int] = field(default_factory=dict)
    log: str = ""  # for failures: what the firmware printed, the last exits, a traceback

    @property
    def failure(self) -> bool:
        return self.outcome in FAILURES

    def as_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["failure"] = self.failure
        return d


_VECTOR_FROM = ("EL1t", "EL1h", "EL0 (AArch64)", "EL0 (AArch32)")
_VECTOR_TYPE = ("sync", "IRQ", "FIQ", "SError")
#: Exit kinds the firmware handles itself or never produces on arm64.
_NEVER_REPORTED = ("Nothing", "IoRead", "IoWrite", "FailEntry", "CpuUp", "CpuDown", "SendIpi",
                   "Halt")  # fmt: skip


#: EL1 exceptions the program cannot go on from by skipping one instruction:
#: illegal execution state, instruction aborts, PC alignment, software step.
_ENDS_PROGRAM = frozenset({0x0E, 0x20, 0x21, 0x22, 0x32, 0x33})
#: ...and those whose ELR_EL1 is already past the instruction (SVC).
_RETURNS_PAST = frozenset({0x11, 0x15})


def _ec_name(ec: int) -> str:
    return str(_core.exception_class_name(ec) or "reserved")


class _ProgramEnd(Exception):
    def __init__(self, outcome: str, detail: str, keep: bool) -> None:
        super().__init__(outcome, detail)
        self.outcome = outcome
        self.detail = detail
        self.keep = keep  # the guest stopped at an exit the session can go on from


@dataclass
class _FirmwareFacts:
    """What the host checks the firmware against: the ranges of its image
    and page tables that no guest may change, and its functions (to name
    where a CPU stuck in EL2 is)."""

    protected: list[tuple[int, int]]
    functions: list[tuple[int, int, str]]

    @classmethod
    def load(cls, path: Path) -> _FirmwareFacts:
        from elftools.elf.elffile import ELFFile
        from elftools.elf.sections import SymbolTableSection

        with path.open("rb") as f:
            symtab = ELFFile(f).get_section_by_name(".symtab")
            if not isinstance(symtab, SymbolTableSection):
                raise ArmvcpuError(f"{path} has no symbol table")
            bounds = [symtab.get_symbol_by_name(n) for n in ("__image_start", "__bss_start")]
            if not bounds[0] or not bounds[1]:
                raise ArmvcpuError(f"{path} lacks __image_start/__bss_start")
            protected = [(int(bounds[0][0]["st_value"]), int(bounds[1][0]["st_value"]))]
            functions = []
            for sym in symtab.iter_symbols():
                if any(t in sym.name for t in ("g_table_pool", "g_l1", "g_l2_ram", "g_l3_guard")):
                    protected.append((int(sym["st_value"]), int(sym["st_value"] + sym["st_size"])))
                if sym["st_info"]["type"] == "STT_FUNC" and sym["st_size"]:
                    functions.append((int(sym["st_value"]), int(sym["st_size"]), sym.name))
        return cls(protected, sorted(functions))

    def function_at(self, pc: int) -> str:
        for addr, size, name in self.functions:
            if addr <= pc < addr + size:
                return _demangle(name)
        return "?"


def _demangle(name: str) -> str:
    """The last component of an Itanium-mangled name (enough to name it)."""
    if not name.startswith("_Z"):
        return name
    parts, i = [], 2 + (name[2] == "N")
    while i < len(name) and name[i].isdigit():
        j = i
        while name[j].isdigit():
            j += 1
        n = int(name[i:j])
        parts.append(name[j : j + n])
        i = j + n
    return "::".join(p for p in parts if not p.startswith("_GLOBAL__N")) or name


class Runner:
    """Runs programs one after another, each under the firmware in QEMU.

    A session (one QEMU) is reused for the next program when the last one
    was clean (see :attr:`Program.clean`) and ended at an exit: the program
    area is rewritten through the gdbstub (which, unlike a write to the
    shared RAM, makes QEMU drop the code it translated from it) and that
    exit is answered with the PC at the prologue. Anything else gets a fresh
    QEMU.

    ``on_exit(exit, answer)`` sees every exit with a description of the answer.
    """

    def __init__(self, *, timeout: float = 0.5, budget: int = 200, reuse: bool = True,
                 max_per_session: int = 100,
                 on_exit: Callable[[Exit, str], None] | None = None) -> None:  # fmt: skip
        self.timeout = timeout
        self.budget = budget
        self.reuse = reuse
        self.max_per_session = max_per_session
        self.on_exit = on_exit
        self.hv: Any = None
        self.sessions = 0
        self.reused_programs = 0
        self._pending: Exit | None = None  # the exit the last program ended at, unanswered
        self._traps: tuple[int, int] = (0, 0)
        self._written = 0  # bytes of program area written in this session
        self._in_session = 0
        self._digest: bytes | None = None
        self._facts: _FirmwareFacts | None = None

    # -- sessions -----------------------------------------------------------------------

    def close(self) -> None:
        self._pending = None
        if self.hv is not None:
            hv, self.hv = self.hv, None
            hv.close()

    def __enter__(self) -> Runner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _start(self, program: Program) -> None:
        from .guest import Guest
        from .hypervisor import Hypervisor

        self.close()
        for attempt in (1, 2):
            hv = Hypervisor(transport="shm", timeout=self.timeout)
            try:
                hv.start()
                if program.traps != (0, 0):
                    hv.set_traps(hcr_el2=program.traps[0], mdcr_el2=program.traps[1])
                hv.load(Guest.from_binary(self._padded(program), ENTRY, name=program.ident))
            except (ArmvcpuError, OSError):
                hv.close()
                if attempt == 2:
                    raise
                continue
            break
        self.hv = hv
        self.sessions += 1
        self._traps = program.traps
        self._in_session = 0
        self._digest = None
        if self._facts is None:
            self._facts = _FirmwareFacts.load(hv.firmware.path)

    def _padded(self, program: Program) -> bytes:
        image = program.image
        size = max(len(image), PROGRAM_AREA, self._written)
        self._written = size
        return image + bytes(size - len(image))

    def _reload(self, program: Program) -> None:
        """Rewrite the program area and send the waiting vCPU to the prologue."""
        hv, exit = self.hv, self._pending
        assert hv is not None and exit is not None
        self._pending = None
        gdb = hv.gdb
        gdb.interrupt()
        stop = gdb.wait_stop(5.0)
        if stop.running_ended:
            raise QemuError(f"QEMU ended while the next program was loaded ({stop.raw})")
        gdb.write_memory(hv.ipa_to_pa(ENTRY), self._padded(program))
        gdb.cont()
        exit.resume(pc=ENTRY, spsr=SPSR_EL1H_MASKED, sp_el0=0)

    def _can_reuse(self, program: Program) -> bool:
        return (self.reuse and self.hv is not None and self._pending is not None
                and self._traps == program.traps
                and self._in_session < self.max_per_session)  # fmt: skip

    # -- one program --------------------------------------------------------------------

    def run(self, program: Program) -> Outcome:
        t0 = time.monotonic()
        fresh = not self._can_reuse(program)
        result = Outcome(program.ident, "", flavor=program.flavor, fresh_session=fresh)
        keep = False
        try:
            try:
                if fresh:
                    self._start(program)
                else:
                    self._reload(program)
                    self.reused_programs += 1
            except (ArmvcpuError, OSError) as exc:
                raise _ProgramEnd(START_FAILED if fresh else PROTOCOL,
                                  f"{'starting' if fresh else 'reloading'} the session: {exc}",
                                  False) from exc  # fmt: skip
            self._in_session += 1
            self._drive(program, result, time.monotonic())
        except _ProgramEnd as end:
            result.outcome, result.detail, keep = end.outcome, end.detail, end.keep
        except GuestTimeout:
            detail, halted = self._where_stuck()
            if halted and program.interrupt_pending:
                # A pending interrupt is a wake-up event (DEN0022 5.4.2 for
                # CPU_SUSPEND's standby; WFI wake-up in the Arm ARM): the
                # firmware should have let the vCPU go on.
                result.outcome = NOT_WOKEN
                result.detail = "halted in EL2 with its virtual timer interrupt pending"
            else:
                result.outcome, result.detail = TIMEOUT, detail
        except QemuError as exc:
            result.outcome, result.detail = HV_DIED, str(exc).splitlines()[0]
        except (GdbProtocolError, TargetConnectionError) as exc:
            result.outcome, result.detail = PROTOCOL, str(exc).splitlines()[0]
        except Exception as exc:  # the host library itself failed
            result.outcome, result.detail = HOST_ERROR, f"{type(exc).__name__}: {exc}"
            result.log = traceback.format_exc()
        result.seconds = time.monotonic() - t0
        self._after(program, result, keep)
        return result

    def _drive(self, program: Program, result: Outcome, started: float) -> None:
        hv = self.hv
        deadline = started + self.timeout
        exits = hv.exits(timeout=max(0.05, deadline - time.monotonic()))
        try:
            for exit in exits:
                result.exits += 1
                if self._digest is None:  # the firmware's tables are built by now
                    self._digest = self._firmware_digest()
                self._check(exit)
                skip = self._classify_end(program, exit)
                if result.exits >= self.budget:
                    raise _ProgramEnd(BUDGET, f"{self.budget} exits", True)
                if time.monotonic() > deadline:
                    raise _ProgramEnd(TIMEOUT, "still making exits", False)
                if skip is not None:
                    pc, spsr, label = skip
                    result.el1_skipped[label] = result.el1_skipped.get(label, 0) + 1
                    exit.resume(pc=pc, spsr=spsr)
                    answer = f"EL1 {label}: back to pc={pc:#x}"
                else:
                    answer = self._answer(exit)
                if self.on_exit is not None:
                    self.on_exit(exit, answer)
            # The iteration only ends when the VM does, and no answer here stops it.
            raise QemuError(f"the VM ended without a reason; last exit: {hv.last_exit!r}")
        except _ProgramEnd as end:
            if end.keep:
                self._pending = hv.last_exit
            if self.on_exit is not None and hv.last_exit is not None:
                self.on_exit(hv.last_exit, f"ends the program: {end.outcome}")
            raise
        finally:
            exits.close()

    def _classify_end(self, program: Program, exit: Exit) -> tuple[int, int, str] | None:
        """Raise _ProgramEnd when this exit ends the program; for an EL1
        exception the program goes on from, return (pc, spsr, label)."""
        kind = exit.kind
        if kind == ExitKind.Hypercall:
            nr = int(exit.reason.nr)
            if nr == DONE_NR and exit.exception_pc == program.done_pc:
                raise _ProgramEnd(COMPLETED, "", True)
            k = nr - REPORT_NR
            hvc_end = VECTORS + 0x80 * k + 4 * (_REPORT_HVC_INDEX + 1)
            if 0 <= k < 16 and exit.exception_pc == hvc_end:
                return self._el1_exception(program, exit, k)
        elif kind == ExitKind.SystemDown:
            how = "(reset)" if exit.reason.reset else "(off)"
            raise _ProgramEnd(STOPPED, f"SystemDown {how}",
                              True)  # fmt: skip
        elif kind == ExitKind.GuestException:
            ec = int(exit.reason.ec)
            if ec != 0x17:  # an SMC the core does not know is answered below
                raise _ProgramEnd(STOPPED, f"GuestException EC {ec:#04x} {_ec_name(ec)}", True)
        elif kind == ExitKind.NestedPageFault and exit.reason.access_flags & 4:
            raise _ProgramEnd(STOPPED, "NestedPageFault (instruction fetch)", True)
        return None

    def _el1_exception(self, program: Program, exit: Exit, k: int) -> tuple[int, int, str]:
        """The vector table reported exception ``k``: x1 = ESR_EL1, x2 =
        ELR_EL1, x4 = SPSR_EL1. A synchronous exception inside the body is
        returned from past the instruction (the host does the vector's ERET;
        x0..x4 stay clobbered); anything else ends the program."""
        regs = exit.regs
        ec, elr, spsr = (regs.x1 >> 26) & 0x3F, regs.x2, regs.x4
        source = _VECTOR_FROM[k // 4]
        if k % 4:
            raise _ProgramEnd(EL1_EXCEPTION, f"{_VECTOR_TYPE[k % 4]} (from {source})", True)
        detail = f"EC {ec:#04x} {_ec_name(ec)}" + (f" (from {source})" if k >= 8 else "")
        if ec in _ENDS_PROGRAM or k >= 12:
            raise _ProgramEnd(EL1_EXCEPTION, detail, True)
        if not BODY <= elr < program.epilogue:
            raise _ProgramEnd(EL1_EXCEPTION, f"{detail} outside the body", True)
        return elr + (0 if ec in _RETURNS_PAST else 4), spsr, detail

    def _check(self, exit: Exit) -> None:
        """Raise _ProgramEnd(UNCLASSIFIED) for an exit the firmware should never hand over."""
        kind_name = str(getattr(exit.kind, "name", exit.kind))
        if exit.vm_id != 1 or exit.vcpu_id != 0:
            raise _ProgramEnd(UNCLASSIFIED, f"exit from VM {exit.vm_id} vCPU {exit.vcpu_id}", False)
        if kind_name in _NEVER_REPORTED:
            raise _ProgramEnd(UNCLASSIFIED, f"{kind_name} reached the host", False)
        if kind_name not in ExitKind.__members__:
            raise _ProgramEnd(UNCLASSIFIED, f"unknown exit kind {exit.kind!r}", False)
        if exit.record.exception_type == _core.ExceptionType.Synchronous:
            host = exit.reclassify()
            if repr(host) != repr(exit.reason):
                raise _ProgramEnd(UNCLASSIFIED, f"firmware says {exit.reason!r}, the host's core "
                                  f"says {host!r}", False)  # fmt: skip
        if exit.kind == ExitKind.GuestException and int(exit.reason.ec) in (0x21, 0x25):
            raise _ProgramEnd(UNCLASSIFIED, f"an abort taken from EL2 itself: {exit.reason!r}",
                              False)  # fmt: skip

    def _answer(self, exit: Exit) -> str:
        """Answer the exit the plain way; returns what was answered. Values
        go through ``Policy.answer()``, the path every policy handler's
        result takes, so a bug there is a finding too (host library error)."""
        from .policy import Policy

        kind = exit.kind
        if kind in (ExitKind.Hypercall, ExitKind.MmioRead, ExitKind.SysRegRead):
            Policy.answer(exit, 0)  # x0 = 0, the read returns 0, Rt = 0
            return "0"
        if kind in (ExitKind.MmioWrite, ExitKind.SysRegWrite):
            Policy.answer(exit, None)  # resume: the write is ignored
            return "ignored"
        if kind == ExitKind.NestedPageFault:  # a data access nobody emulates: skip it
            exit.resume(pc=exit.exception_pc + 4)
            return "skipped"
        if kind == ExitKind.GuestException:  # an SMC nobody implements (SMCCC)
            exit.resume(x0=SMCCC_NOT_SUPPORTED, pc=exit.exception_pc + 4)
            return "x0=NOT_SUPPORTED, skipped"
        exit.resume_default()
        return "default"

    def _firmware_digest(self) -> bytes:
        from .hypervisor import RAM_BASE

        h = hashlib.blake2b(digest_size=16)
        ram = self.hv.ram
        assert ram is not None and self._facts is not None
        for lo, hi in self._facts.protected:
            h.update(ram[lo - RAM_BASE : hi - RAM_BASE])
        return h.digest()

    def _where_stuck(self, samples: int = 5) -> tuple[str, bool]:
        """After a timeout (the CPU has been interrupted): where it is, and
        whether it is the firmware waiting for a halted vCPU's interrupt.
        The CPU is sampled a few times: a guest looping through calls that
        EL2 answers itself is in EL2 much of the time, but not always."""
        try:
            gdb = self.hv.gdb
            seen = []
            for i in range(samples):
                if i:
                    gdb.cont()
                    time.sleep(0.01)
                    gdb.interrupt()
                    gdb.wait_stop(2.0)
                seen.append(((gdb.read_register("cpsr") >> 2) & 3, gdb.read_register("pc")))
        except (ArmvcpuError, OSError, TimeoutError):
            return "no exit in time", False
        guest = sorted({el for el, _ in seen if el < 2})
        if guest:
            via = " (and in EL2)" if any(el == 2 for el, _ in seen) else ""
            return f"no exit in time, guest looping at EL{guest[-1]}{via}", False
        places = {self._el2_place(pc) for _, pc in seen}
        if places == {"halt"}:
            return "vCPU halted in EL2 (PSCI CPU_SUSPEND), no interrupt wakes it", True
        if places == {"off"}:
            return "vCPU off (PSCI CPU_OFF), its CPU waits in EL2", False
        return f"no exit in time, CPU in EL2 ({', '.join(sorted(places))})", False

    def _el2_place(self, pc: int) -> str:
        """The Halt wait ("halt": a short loop around a WFI in run_vcpu that
        calls fw::gic::pending()), CPU_OFF's wait ("off"), or the function."""
        from .hypervisor import RAM_BASE

        assert self._facts is not None
        function = self._facts.function_at(pc)
        ram = self.hv.ram
        near_wfi = ram is not None and any(
            int.from_bytes(ram[a - RAM_BASE : a - RAM_BASE + 4], "little") == WFI
            for a in range(pc - 16, pc + 20, 4)
            if RAM_BASE <= a < RAM_BASE + len(ram) - 4
        )
        if (function == "run_vcpu" and near_wfi) or function == "fw::gic::pending":
            return "halt"
        if function == "wait_for_vcpu":
            return "off"
        return function

    def _after(self, program: Program, result: Outcome, keep: bool) -> None:
        """Check the hypervisor after the program; keep or close the session."""
        hv = self.hv
        if hv is not None:
            console = hv.console
            if "FATAL" in console:
                line = next(x for x in console.splitlines() if "FATAL" in x)
                result.outcome, result.detail = FW_FATAL, line.strip()
            elif (
                self._digest is not None
                and hv.ram is not None
                and not result.failure
                and self._firmware_digest() != self._digest
            ):
                result.outcome, result.detail = ISOLATION, "the firmware's image or tables changed"
            if result.failure:
                recent = "\n".join(repr(e) for e in list(hv.recent_exits)[-8:])
                result.log = (f"firmware log:\n{console.strip()}\n\nlast exits:\n{recent}\n"
                              + result.log)  # fmt: skip
        if not (keep and program.clean and not result.failure and self.reuse):
            self.close()


# -- campaigns ------------------------------------------------------------------------------


@dataclass
class FuzzConfig:
    seed: int
    programs: int
    workers: int = 2
    length: int = 32
    timeout: float = 0.5
    budget: int = 200
    reuse: bool = True


@dataclass
class Summary:
    """Outcome counts of a campaign, and every failure."""

    config: FuzzConfig
    counts: Counter[tuple[str, str]] = field(default_factory=Counter)
    examples: dict[tuple[str, str], str] = field(default_factory=dict)
    failures: list[Outcome] = field(default_factory=list)
    el1_skipped: Counter[str] = field(default_factory=Counter)
    done: int = 0
    fresh_sessions: int = 0
    exits: int = 0
    wall_seconds: float = 0.0
    interrupted: bool = False

    def add(self, outcome: Outcome) -> None:
        key = (outcome.outcome, outcome.detail if not outcome.failure else "")
        self.counts[key] += 1
        self.examples.setdefault(key, outcome.ident)
        self.done += 1
        self.exits += outcome.exits
        self.fresh_sessions += outcome.fresh_session
        self.el1_skipped.update(outcome.el1_skipped)
        if outcome.failure:
            self.failures.append(outcome)

    @property
    def programs_per_second(self) -> float:
        return self.done / self.wall_seconds if self.wall_seconds > 0 else 0.0

    def rows(self) -> list[tuple[str, str, int, str]]:
        """(outcome, detail, count, an example seed:index), failures first."""
        order = {name: i for i, name in enumerate(FAILURES)}
        return sorted(((o, d, n, self.examples[(o, d)]) for (o, d), n in self.counts.items()),
                      key=lambda r: (r[0] not in order, -r[2], r[0], r[1]))  # fmt: skip

    def as_dict(self) -> dict[str, Any]:
        return {
            "seed": self.config.seed,
            "programs": self.config.programs,
            "programs_run": self.done,
            "interrupted": self.interrupted,
            "workers": self.config.workers,
            "length": self.config.length,
            "timeout": self.config.timeout,
            "budget": self.config.budget,
            "reuse": self.config.reuse,
            "wall_seconds": round(self.wall_seconds, 3),
            "programs_per_second": round(self.programs_per_second, 2),
            "fresh_sessions": self.fresh_sessions,
            "exits": self.exits,
            "outcomes": [
                {"outcome": o, "detail": d, "count": n, "example": ex, "failure": o in FAILURES}
                for o, d, n, ex in self.rows()
            ],
            "el1_exceptions_skipped": dict(self.el1_skipped.most_common()),
            "failures": [f.as_dict() for f in self.failures],
        }


def _die_with_parent(sig: int) -> None:
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, sig, 0, 0, 0)  # PR_SET_PDEATHSIG


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _worker(wid: int, config: FuzzConfig, counter: Any, results: Any, parent: int) -> None:
    """One worker process: claims program indices and runs them in its own sessions."""
    _die_with_parent(signal.SIGTERM)
    if os.getppid() != parent:
        return
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when to stop
    signal.signal(signal.SIGTERM, _raise_interrupt)
    runner = Runner(timeout=config.timeout, budget=config.budget, reuse=config.reuse)
    try:
        while True:
            with counter.get_lock():
                index = counter.value
                counter.value += 1
            if index >= config.programs:
                break
            results.put(("start", wid, index))
            program = generate(config.seed, index, config.length)
            results.put(("result", wid, runner.run(program).as_dict()))
    except KeyboardInterrupt:
        pass
    finally:
        with contextlib.suppress(KeyboardInterrupt):
            runner.close()
            results.put(("done", wid, None))


def _outcome_from_dict(d: dict[str, Any]) -> Outcome:
    fields_ = {f.name for f in dataclasses.fields(Outcome)}
    return Outcome(**{k: v for k, v in d.items() if k in fields_})


def _remove_shm_files(pids: Iterable[int]) -> None:
    """/dev/shm files of workers that were killed before they could unlink them."""
    for pid in pids:
        for path in Path("/dev/shm").glob(f"armvcpu-{pid}-*"):
            path.unlink(missing_ok=True)


def run_campaign(
    config: FuzzConfig, on_result: Callable[[Outcome, Summary], None] | None = None
) -> Summary:
    """Run ``config.programs`` programs on ``config.workers`` worker processes.

    Ctrl-C (KeyboardInterrupt) stops the workers, which close their QEMUs;
    the summary then has ``interrupted`` set.
    """
    if config.workers < 1 or config.programs < 0 or config.length < 0:
        raise ValueError("workers must be at least 1; programs and length not negative")
    ctx = multiprocessing.get_context("spawn")
    counter = ctx.Value("q", 0)
    results = ctx.Queue()
    summary = Summary(config)
    running: dict[int, int] = {}  # worker id -> the index it runs
    procs: dict[int, Any] = {}
    pids: set[int] = set()
    finished: set[int] = set()
    started: set[int] = set()  # workers that began a program
    t0 = time.monotonic()

    def spawn(wid: int) -> None:
        # Workers start with SIGINT ignored (inherited across exec); the
        # parent turns Ctrl-C into an orderly stop.
        old = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            p = ctx.Process(target=_worker, args=(wid, config, counter, results, os.getpid()),
                            name=f"armvcpu-fuzz-{wid}", daemon=True)  # fmt: skip
            p.start()
        finally:
            signal.signal(signal.SIGINT, old)
        procs[wid] = p
        assert p.pid is not None
        pids.add(p.pid)

    def handle(msg: tuple[str, int, Any]) -> None:
        what, wid, payload = msg
        if what == "start":
            running[wid] = payload
            started.add(wid)
        elif what == "result":
            running.pop(wid, None)
            outcome = _outcome_from_dict(payload)
            summary.add(outcome)
            if on_result is not None:
                on_result(outcome, summary)
        else:
            finished.add(wid)

    next_wid = 0
    try:
        for _ in range(min(config.workers, max(1, config.programs))):
            spawn(next_wid)
            next_wid += 1
        while len(finished) < len(procs):
            try:
                handle(results.get(timeout=0.2))
                continue
            except queue.Empty:
                pass
            for wid, p in list(procs.items()):
                if wid in finished or p.is_alive():
                    continue
                finished.add(wid)
                if wid not in started:
                    raise ArmvcpuError(
                        f"a fuzz worker process failed to start (exit code {p.exitcode}); "
                        "is the main module import-safe?"
                    )
                # Gone without saying so: it crashed. Its program is a finding.
                index = running.pop(wid, None)
                if index is not None:
                    crash = Outcome(
                        f"{config.seed}:{index}",
                        HOST_ERROR,
                        f"the worker process died (exit code {p.exitcode})",
                    )
                    summary.add(crash)
                    if on_result is not None:
                        on_result(crash, summary)
                if counter.value < config.programs and next_wid < config.workers + 8:
                    spawn(next_wid)
                    next_wid += 1
    except KeyboardInterrupt:
        summary.interrupted = True
    finally:
        with contextlib.suppress(KeyboardInterrupt):
            _stop_workers(list(procs.values()), results, handle, summary.interrupted)
            _remove_shm_files(pids)
            summary.wall_seconds = time.monotonic() - t0
    return summary


def _stop_workers(procs: list[Any], results: Any, handle: Callable[[Any], None],
                  interrupted: bool) -> None:  # fmt: skip
    """Let the workers end (at once after an interrupt: SIGTERM makes each one
    unwind and close its QEMU), keeping the queue drained meanwhile."""
    if interrupted:
        for p in procs:
            if p.is_alive():
                p.terminate()
    deadline = time.monotonic() + 10
    while any(p.is_alive() for p in procs) and time.monotonic() < deadline:
        with contextlib.suppress(queue.Empty):  # a worker flushing results waits for us
            handle(results.get(timeout=0.05))
    for p in procs:
        if p.is_alive():
            p.kill()  # its QEMU dies with it (parent-death signal)
        p.join(1)
    with contextlib.suppress(queue.Empty, OSError, ValueError):
        while True:
            handle(results.get_nowait())


# -- the command line ------------------------------------------------------------------------


def parse_replay(text: str) -> tuple[int, int]:
    """``"SEED:INDEX"`` -> (seed, index)."""
    seed, sep, index = text.partition(":")
    if not sep or not seed.strip().isdigit() or not index.strip().isdigit():
        raise ValueError(f"--replay takes SEED:INDEX (two non-negative integers), not {text!r}")
    return int(seed), int(index)


def save_failure(directory: Path, outcome: Outcome, length: int) -> Path:
    """Write what reproduces a failure: a JSON report and the raw image
    (``armvcpu run FILE.bin`` runs it without the fuzzer's answers)."""
    import json

    directory.mkdir(parents=True, exist_ok=True)
    seed, index = parse_replay(outcome.ident)
    program = generate(seed, index, length)
    stem = directory / f"fuzz-{seed}-{index}"
    stem.with_suffix(".bin").write_bytes(program.image)
    report = {
        "outcome": outcome.as_dict(),
        "replay": f"armvcpu fuzz --replay {outcome.ident} --length {length}",
        "program": {"seed": seed, "index": index, "length": length, "flavor": program.flavor,
                    "clean": program.clean, "traps": list(program.traps),
                    "load_address": ENTRY, "image": program.image.hex(),
                    "body": program.listing().splitlines()},
    }  # fmt: skip
    path = stem.with_suffix(".json")
    path.write_text(json.dumps(report, indent=2))
    return path


def replay(seed: int, index: int, length: int, timeout: float, budget: int) -> int:
    """Run one program alone in a fresh session and show everything."""
    from rich.console import Console

    out = Console(highlight=False)
    program = generate(seed, index, length)
    traps = "default" if program.traps == (0, 0) else (
        f"HCR_EL2 |= {program.traps[0]:#x}, MDCR_EL2 = {program.traps[1]:#x}")  # fmt: skip
    out.print(f"program {program.ident} (length {length}): flavor {program.flavor}, "
              f"{'clean' if program.clean else 'may leave state'}, traps {traps}")  # fmt: skip
    out.print(program.listing(), markup=False)

    def show(exit: Exit, answer: str) -> None:
        out.print(f"  exit #{exit.seq:<4} {exit.reason!r}  pc={exit.exception_pc:#x}  -> {answer}",
                  markup=False)  # fmt: skip

    with Runner(timeout=timeout, budget=budget, reuse=False, on_exit=show) as runner:
        out.print("exits:")
        result = runner.run(program)
    out.print(f"outcome: {result.outcome}" + (f" ({result.detail})" if result.detail else "")
              + f" after {result.exits} exits in {result.seconds:.3f} s", markup=False)  # fmt: skip
    if result.el1_skipped:
        out.print(f"EL1 exceptions returned from: {result.el1_skipped}", markup=False)
    if result.log:
        out.print(result.log, markup=False)
    return 1 if result.failure else 0


def main(args: Any) -> int:
    """``armvcpu fuzz``: see docs/fuzzing.md."""
    import json
    import secrets

    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,  # fmt: skip
        TimeRemainingColumn,
    )
    from rich.table import Table

    if args.replay:
        seed, index = parse_replay(args.replay)
        return replay(seed, index, args.length, args.timeout, args.budget)
    seed = args.seed if args.seed is not None else secrets.randbelow(1 << 32)
    config = FuzzConfig(seed=seed, programs=args.programs, workers=args.workers,
                        length=args.length, timeout=args.timeout, budget=args.budget,
                        reuse=not args.no_reuse)  # fmt: skip
    err = Console(stderr=True)
    progress = Progress(TextColumn("[bold]fuzz seed {task.fields[seed]}"), BarColumn(),
                        MofNCompleteColumn(), TextColumn("{task.fields[rate]} programs/s"),
                        TextColumn("{task.fields[failures]}"), TimeElapsedColumn(),
                        TimeRemainingColumn(), console=err, transient=True)  # fmt: skip
    task = progress.add_task("fuzz", total=config.programs, seed=seed, rate="-", failures="")
    t0 = time.monotonic()
    saved: list[Path] = []

    last_line = [t0]

    def on_result(outcome: Outcome, summary: Summary) -> None:
        now = time.monotonic()
        rate = summary.done / max(1e-9, now - t0)
        n = len(summary.failures)
        if not err.is_terminal and (now - last_line[0] > 30 or summary.done == config.programs):
            last_line[0] = now  # a log, not a live bar: a line every 30 s
            err.print(f"fuzz seed {seed}: {summary.done}/{config.programs} programs, "
                      f"{rate:.1f}/s, {n} hypervisor failures", highlight=False)  # fmt: skip
        progress.update(
            task,
            completed=summary.done,
            rate=f"{rate:.1f}",
            failures=f"[red]{n} hypervisor failure{'s' * (n != 1)}" if n else "",
        )
        if outcome.failure:
            progress.console.print(
                f"[red]hypervisor failure[/red] at {outcome.ident}: "
                f"{outcome.outcome}: {outcome.detail}",
                highlight=False,
            )
            if args.save_failures:
                saved.append(save_failure(Path(args.save_failures), outcome, config.length))

    with progress:
        summary = run_campaign(config, on_result)
    if args.json:
        report = summary.as_dict()
        report["saved"] = [str(p) for p in saved]
        print(json.dumps(report, indent=2))
    else:
        _print_summary(Console(highlight=False), summary, Table)
        for path in saved:
            err.print(f"saved {path}")
    if summary.failures:
        return 1
    return 130 if summary.interrupted else 0


def _print_summary(out: Any, summary: Summary, table_cls: Any) -> None:
    c = summary.config
    title = (f"armvcpu fuzz: seed {c.seed}, {summary.done} of {c.programs} programs"
             f"{' (interrupted)' if summary.interrupted else ''}")  # fmt: skip
    table = table_cls(title=title)
    for col, justify in (("outcome", "left"), ("detail", "left"), ("programs", "right"),
                         ("share", "right"), ("e.g. seed:index", "left")):  # fmt: skip
        table.add_column(col, justify=justify)
    for outcome, detail, count, example in summary.rows():
        style = "red" if outcome in FAILURES else None
        table.add_row(outcome, detail, str(count), f"{count / max(1, summary.done):.1%}",
                      example, style=style)  # fmt: skip
    out.print(table)
    out.print(f"{summary.done} programs in {summary.wall_seconds:.1f} s "
              f"({summary.programs_per_second:.1f} programs/s) on {c.workers} workers; "
              f"{summary.fresh_sessions} fresh QEMU sessions, {summary.exits} exits")  # fmt: skip
    if summary.failures:
        failures = table_cls(title="hypervisor failures (findings)")
        for col in ("seed:index", "failure", "detail", "reproduce"):
            failures.add_column(col)
        for f in summary.failures:
            failures.add_row(f.ident, f.outcome, f.detail,
                             f"armvcpu fuzz --replay {f.ident} --length {c.length}")  # fmt: skip
        out.print(failures)
    else:
        out.print("no hypervisor failures")
