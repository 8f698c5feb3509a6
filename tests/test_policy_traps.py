"""System-register handlers arm their traps; Pl011 lines; from_asm line numbers.

Trap bits are the Arm ARM's (DDI 0487, HCR_EL2 and MDCR_EL2 field
descriptions), written out here rather than taken from armvcpu.policy.traps.
"""

from __future__ import annotations

import pytest
from armvcpu import ArmvcpuError, ExitKind, Guest, Hypervisor, Pl011, Policy, on
from armvcpu.errors import GuestImageError
from armvcpu.policy.traps import trap_for

PSCI_OFF = "ldr x0, =0x84000008\nhvc #0\n"


@pytest.mark.parametrize(
    ("register", "hcr", "mdcr"),
    [
        ("ID_AA64ISAR0_EL1", 1 << 18, 0),  # TID3
        ("ID_AA64PFR0_EL1", 1 << 18, 0),
        ("MVFR0_EL1", 1 << 18, 0),
        ("CTR_EL0", 1 << 17, 0),  # TID2
        ("CLIDR_EL1", 1 << 17, 0),
        ("AIDR_EL1", 1 << 16, 0),  # TID1
        ("ACTLR_EL1", 1 << 21, 0),  # TACR
        ("SCTLR_EL1", (1 << 26) | (1 << 30), 0),  # TVM (writes) and TRVM (reads)
        ("PMCCNTR_EL0", 0, 1 << 6),  # MDCR_EL2.TPM
        ("PMEVCNTR3_EL0", 0, 1 << 6),
        ("MDSCR_EL1", 0, 1 << 9),  # TDA
        ("DBGBVR0_EL1", 0, 1 << 9),
        ("OSLAR_EL1", 0, 1 << 10),  # TDOSA
        ("MDRAR_EL1", 0, 1 << 11),  # TDRA
    ],
)
def test_trap_table_follows_the_arm_arm(register, hcr, mdcr):
    trap = trap_for(register)
    assert (trap.hcr_el2, trap.mdcr_el2) == (hcr, mdcr)


@pytest.mark.parametrize("register", ["CNTPCT_EL0", "CNTV_CTL_EL0", "MIDR_EL1"])
def test_untrappable_registers_are_refused_by_name(register):
    with pytest.raises(ArmvcpuError, match=f"{register} cannot be trapped"):
        trap_for(register)


ID_GUEST = f"""
    mrs x1, ID_AA64PFR0_EL1
    mov x0, #7
    hvc #0
{PSCI_OFF}"""


def test_a_sysreg_handler_fires_without_set_traps(transport, no_leaked_qemu):
    class Ids(Policy):
        def __init__(self) -> None:
            super().__init__()
            self.reported: list[int] = []

        @on.sysreg("ID_AA64PFR0_EL1")
        def pfr0(self, exit):
            return 0x1234_5678

        @on.hypercall(nr=7)
        def report(self, exit):
            self.reported.append(exit.reason.args[0])
            return 0

    policy = Ids()
    with Hypervisor(transport=transport) as hv:
        hv.load(Guest.from_asm(ID_GUEST))
        exits = hv.run(policy)
        assert hv.traps[0] & (1 << 18)  # TID3, armed by the policy
    assert ExitKind.SysRegRead in {e.kind for e in exits}
    assert policy.reported == [0x1234_5678]  # the guest's MRS read the handler's value


def test_set_traps_bits_are_kept_when_a_policy_adds_its_own(no_leaked_qemu):
    policy = Policy().add(on.sysreg("ID_AA64PFR0_EL1"), lambda exit: 0)
    with Hypervisor() as hv:
        hv.load(Guest.from_asm(ID_GUEST))
        hv.set_traps(mdcr_el2=1 << 9)  # TDA, the user's own
        policy.install(hv)
        assert hv.traps == (1 << 18, 1 << 9)


def test_a_handler_for_an_untrappable_register_raises_at_install(no_leaked_qemu):
    class Counter(Policy):
        @on.sysreg("CNTPCT_EL0")
        def counter(self, exit):
            return 12345

    with Hypervisor() as hv:
        hv.load(Guest.from_asm("mrs x1, CNTPCT_EL0\n" + PSCI_OFF))
        with pytest.raises(ArmvcpuError, match=r"CNTPCT_EL0 cannot be trapped.*EL1PCTEN"):
            hv.run(Counter())
        assert hv.exit_count == 0  # refused before the guest ran


TWO_LINES = r"""
    movz x10, #0x0900, lsl #16
    adr x11, msg
1:  ldrb w12, [x11], #1
    cbz w12, 2f
    str w12, [x10]
    b 1b
2:  ldr x0, =0x84000008
    hvc #0
msg: .asciz "first line\nsecond line\nno newline"
"""


def test_pl011_hands_over_whole_lines(no_leaked_qemu):
    lines: list[str] = []
    uart = Pl011(on_output=lines.append)
    with Hypervisor() as hv:
        hv.load(Guest.from_asm(TWO_LINES))
        hv.run(uart.policy())
    # The unfinished last line arrives when the guest powers off.
    assert lines == ["first line", "second line", "no newline"]
    assert uart.output == "first line\nsecond line\nno newline"


def test_from_asm_errors_name_the_users_own_lines():
    with pytest.raises(GuestImageError) as info:
        Guest.from_asm("nop\nnop\nnot_an_instruction x0\n" + PSCI_OFF)
    assert "guest.S:3:" in str(info.value)  # line 3 of what the user wrote
    assert "not_an_instruction" in str(info.value)
