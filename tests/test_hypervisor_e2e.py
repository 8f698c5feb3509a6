"""End to end: the real firmware under real QEMU, driven over the gdbstub."""

from __future__ import annotations

import armvcpu
import pytest
from armvcpu import ArmvcpuError, ExitKind, Guest, Hypervisor, _core

MASK64 = (1 << 64) - 1


def fold(values: list[int]) -> int:
    """The guest's checksum, written from its documented rule, not from our code."""
    checksum = 0
    for v in values:
        checksum = (checksum * 31 + v) & MASK64
    return checksum


@pytest.mark.parametrize("gic", [3, 2], ids=["gicv3", "gicv2"])
def test_hypercall_sequence_arguments_and_checksum(hypercalls_guest, gic, no_leaked_qemu,
                                                   transport):  # fmt: skip
    answers = [0xDEAD0000 + 17 * i for i in range(8)]
    seen = []
    with Hypervisor(transport=transport, gic=gic) as hv:
        hv.load(hypercalls_guest)
        for exit in hv.exits():
            seen.append(exit)
            if exit.kind == ExitKind.Hypercall and exit.reason.nr == 1:
                exit.resume(x0=answers[exit.reason.args[0]])
    kinds = [e.kind for e in seen]
    assert kinds == [ExitKind.Hypercall] * 9 + [ExitKind.SystemDown]
    for i, e in enumerate(seen[:8]):
        assert e.reason.nr == 1
        assert e.reason.args == (i, i * i, 0xC0FFEE, 0, 0, 0)
    report = seen[8].reason
    assert report.nr == 2
    assert report.args[0] == fold(answers)
    assert report.args[1] == 8
    assert seen[9].regs.x0 == 0x84000008
    assert [e.seq for e in seen] == list(range(1, 11))


def test_exit_carries_syndrome_and_frame(hypercalls_guest, no_leaked_qemu, transport):
    with Hypervisor(transport=transport) as hv:
        hv.load(hypercalls_guest)
        first = next(iter(hv.exits()))
        # What QEMU's CPU reports for HVC #0 from EL1 (Arm ARM D17.2.37).
        assert first.esr.value == 0x5A000000
        assert first.esr.exception_class == _core.ExceptionClass.Hvc64
        assert first.regs.mode == "EL1h"
        # HVC leaves ELR_EL2 past the instruction (its preferred return
        # address); exit.pc is the HVC #0 itself.
        assert first.elr == first.pc + 4 == first.return_address
        hvc = hv.read_guest(first.pc, 4)
        assert int.from_bytes(hvc, "little") == 0xD4000002
        assert first.instruction == "hvc #0"


def test_default_answer_without_a_handler(hypercalls_guest, no_leaked_qemu, transport):
    with Hypervisor(transport=transport) as hv:
        hv.load(hypercalls_guest)
        exits = hv.run()
    # Every answer was the default, SMCCC NOT_SUPPORTED (-1) as on bare QEMU virt.
    assert exits[8].reason.args[0] == fold([(1 << 64) - 1] * 8)
    assert "VM 1 stopped after 10 exits" in hv.console


def test_run_with_a_handler_that_returns_values(hypercalls_guest, no_leaked_qemu, transport):
    with Hypervisor(transport=transport) as hv:
        hv.load(hypercalls_guest)
        exits = hv.run(lambda e: 5 if e.kind == ExitKind.Hypercall else None)
    assert exits[8].reason.args[0] == fold([5] * 8)


def test_editing_registers_reaches_the_guest(no_leaked_qemu, transport):
    guest = Guest.from_asm(
        """
        mov x0, #1
        hvc #0
        // the host set x5 and x30: report them back
        mov x0, #2
        mov x1, x5
        mov x2, x30
        hvc #0
        ldr x0, =0x84000008
        hvc #0
        """
    )
    with Hypervisor(transport=transport) as hv:
        hv.load(guest)
        exits = []
        for exit in hv.exits():
            exits.append(exit)
            if exit.seq == 1:
                exit.regs.x5 = 0x5555
                exit.resume(x30=0x3030)
    assert exits[1].reason.args[:2] == (0x5555, 0x3030)


def test_stage2_blocks_access_outside_guest_ram(no_leaked_qemu, transport):
    """The PL011 at 0x09000000 is not mapped for the guest: its load traps to
    EL2 as a stage-2 data abort and becomes an MMIO read exit."""
    guest = Guest.from_asm(
        """
        movz x1, #0x0900, lsl #16
        ldr w2, [x1]
        b .
        """
    )
    with Hypervisor(transport=transport) as hv:
        hv.load(guest)
        exits = hv.run()
    # Unanswered, the load takes the default external abort; this guest has no
    # vectors, so the fetch at VBAR_EL1 (0) + 0x200 faults and the VM stops there.
    assert [e.kind for e in exits] == [ExitKind.MmioRead, ExitKind.NestedPageFault]
    assert exits[1].reason.access_flags & _core.ACCESS_AT_INJECTED_VECTOR
    mmio = exits[0]
    assert mmio.kind == ExitKind.MmioRead
    assert mmio.esr.exception_class == _core.ExceptionClass.DataAbortLower
    assert mmio.syndrome.hpfar >> 4 == 0x09000000 >> 12  # HPFAR_EL2.FIPA = IPA[47:12]
    r = mmio.reason
    assert (r.addr, r.width, r.reg, r.reg_width, r.signed_ext) == (0x09000000, 4, 2, 4, False)
    assert mmio.pc == 0x40000004  # the LDR (ELR_EL2 is on it: Arm ARM D1.3.2)
    assert mmio.return_address == 0x40000008  # past the emulated LDR
    assert "stopped after 2 exits (last: NestedPageFault)" in hv.console


def test_fetch_from_unmapped_memory_is_a_nested_page_fault(no_leaked_qemu, transport):
    """BRK at EL1 is taken to the guest's own EL1 vector (Arm ARM D2.3: debug
    exceptions stay at EL1 unless MDCR_EL2.TDE). With VBAR_EL1 = 0 that vector
    at IPA 0x200 is unmapped in stage 2: an instruction abort reaches EL2."""
    with Hypervisor(transport=transport) as hv:
        hv.load(Guest.from_asm("brk #0x77"))
        exits = hv.run()
    # The default answer injects an abort, whose vector is the same unmapped
    # 0x200: the second fetch fault there stops the VM.
    assert [e.kind for e in exits] == [ExitKind.NestedPageFault] * 2
    assert exits[1].pc == 0x200
    assert exits[1].reason.access_flags & _core.ACCESS_AT_INJECTED_VECTOR
    assert exits[0].esr.exception_class == _core.ExceptionClass.InstrAbortLower
    assert exits[0].esr.iss & 0x3F == 0b000101  # IFSC: translation fault, level 1
    assert exits[0].reason.addr == 0x200  # VBAR_EL1 + 0x200: current EL, SP_ELx, sync
    assert exits[0].reason.access_flags == 0b100  # an instruction fetch
    assert exits[0].pc == 0x200


def test_trapped_smc_is_reported_at_the_instruction(no_leaked_qemu, transport):
    """HCR_EL2.TSC traps SMC; its ELR_EL2 is the SMC itself (Arm ARM D1.3.2).
    An SMC no firmware implements is an SMCCC call like an HVC."""
    with Hypervisor(transport=transport) as hv:
        hv.load(Guest.from_asm("mov x0, #0x1234\nsmc #0x42\nb ."))
        exit = next(iter(hv.exits()))
        exit.stop()
    assert exit.kind == ExitKind.Hypercall and exit.reason.nr == 0x1234
    assert exit.esr.exception_class == _core.ExceptionClass.Smc64
    assert exit.esr.imm16 == 0x42
    assert exit.pc == 0x40000004


def test_stop_ends_the_vm(hypercalls_guest, no_leaked_qemu, transport):
    with Hypervisor(transport=transport) as hv:
        hv.load(hypercalls_guest)
        count = 0
        for exit in hv.exits():
            count += 1
            exit.stop()
    assert count == 1


def test_resume_twice_is_an_error(hypercalls_guest, no_leaked_qemu, transport):
    with Hypervisor(transport=transport) as hv:
        hv.load(hypercalls_guest)
        exit = next(iter(hv.exits()))
        exit.resume(x0=1)
        with pytest.raises(RuntimeError, match="already answered"):
            exit.resume(x0=2)


def test_unknown_register_name(hypercalls_guest, no_leaked_qemu, transport):
    with Hypervisor(transport=transport) as hv:
        hv.load(hypercalls_guest)
        exit = next(iter(hv.exits()))
        with pytest.raises(KeyError, match="no register 'x31'"):
            exit.resume(x31=1)
        # The w views are not registers of their own: reading one is refused by name.
        with pytest.raises(AttributeError, match=r"^no register 'w0'; use x0\.\.x30, pc"):
            exit.regs.w0  # noqa: B018
        with pytest.raises(AttributeError, match=r"^no register 'w0'; use x0\.\.x30, pc"):
            exit.regs.w0 = 1


def test_load_outside_guest_ram_is_refused(no_leaked_qemu):
    with Hypervisor() as hv, pytest.raises(armvcpu.GuestImageError, match="outside VM 1's RAM"):
        hv.load(Guest.from_binary(b"\0" * 8, addr=0x80000000))


def test_packaged_firmware_and_cli_path():
    path = armvcpu.firmware_path()
    assert path.name == "armvcpu-firmware.elf"
    assert path.is_file()


@pytest.mark.parametrize(
    ("cpu", "midr"),
    # MIDR_EL1 of the cores QEMU models (Arm Cortex-A57 r1p0, Cortex-A72 r0p3 TRMs)
    [("cortex-a57", 0x411F_D070), ("cortex-a72", 0x410F_D083)],
)
def test_cpu_models(cpu, midr, transport, no_leaked_qemu):
    """The guest sees the real CPU's MIDR through VPIDR_EL2 on each model."""
    guest = Guest.from_asm("mrs x1, midr_el1\nmov x0, #3\nhvc #0\nldr x0, =0x84000008\nhvc #0")
    with Hypervisor(cpu=cpu, transport=transport) as hv:
        hv.load(guest)
        exits = hv.run()
    assert exits[0].reason.args[0] == midr
    assert exits[-1].kind == ExitKind.SystemDown


C_GUEST = r"""
#include <armvcpu_guest.h>

static uint64_t fib[16];  /* in BSS: crt0 must have zeroed it */

int main(void) {
    uint64_t a = 0, b = 1;
    for (int i = 0; i < 16; i++) {
        fib[i] = a;
        uint64_t t = a + b;
        a = b;
        b = t;
    }
    armvcpu_puts("fib done\n");
    uint64_t answer = armvcpu_hvc(5, fib[15], fib[10], 0);
    return (int)(answer + fib[3]);
}
"""


def test_c_guest(transport, no_leaked_qemu):
    with Hypervisor(transport=transport, uart="emulate") as hv:
        hv.load(Guest.from_c(C_GUEST))
        exits = []
        for exit in hv.exits():
            exits.append(exit)
            if exit.kind == ExitKind.Hypercall and exit.reason.nr == 5:
                exit.resume(x0=100)
            elif exit.kind == ExitKind.SystemDown:
                console = hv.read_guest_console()
    assert exits[0].reason.args[:2] == (610, 55)  # Fibonacci 15 and 10
    assert exits[1].reason.nr == 0 and exits[1].reason.args[0] == 102  # main's return value
    assert console == "fib done\n"


def test_single_step(transport, no_leaked_qemu):
    """exit.step() runs exactly one guest instruction: a software-step exit
    (EC 0x32, Arm ARM D2.12) follows, with the PC past that instruction."""
    guest = Guest.from_asm(
        "mov x0, #1\nhvc #0\nmov x3, #7\nadd x3, x3, #1\nmov x4, x3\n"
        "mov x0, #2\nhvc #0\nldr x0, =0x84000008\nhvc #0"
    )
    with Hypervisor(transport=transport) as hv:
        hv.load(guest)
        steps = []
        for exit in hv.exits():
            if exit.kind == ExitKind.Hypercall and exit.reason.nr == 1:
                start = exit.return_address  # past the HVC
                exit.step()
            elif exit.kind == ExitKind.GuestException and exit.reason.ec == 0x32:
                steps.append((exit.pc, exit.regs.x3, exit.instruction))
                if len(steps) < 2:
                    exit.step()
                else:
                    exit.resume()
            elif exit.kind == ExitKind.Hypercall:
                report = exit.reason.args[2:4]
    assert [pc for pc, _, _ in steps] == [start + 4, start + 8]
    assert [x3 for _, x3, _ in steps] == [7, 8]
    assert steps[0][2] == "add x3, x3, #1"  # the next instruction to run
    assert report == (8, 8)  # x3, x4: the guest went on normally


# -- serve_hypercalls: hypercalls answered by a function, no Exit objects ----------------


def test_serve_hypercalls_answers_in_place_and_hands_over_the_rest(hypercalls_guest,
                                                                   no_leaked_qemu):  # fmt: skip
    seen = []

    def get_value(nr, *args):
        seen.append((nr, args[:3]))
        return 1000 + 7 * args[0] if nr == 1 else None  # REPORT (nr 2) goes to exits()

    with Hypervisor() as hv:
        hv.load(hypercalls_guest)
        served = hv.serve_hypercalls(get_value)
        rest = list(hv.exits())
    assert served == 8 and len(seen) == 9
    assert [args[0] for nr, args in seen[:8]] == list(range(8))
    assert seen[0] == (1, (0, 0, 0xC0FFEE))
    report = rest[0]
    assert report.kind == ExitKind.Hypercall and report.reason.nr == 2
    checksum = 0
    for i in range(8):
        checksum = (checksum * 31 + 1000 + 7 * i) % 2**64
    assert report.reason.args[:2] == (checksum, 8)
    assert rest[-1].kind == ExitKind.SystemDown
    assert hv.exit_count == 8 + len(rest)


def test_serve_hypercalls_rejects_bad_answers_and_transports(hypercalls_guest, no_leaked_qemu):
    with Hypervisor() as hv:
        hv.load(hypercalls_guest)
        with pytest.raises(TypeError, match="returns an int"):
            hv.serve_hypercalls(lambda nr, *args: "forty-two")
    with Hypervisor() as hv:
        hv.load(hypercalls_guest)
        with pytest.raises(ZeroDivisionError):
            hv.serve_hypercalls(lambda nr, *args: 1 // 0)
    with Hypervisor(transport="gdb") as hv:
        hv.load(hypercalls_guest)
        with pytest.raises(ArmvcpuError, match="transport='shm'"):
            hv.serve_hypercalls(lambda nr, *args: 0)
