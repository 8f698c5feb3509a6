"""The shared-memory transport's doorbell (``Hypervisor(doorbell=True)``):
QEMU's semihosting console routed to a socket the host sleeps on, rung by the
firmware after it publishes an exit while the host says it sleeps
(``armvcpu_host_sleeping``). Off by default: semihosting is the guest's to
call too, host files and commands included.

Nothing here waits on the clock: the ring is read from the socket after the
exit it announces has arrived, and the firmware rings before it waits for
the answer, so the byte is there by then.
"""

from __future__ import annotations

import pytest
from armvcpu import Guest, Hypervisor
from armvcpu.exits import ExitKind

_TWO_HYPERCALLS = """
    mov x0, #1
    hvc #0
    mov x0, #1
    hvc #0
    ldr x0, =0x84000008
    hvc #0
"""


def test_by_default_no_semihosting_and_no_doorbell(no_leaked_qemu):
    with Hypervisor() as hv:
        assert not hv.config.doorbell
        assert hv.qemu is not None and hv.qemu.doorbell_socket is None
        assert "semihosting" not in " ".join(hv.qemu.command)
        assert hv.transport is not None and hv.transport.doorbell_fd == -1


def test_a_shm_session_sleeps_on_a_doorbell_routed_from_semihosting(no_leaked_qemu):
    with Hypervisor(doorbell=True) as hv:
        assert hv.config.doorbell
        assert hv.qemu is not None and hv.qemu.doorbell_socket is not None
        command = " ".join(hv.qemu.command)
        assert f"socket,id=armvcpu-doorbell,path={hv.qemu.doorbell_socket}" in command
        assert "-semihosting-config enable=on,target=native,chardev=armvcpu-doorbell" in command
        assert hv.transport is not None and hv.transport.doorbell_fd >= 0


def test_the_firmware_rings_when_the_host_says_it_sleeps(no_leaked_qemu):
    with Hypervisor(doorbell=True) as hv:
        hv.load(Guest.from_asm(_TWO_HYPERCALLS))
        transport = hv.transport
        assert transport is not None and transport._doorbell is not None
        assert hv.ram is not None and transport.sleeping_offset is not None
        bell = transport._doorbell
        word = slice(transport.sleeping_offset, transport.sleeping_offset + 8)
        # The host waits without its doorbell (it spins and sleeps in steps,
        # leaving the word alone) and says by hand whether it sleeps.
        transport.doorbell_fd = -1
        hv.ram[word] = (1).to_bytes(8, "little")
        rings = []
        for exit in hv.exits():
            if exit.kind == ExitKind.Hypercall:
                if not rings:
                    # Published while the word said "sleeping": rung, before
                    # the firmware began to wait for this answer.
                    bell.setblocking(True)
                    bell.settimeout(60)
                    rings.append(bell.recv(16))
                    hv.ram[word] = (0).to_bytes(8, "little")
                else:
                    # Published with the word at 0: no ring.
                    bell.setblocking(False)
                    with pytest.raises(BlockingIOError):
                        bell.recv(16)
                    rings.append(b"")
                exit.resume(x0=0)
        assert rings == [b"!", b""]


def test_exits_keep_coming_when_the_host_sleeps_between_them(no_leaked_qemu):
    """Each wait ends in poll() on the doorbell (no spin at all): every exit
    still arrives, woken by its ring."""
    from armvcpu import _core

    saved = _core.mailbox_wait_policy()
    _core.mailbox_wait_policy(spin_us=0)
    try:
        with Hypervisor(doorbell=True) as hv:
            hv.load(Guest.from_asm(_TWO_HYPERCALLS))
            kinds = []
            for exit in hv.exits():
                kinds.append(exit.kind)
                if exit.kind == ExitKind.Hypercall:
                    exit.resume(x0=0)
    finally:
        _core.mailbox_wait_policy(*saved)
    assert kinds == [ExitKind.Hypercall, ExitKind.Hypercall, ExitKind.SystemDown]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"extra_args": ["-semihosting"]}, "which this command line uses itself"),
        ({"extra_args": ["-semihosting-config", "enable=on"]}, "uses itself"),
        ({"transport": "gdb"}, "doorbell=True needs transport='shm'"),
        ({"remote": "localhost:1"}, "doorbell=True needs transport='shm'"),
    ],
)
def test_a_doorbell_it_cannot_have_is_refused_before_qemu_starts(kwargs, message,
                                                                 no_leaked_qemu):  # fmt: skip
    with pytest.raises(ValueError, match=message):
        Hypervisor(doorbell=True, **kwargs)
