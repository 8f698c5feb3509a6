"""A64 encodings the fuzzer emits (Arm ARM, "A64 Instruction Set Encoding"), and the
system registers it reads and writes."""

from __future__ import annotations

from dataclasses import dataclass

MASK64 = (1 << 64) - 1


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
BY_NAME = {r.name: r for r in SYSREGS}
#: Reads with side effects (acknowledging an interrupt, draining a debug
#: channel) or from registers outside the list: they taint the session.
SIDE_EFFECT_READS = frozenset({"ICC_IAR1_EL1", "ICC_IAR0_EL1", "DBGDTR_EL0"})
#: Writes that leave nothing behind: registers the prologue sets again for
#: every program (or PSTATE, which the host resets), and EL2/EL3 registers,
#: which are UNDEFINED at EL1.
HARMLESS_WRITES = frozenset({
    "VBAR_EL1", "ELR_EL1", "SPSR_EL1", "SP_EL0", "NZCV", "DAIF", "SPSel", "FPCR", "FPSR",
    "CPACR_EL1", "CNTV_TVAL_EL0", "CNTV_CVAL_EL0", "CNTV_CTL_EL0", "ICC_PMR_EL1",
    "ICC_IGRPEN1_EL1", "HCR_EL2", "VTTBR_EL2", "SCTLR_EL2", "VBAR_EL2", "ICH_HCR_EL2",
    "ICH_LR0_EL2", "CNTHCTL_EL2", "MDCR_EL2", "ELR_EL2", "SP_EL1", "SCR_EL3", "SCTLR_EL12",
})  # fmt: skip
