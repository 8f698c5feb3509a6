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


# -- ExitStream: Hypervisor.exits()' shared-memory loop in one call per exit --


def stream_over(ram: mmap.mmap, lasts: list[int], resolver=None, session=None):
    if resolver is None:
        resolver = lambda e, changed: None  # noqa: E731
    return _core.exit_stream(Exit, ram, [BASE], lasts, resolver, session, -1, None)


def publish(ram: mmap.mmap, seq: int) -> None:
    _core.mailbox_store(ram, BASE + OFF["seq"], seq)


def test_stream_hands_out_each_new_record_once_as_an_exit():
    ram = shared_record(seq=7)
    lasts = [0]
    session = object()
    stream = stream_over(ram, lasts, session=session)
    exit = stream.next(5.0)
    assert type(exit) is Exit
    assert (exit.seq, exit.slot, exit.kind) == (7, 0, _core.ExitKind.Hypercall)
    assert exit.session is session and exit.frame.gpr(1) == 11 and exit.delivered_ns > 0
    assert lasts == [7]  # the transport's list, updated in place
    exit.resume(x0=3)
    assert word(ram, "ack") == 7 and word(ram, "frame", 0) == 3
    # Nothing new published: no exit, after the timeout (here none at all).
    assert stream.next(0.0) is None
    publish(ram, 8)
    assert stream.next(5.0).seq == 8 and lasts == [8]


def test_stream_answers_an_exit_left_open_with_the_default_before_it_waits():
    ram = shared_record(seq=1)
    stream = stream_over(ram, [0])
    first = stream.next(5.0)
    assert stream.next(0.0) is None  # nothing new, but the open exit got its answer
    assert first.resolved and first.record.action == _core.HostAction.Default
    assert word(ram, "ack") == 1 and word(ram, "action", size=4) == int(_core.HostAction.Default)


def test_stream_gives_an_open_exit_whose_default_stops_the_vm_to_the_session_and_returns():
    ram = shared_record(seq=1, kind=int(_core.ExitKind.GuestException))
    seen = []
    stream = stream_over(ram, [0], resolver=lambda e, changed: seen.append(e.record.action))
    first = stream.next(5.0)
    publish(ram, 2)  # a next record is there, yet the session must look at the end first
    assert stream.next(5.0) is None
    assert seen == [_core.HostAction.Default] and first.resolved
    assert stream.next(5.0).seq == 2


def test_stream_view_makes_the_exit_a_transport_found():
    ram = shared_record(seq=4)
    stream = stream_over(ram, [4])  # the transport already took seq 4
    exit = stream.view(0)
    assert exit.seq == 4 and exit.slot == 0
    stream.settle()
    assert exit.resolved and word(ram, "ack") == 4
    with pytest.raises(IndexError, match="no exit record 1"):
        stream.view(1)


def test_stream_refuses_bad_records_and_bad_set_ups():
    ram = shared_record(seq=1)
    ram[BASE : BASE + 4] = b"\0\0\0\0"  # no magic: not an exit record
    with pytest.raises(ValueError, match="not an exit record"):
        stream_over(ram, [0]).next(5.0)
    with pytest.raises(TypeError, match="subclass of it"):
        _core.exit_stream(int, ram, [BASE], [0], None, None, -1, None)
    with pytest.raises(ValueError, match="outside the shared mapping"):
        _core.exit_stream(Exit, ram, [4096 - 8], [0], None, None, -1, None)
    with pytest.raises(ValueError, match="one last seq per record"):
        _core.exit_stream(Exit, ram, [BASE], [0, 0], None, None, -1, None)
    with pytest.raises(ValueError, match="sleeping word"):
        _core.exit_stream(Exit, ram, [BASE], [0], None, None, 5, None)


def test_stream_holds_no_export_of_the_mapping_between_calls():
    ram = shared_record(seq=1)
    stream = stream_over(ram, [0])
    exit = stream.next(5.0)
    exit.resume()
    ram.close()  # the session closes its mapping at the end; a live stream must not stop it
    with pytest.raises(ValueError):
        stream.next(0.0)


def test_exit_kinds_compare_and_hash_by_value_as_any_enum_member_does():
    kinds = _core.ExitKind
    fresh = kinds(int(kinds.Halt))  # another object for the same member
    assert fresh is not kinds.Halt and fresh == kinds.Halt
    assert (fresh != kinds.Halt) is False  # __ne__ too
    assert hash(fresh) == hash(kinds.Halt) == int(kinds.Halt)
    assert {kinds.Halt: "halt"}[fresh] == "halt" and fresh in frozenset({kinds.Halt})
    assert kinds.Halt != kinds.Hypercall and (kinds.Halt == kinds.Hypercall) is False
    assert kinds.Halt != int(kinds.Halt) and kinds.Halt != None  # noqa: E711
    with pytest.raises(TypeError):
        _ = kinds.Halt < kinds.Hypercall  # an enum without order, as before
    exit = Exit(shared_record(), BASE, 0, None, None)
    assert exit.kind == kinds.Hypercall and exit.kind is exit.kind


@pytest.mark.parametrize(
    ("kind", "field"),
    [("Hypercall", "nr"), ("MmioRead", "addr"), ("MmioWrite", "addr"), ("SysRegRead", "addr"),
     ("SysRegWrite", "addr")],
)  # fmt: skip
def test_the_reason_fields_a_policy_matches_read_the_record(kind, field):
    ram = shared_record(kind=int(getattr(_core.ExitKind, kind)))
    at = BASE + OFF["reason"] + 8  # the variant's first field, after the kind
    ram[at : at + 8] = (0xFFFF_0000_0900_0010).to_bytes(8, "little")
    reason = Exit(ram, BASE, 0, None, None).reason
    assert type(reason).__name__ == kind and getattr(reason, field) == 0xFFFF_0000_0900_0010
    with pytest.raises(AttributeError):
        setattr(reason, field, 1)  # read-only, as before


def test_a_field_getter_refuses_an_object_of_another_type():
    exit = Exit(shared_record(), BASE, 0, None, None)
    with pytest.raises(TypeError, match="read from a"):
        _core.Hypercall.nr.fget(exit)
    with pytest.raises(TypeError, match="read from a"):
        _core.ExitView.kind.fget(exit.reason)
