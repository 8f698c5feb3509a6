"""The gdb transport's two hand-offs (a write watchpoint on the firmware's
doorbell, or a breakpoint on its NOP), and the fallbacks for targets and
firmware without the watchpoint."""

from __future__ import annotations

import shutil
import socket
import subprocess
import threading

import armvcpu
import pytest
from armvcpu import ExitKind, Hypervisor
from armvcpu.transport import GdbTransport

MASK64 = (1 << 64) - 1


def fold(values: list[int]) -> int:
    checksum = 0
    for v in values:
        checksum = (checksum * 31 + v) & MASK64
    return checksum


def run_hypercalls(hv: Hypervisor, guest: armvcpu.Guest) -> list[armvcpu.Exit]:
    """The example guest's eight hypercalls answered, then its report."""
    hv.load(guest)
    answers = [0x1000 + i for i in range(8)]
    exits = []
    for exit in hv.exits():
        exits.append(exit)
        if exit.kind == ExitKind.Hypercall and exit.reason.nr == 1:
            exit.resume(x0=answers[exit.reason.args[0]])
    assert [e.kind for e in exits] == [ExitKind.Hypercall] * 9 + [ExitKind.SystemDown]
    assert exits[8].reason.args[0] == fold(answers)
    assert [e.seq for e in exits] == list(range(1, 11))
    return exits


@pytest.mark.parametrize("handoff", ["watchpoint", "breakpoint"])
def test_both_handoffs_run_the_example_guest(handoff, hypercalls_guest, no_leaked_qemu):
    with Hypervisor(transport="gdb", handoff=handoff) as hv:
        assert isinstance(hv.transport, GdbTransport)
        assert hv.transport.mode == handoff
        run_hypercalls(hv, hypercalls_guest)


def test_auto_takes_the_watchpoint_with_qemu(hypercalls_guest, no_leaked_qemu):
    with Hypervisor(transport="gdb") as hv:
        assert isinstance(hv.transport, GdbTransport)
        assert hv.transport.mode == "watchpoint"
        run_hypercalls(hv, hypercalls_guest)
        # QEMU, like Arm, stops before the watched store: the host moves the PC.
        assert hv.transport._resume_pc == hv.firmware.host_doorbell_store + 4


def test_bad_handoff_name():
    with pytest.raises(ValueError, match="handoff"):
        Hypervisor(transport="gdb", handoff="both")  # type: ignore[arg-type]


def test_firmware_without_the_doorbell_falls_back_to_the_breakpoint(
    tmp_path, hypercalls_guest, no_leaked_qemu
):
    """An image that predates the doorbell (here: the symbols stripped)."""
    objcopy = shutil.which("aarch64-linux-gnu-objcopy")
    if objcopy is None:
        pytest.skip("aarch64-linux-gnu-objcopy is not installed")
    old = tmp_path / "old-firmware.elf"
    subprocess.run(
        [objcopy, "--strip-symbol=armvcpu_host_doorbell",
         "--strip-symbol=armvcpu_host_doorbell_store", str(armvcpu.firmware_path()), str(old)],
        check=True,
    )  # fmt: skip
    with Hypervisor(transport="gdb", firmware=old) as hv:
        assert hv.firmware.host_doorbell is None
        assert isinstance(hv.transport, GdbTransport)
        assert hv.transport.mode == "breakpoint"
        run_hypercalls(hv, hypercalls_guest)
    with pytest.raises(armvcpu.GdbProtocolError, match="no armvcpu_host_doorbell"):
        Hypervisor(transport="gdb", firmware=old, handoff="watchpoint").start()


class RefusingProxy:
    """A TCP relay to a GDB remote target that answers some packets itself
    with an empty reply ("not supported"), like a stub without them."""

    def __init__(self, upstream: tuple[str, int], refuse: tuple[bytes, ...]) -> None:
        self.refuse = refuse
        self.refused: list[bytes] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self._listener.getsockname()[1]}"
        self._upstream = upstream
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        client, _ = self._listener.accept()
        upstream = socket.create_connection(self._upstream)
        threading.Thread(target=self._pump, args=(upstream, client), daemon=True).start()
        buf = b""
        while chunk := client.recv(65536):
            buf += chunk
            while buf:
                if buf[:1] != b"$":
                    cut = buf.find(b"$")
                    cut = len(buf) if cut < 0 else cut
                    upstream.sendall(buf[:cut])
                    buf = buf[cut:]
                    continue
                end = buf.find(b"#")
                if end < 0 or len(buf) < end + 3:
                    break
                packet, buf = buf[: end + 3], buf[end + 3 :]
                if packet[1:end].startswith(self.refuse):
                    self.refused.append(packet[1:end])
                    client.sendall(b"+$#00")
                else:
                    upstream.sendall(packet)
        upstream.close()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while chunk := src.recv(65536):
                dst.sendall(chunk)
        except OSError:
            pass
        dst.close()


def test_target_without_watchpoints_gets_the_breakpoint(remote_target, hypercalls_guest):
    """A target that does not support Z2 (an empty reply): auto falls back to
    the breakpoint and the session works as before."""
    address, qemu = remote_target
    host, port = address.rsplit(":", 1)
    proxy = RefusingProxy((host, int(port)), refuse=(b"Z2", b"z2"))
    with Hypervisor.attach(proxy.address) as hv:
        assert isinstance(hv.transport, GdbTransport)
        assert hv.transport.mode == "breakpoint"
        run_hypercalls(hv, hypercalls_guest)
    assert proxy.refused and proxy.refused[0].startswith(b"Z2,")
    assert qemu.wait(10) == 0


def test_asking_for_the_watchpoint_from_a_target_without_it(remote_target):
    address, _qemu = remote_target
    host, port = address.rsplit(":", 1)
    proxy = RefusingProxy((host, int(port)), refuse=(b"Z2",))
    with pytest.raises(armvcpu.GdbProtocolError, match="refused a write watchpoint"):
        Hypervisor.attach(proxy.address, handoff="watchpoint").start()


@pytest.mark.parametrize("handoff", ["watchpoint", "breakpoint"])
def test_smp_guest_under_both_handoffs(handoff, no_leaked_qemu):
    """Several CPUs: the PC write goes to the CPU that stopped (Hg)."""
    from .test_smp import SMP_GUEST

    with Hypervisor(transport="gdb", smp=2, handoff=handoff) as hv:
        hv.load(armvcpu.Guest.from_asm(SMP_GUEST))
        exits = hv.run(lambda e: 0 if e.kind == ExitKind.Hypercall else None)
    hello = next(e for e in exits if e.kind == ExitKind.Hypercall and e.reason.nr == 7)
    report = next(e for e in exits if e.kind == ExitKind.Hypercall and e.reason.nr == 3)
    assert hello.vcpu_id == 1 and hello.slot == 1 and report.vcpu_id == 0
    assert report.reason.args[:3] == (0, 1, MASK64 - 1)
    assert exits[-1].kind == ExitKind.SystemDown
