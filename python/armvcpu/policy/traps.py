"""Which trap control makes an EL1 system-register access exit to EL2.

A guest's MRS/MSR only becomes a ``SysRegRead``/``SysRegWrite`` exit when
some EL2 control traps it; a handler for a register nothing traps would never
run. :func:`trap_for` answers, per the Arm ARM (DDI 0487, the HCR_EL2 and
MDCR_EL2 field descriptions), which bits of the guest's HCR_EL2 and MDCR_EL2
trap a register, so that :meth:`~armvcpu.Policy.install` can arm them, or
raises :class:`~armvcpu.ArmvcpuError` naming the register and why nothing can.

>>> trap_for("ID_AA64ISAR0_EL1")
Trap(register='ID_AA64ISAR0_EL1', hcr_el2=262144, mdcr_el2=0, controls=('HCR_EL2.TID3',))
>>> trap_for("CNTPCT_EL0")
Traceback (most recent call last):
...
armvcpu.errors.ArmvcpuError: CNTPCT_EL0 cannot be trapped: ...
"""

from __future__ import annotations

from dataclasses import dataclass

from .. import _core
from ..errors import ArmvcpuError

# HCR_EL2 trap controls (Arm ARM D23.2.53, HCR_EL2).
HCR_TID1 = 1 << 16  # REVIDR_EL1, AIDR_EL1
HCR_TID2 = 1 << 17  # CTR_EL0, CCSIDR_EL1, CCSIDR2_EL1, CLIDR_EL1, CSSELR_EL1
HCR_TID3 = 1 << 18  # the ID group 3 registers: op0 3, op1 0, CRn 0, CRm 1..7
HCR_TACR = 1 << 21  # ACTLR_EL1
HCR_TVM = 1 << 26  # writes of the virtual-memory controls (_VM_CONTROLS)
HCR_TRVM = 1 << 30  # reads of the same
HCR_TLOR = 1 << 35  # the LORegion registers (FEAT_LOR)
# MDCR_EL2 trap controls (Arm ARM D23.2.110, MDCR_EL2).
MDCR_TPM = 1 << 6  # the PMU registers
MDCR_TDA = 1 << 9  # the debug registers other than the OS lock and MDRAR
MDCR_TDOSA = 1 << 10  # OSLAR_EL1, OSLSR_EL1, OSDLR_EL1, DBGPRCR_EL1
MDCR_TDRA = 1 << 11  # MDRAR_EL1

_BY_NAME: dict[str, tuple[int, int, tuple[str, ...]]] = {
    "REVIDR_EL1": (HCR_TID1, 0, ("HCR_EL2.TID1",)),
    "AIDR_EL1": (HCR_TID1, 0, ("HCR_EL2.TID1",)),
    **{name: (HCR_TID2, 0, ("HCR_EL2.TID2",))
       for name in ("CTR_EL0", "CCSIDR_EL1", "CCSIDR2_EL1", "CLIDR_EL1", "CSSELR_EL1")},
    "ACTLR_EL1": (HCR_TACR, 0, ("HCR_EL2.TACR",)),
    # A handler sees reads and writes, so both halves are armed.
    **{name: (HCR_TVM | HCR_TRVM, 0, ("HCR_EL2.TVM", "HCR_EL2.TRVM"))
       for name in ("SCTLR_EL1", "TTBR0_EL1", "TTBR1_EL1", "TCR_EL1", "ESR_EL1", "FAR_EL1",
                    "AFSR0_EL1", "AFSR1_EL1", "MAIR_EL1", "AMAIR_EL1", "CONTEXTIDR_EL1")},
    **{name: (HCR_TLOR, 0, ("HCR_EL2.TLOR",))
       for name in ("LORSA_EL1", "LOREA_EL1", "LORN_EL1", "LORC_EL1", "LORID_EL1")},
    **{name: (0, MDCR_TDOSA, ("MDCR_EL2.TDOSA",))
       for name in ("OSLAR_EL1", "OSLSR_EL1", "OSDLR_EL1", "DBGPRCR_EL1")},
    "MDRAR_EL1": (0, MDCR_TDRA, ("MDCR_EL2.TDRA",)),
}  # fmt: skip


@dataclass(frozen=True)
class Trap:
    """The guest HCR_EL2/MDCR_EL2 bits that make accesses to ``register`` exit."""

    register: str
    hcr_el2: int
    mdcr_el2: int
    controls: tuple[str, ...]


def _by_encoding(e: _core.SysRegEncoding) -> tuple[int, int, tuple[str, ...]] | None:
    op0, op1, crn, crm, op2 = e.op0, e.op1, e.crn, e.crm, e.op2
    if op0 == 3 and op1 == 0 and crn == 0 and 1 <= crm <= 7:
        return HCR_TID3, 0, ("HCR_EL2.TID3",)
    pmu = (op0 == 3 and op1 == 3 and crn == 9 and crm in (12, 13, 14)) or (
        op0 == 3 and op1 == 3 and crn == 14 and 8 <= crm <= 15) or (
        op0 == 3 and op1 == 0 and crn == 9 and crm == 14 and op2 in (1, 2, 6))  # fmt: skip
    if pmu:
        return 0, MDCR_TPM, ("MDCR_EL2.TPM",)
    # The debug registers at EL1/EL0 (op0 2, op1 0 or 3); op1 1 are the trace
    # unit's, which MDCR_EL2 does not trap.
    if op0 == 2 and op1 in (0, 3) and crn in (0, 7):
        return 0, MDCR_TDA, ("MDCR_EL2.TDA",)
    return None


def _why_not(name: str, e: _core.SysRegEncoding) -> str:
    if e.op0 == 3 and e.op1 == 3 and e.crn == 14 and e.crm <= 3:
        return ("the firmware gives the guest the generic timer and counter untrapped "
                "(CNTHCTL_EL2.EL1PCTEN/EL1PCEN; the virtual timer's interrupt through GICv3 "
                "list registers), and no GuestConfig control changes that")  # fmt: skip
    if e.op0 == 3 and e.op1 == 0 and (e.crn == 12 or (e.crn == 4 and e.crm == 6)):
        return ("the GICv3 CPU interface registers are the guest's own virtual interface "
                "(ICV_*); the SGI registers arrive as SendIpi exits: use "
                "on.kind(ExitKind.SendIpi)")  # fmt: skip
    return ("no HCR_EL2 or MDCR_EL2 control armvcpu sets (Hypervisor.set_traps) traps it, so "
            "the guest's accesses never leave EL1")  # fmt: skip


def trap_for(register: str | int) -> Trap:
    """The trap controls for ``register`` (an Arm name, or an encoding key as
    the exits carry it); raises :class:`ArmvcpuError` when nothing can trap it."""
    if isinstance(register, str):
        encoding = _core.sysreg_encoding(register)
    else:
        encoding = _core.SysRegEncoding.from_key(register)
    name = _core.sysreg_name(encoding.key) or (register if isinstance(register, str) else
                                               f"the register with key {register:#x}")  # fmt: skip
    found = _BY_NAME.get(name.upper()) or _by_encoding(encoding)
    if found is None:
        raise ArmvcpuError(f"{name} cannot be trapped: {_why_not(name, encoding)}")
    return Trap(name, *found)
