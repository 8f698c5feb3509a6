"""The Exit as a view over a shared exit record (shared-memory transport):
copied once when it arrives, answered in place with only what changed and
the ack last. The mapping here is a real anonymous mmap laid out as the
firmware lays out its records (ExitRecord.OFFSETS); QEMU runs in the other
tests of the exit path."""

from __future__ import annotations

import mmap

import pytest
from armvcpu import _core
from armvcpu.exits import Exit

OFF = dict(_core.ExitRecord.OFFSETS)
SIZE = _core.ExitRecord.SIZE
BASE = 0x100  # the record's place in the mapping


def shared_record(seq: int = 7, kind: int = 1) -> mmap.mmap:
    """A published hypercall exit (kind 1) with x0..x2 = 10, 11, 12."""
    record = _core.ExitRecord()
    frame = record.frame
    for i in range(3):
        frame.set_gpr(i, 10 + i)
    frame.elr = 0x4020_0008
    record.frame = frame
    raw = bytearray(record.to_bytes())
    raw[OFF["seq"] : OFF["seq"] + 8] = seq.to_bytes(8, "little")
    raw[OFF["reason"] : OFF["reason"] + 4] = kind.to_bytes(4, "little")
    raw[OFF["elr"] : OFF["elr"] + 8] = (0x4020_0008).to_bytes(8, "little")
    ram = mmap.mmap(-1, 4096)
    ram[BASE : BASE + SIZE] = bytes(raw)
    return ram


def word(ram: mmap.mmap, field: str, index: int = 0, size: int = 8) -> int:
    at = BASE + OFF[field] + 8 * index
    return int.from_bytes(ram[at : at + size], "little")


def test_resume_writes_the_answer_in_place_and_the_ack_last():
    ram = shared_record()
    seen = []
    exit = Exit(ram, BASE, 0, lambda e, changed: seen.append(e), None)
    assert (exit.seq, exit.kind) == (7, _core.ExitKind.Hypercall)
    assert isinstance(exit.reason, _core.Hypercall) and exit.reason is exit.reason  # decoded once
    exit.resume(x0=5, x2=9)
    assert word(ram, "frame", 0) == 5 and word(ram, "frame", 1) == 11 and word(ram, "frame", 2) == 9
    assert word(ram, "action", size=4) == int(_core.HostAction.Resume)
    assert word(ram, "ack") == 7
    assert seen == []  # a resume needs no session round trip
    assert (
        exit.resolved and exit.frame.gpr(0) == 5 and exit.record.action == _core.HostAction.Resume
    )
    # The exit keeps the record as delivered after the firmware reuses the slot.
    ram[BASE + OFF["seq"] : BASE + OFF["seq"] + 8] = (8).to_bytes(8, "little")
    assert exit.seq == 7 and _core.ExitRecord.from_bytes(exit.raw).frame.gpr(0) == 10
    with pytest.raises(RuntimeError, match="exit #7 was already answered"):
        exit.resume()


def test_a_bad_register_changes_nothing():
    ram = shared_record()
    exit = Exit(ram, BASE, 0, lambda e, changed: None, None)
    with pytest.raises(KeyError, match="no register 'x31'"):
        exit.resume(x0=1, x31=2)
    with pytest.raises(TypeError, match="unsigned 64-bit"):
        exit.resume(x1=-1)
    assert not exit.resolved and word(ram, "ack") == 0 and word(ram, "frame", 0) == 10
    exit.frame.set_gpr(1, 42)  # an edit to the frame reaches the guest on resume
    exit.resume()
    assert word(ram, "frame", 1) == 42 and word(ram, "frame", 0) == 10


def test_stop_goes_through_the_session():
    ram = shared_record()
    seen = []
    exit = Exit(ram, BASE, 3, lambda e, changed: seen.append((e.slot, e.record.action)), None)
    exit.stop()
    assert seen == [(3, _core.HostAction.Stop)]
    assert word(ram, "ack") == 0  # the session's transport writes it


def test_resume_after_system_off_is_the_default_unless_the_pc_moves():
    ram = shared_record(kind=int(_core.ExitKind.SystemDown))
    seen = []
    exit = Exit(ram, BASE, 0, lambda e, changed: seen.append(e.record.action), None)
    exit.resume(x0=1)  # the edit dies with the VM
    assert seen == [_core.HostAction.Default] and exit.frame.gpr(0) == 10
    again = Exit(shared_record(kind=int(_core.ExitKind.SystemDown)), BASE, 0, None, None)
    again.resume(pc=0x4020_0000)  # a reset the host emulates
    assert again.record.action == _core.HostAction.Resume


def test_a_record_outside_the_mapping_is_refused():
    with pytest.raises(ValueError, match="outside the buffer"):
        Exit(mmap.mmap(-1, 256), 0, 0, None, None)
