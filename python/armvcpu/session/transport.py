"""How exit records travel between the firmware and the host.

Two transports move the same record (``_core.ExitRecord``):

* :class:`GdbTransport` — the firmware calls ``armvcpu_host_handoff``; the host
  stops the CPU there (a write watchpoint on the doorbell it stores, or a
  breakpoint) and reads/writes the record with gdbstub packets. Works with
  any GDB remote target (QEMU, or a board behind OpenOCD).
* :class:`SharedMemoryTransport` — guest RAM is a shared file that the host
  maps; the firmware publishes ``seq`` with release ordering and spins until
  the host stores ``ack`` with release ordering. No packets per exit. The
  host spins briefly for the next exit, then sleeps: in poll() on a doorbell
  the firmware rings (:meth:`SharedMemoryTransport.use_doorbell`), or in
  growing steps without one.
"""

from __future__ import annotations

import mmap
import socket
from typing import Any, Literal, Protocol

from .. import _core
from ..errors import GdbProtocolError, TargetConnectionError
from .gdbstub import GdbRemote

RECORD_SIZE: int = _core.ExitRecord.SIZE
OFFSETS: dict[str, int] = dict(_core.ExitRecord.OFFSETS)
_SEQ = OFFSETS["seq"]
_ACK = OFFSETS["ack"]


class Transport(Protocol):
    """What the Hypervisor needs from a transport."""

    name: str

    def attach_value(self) -> int:
        """The HostTransport value to write into armvcpu_host_attached."""
        ...

    def wait_record(self, timeout: float) -> tuple[int, bytes] | None:
        """The next exit record: (its slot, its bytes); None when none came
        within timeout. Raises TargetConnectionError when the target has gone.
        """
        ...

    def answer(self, slot: int, record: Any, frame_changed: bool) -> None:
        """Hand the answered record back and let the vCPU go on."""
        ...


HandoffMode = Literal["auto", "watchpoint", "breakpoint"]


class GdbTransport:
    """Exits through a GDB remote target: the CPU stops in the firmware's
    hand-off, the host reads the record, writes the answer and continues.

    The CPU is stopped by one of two hand-offs (``handoff``):

    * ``"watchpoint"``: a write watchpoint on ``armvcpu_host_doorbell``, which
      the hand-off stores. With QEMU this is several times faster: QEMU throws
      away all translated code at every breakpoint stop, not at a watchpoint
      stop. Arm (and QEMU) stop before the store, so the host moves the PC
      past it; a target that stops after it needs no PC write.
    * ``"breakpoint"``: a breakpoint on the hand-off's NOP, which the host
      steps over by moving the PC. Any target that has breakpoints.

    ``"auto"`` (the default) takes the watchpoint when the firmware has the
    doorbell and the target accepts the watchpoint, else the breakpoint.

    Several CPUs: a stop reply names one CPU, but others may have stopped at
    the same moment, and QEMU reports only the last (its gdbstub keeps one
    stop CPU). A CPU whose watchpoint stop went unreported is let through
    the store when it runs again and stops after it, and if that stop goes
    unreported too it would run on past the hand-off. So the hand-off waits
    until the host acknowledges the record (``ack = seq``, as with shared
    memory), and at every stop the host looks at every CPU's record: each
    one with a new ``seq`` is an exit, whether or not the stop reply named
    its CPU. A stop with nothing new (a CPU coming back to an exit already
    answered) is passed over.
    """

    name = "gdb"

    def __init__(self, gdb: GdbRemote, records: int, handoff: int, vcpus: int = 1, *,
                 doorbell: int | None = None, doorbell_store: int | None = None,
                 mode: HandoffMode = "auto") -> None:  # fmt: skip
        if mode not in ("auto", "watchpoint", "breakpoint"):
            raise ValueError(f"handoff must be 'auto', 'watchpoint' or 'breakpoint', not {mode!r}")
        self.gdb = gdb
        self.records = records
        self.handoff = handoff
        self.doorbell = doorbell
        self.doorbell_store = doorbell_store
        self.requested_mode = mode
        self.mode: str = "breakpoint"  # the hand-off in use, once prepare() has run
        self.running = False
        self.last_seqs = [0] * vcpus
        #: Stops that brought no new record (a CPU back at an exit already
        #: answered, after its own stop went unreported), passed over.
        self.spurious_stops = 0
        #: Exits found in a record whose CPU the stop reply did not name.
        self.unreported_exits = 0
        self._raws: list[bytes] = [b""] * vcpus  # each slot's record as last read
        self._pending: list[tuple[int, bytes]] = []  # found at this stop, not yet delivered
        self._thread: str | None = None  # the gdb thread (CPU) the registers go to
        self._stop_pc = handoff  # where the hand-off stops a CPU (NOP or doorbell store)
        self._resume_pc: int | None = None  # where the stopped CPU must go on; None: stay
        self._pc_write: bytes | None = None  # the P packet that puts it there
        self._move_pc = False  # the P packet goes out before the next continue
        self._calibrated = True
        #: With vCPUs time-sharing CPUs: the firmware's armvcpu_current_slot,
        #: each CPU's vCPU slot (a stopped CPU's record is its slot's).
        self.slot_map: int | None = None

    @property
    def resume_pc(self) -> int | None:
        """Where the host put the last stopped CPU's PC before it continued
        (past the breakpoint's NOP or the doorbell store); None when it stayed
        put (a target that stops after the watched store)."""
        return self._resume_pc

    def attach_value(self) -> int:
        return int(_core.HostTransport.Gdb)

    def prepare(self) -> None:
        """Set the hand-off's watchpoint or breakpoint (the CPU is stopped)."""
        if self.requested_mode != "breakpoint":
            if self.doorbell is None or self.doorbell_store is None:
                if self.requested_mode == "watchpoint":
                    raise GdbProtocolError(
                        "this firmware has no armvcpu_host_doorbell: use handoff='breakpoint'"
                    )
            elif self.gdb.insert_watchpoint(self.doorbell, 8):
                self.mode = "watchpoint"
                self._stop_pc = self.doorbell_store
                return
            elif self.requested_mode == "watchpoint":
                raise GdbProtocolError(
                    "the target refused a write watchpoint on armvcpu_host_doorbell; "
                    "use handoff='breakpoint'"
                )
        self.gdb.insert_breakpoint(self.handoff)
        self.mode = "breakpoint"
        self._stop_pc = self.handoff

    def _slot_of(self, thread: str | None) -> int:
        """QEMU numbers gdb threads by CPU, from 1 (``thread:02`` is CPU 1)."""
        if thread is None or len(self.last_seqs) == 1:
            return 0
        slot = int(thread.rsplit(".", 1)[-1], 16) - 1
        if self.slot_map is not None and 0 <= slot < 8:
            return self.gdb.read_memory(self.slot_map + slot, 1)[0]
        if not 0 <= slot < len(self.last_seqs):
            raise GdbProtocolError(f"stop reply names thread {thread}, not one of our CPUs")
        return slot

    def _in_handoff(self, pc: int) -> bool:
        """The hand-off has its 4 KiB page to itself (firmware/handoff.S)."""
        return pc >> 12 == self.handoff >> 12

    def wait_record(self, timeout: float) -> tuple[int, bytes] | None:
        """The next exit record: one found at the last stop and not delivered
        yet (the CPUs stay stopped), or continue the CPUs and wait for a stop
        that brings one."""
        if self._pending:
            return self._pending.pop(0)
        gdb = self.gdb
        while True:
            if not self.running:
                self._post_pc_write()
                gdb.cont()
                self.running = True
            try:
                # Its '+' goes out with the record's read, at once.
                stop = gdb.wait_stop(timeout, ack_now=False)
            except TimeoutError:
                return None
            self.running = False
            if stop.running_ended:
                raise TargetConnectionError(f"the target exited ({stop.raw})")
            if self._collect(stop.thread):
                return self._pending.pop(0)
            self.spurious_stops += 1

    def _collect(self, thread: str | None) -> bool:
        """At a stop: the stopped CPU's PC and every record with a new seq, in
        one round trip; the PC moved past the hand-off's stop instruction.
        True when a record came."""
        gdb = self.gdb
        slots = len(self.last_seqs)
        slot = self._slot_of(thread)
        self._thread = thread
        requests = [b"m%x,%x" % (self.records + s * RECORD_SIZE, RECORD_SIZE) for s in range(slots)]
        requests.append(b"p%x" % gdb.registers["pc"].number)
        if slots > 1 and thread is not None:
            requests.insert(0, b"Hg%s" % thread.encode())  # the PC (and writes) of this CPU
        replies = gdb.requests(requests)
        pc = int.from_bytes(bytes.fromhex(replies[-1]), "little")
        raws = [bytes.fromhex(r) for r in replies[-1 - slots : -1]]
        for s, raw in enumerate(raws):
            if len(raw) != RECORD_SIZE:
                raise GdbProtocolError(f"short read of exit record {s}: {len(raw)} bytes")
            seq = int.from_bytes(raw[_SEQ : _SEQ + 8], "little")
            if seq > self.last_seqs[s]:
                if s != slot:
                    self.unreported_exits += 1
                self.last_seqs[s] = seq
                self._raws[s] = raw
                self._pending.append((s, raw))
        if not self._in_handoff(pc):
            if self.mode == "watchpoint":
                raise GdbProtocolError(
                    f"the hand-off's watchpoint stopped the CPU at {pc:#x}, neither at nor after "
                    f"the doorbell store ({self.doorbell_store:#x}); use handoff='breakpoint'"
                )
            raise GdbProtocolError(
                f"target stopped at {pc:#x} without a new exit record (seq "
                f"{self.last_seqs[slot]}); the hand-off is at {self.handoff:#x} ({self.mode})"
            )
        if pc == self._stop_pc:
            # Past the breakpoint's NOP (QEMU would hit it again on continue)
            # or the doorbell store (it would hit the watchpoint again).
            self._resume_pc = pc + 4
            if self._pc_write is None:
                reg = gdb.registers["pc"]
                value = self._resume_pc.to_bytes(reg.bitsize // 8, "little")
                self._pc_write = b"P%x=%s" % (reg.number, value.hex().encode())
            self._move_pc = True
        else:
            self._resume_pc = None  # stopped after the store: it goes on from there
        return bool(self._pending)

    def answer(self, slot: int, record: Any, frame_changed: bool) -> None:
        """Write what the host changed in the record (one span, from the first
        to the last byte that differs: the answer and ``ack = seq``, which
        releases the CPU waiting in the hand-off). The packets are pipelined;
        the continue in the next wait_record() collects their replies."""
        old = self._raws[slot]
        new = record.to_bytes()
        new = new[:_ACK] + bytes(old[_SEQ : _SEQ + 8]) + new[_ACK + 8 :]  # ack = seq
        diff = int.from_bytes(old, "little") ^ int.from_bytes(new, "little")
        if diff:
            lo = ((diff & -diff).bit_length() - 1) >> 3
            hi = (diff.bit_length() + 7) >> 3
            self.gdb.post_write_memory(self.records + slot * RECORD_SIZE + lo, new[lo:hi])
        self._post_pc_write()

    def release(self, host_attached: int) -> None:
        """Before the host detaches (the CPUs stopped): from now on the
        firmware answers every exit itself (``armvcpu_host_attached`` =
        None), and a CPU waiting in the hand-off gets the default it was
        preset with (``ack = seq`` in every record)."""
        gdb = self.gdb
        self._post_pc_write()
        gdb.post_write_memory(host_attached, int(_core.HostTransport.None_).to_bytes(4, "little"))
        for slot in range(len(self.last_seqs)):
            base = self.records + slot * RECORD_SIZE
            seq = gdb.read_memory(base + _SEQ, 8)
            gdb.post_write_memory(base + _ACK, seq)
        gdb.drain()

    def _post_pc_write(self) -> None:
        if self._move_pc:
            assert self._pc_write is not None
            self.gdb.post(self._pc_write)
            self._move_pc = False


_INJECT_ABORT = (_core.HostAction.InjectDataAbort, _core.HostAction.InjectInstructionAbort)


class SharedMemoryTransport:
    name = "shm"

    def __init__(self, ram: mmap.mmap, ram_base: int, records: int, vcpus: int = 1) -> None:
        self.ram = ram
        self.offset = records - ram_base
        self.vcpus = vcpus
        self.last_seqs = [0] * vcpus
        #: Where each slot's record is in the mapping.
        self.record_offsets = [self.offset + i * RECORD_SIZE for i in range(vcpus)]
        self._seq_offsets = [base + OFFSETS["seq"] for base in self.record_offsets]
        #: What the C++ waits take for the doorbell: its fd (-1: none) and
        #: the offset of the firmware's ``armvcpu_host_sleeping`` word.
        self.doorbell_fd = -1
        self.sleeping_offset: int | None = None
        self._doorbell: socket.socket | None = None

    def use_doorbell(self, conn: socket.socket, sleeping: int, ram_base: int) -> None:
        """Sleep on ``conn`` (QEMU's semihosting output) between exits; the
        firmware rings it while its word at address ``sleeping`` is 1."""
        conn.setblocking(False)
        self._doorbell = conn
        self.doorbell_fd = conn.fileno()
        self.sleeping_offset = sleeping - ram_base

    def attach_value(self) -> int:
        return int(_core.HostTransport.SharedMemory)

    def wait_record(self, timeout: float) -> tuple[int, bytes] | None:
        slot = self.wait_slot(timeout)
        if slot is None:
            return None
        base = self.record_offsets[slot]
        return slot, bytes(self.ram[base : base + RECORD_SIZE])

    def wait_slot(self, timeout: float) -> int | None:
        """The slot (physical CPU) of the next exit record, which stays in the
        mapping at ``record_offsets[slot]`` until answered; None when none came
        within timeout."""
        if self.vcpus == 1:
            seq = _core.mailbox_wait(self.ram, self._seq_offsets[0], self.last_seqs[0], timeout,
                                     self.doorbell_fd, self.sleeping_offset)  # fmt: skip
            if seq == self.last_seqs[0]:
                return None
            self.last_seqs[0] = seq
            return 0
        found = _core.mailbox_wait_any(self.ram, self._seq_offsets, self.last_seqs, timeout,
                                       self.doorbell_fd, self.sleeping_offset)  # fmt: skip
        if found is None:
            return None
        index, seq = found
        self.last_seqs[index] = seq
        return int(index)

    def answer(self, slot: int, record: Any, frame_changed: bool) -> None:
        base = self.offset + slot * RECORD_SIZE
        if frame_changed:
            frame_at = base + OFFSETS["frame"]
            self.ram[frame_at : frame_at + _core.TrapFrame.SIZE] = record.frame.to_bytes()
        if record.action in _INJECT_ABORT:
            far_at = base + OFFSETS["far"]  # FAR_EL1 of the abort, which the host may set
            self.ram[far_at : far_at + 8] = int(record.far).to_bytes(8, "little")
        action_at = base + OFFSETS["action"]
        self.ram[action_at : action_at + 4] = int(record.action).to_bytes(4, "little")
        _core.mailbox_store(self.ram, base + OFFSETS["ack"], record.seq)
