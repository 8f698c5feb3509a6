"""PSCI SYSTEM_RESET and SYSTEM_SUSPEND from a real guest, end to end.

Function IDs and return codes from Arm DEN0022 (PSCI 1.1): SYSTEM_RESET
0x8400_0009, SYSTEM_SUSPEND 0xC400_000E (SMC64), PSCI_FEATURES 0x8400_000A;
SUCCESS 0, NOT_SUPPORTED -1. The core implements SYSTEM_RESET as the end of
the VM (docs/linux.md: "SYSTEM_RESET ... also ends the VM") and does not
implement the optional SYSTEM_SUSPEND, so PSCI_FEATURES must say so and a
call must return NOT_SUPPORTED to the guest, answered in EL2.
"""

from __future__ import annotations

import pytest
from armvcpu import ExitKind, Guest, Hypervisor, Policy, on

MASK64 = (1 << 64) - 1
SUCCESS, NOT_SUPPORTED = 0, MASK64  # -1, sign-extended in x0

GUEST = """
    ldr x0, =0x8400000A         // PSCI_FEATURES(SYSTEM_RESET)
    ldr x1, =0x84000009
    hvc #0
    mov x19, x0
    ldr x0, =0x8400000A         // PSCI_FEATURES(SYSTEM_SUSPEND)
    ldr x1, =0xC400000E
    hvc #0
    mov x20, x0
    ldr x0, =0xC400000E         // SYSTEM_SUSPEND(entry, context id)
    adr x1, resumed
    mov x2, #0x77
    hvc #0
    mov x21, x0
    mov x0, #3                  // report x19, x20, x21
    mov x1, x19
    mov x2, x20
    mov x3, x21
    hvc #0
    ldr x0, =0x84000009         // SYSTEM_RESET
    hvc #0
    mov x0, #4                  // never reached: the VM has ended
    hvc #0
resumed:
    mov x0, #5                  // never reached: there was no suspend
    hvc #0
"""


def test_system_suspend_is_not_supported_and_system_reset_ends_the_vm(transport, no_leaked_qemu):
    with Hypervisor(transport=transport) as hv:
        hv.load(Guest.from_asm(GUEST))
        exits = hv.run()
        # The run ended because the machine powered off, not because the session closed.
        assert hv.qemu is not None and hv.qemu.wait(30) is not None
    # Only the report and the reset reach the host: PSCI_FEATURES and the
    # SYSTEM_SUSPEND call are answered in EL2.
    assert [e.kind for e in exits] == [ExitKind.Hypercall, ExitKind.SystemDown]
    report, down = exits
    assert report.reason.nr == 3
    assert report.reason.args[:3] == (SUCCESS, NOT_SUPPORTED, NOT_SUPPORTED)
    assert down.reason.reset == 1  # a reset, not SYSTEM_OFF (0)


def test_a_policy_sees_system_reset_by_name(no_leaked_qemu):
    seen: list[str] = []
    policy = Policy()
    policy.add(on.psci("SYSTEM_RESET"), lambda exit: seen.append("reset") or Policy.DEFAULT)
    policy.add(on.psci("SYSTEM_OFF"), lambda exit: seen.append("off") or Policy.DEFAULT)
    with Hypervisor() as hv:
        hv.load(Guest.from_asm(GUEST))
        exits = hv.run(policy)
    assert seen == ["reset"]
    assert exits[-1].kind == ExitKind.SystemDown


@pytest.mark.parametrize("conduit", ["hvc", "smc"])
def test_system_reset_over_either_conduit(conduit, no_leaked_qemu):
    """SMCCC allows both conduits; HCR_EL2.TSC traps the SMC to EL2 too."""
    with Hypervisor() as hv:
        hv.load(Guest.from_asm(f"ldr x0, =0x84000009\n{conduit} #0\nb ."))
        exits = hv.run()
    assert [(e.kind, e.reason.reset) for e in exits] == [(ExitKind.SystemDown, 1)]
