"""Exits made at the same moment on several CPUs, over the gdb transport.

QEMU's gdbstub names one CPU per stop (the last one that stopped); with the
watchpoint hand-off a CPU whose stop went unreported twice ran on past the
hand-off with no answer, and its exit was lost (the host never saw it; the
guest got the firmware's default). Here every VM counts its hypercalls and
checks each answer, so every exit is accounted for: the host sees each
VM's calls 0..COUNT-1 in order, each exactly once, and every guest sees
every answer it expects.

``ARMVCPU_STRESS_RUNS`` repeats each case (default 2, so the suite stays
short); the stress run in the notes uses many more.
"""

from __future__ import annotations

import os
from collections import defaultdict

import pytest
from armvcpu import ExitKind, Guest, Hypervisor
from armvcpu.session.transport import GdbTransport

COUNT = 150
RUNS = int(os.environ.get("ARMVCPU_STRESS_RUNS", "2"))

# x0 (GuestConfig.x0) is the VM's tag. Hypercall 5 (tag, i) must return
# i + 1; then hypercall 6 (tag, COUNT) reports the end, or hypercall 7
# (tag, i) a wrong answer, and the VM powers off.
COUNTING_GUEST = """
    mov x19, x0
    mov x20, #0
    ldr x21, ={count}
1:  mov x0, #5
    mov x1, x19
    mov x2, x20
    hvc #0
    add x3, x20, #1
    cmp x0, x3
    b.ne 2f
    add x20, x20, #1
    cmp x20, x21
    b.ne 1b
    mov x0, #6
    b 3f
2:  mov x0, #7
3:  mov x1, x19
    mov x2, x20
    hvc #0
    ldr x0, =0x84000008
    hvc #0
"""


Calls = dict[int, list[int]]
Ends = dict[int, tuple[int, int]]


def run_counting_vms(vms: int, handoff: str) -> tuple[Calls, Ends, GdbTransport]:
    """Each of `vms` VMs (one CPU each) makes COUNT hypercalls at once;
    the host's answers and what every VM reported."""
    base = Guest.from_asm(COUNTING_GUEST.format(count=COUNT))
    calls: dict[int, list[int]] = defaultdict(list)
    ends: dict[int, tuple[int, int]] = {}
    with Hypervisor(smp=vms, transport="gdb", handoff=handoff) as hv:  # type: ignore[arg-type]
        hv.load(Guest(base.segments, base.entry, "vm1", x0=1))
        for tag in range(2, vms + 1):
            hv.add_vm(Guest(base.segments, base.entry, f"vm{tag}", x0=tag))
        assert isinstance(hv.transport, GdbTransport)
        for exit in hv.exits():
            if exit.kind != ExitKind.Hypercall:
                continue
            nr, (tag, i, *_) = exit.reason.nr, exit.reason.args
            assert tag == exit.vm_id
            if nr == 5:
                calls[tag].append(i)
                exit.resume(x0=i + 1)
            else:
                ends[tag] = (nr, i)
                exit.resume(x0=0)
        transport = hv.transport
    return dict(calls), ends, transport


@pytest.mark.parametrize("run", range(RUNS))
@pytest.mark.parametrize(
    ("vms", "handoff"), [(2, "watchpoint"), (3, "watchpoint"), (2, "breakpoint")]
)
def test_every_concurrent_exit_reaches_the_host_once(vms, handoff, run, no_leaked_qemu):
    calls, ends, transport = run_counting_vms(vms, handoff)
    assert transport.mode == handoff
    for tag in range(1, vms + 1):
        assert calls[tag] == list(range(COUNT)), f"VM {tag}"
        assert ends[tag] == (6, COUNT), f"VM {tag} saw a wrong answer"


def test_auto_takes_the_watchpoint_with_several_cpus(no_leaked_qemu):
    """Safe now with several CPUs, so auto takes the faster hand-off."""
    calls, ends, transport = run_counting_vms(2, "auto")
    assert (transport.requested_mode, transport.mode) == ("auto", "watchpoint")
    assert calls == {1: list(range(COUNT)), 2: list(range(COUNT))}
    assert ends == {1: (6, COUNT), 2: (6, COUNT)}
