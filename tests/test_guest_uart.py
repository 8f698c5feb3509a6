"""The guest's PL011: emulated in EL2, passed through, or left to the host."""

from __future__ import annotations

import pytest
from armvcpu import ArmvcpuError, ExitKind, Guest, Hypervisor

# Polls UARTFR.TXFF (bit 5) before each write, as a PL011 driver must
# (PL011 TRM 3.3.3), so the emulated flag register is exercised too.
HELLO = """
    movz x10, #0x0900, lsl #16
    adr x11, msg
1:  ldrb w12, [x11], #1
    cbz w12, 3f
2:  ldr w13, [x10, #0x18]
    tbnz w13, #5, 2b
    str w12, [x10]
    b 1b
3:  ldr x0, =0x84000008
    hvc #0
msg: .asciz "hello from the guest\\n"
"""


@pytest.mark.parametrize("gic", [3, 2], ids=["gicv3", "gicv2"])
def test_emulated_uart_is_the_guests_own_stream(gic, transport, no_leaked_qemu):
    with Hypervisor(uart="emulate", transport=transport, gic=gic) as hv:
        hv.load(Guest.from_asm(HELLO))
        for exit in hv.exits():
            assert exit.kind == ExitKind.SystemDown  # no UART exit reaches the host
            text = hv.read_guest_console()
        assert text == "hello from the guest\n"
        assert hv.guest_console == text
        assert "hello" not in hv.console  # the firmware's log is separate
        assert "UART emulated" in hv.console


@pytest.mark.parametrize("gic", [3, 2], ids=["gicv3", "gicv2"])
def test_passthrough_uart_writes_the_real_pl011(gic, no_leaked_qemu):
    with Hypervisor(uart="passthrough", gic=gic) as hv:
        hv.load(Guest.from_asm(HELLO))
        exits = hv.run()
        with pytest.raises(ArmvcpuError, match="uart='emulate'"):
            hv.read_guest_console()
    assert [e.kind for e in exits] == [ExitKind.SystemDown]
    assert "hello from the guest" in hv.console


def test_host_uart_makes_every_access_an_exit(no_leaked_qemu):
    def uart_model(exit):
        if exit.kind == ExitKind.MmioRead:
            return 0x90  # UARTFR: TXFE | RXFE
        if exit.kind == ExitKind.MmioWrite:
            exit.resume()
        return None

    with Hypervisor(uart="host") as hv:
        hv.load(Guest.from_asm(HELLO))
        exits = hv.run(uart_model)
    kinds = [e.kind for e in exits]
    assert kinds.count(ExitKind.MmioWrite) == len("hello from the guest\n")
    assert kinds.count(ExitKind.MmioRead) == len("hello from the guest\n")


def test_unknown_uart_mode():
    with pytest.raises(ValueError, match="uart must be one of"):
        Hypervisor(uart="telepathy")  # type: ignore[arg-type]


def test_each_vm_has_its_own_emulated_console(no_leaked_qemu):
    other = HELLO.replace("hello from the guest", "and this is VM 2")
    with Hypervisor(uart="emulate", smp=2, memory_mb=512) as hv:
        hv.load(Guest.from_asm(HELLO))
        vm2 = hv.add_vm(Guest.from_asm(other))
        exits = hv.run()
        first, second = hv.read_guest_console(), vm2.read_console()
        assert vm2.read_console() == ""  # nothing new since
    assert sorted(e.vm_id for e in exits) == [1, 2]  # each VM's SYSTEM_OFF
    assert first == "hello from the guest\n"
    assert second == "and this is VM 2\n"
    assert vm2.console == second and hv.vms[1].console == first  # after the session, too
