"""How exit records travel between the firmware and the host.

Two transports move the same record (``_core.ExitRecord``):

* :class:`GdbTransport` — the firmware calls ``armvcpu_host_handoff``; the host
  holds a breakpoint there and reads/writes the record with gdbstub packets.
  Works with any GDB remote target (QEMU, or a board behind OpenOCD).
* :class:`SharedMemoryTransport` — guest RAM is a shared file that the host
  maps; the firmware publishes ``seq`` with release ordering and spins until
  the host stores ``ack`` with release ordering. No packets per exit.
"""

from __future__ import annotations

import mmap
from typing import Any, Protocol

from . import _core
from .errors import GdbProtocolError, TargetConnectionError
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


class GdbTransport:
    name = "gdb"

    def __init__(self, gdb: GdbRemote, records: int, handoff: int, vcpus: int = 1) -> None:
        self.gdb = gdb
        self.records = records
        self.handoff = handoff
        self.running = False
        self.last_seqs = [0] * vcpus
        self._raws: list[bytes] = [b""] * vcpus  # each slot's record as last read
        self._thread: str | None = None  # the gdb thread (CPU) the registers go to

    def attach_value(self) -> int:
        return int(_core.HostTransport.Gdb)

    def prepare(self) -> None:
        self.gdb.insert_breakpoint(self.handoff)

    def _slot_of(self, thread: str | None) -> int:
        """QEMU numbers gdb threads by CPU, from 1 (``thread:02`` is CPU 1)."""
        if thread is None or len(self.last_seqs) == 1:
            return 0
        slot = int(thread.rsplit(".", 1)[-1], 16) - 1
        if not 0 <= slot < len(self.last_seqs):
            raise GdbProtocolError(f"stop reply names thread {thread}, not one of our CPUs")
        return slot

    def wait_record(self, timeout: float) -> tuple[int, bytes] | None:
        """Continue the CPUs (if stopped) and wait for one to stop at the hand-off.

        The hand-off breakpoint is the only one set, so a stop is an exit of
        the CPU the stop reply names; that CPU's record must carry a new seq.
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
        raw = gdb.read_memory(self.records + slot * RECORD_SIZE, RECORD_SIZE)
        seq = int.from_bytes(raw[_SEQ : _SEQ + 8], "little")
        if seq <= self.last_seqs[slot]:
            pc = gdb.read_register("pc")
            raise GdbProtocolError(
                f"target stopped at {pc:#x} without a new exit record (seq {seq}); "
                f"the hand-off is at {self.handoff:#x}"
            )
        self.last_seqs[slot] = seq
        self._raws[slot] = raw
        return slot, raw

    def answer(self, slot: int, record: Any, frame_changed: bool) -> None:
        """Write what the host changed in the record (one span, from the first
        to the last byte that differs) and the PC. The packets are pipelined;
        the continue in the next wait_record() collects their replies."""
        gdb = self.gdb
        old = self._raws[slot]
        new = record.to_bytes()
        diff = int.from_bytes(old, "little") ^ int.from_bytes(new, "little")
        if diff:
            lo = ((diff & -diff).bit_length() - 1) >> 3
            hi = (diff.bit_length() + 7) >> 3
            gdb.post_write_memory(self.records + slot * RECORD_SIZE + lo, new[lo:hi])
        # Step that CPU over the breakpoint's NOP: QEMU would re-hit it on
        # continue.
        if len(self.last_seqs) > 1 and self._thread is not None:
            gdb.post_select_thread(self._thread)
        gdb.post_write_register("pc", self.handoff + 4)


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
        action_at = base + OFFSETS["action"]
        self.ram[action_at : action_at + 4] = int(record.action).to_bytes(4, "little")
        _core.mailbox_store(self.ram, base + OFFSETS["ack"], record.seq)
