"""The firmware's exit log when the host falls behind: the ring keeps the
newest entries, in order, and the reader counts what it lost.

vCPU 1 makes more logged exits (MMIO reads a fast rule answers inside EL2)
than its CPU's ring holds, while the host holds vCPU 0's exit and reads
nothing of the log; flags in guest RAM say when to start and when it is done,
so no step depends on how fast anything runs.
"""

from __future__ import annotations

import time

from armvcpu import ExitKind, Guest, Hypervisor, _core

RING = int(dict(_core.exit_log_layout())["entries"])  # entries per CPU
EXTRA = 1000  # exits made beyond what the ring holds
MADE = RING + EXTRA
MMIO = 0x0A00_0000  # unmapped for the guest: each read is an MMIO exit
STRIDE = 8
GO, DONE = 0x4010_0000, 0x4010_0008  # flags in guest RAM

GUEST = f"""
    ldr x0, =0xC4000003         // PSCI CPU_ON (answered in EL2)
    mov x1, #1
    adr x2, secondary
    mov x3, #0
    hvc #0
    mov x0, #1
    hvc #0                      // to the host, which holds it while vCPU 1 works
    ldr x0, =0x84000008         // SYSTEM_OFF
    hvc #0
secondary:
    ldr x10, ={GO:#x}
1:  ldr x11, [x10]              // wait for the host's go
    cbz x11, 1b
    ldr x12, ={MMIO:#x}
    ldr x13, ={MADE}
2:  ldr w14, [x12]              // a logged exit the fast rule answers
    add x12, x12, #{STRIDE}
    subs x13, x13, #1
    b.ne 2b
    mov x11, #1
    str x11, [x10, #8]          // done; nothing more is logged on this CPU:
    b .                         // vCPU 0's SYSTEM_OFF ends it
"""


def wait_for_flag(hv: Hypervisor, ipa: int) -> None:
    deadline = time.monotonic() + 120  # bounds a hang only
    while not int.from_bytes(hv.read_guest(ipa, 8), "little"):
        assert time.monotonic() < deadline, "vCPU 1 never finished"
        time.sleep(0.01)


def test_a_ring_overrun_keeps_the_newest_in_order_and_counts_the_rest(no_leaked_qemu):
    with Hypervisor(smp=2) as hv:
        hv.load(Guest.from_asm(GUEST))
        hv.enable_exit_log()
        rule = hv.rules.mmio(MMIO, MMIO + 0x1_0000, read=0)
        for exit in hv.exits():
            if exit.kind == ExitKind.Hypercall and exit.reason.nr == 1:
                read_before = len(hv.firmware_exits())  # everything so far; vCPU 1 waits
                assert hv.exit_log_dropped == 0
                hv.write_guest(GO, (1).to_bytes(8, "little"))
                wait_for_flag(hv, DONE)  # the log is not read meanwhile
                assert rule.hits == MADE
                log = hv.firmware_exits()[read_before:]
                dropped = hv.exit_log_dropped
                exit.resume()
    # An interrupt taken on vCPU 1's CPU in the window (its timer, a kick) is
    # logged too and pushes one more read out of the ring: rare, but seen.
    others = log[log["kind"] != int(ExitKind.MmioRead)]
    assert len(others) <= 2 and set(others["kind"]) <= {int(ExitKind.ExternalInterrupt)}
    assert len(log) == RING
    reads = log[log["kind"] == int(ExitKind.MmioRead)]
    dropped_reads = MADE - len(reads)  # == EXTRA when nothing else came
    assert dropped_reads <= dropped <= dropped_reads + 2  # + interrupts dropped too
    assert set(reads["vcpu"]) == {1}
    assert set(reads["handler"]) == {int(_core.ExitLogHandler.FastRule)}
    # The newest reads, oldest first: the ring wrapped the older ones.
    assert list(reads["arg"]) == [MMIO + STRIDE * i for i in range(dropped_reads, MADE)]
    assert (log["time_s"][1:] >= log["time_s"][:-1]).all()
