"""Hypervisor.attach(): the same API against a GDB remote target that this
session did not start (here a QEMU on a loopback TCP port, standing in for a
board behind OpenOCD's gdbserver)."""

from __future__ import annotations

import armvcpu
import pytest
from armvcpu import ExitKind, Hypervisor

from .conftest import free_port


def test_attach_runs_the_example_guest(remote_target, hypercalls_guest):
    address, qemu = remote_target
    with Hypervisor.attach(address) as hv:
        assert hv.qemu_pid is None  # not ours
        hv.load(hypercalls_guest)
        exits = hv.run(lambda e: 3 if e.kind == ExitKind.Hypercall else None)
    assert [e.kind for e in exits][-1] == ExitKind.SystemDown
    checksum = 0
    for _ in range(8):
        checksum = (checksum * 31 + 3) & (2**64 - 1)
    assert exits[8].reason.args[0] == checksum
    assert qemu.wait(10) == 0  # the target powered itself off


def test_attach_to_nothing_is_a_clear_error():
    with pytest.raises(armvcpu.TargetConnectionError, match="cannot reach"):
        Hypervisor.attach(f"127.0.0.1:{free_port()}").start()
    with pytest.raises(ValueError, match="host:port"):
        Hypervisor.attach("no-port-here").start()
