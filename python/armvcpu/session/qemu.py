"""QEMU as an owned child process.

The child dies with its owner: on close(), on an exception, on Ctrl-C, and
when the owning Python process is killed outright (Linux's parent-death
signal), so a crashed session never leaves a ``qemu-system-aarch64`` behind.
"""

from __future__ import annotations

import contextlib
import os
import select
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .. import _core
from .._process import die_with_parent, is_dead
from ..errors import QemuError, ToolNotFoundError

#: The file in a session's directory naming the process that made it.
OWNER_FILE = "owner"
#: The longest path a Unix socket can have on Linux (sun_path, less its NUL).
_SUN_PATH_MAX = 107


def remove_orphaned_workdirs(pids: Sequence[int] | None = None,
                             directory: str | Path | None = None) -> int:  # fmt: skip
    """Remove session directories (``armvcpu-*`` in ``directory``, by default
    the temporary directory) whose owner process is dead, or only those of
    ``pids``; returns how many. A session's owner killed with SIGKILL (a fuzz
    worker the campaign kills, a test's victim) takes its QEMU with it but
    cannot remove its directory; a live owner's directories are never touched."""
    removed = 0
    for owner in Path(directory or tempfile.gettempdir()).glob(f"armvcpu-*/{OWNER_FILE}"):
        try:
            pid = int(owner.read_text())
        except (OSError, ValueError):
            continue
        if (pids is None or pid in pids) and is_dead(pid):
            shutil.rmtree(owner.parent, ignore_errors=True)
            removed += 1
    return removed


@dataclass
class QemuConfig:
    """How to start QEMU's ``virt`` machine for armvcpu."""

    binary: str = "qemu-system-aarch64"
    cpu: str = "max"
    #: The machine's RAM (QEMU's -m): it must reach past the firmware at 8 GiB
    #: (``Hypervisor`` sizes it with ``machine_memory_mb``; this default gives
    #: the firmware's standalone guest its 64 MiB).
    memory_mb: int = ((_core.EXTRA_VM_RAM_BASE - _core.RAM_BASE) >> 20) + 3 * 64
    gic_version: int = 3
    #: QEMU's MTE (``-M virt,mte=on``): allocation tags for the guest's RAM.
    mte: bool = False
    #: QEMU's SMMUv3 (``-M virt,iommu=smmuv3``), for the firmware to confine
    #: PCIe DMA with.
    iommu: bool = False
    #: QEMU's ITS (on by default; ``-M virt,its=off`` when False). With it,
    #: the firmware passes it through to the VM that owns the PCIe devices.
    its: bool = True
    smp: int = 1
    extra_args: Sequence[str] = field(default_factory=tuple)
    #: Back guest RAM with this file (shared, so the host can map it too).
    ram_file: Path | None = None
    #: A guest firmware for flash 0 (QEMU's -bios). The EL2 firmware is then
    #: loaded by QEMU's generic loader, which also sets the CPU's first PC:
    #: with -kernel, QEMU would boot the flash instead.
    bios: Path | None = None
    #: The console also takes input (QemuProcess.send_console): the PL011 is a
    #: pair of FIFOs, the host copying one into the console file, instead of
    #: the file itself.
    console_input: bool = False
    #: The shared-memory transport's doorbell: QEMU's semihosting output goes
    #: to a socket the host sleeps on, and the firmware writes a byte there
    #: (SYS_WRITEC) to wake it (QemuProcess.connect_doorbell).
    doorbell: bool = False

    def command(self, firmware: Path, gdb_socket: Path, console: Path,
                console_fifo: Path | None = None,
                doorbell_socket: Path | None = None) -> list[str]:  # fmt: skip
        machine = f"virt,virtualization=on,gic-version={self.gic_version}"
        if self.mte:
            machine += ",mte=on"  # the firmware gives EL1 the tags (HCR_EL2.ATA)
        if self.iommu:
            machine += ",iommu=smmuv3"
        if not self.its:
            machine += ",its=off"
        # RAM reaches past 8 GiB but is mostly never touched: a shared file
        # (which the host maps), or anonymous memory with no reservation, so
        # that neither counts against the host's commit limit.
        machine += ",memory-backend=ram"
        if self.ram_file is not None:
            ram = ["-object", f"memory-backend-file,id=ram,size={self.memory_mb}M,"
                              f"share=on,mem-path={self.ram_file}"]  # fmt: skip
        else:
            ram = ["-object", f"memory-backend-ram,id=ram,size={self.memory_mb}M,reserve=off"]
        return [
            self.binary,
            "-machine", machine,
            *ram,
            "-cpu", self.cpu,
            "-smp", str(self.smp),
            "-m", f"{self.memory_mb}M",
            "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
            *(["-bios", str(self.bios), "-device", f"loader,file={firmware},cpu-num=0"]
              if self.bios is not None else ["-kernel", str(firmware)]),
            *(["-chardev", f"pipe,id=console,path={console_fifo}", "-serial", "chardev:console"]
              if console_fifo is not None else ["-serial", f"file:{console}"]),
            *(["-chardev",
               f"socket,id=armvcpu-doorbell,path={doorbell_socket},server=on,wait=off",
               "-semihosting-config", "enable=on,target=native,chardev=armvcpu-doorbell"]
              if doorbell_socket is not None else []),
            "-gdb", f"unix:{gdb_socket},server=on,wait=off",
            "-S",
            *self.extra_args,
        ]  # fmt: skip


class QemuProcess:
    """A running QEMU with a private directory for its sockets and logs."""

    def __init__(self, config: QemuConfig, firmware: Path) -> None:
        try:
            self._start(config, firmware)
        except BaseException:
            # Nobody can terminate() a QemuProcess that was never made, so its
            # directory goes here (say an extra_args item is not a string:
            # Popen refuses it after the directory is made).
            if hasattr(self, "workdir"):
                shutil.rmtree(self.workdir, ignore_errors=True)
            raise

    def _start(self, config: QemuConfig, firmware: Path) -> None:
        binary = shutil.which(config.binary)
        if binary is None:
            raise ToolNotFoundError(
                f"{config.binary} not found; install Debian's qemu-system-arm package "
                "(sudo apt-get install qemu-system-arm) or pass qemu=... to Hypervisor"
            )
        self.config = config
        self.workdir = Path(tempfile.mkdtemp(prefix="armvcpu-"))
        # Who made it: a process killed with SIGKILL cannot remove it, and
        # remove_orphaned_workdirs() tells by this whose owner is gone.
        (self.workdir / OWNER_FILE).write_text(f"{os.getpid()}\n")
        self.gdb_socket = self.workdir / "gdb.sock"
        longest = self.workdir / "doorbell.sock"
        if len(os.fsencode(longest)) > _SUN_PATH_MAX:
            raise QemuError(
                f"the session's directory {self.workdir} is too deep for QEMU's sockets "
                f"({len(os.fsencode(longest))} bytes in {longest.name}'s path; a Unix socket's "
                f"path has at most {_SUN_PATH_MAX}): set TMPDIR to a shorter directory"
            )
        self.console_path = self.workdir / "console.log"
        self.stderr_path = self.workdir / "qemu.stderr"
        # With input, the console is QEMU's pipe chardev: it reads
        # console.in, a FIFO send_console writes, and writes console.out,
        # here a plain file and the console file itself, as `-serial file:`
        # does without input. QEMU writes the PL011's output a byte at a
        # time: through a Unix socket (as before) or a FIFO, a host thread
        # had to copy it out, and whenever that copy paused the socket's room
        # for ~240 such writes ran out and stalled QEMU (a Debian boot printed
        # its log 0.1 s later than on bare QEMU).
        self.console_fifo = self.workdir / "console" if config.console_input else None
        if self.console_fifo is not None:
            os.mkfifo(self.console_fifo.with_suffix(".in"), 0o600)
            self.console_path = self.console_fifo.with_suffix(".out")
            self.console_path.touch(0o600)  # QEMU opens it; it never creates it
        self.doorbell_socket = self.workdir / "doorbell.sock" if config.doorbell else None
        self.command = config.command(firmware, self.gdb_socket, self.console_path,
                                      self.console_fifo, self.doorbell_socket)  # fmt: skip
        self.command[0] = binary
        self._console_cache: str | None = None
        self._console_in: int | None = None  # console.in, written by send_console
        self._doorbell_conn: socket.socket | None = None
        with self.stderr_path.open("wb") as err:
            self.proc = subprocess.Popen(
                self.command,
                stdin=subprocess.DEVNULL,
                stdout=err,
                stderr=err,
                preexec_fn=die_with_parent,
                # Own session: a terminal's Ctrl-C goes to Python, which then
                # tears QEMU down in order instead of both dying at once.
                start_new_session=True,
            )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stderr_text(self) -> str:
        try:
            return self.stderr_path.read_text(errors="replace").strip()
        except OSError:
            return ""

    def console_text(self) -> str:
        if self._console_cache is not None:
            return self._console_cache
        try:
            return self.console_path.read_text(errors="replace").replace("\r\n", "\n")
        except OSError:
            return ""

    def describe_exit(self) -> str:
        code = self.proc.poll()
        if code is None:
            return "QEMU is still running"
        how = f"signal {-code}" if code < 0 else f"status {code}"
        err = self.stderr_text()
        return f"QEMU exited with {how}" + (f": {err.splitlines()[-1]}" if err else "")

    def wait_for_socket(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while not self.gdb_socket.exists():
            if not self.alive():
                raise QemuError(f"QEMU failed to start: {self.describe_exit()}")
            if time.monotonic() > deadline:
                raise QemuError(f"QEMU did not open its gdbstub socket within {timeout:.0f} s")
            # Short steps: every session waits here once, for ~50-100 ms of
            # QEMU's start-up, and a 10 ms step added 5 ms to each on average.
            time.sleep(0.002)
        if self.console_fifo is not None:
            self._connect_console(deadline)

    def _connect_console(self, deadline: float) -> None:
        """Open the console's input FIFO (QEMU opened its end before its
        gdbstub); QEMU writes the output into the console file itself."""
        assert self.console_fifo is not None
        # A non-blocking open: a FIFO's blocking open would wait forever for a
        # QEMU that died (ENXIO: nobody reads console.in).
        try:
            self._console_in = os.open(self.console_fifo.with_suffix(".in"),
                                       os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)  # fmt: skip
            os.set_blocking(self._console_in, True)
        except OSError as exc:
            raise QemuError(
                f"QEMU's console did not open ({exc}): {self.describe_exit()}"
            ) from None

    def connect_doorbell(self) -> socket.socket:
        """The doorbell socket (``QemuConfig.doorbell``), connected; QEMU
        listens on it from its start, before the CPUs run."""
        if self.doorbell_socket is None:
            raise QemuError("this QEMU has no doorbell (QemuConfig.doorbell is off)")
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            conn.connect(str(self.doorbell_socket))
        except OSError as exc:
            conn.close()
            raise QemuError(f"QEMU's doorbell socket did not open ({exc}): "
                            f"{self.describe_exit()}") from None  # fmt: skip
        self._doorbell_conn = conn
        return conn

    def send_console(self, data: bytes) -> None:
        """Type ``data`` into the console (``QemuConfig(console_input=True)``)."""
        if self._console_in is None:
            raise QemuError("this QEMU's console takes no input (console_input=False)")
        view = memoryview(data)
        with contextlib.suppress(OSError):  # QEMU may have gone: nothing to type into
            while view:
                view = view[os.write(self._console_in, view) :]

    def wait(self, timeout: float) -> int | None:
        """QEMU's exit status once it has exited, waiting up to ``timeout``
        seconds; None if it still runs. Woken by the exit itself (a pidfd):
        ``Popen.wait(timeout)`` looks every 50 ms at most, which added 10-30 ms
        to the end of every ``armvcpu run``."""
        if self.proc.returncode is None and timeout > 0:
            try:
                pidfd = os.pidfd_open(self.proc.pid)
            except OSError:  # no pidfds (Linux before 5.3): Popen's polling
                pidfd = None
            if pidfd is not None:
                try:
                    select.select([pidfd], [], [], timeout)
                finally:
                    os.close(pidfd)
                return self.proc.poll()
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def _reap(self, timeout: float) -> bool:
        """Wait for QEMU to exit with os.waitpid, not Popen.wait: a Ctrl-C
        that lands inside Popen's own poll can leave its internal lock held,
        and teardown must not block on it. True once QEMU is gone."""
        deadline = time.monotonic() + timeout
        while self.proc.returncode is None:
            try:
                pid, status = os.waitpid(self.proc.pid, os.WNOHANG)
            except ChildProcessError:  # reaped already (by Popen)
                return True
            if pid != 0:
                self.proc.returncode = os.waitstatus_to_exitcode(status)
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.01)
        return True

    def terminate(self) -> None:
        """Stop QEMU (SIGTERM, then SIGKILL) and remove the private directory."""
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, signal.SIGTERM)
            if not self._reap(2.0):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.proc.pid, signal.SIGKILL)
                self._reap(10.0)
        if self._console_in is not None:
            os.close(self._console_in)
            self._console_in = None
        if self._doorbell_conn is not None:
            self._doorbell_conn.close()
        if self._console_cache is None:
            self._console_cache = self.console_text()
        shutil.rmtree(self.workdir, ignore_errors=True)
