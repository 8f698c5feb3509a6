"""What a newcomer meets first: the README's example, the console after a
run, a machine too small for the firmware, and what an exit's addresses mean."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest
from armvcpu import ExitKind, Guest, GuestTimeout, Hypervisor, example_guest_path
from armvcpu.session.hypervisor import MAX_MEMORY_MB, RAM_BASE

README = Path(__file__).resolve().parent.parent / "README.md"


def _first_python_block(text: str) -> str:
    match = re.search(r"```python\n(.*?)```", text, re.S)
    assert match is not None, "the README has no python example"
    return match.group(1)


def test_the_readme_first_example_ends_with_the_guest(no_leaked_qemu):
    """Run exactly as shown: it resumes every exit, the final SystemDown too,
    and must end when the guest powers off (not wait for a GuestTimeout)."""
    code = _first_python_block(README.read_text())
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        try:
            exec(compile(code, str(README), "exec"), {"__name__": "readme"})
        except GuestTimeout as exc:  # pragma: no cover - the bug this guards
            pytest.fail(f"the README's example waited for an exit that never came: {exc}")
    lines = out.getvalue().splitlines()
    assert len(lines) == 10  # eight GET_VALUE, one REPORT, SYSTEM_OFF
    assert [line.split()[0] for line in lines] == [str(i) for i in range(1, 11)]
    assert lines[-1].split()[1].startswith("SystemDown")


def test_resume_on_system_down_ends_the_vm(no_leaked_qemu, transport):
    guest = Guest.from_asm("ldr x0, =0x84000008\nhvc #0\n1: wfi\nb 1b")
    with Hypervisor(transport=transport) as hv:
        hv.load(guest)
        seen = []
        for exit in hv.exits():
            seen.append(exit.kind)
            exit.resume(x0=42)  # nothing to resume: the VM is down
        assert not hv.vms[1].running
    assert seen == [ExitKind.SystemDown]


def test_resume_at_a_new_pc_restarts_a_guest_that_went_down(no_leaked_qemu):
    """A host that emulates a reset answers SystemDown with where to start."""
    guest = Guest.from_asm("add x20, x20, #1\nmov x1, x20\nldr x0, =0x84000009\nhvc #0")
    with Hypervisor() as hv:
        hv.load(guest)
        boots = []
        for exit in hv.exits():
            assert exit.kind == ExitKind.SystemDown and exit.reason.reset
            boots.append(exit.regs.x1)
            if len(boots) < 3:
                exit.resume(pc=guest.entry)
            else:
                exit.resume()  # the third time: no new pc, the VM ends
    assert boots == [1, 2, 3]


HELLO = """
    movz x10, #0x0900, lsl #16
    adr x11, msg
1:  ldrb w12, [x11], #1
    cbz w12, 2f
    str w12, [x10]
    b 1b
2:  ldr x0, =0x84000008
    hvc #0
msg: .asciz "still here after the end\\n"
"""


def test_the_console_is_readable_after_the_run(no_leaked_qemu, transport):
    """With either transport, what the guest printed is kept when its VM
    stops: readable after run() (gdb: QEMU has exited) and after close."""
    with Hypervisor(uart="emulate", transport=transport) as hv:
        hv.load(Guest.from_asm(HELLO))
        exits = hv.run()
        assert [e.kind for e in exits] == [ExitKind.SystemDown]
        assert hv.read_guest_console() == "still here after the end\n"
        assert hv.read_guest_console() == ""  # nothing new
    assert hv.guest_console == "still here after the end\n"
    assert hv.vms[1].console == hv.guest_console


def test_the_console_is_kept_when_the_session_closes_mid_run(no_leaked_qemu, transport):
    """A loop left at an exit (a failing test, a break) closes the session
    while the guest is stopped there: its console is read before QEMU goes."""
    source = HELLO.replace("ldr x0, =0x84000008", "mov x0, #7")  # a hypercall, not an end
    with Hypervisor(uart="emulate", transport=transport) as hv:
        hv.load(Guest.from_asm(source))
        for exit in hv.exits():
            assert exit.kind == ExitKind.Hypercall
            break
    assert hv.guest_console == "still here after the end\n"


@pytest.mark.parametrize("memory_mb", [0, -64, MAX_MEMORY_MB + 1])
def test_memory_that_cannot_be_guest_ram_is_refused_before_qemu_starts(memory_mb, no_leaked_qemu):
    with pytest.raises(
        ValueError, match=rf"memory_mb={memory_mb}: .* use 1\.\.{MAX_MEMORY_MB} MiB"
    ):
        Hypervisor(memory_mb=memory_mb)


@pytest.mark.parametrize("memory_mb", [1, 64, 200])
def test_the_guest_has_exactly_memory_mb_at_qemus_address(memory_mb, no_leaked_qemu):
    """As with QEMU's -m: RAM at 0x4000_0000, exactly that large, at the same
    physical addresses; its last word is RAM, the next one is not."""
    end = RAM_BASE + (memory_mb << 20)
    guest = Guest.from_asm(f"""
        ldr x2, ={end - 8:#x}
        ldr x3, [x2]          // the last word of RAM: no exit
        ldr x2, ={end:#x}
        ldr x3, [x2]          // one past it: nothing there
        mov x0, #1
        hvc #0
        .ltorg
    """)
    with Hypervisor(memory_mb=memory_mb) as hv:
        cfg = hv.vms[1].config
        assert (cfg.ipa_base, cfg.pa_base, cfg.size) == (RAM_BASE, RAM_BASE, memory_mb << 20)
        hv.load(guest)
        exits = hv.exits()
        first = next(exits)
        assert first.kind == ExitKind.MmioRead and first.reason.addr == end
        first.complete_read(0)
        assert next(exits).kind == ExitKind.Hypercall


def test_an_exits_pc_is_the_instruction_that_made_it(no_leaked_qemu, transport):
    """Arm ARM: ELR_EL2 is past an HVC (the preferred return address) but on
    a trapped load; exit.pc is the instruction itself in both cases."""
    guest = Guest.from_asm(
        """
        mov x0, #5
        hvc #0
        movz x1, #0x0900, lsl #16
        ldr w2, [x1]
        ldr x0, =0x84000008
        hvc #0
        """
    )
    base = guest.entry
    with Hypervisor(transport=transport) as hv:
        hv.load(guest)
        seen = []
        for exit in hv.exits():
            seen.append((exit.kind, exit.pc, exit.elr, exit.return_address, exit.instruction))
            if exit.kind == ExitKind.MmioRead:
                exit.complete_read(0)
            else:
                exit.resume()
    hvc, load, off = seen
    assert hvc == (ExitKind.Hypercall, base + 4, base + 8, base + 8, "hvc #0")
    assert load == (ExitKind.MmioRead, base + 12, base + 12, base + 16, "ldr w2, [x1]")
    assert off[0] == ExitKind.SystemDown and off[1] == base + 20 and off[4] == "hvc #0"


def test_vm_1_is_there_once_the_session_runs(no_leaked_qemu):
    from armvcpu import SessionClosedError

    hv = Hypervisor()
    assert dict(hv.vms) == {}
    with pytest.raises(SessionClosedError, match="with block"):
        hv.load(Guest.from_elf(example_guest_path("hypercalls")))
    with hv:
        assert list(hv.vms) == [1] and hv.vms[1].id == 1
