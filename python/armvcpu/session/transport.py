"""How exit records travel between the firmware and the host.

Two transports move the same record (``_core.ExitRecord``):

* :class:`GdbTransport` — the firmware calls ``armvcpu_host_handoff``; the host
  stops the CPU there (a write watchpoint on the doorbell it stores, or a
  breakpoint) and reads/writes the record with gdbstub packets. Works with
  any GDB remote target (QEMU, or a board behind OpenOCD).
* :class:`SharedMemoryTransport` — guest RAM is a shared file that the host
  maps; the firmware publishes ``seq`` with release ordering and spins until
  the host stores ``ack`` with release ordering. No packets per exit.
"""

from __future__ import annotations

import mmap
from typing import Any, Literal, Protocol

from .. import _core
from ..errors import GdbProtocolError, TargetConnectionError
from .gdbstub import GdbRemote

RECORD_SIZE: int = _core.ExitRecord.SIZE
OFFSETS: dict[str, int] = dict(_core.ExitRecord.OFFSETS)
_SEQ = OFFSETS["seq"]


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

    ``"auto"`` (the default) takes the watchpoint when the target has one CPU,
    the firmware has the doorbell and the target accepts the watchpoint, else
    the breakpoint.
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
        self._raws: list[bytes] = [b""] * vcpus  # each slot's record as last read
        self._thread: str | None = None  # the gdb thread (CPU) the registers go to
        # Where the stopped CPU must go on (None: where it stands); for the
        # watchpoint, learnt at its first stop.
        self._resume_pc: int | None = handoff + 4
        self._pc_write: bytes | None = None  # the P packet that puts it there
        self._calibrated = True
        #: With vCPUs time-sharing CPUs: the firmware's armvcpu_current_slot,
        #: each CPU's vCPU slot (a stopped CPU's record is its slot's).
        self.slot_map: int | None = None

    @property
    def resume_pc(self) -> int | None:
        """Where the host puts a stopped CPU's PC before it continues (past the
        breakpoint's NOP or the doorbell store); None when it stays put."""
        return self._resume_pc

    def attach_value(self) -> int:
        return int(_core.HostTransport.Gdb)

    def prepare(self) -> None:
        """Set the hand-off's watchpoint or breakpoint (the CPU is stopped).

        ``"auto"`` takes the watchpoint only with one CPU: with two VMs making
        exits at once on two CPUs, one exit was seen to go unreported under the
        watchpoint (a race not yet understood), never under the breakpoint.
        """
        if self.requested_mode == "auto" and len(self.last_seqs) > 1:
            self.gdb.insert_breakpoint(self.handoff)
            self.mode = "breakpoint"
            return
        if self.requested_mode != "breakpoint":
            if self.doorbell is None or self.doorbell_store is None:
                if self.requested_mode == "watchpoint":
                    raise GdbProtocolError(
                        "this firmware has no armvcpu_host_doorbell: use handoff='breakpoint'"
                    )
            elif self.gdb.insert_watchpoint(self.doorbell, 8):
                self.mode = "watchpoint"
                self._calibrated = False
                return
            elif self.requested_mode == "watchpoint":
                raise GdbProtocolError(
                    "the target refused a write watchpoint on armvcpu_host_doorbell; "
                    "use handoff='breakpoint'"
                )
        self.gdb.insert_breakpoint(self.handoff)
        self.mode = "breakpoint"

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

    def wait_record(self, timeout: float) -> tuple[int, bytes] | None:
        """Continue the CPUs (if stopped) and wait for one to stop at the hand-off.

        The hand-off's watchpoint or breakpoint is the only one set, so a stop
        is an exit of the CPU the stop reply names; that CPU's record must
        carry a new seq.
        """
        gdb = self.gdb
        if not self.running:
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
        slot = self._slot_of(stop.thread)
        self._thread = stop.thread
        base = self.records + slot * RECORD_SIZE
        raw = gdb.read_memory(base, RECORD_SIZE) if self._calibrated else self._calibrate(base)
        seq = int.from_bytes(raw[_SEQ : _SEQ + 8], "little")
        if seq <= self.last_seqs[slot]:
            pc = gdb.read_register("pc")
            raise GdbProtocolError(
                f"target stopped at {pc:#x} without a new exit record (seq {seq}); "
                f"the hand-off is at {self.handoff:#x} ({self.mode})"
            )
        self.last_seqs[slot] = seq
        self._raws[slot] = raw
        return slot, raw

    def _calibrate(self, base: int) -> bytes:
        """At the first watchpoint stop: did the target stop before the
        doorbell store (Arm, QEMU) or after it? Reads the record too."""
        assert self.doorbell_store is not None
        gdb = self.gdb
        pc_reg = gdb.registers["pc"].number
        requests = [b"m%x,%x" % (base, RECORD_SIZE), b"p%x" % pc_reg]
        if len(self.last_seqs) > 1 and self._thread is not None:
            requests.insert(0, b"Hg%s" % self._thread.encode())
        replies = gdb.requests(requests)
        pc = int.from_bytes(bytes.fromhex(replies[-1]), "little")
        self._pc_write = None
        if pc == self.doorbell_store:
            self._resume_pc = self.doorbell_store + 4
        elif pc == self.doorbell_store + 4:
            self._resume_pc = None
        else:
            raise GdbProtocolError(
                f"the hand-off's watchpoint stopped the CPU at {pc:#x}, neither at nor after "
                f"the doorbell store ({self.doorbell_store:#x}); use handoff='breakpoint'"
            )
        self._calibrated = True
        return bytes.fromhex(replies[-2])

    def answer(self, slot: int, record: Any, frame_changed: bool) -> None:
        """Write what the host changed in the record (one span, from the first
        to the last byte that differs) and, when the CPU must move on from
        where it stopped, its PC. The packets are pipelined; the continue in
        the next wait_record() collects their replies."""
        gdb = self.gdb
        old = self._raws[slot]
        new = record.to_bytes()
        diff = int.from_bytes(old, "little") ^ int.from_bytes(new, "little")
        if diff:
            lo = ((diff & -diff).bit_length() - 1) >> 3
            hi = (diff.bit_length() + 7) >> 3
            gdb.post_write_memory(self.records + slot * RECORD_SIZE + lo, new[lo:hi])
        if self._resume_pc is not None:
            # Past the breakpoint's NOP (QEMU would hit it again on continue)
            # or the doorbell store (it would hit the watchpoint again).
            if len(self.last_seqs) > 1 and self._thread is not None:
                gdb.post_select_thread(self._thread)
            if self._pc_write is None:
                reg = gdb.registers["pc"]
                value = self._resume_pc.to_bytes(reg.bitsize // 8, "little")
                self._pc_write = b"P%x=%s" % (reg.number, value.hex().encode())
            gdb.post(self._pc_write)


_INJECT_ABORT = (_core.HostAction.InjectDataAbort, _core.HostAction.InjectInstructionAbort)


class SharedMemoryTransport:
    name = "shm"

    def __init__(self, ram: mmap.mmap, ram_base: int, records: int, vcpus: int = 1) -> None:
        self.ram = ram
        self.offset = records - ram_base
        self.vcpus = vcpus
        self.last_seqs = [0] * vcpus
        self._seq_offsets = [self.offset + i * RECORD_SIZE + OFFSETS["seq"] for i in range(vcpus)]

    def attach_value(self) -> int:
        return int(_core.HostTransport.SharedMemory)

    def wait_record(self, timeout: float) -> tuple[int, bytes] | None:
        if self.vcpus == 1:
            seq = _core.mailbox_wait(self.ram, self._seq_offsets[0], self.last_seqs[0], timeout)
            if seq == self.last_seqs[0]:
                return None
            self.last_seqs[0] = seq
            return 0, bytes(self.ram[self.offset : self.offset + RECORD_SIZE])
        found = _core.mailbox_wait_any(self.ram, self._seq_offsets, self.last_seqs, timeout)
        if found is None:
            return None
        index, seq = found
        self.last_seqs[index] = seq
        base = self.offset + index * RECORD_SIZE
        return int(index), bytes(self.ram[base : base + RECORD_SIZE])

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
