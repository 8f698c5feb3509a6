"""The session: QEMU running the armvcpu firmware, driven over its gdbstub.

>>> from armvcpu import Hypervisor, Guest, example_guest_path
>>> with Hypervisor() as hv:                                # doctest: +SKIP
...     hv.load(Guest.from_elf(example_guest_path("hypercalls")))
...     for exit in hv.exits():
...         print(exit.reason)
...         exit.resume(x0=42)
"""

from __future__ import annotations

import atexit
import contextlib
import weakref
from collections.abc import Callable, Generator, Iterator, Sequence
from pathlib import Path
from typing import Any

from . import _core
from .errors import (
    ArmvcpuError,
    GdbProtocolError,
    GuestImageError,
    GuestTimeout,
    QemuError,
    SessionClosedError,
    TargetConnectionError,
)
from .exits import Exit
from .firmware import Firmware
from .gdbstub import GdbRemote
from .guest import Guest
from .qemu import QemuConfig, QemuProcess

_live_sessions: weakref.WeakSet[Hypervisor] = weakref.WeakSet()


@atexit.register
def _close_all_sessions() -> None:
    for hv in list(_live_sessions):
        hv.close()


class Hypervisor:
    """QEMU's ``virt`` machine at EL2 running the armvcpu firmware, owned by this object.

    Use it as a context manager; QEMU is stopped when the block ends, however
    it ends. ``exits()`` yields each VM exit the firmware hands to the host.

    Args:
        firmware: the firmware ELF (default: the one this package carries).
        qemu: the QEMU binary.
        cpu: QEMU's ``-cpu`` model.
        memory_mb: machine RAM; the firmware carves guest RAM out of it.
        timeout: seconds to wait for the next exit before :class:`GuestTimeout`.
        extra_args: more QEMU arguments, appended as given.
    """

    def __init__(
        self,
        *,
        firmware: str | Path | None = None,
        qemu: str = "qemu-system-aarch64",
        cpu: str = "max",
        memory_mb: int = 256,
        timeout: float = 10.0,
        extra_args: Sequence[str] = (),
    ) -> None:
        self.firmware = Firmware.load(firmware)
        self.config = QemuConfig(binary=qemu, cpu=cpu, memory_mb=memory_mb,
                                 extra_args=tuple(extra_args))  # fmt: skip
        self.timeout = timeout
        self.qemu: QemuProcess | None = None
        self.gdb: GdbRemote | None = None
        self.guest_config: Any = None
        self.last_exit: Exit | None = None
        self.exit_count = 0
        self._started = False
        self._finished = False  # QEMU has gone
        self._end_expected = False  # the last answered exit ends the VM
        self._closed = False

    # -- lifecycle ------------------------------------------------------------------

    def __enter__(self) -> Hypervisor:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> None:
        """Start QEMU halted, attach to its gdbstub and mark the host attached."""
        if self._closed:
            raise SessionClosedError("this Hypervisor session is closed")
        if self.qemu is not None:
            return
        _live_sessions.add(self)
        try:
            self.qemu = QemuProcess(self.config, self.firmware.path)
            self.qemu.wait_for_socket()
            self.gdb = GdbRemote.connect_unix(str(self.qemu.gdb_socket), timeout=self.timeout)
            self.gdb.handshake()
            raw = self.gdb.read_memory(self.firmware.guest_config, _core.GuestConfig.SIZE)
            self.guest_config = _core.GuestConfig.from_bytes(raw)
            self.gdb.write_memory(self.firmware.host_attached, (1).to_bytes(4, "little"))
            self.gdb.insert_breakpoint(self.firmware.host_handoff)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Stop QEMU and release everything; safe to call more than once."""
        self._closed = True
        if self.gdb is not None:
            self.gdb.close()
        if self.qemu is not None:
            self.qemu.terminate()
        _live_sessions.discard(self)

    @property
    def console(self) -> str:
        """Everything the firmware printed on its UART so far."""
        return self.qemu.console_text() if self.qemu is not None else ""

    @property
    def qemu_pid(self) -> int | None:
        return self.qemu.pid if self.qemu is not None else None

    def _require_gdb(self) -> GdbRemote:
        if self._closed or self.gdb is None or self.qemu is None:
            raise SessionClosedError(
                "the Hypervisor session is not running; use it in a with block"
            )
        return self.gdb

    # -- guest memory ---------------------------------------------------------------

    def ipa_to_pa(self, ipa: int, length: int = 1) -> int:
        """The physical address behind a guest address range (guest RAM only)."""
        cfg = self.guest_config
        if cfg is None:
            raise SessionClosedError("start the session first")
        if ipa < cfg.ipa_base or ipa + length > cfg.ipa_base + cfg.size or length < 0:
            raise GuestImageError(
                f"guest range [{ipa:#x}, {ipa + length:#x}) lies outside guest RAM "
                f"[{cfg.ipa_base:#x}, {cfg.ipa_base + cfg.size:#x})"
            )
        return int(cfg.pa_base + (ipa - cfg.ipa_base))

    def read_guest(self, ipa: int, length: int) -> bytes:
        return self._require_gdb().read_memory(self.ipa_to_pa(ipa, length), length)

    def write_guest(self, ipa: int, data: bytes) -> None:
        self._require_gdb().write_memory(self.ipa_to_pa(ipa, len(data)), data)

    def load(self, guest: Guest) -> None:
        """Copy a guest into guest RAM and make its entry point the vCPU's first PC."""
        gdb = self._require_gdb()
        if self._started:
            raise ArmvcpuError("load() must come before the first exits() call")
        for seg in guest.segments:
            self.ipa_to_pa(seg.addr, seg.memsz)  # range check before writing anything
        for seg in guest.segments:
            self.write_guest(seg.addr, seg.data)
            if seg.memsz > len(seg.data):
                self.write_guest(seg.addr + len(seg.data), bytes(seg.memsz - len(seg.data)))
        self.ipa_to_pa(guest.entry, 4)
        self.guest_config.entry = guest.entry
        self.guest_config.x0 = guest.x0
        gdb.write_memory(self.firmware.guest_config, self.guest_config.to_bytes())

    # -- running --------------------------------------------------------------------

    def exits(self, timeout: float | None = None) -> Iterator[Exit]:
        """Run the guest and yield each exit until the VM stops.

        Each exit must be answered (``resume()``/``stop()``) or it gets the
        firmware's default answer when the loop asks for the next one.
        """
        gdb = self._require_gdb()
        wait = self.timeout if timeout is None else timeout
        self._started = True
        while not self._finished:
            with self._target_errors():
                gdb.cont()
                stop = self._wait_for_exit(gdb, wait)
                if stop is None:
                    return
                raw = gdb.read_memory(self.firmware.exit_records, _core.ExitRecord.SIZE)
            record = _core.ExitRecord.from_bytes(raw)
            exit = Exit(record, self._answer)
            self.last_exit = exit
            self.exit_count += 1
            yield exit
            if not exit.resolved:
                exit.resume_default()

    def run(self, handler: Callable[[Exit], int | None] | None = None,
            timeout: float | None = None) -> list[Exit]:  # fmt: skip
        """Run to the end, calling ``handler(exit)`` for each exit.

        A handler that returns an int resumes the exit with that value in x0;
        one that returns None leaves the exit to its own answer, or the default.
        Returns every exit in order.
        """
        seen = []
        for exit in self.exits(timeout):
            seen.append(exit)
            if handler is None:
                continue
            value = handler(exit)
            if value is not None and not exit.resolved:
                exit.resume(x0=value)
        return seen

    @contextlib.contextmanager
    def _target_errors(self) -> Generator[None, None, None]:
        """A broken gdbstub connection because QEMU died becomes a QemuError."""
        try:
            yield
        except TargetConnectionError as exc:
            if self.qemu is not None and self.qemu.wait(1.0) is not None:
                self._finished = True
                raise QemuError(
                    f"{self.qemu.describe_exit()} while the VM was running; last exit: "
                    f"{self.last_exit!r}; firmware log:\n{self._console_tail()}"
                ) from exc
            raise

    def _answer(self, exit: Exit, frame_changed: bool) -> None:
        with self._target_errors():
            self._write_answer(exit, frame_changed)

    def _write_answer(self, exit: Exit, frame_changed: bool) -> None:
        gdb = self._require_gdb()
        record = exit.record
        base = self.firmware.exit_records + exit.vcpu_id * _core.ExitRecord.SIZE
        if frame_changed:
            gdb.write_memory(base, record.to_bytes())
        elif record.action != _core.HostAction.Default:  # the firmware preset Default
            offset = _core.ExitRecord.OFFSETS["action"]
            gdb.write_memory(base + offset, int(record.action).to_bytes(4, "little"))
        if record.action == _core.HostAction.Stop or (
            record.action == _core.HostAction.Default and _core.default_stops_vm(exit.kind)
        ):
            self._end_expected = True
        # Step over the breakpoint's NOP: QEMU would re-hit it on continue.
        gdb.write_register("pc", self.firmware.host_handoff + 4)

    def _wait_for_exit(self, gdb: GdbRemote, timeout: float) -> Any:
        """The stop at the hand-off breakpoint, or None when the VM has ended."""
        assert self.qemu is not None
        try:
            stop = gdb.wait_stop(timeout)
        except TimeoutError:
            raise self._timeout_error(gdb, timeout) from None
        except TargetConnectionError:
            return self._ended_or_died()
        if stop.running_ended:
            self.qemu.wait(5.0)
            return self._ended_or_died()
        pc = gdb.read_register("pc")
        if pc != self.firmware.host_handoff:
            raise GdbProtocolError(
                f"target stopped at {pc:#x}, not at the exit hand-off "
                f"({self.firmware.host_handoff:#x}); firmware log:\n{self._console_tail()}"
            )
        return stop

    def _ended_or_died(self) -> None:
        """QEMU is gone: a normal end after SystemDown/stop, otherwise an error."""
        assert self.qemu is not None
        self._finished = True
        self.qemu.wait(5.0)
        if self._end_expected:
            return None
        raise QemuError(
            f"{self.qemu.describe_exit()} before the VM stopped; last exit: "
            f"{self.last_exit!r}; firmware log:\n{self._console_tail()}"
        )

    def _timeout_error(self, gdb: GdbRemote, timeout: float) -> GuestTimeout:
        where = ""
        try:
            gdb.interrupt()
            gdb.wait_stop(2.0)
            where = f"; the CPU is now at pc={gdb.read_register('pc'):#x}"
        except (TimeoutError, ArmvcpuError):
            pass
        return GuestTimeout(
            f"the guest made no exit within {timeout:g} s (exits so far: {self.exit_count}; "
            f"last: {self.last_exit!r}){where}"
        )

    def _console_tail(self, lines: int = 10) -> str:
        return "\n".join(self.console.splitlines()[-lines:])
