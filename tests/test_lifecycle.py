"""QEMU is owned by the session: it never outlives it, whatever goes wrong."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Iterator
from pathlib import Path

import armvcpu
import pytest
from armvcpu import Guest, Hypervisor
from armvcpu.errors import GdbProtocolError, TargetConnectionError
from armvcpu.session.qemu import remove_orphaned_workdirs

from .conftest import pid_gone

OWNER_SCRIPT = textwrap.dedent(
    """
    import sys, time
    import armvcpu
    hv = armvcpu.Hypervisor(timeout=600, transport=sys.argv[1])
    hv.start()
    hv.load(armvcpu.Guest.from_asm("hvc #0\\nb ."))  # one exit, then never another
    for exit in hv.exits():
        print(hv.qemu_pid, flush=True)  # the guest has run: it spins from here
    """
)


@pytest.fixture
def owner_tmpdir() -> Iterator[Path]:
    """The owner's TMPDIR, where it makes its session's directory; removed
    when the test ends, since an owner killed outright cannot remove it. Not
    in tmp_path: QEMU's sockets are in that directory, and a Unix socket's
    path must fit in 107 bytes."""
    with tempfile.TemporaryDirectory() as tmpdir:
        yield Path(tmpdir)


def _start_owner(transport: str, tmpdir: Path) -> tuple[subprocess.Popen[str], int]:
    owner = subprocess.Popen(
        [sys.executable, "-c", OWNER_SCRIPT, transport],
        stdout=subprocess.PIPE, text=True, env={**os.environ, "TMPDIR": str(tmpdir)},
    )  # fmt: skip
    assert owner.stdout is not None
    line = owner.stdout.readline()
    assert line.strip().isdigit(), f"owner printed {line!r}"
    return owner, int(line)


def test_killing_the_owner_process_kills_qemu(owner_tmpdir, no_leaked_qemu, transport):
    owner, qemu_pid = _start_owner(transport, owner_tmpdir)
    assert not pid_gone(qemu_pid, timeout=0.1)
    # While the owner lives its directory is its own, whoever sweeps.
    assert remove_orphaned_workdirs(directory=owner_tmpdir) == 0
    assert len(list(owner_tmpdir.glob("armvcpu-*"))) == 1
    owner.kill()  # SIGKILL: no Python cleanup runs at all
    owner.wait()
    assert pid_gone(qemu_pid), "QEMU outlived the process that owned it"
    # What it could not remove, a sweep (as a fuzz campaign runs after a
    # worker it killed) does.
    assert remove_orphaned_workdirs([owner.pid], directory=owner_tmpdir) == 1
    assert not list(owner_tmpdir.iterdir())


def test_a_session_directory_too_deep_for_a_socket_is_a_clear_error(no_leaked_qemu):
    with tempfile.TemporaryDirectory() as short:
        deep = Path(short) / ("d" * (110 - len(short)))
        deep.mkdir()
        env = {**os.environ, "TMPDIR": str(deep)}
        out = subprocess.run([sys.executable, "-c", "import armvcpu; armvcpu.Hypervisor().start()"],
                             env=env, capture_output=True, text=True, timeout=60)  # fmt: skip
        assert out.returncode != 0
        assert "too deep for QEMU's sockets" in out.stderr
        assert "set TMPDIR to a shorter directory" in out.stderr
        assert not list(deep.iterdir())  # its directory went with it


def test_ctrl_c_in_the_owner_tears_qemu_down(owner_tmpdir, no_leaked_qemu, transport):
    owner, qemu_pid = _start_owner(transport, owner_tmpdir)
    owner.send_signal(signal.SIGINT)
    assert owner.wait(timeout=10) != 0
    assert pid_gone(qemu_pid)
    assert not list(owner_tmpdir.iterdir()), "the session's directory outlived it"


def test_exception_inside_the_session_stops_qemu(hypercalls_guest, no_leaked_qemu):
    with pytest.raises(ZeroDivisionError), Hypervisor() as hv:
        hv.load(hypercalls_guest)
        pid = hv.qemu_pid
        for _exit in hv.exits():
            1 / 0  # noqa: B018
    assert pid is not None and pid_gone(pid)


def test_hung_guest_times_out_with_where_it_is(no_leaked_qemu, transport):
    guest = Guest.from_asm("mov x0, #7\nhvc #0\nspin: b spin")
    with Hypervisor(timeout=1.0, transport=transport) as hv:
        hv.load(guest)
        with pytest.raises(armvcpu.GuestTimeout) as info:
            for _exit in hv.exits():
                pass
    message = str(info.value)
    assert "no exit within 1 s" in message
    assert "Hypercall(nr=0x7" in message  # the last exit seen
    assert "pc=0x40000008" in message  # where the spinning guest is


def test_qemu_dying_mid_session_is_a_clear_error(hypercalls_guest, no_leaked_qemu, transport):
    with Hypervisor(transport=transport) as hv:
        hv.load(hypercalls_guest)
        exits = hv.exits()
        next(exits)
        assert hv.qemu is not None
        os.kill(hv.qemu.pid, signal.SIGKILL)
        with pytest.raises(armvcpu.QemuError, match="QEMU exited with signal 9"):
            next(exits)


def test_missing_qemu_binary(no_leaked_qemu):
    with (
        pytest.raises(armvcpu.ToolNotFoundError, match="qemu-system-arm"),
        Hypervisor(qemu="qemu-system-does-not-exist"),
    ):
        pass


def test_qemu_refusing_its_arguments(no_leaked_qemu):
    with (
        pytest.raises(armvcpu.QemuError, match="failed to start"),
        Hypervisor(extra_args=["-no-such-option"]),
    ):
        pass


def test_an_argument_qemu_cannot_be_given_leaves_no_directory(tmp_path, monkeypatch,
                                                              no_leaked_qemu):  # fmt: skip
    # Popen refuses the int after the session's directory is made, and before
    # there is a QEMU for close() to stop: the directory must still go.
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    with pytest.raises(TypeError, match="not int"), Hypervisor(extra_args=["-smp", 2]):
        pass
    assert not list(tmp_path.iterdir())


def test_missing_or_bad_firmware(tmp_path, no_leaked_qemu):
    with pytest.raises(armvcpu.FirmwareError, match="cannot read"):
        Hypervisor(firmware=tmp_path / "none.elf")
    junk = tmp_path / "junk.elf"
    junk.write_bytes(b"\x7fELF garbage")
    with pytest.raises(armvcpu.FirmwareError, match="not a valid ELF"):
        Hypervisor(firmware=junk)
    with pytest.raises(armvcpu.FirmwareError, match="not an AArch64 image"):
        Hypervisor(firmware="/bin/true")


def test_truncated_or_stripped_firmware(tmp_path, no_leaked_qemu):
    # The symbols are read with a small ELF reader of our own: a cut-off
    # image and one without .symtab are named as such, never an IndexError.
    real = armvcpu.assets.firmware_path().read_bytes()
    cut = tmp_path / "cut.elf"
    cut.write_bytes(real[:4096])
    with pytest.raises(armvcpu.FirmwareError, match="not a valid ELF file: its section headers"):
        Hypervisor(firmware=cut)
    strip = shutil.which("aarch64-linux-gnu-strip") or shutil.which("llvm-strip")
    if strip is None:
        pytest.skip("no strip for AArch64 ELF (binutils-aarch64-linux-gnu or llvm)")
    stripped = tmp_path / "stripped.elf"
    subprocess.run([strip, "-o", str(stripped), str(armvcpu.assets.firmware_path())], check=True)
    with pytest.raises(armvcpu.FirmwareError, match="has no symbol table; was it stripped"):
        Hypervisor(firmware=stripped)


def test_unknown_transport():
    with pytest.raises(ValueError, match="transport"):
        Hypervisor(transport="carrier-pigeon")  # type: ignore[arg-type]


def test_closed_session_refuses_work(hypercalls_guest, no_leaked_qemu):
    hv = Hypervisor()
    with hv:
        pass
    with pytest.raises(armvcpu.SessionClosedError):
        hv.load(hypercalls_guest)
    with pytest.raises(armvcpu.SessionClosedError):
        hv.start()
    hv.close()  # closing twice is fine


def test_el2_stack_overflow_hits_the_guard_and_is_reported(transport, no_leaked_qemu):
    """The firmware's EL2 MMU leaves a guard page below its stack: running into
    it is a data abort taken at EL2 (EC 0x25, Arm ARM D17.2.37), reported to
    the host as an exit, then a clean power-off; never silent corruption."""
    with Hypervisor(transport=transport) as hv:
        hv.load(Guest.from_asm("b ."))
        hv.request_selftest("stack-overflow")
        exits = hv.run()
    assert len(exits) == 1
    assert exits[0].kind == armvcpu.ExitKind.GuestException
    assert exits[0].reason.ec == 0x25  # Data Abort taken without a change in EL
    assert "EL2 stack overflow (guard page hit)" in hv.console


def test_garbage_on_the_gdbstub_connection_is_a_typed_error(hypercalls_guest, no_leaked_qemu):
    """Bytes that are no RSP packet desynchronise the conversation: the next
    step must fail with an armvcpu error, and the session still tears down."""
    with Hypervisor(transport="gdb", timeout=3) as hv:
        hv.load(hypercalls_guest)
        exits = hv.exits()
        first = next(exits)
        assert hv.gdb is not None
        hv.gdb._send_raw(b"\x00\xffgarbage$zz#00$m0,4#")
        # QEMU answers the packet with the wrong checksum ($zz#00) with '-'.
        with pytest.raises(
            GdbProtocolError, match=r"^the target rejected a packet \(bad checksum\)$"
        ):
            first.resume(x0=1)
            for _exit in exits:
                pass


def test_el2_instruction_count_is_linear_in_exits(no_leaked_qemu):
    """The PMU count the el2 benchmark uses: each extra in-firmware exit costs
    the same number of EL2 instructions (exact under -icount)."""
    from armvcpu.tools.bench import el2_instructions_per_exit

    a = el2_instructions_per_exit(100)
    b = el2_instructions_per_exit(300)
    assert a == b and a > 30


def test_gdbstub_disconnecting_is_a_typed_error(hypercalls_guest, no_leaked_qemu):
    """The gdbstub connection goes away under the session (a board's debug
    probe unplugged): the next step is a typed armvcpu error naming it, and
    the session still tears down without leaving QEMU behind."""
    import socket

    with Hypervisor(transport="gdb", timeout=3) as hv:
        hv.load(hypercalls_guest)
        exits = hv.exits()
        first = next(exits)
        assert hv.gdb is not None
        hv.gdb._sock.shutdown(socket.SHUT_RDWR)
        with pytest.raises(TargetConnectionError) as caught:
            first.resume(x0=1)
            for _exit in exits:
                pass
        assert caught.type is TargetConnectionError  # not a QemuError: QEMU is fine
        assert str(caught.value).startswith(
            "the GDB remote target closed the connection while the VM was running ("
        )
        assert "last exit: <Exit #1 " in str(caught.value)
        assert hv.qemu is not None and hv.qemu.alive()  # only the connection went


def test_shared_ram_file_is_gone_once_mapped(hypercalls_guest, no_leaked_qemu):
    """Removing the shared guest-RAM file cannot hurt a session: it is
    unlinked as soon as QEMU and the host have mapped it, so nothing of this
    session is left in /dev/shm to remove, and the run goes on."""
    from armvcpu.session.hypervisor import ram_file_dir

    from .conftest import shm_files

    files_before = shm_files()
    with Hypervisor(transport="shm") as hv:
        where = ram_file_dir()  # /dev/shm, or this test run's own directory in it
        mine = [p for p in os.listdir(where) if p.startswith(f"armvcpu-{os.getpid()}-")]
        assert mine == [] and not shm_files() - files_before
        hv.load(hypercalls_guest)
        exits = hv.run(lambda e: 0 if e.kind == armvcpu.ExitKind.Hypercall else None)
    assert exits[-1].kind == armvcpu.ExitKind.SystemDown
