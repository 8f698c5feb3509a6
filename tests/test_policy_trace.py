"""Policies, a Python device model and traces, against the real firmware."""

from __future__ import annotations

import json

import numpy as np
import pytest
from armvcpu import ExitKind, Guest, Hypervisor, Pl011, Policy, Trace, on

# Prints "hi!\n" through the PL011 (polling UARTFR.TXFF, bit 5, as a driver
# must), asks hypercall 1 for a value, reads ID_AA64ISAR0_EL1 (trapped) and
# reports everything with hypercall 3 before SYSTEM_OFF.
UART_GUEST = """
    movz x10, #0x0900, lsl #16
    adr x11, message
1:  ldrb w12, [x11], #1
    cbz w12, 3f
2:  ldr w13, [x10, #0x18]       // UARTFR
    tbnz w13, #5, 2b            // TXFF: wait
    str w12, [x10]              // UARTDR
    b 1b
3:  mov x0, #1
    mov x1, #7
    hvc #0                      // handled by the policy's hypercall handler
    mov x19, x0
    mov x0, #0x50
    hvc #0                      // a declarative rule: the firmware answers
    mov x20, x0
    mrs x21, id_aa64isar0_el1   // a declarative sysreg rule
    mov x0, #3
    mov x1, x19
    mov x2, x20
    mov x3, x21
    hvc #0
    ldr x0, =0x84000008
    hvc #0
message:
    .asciz "hi!\\n"
"""


class Demo(Policy):
    fifty = on.hypercall(nr=0x50, result=0x5050)
    isar = on.sysreg("ID_AA64ISAR0_EL1", read_value=0x1234)

    def __init__(self) -> None:
        super().__init__()
        self.reports: list[tuple[int, ...]] = []

    @on.hypercall(nr=1)
    def get(self, exit):
        return 100 + exit.reason.args[0]

    @on.hypercall(nr=3)
    def report(self, exit):
        self.reports.append(exit.reason.args[:3])


def test_policy_device_and_rules(transport, no_leaked_qemu):
    uart = Pl011()
    policy = Demo() + uart.policy()
    trace = Trace()
    with Hypervisor(transport=transport) as hv:
        hv.load(Guest.from_asm(UART_GUEST))
        hv.set_traps(hcr_el2=1 << 18)  # TID3: the ID registers trap to EL2
        exits = hv.run(policy, trace=trace)
        rule_hits = [r.hits for r in hv.rules] if transport == "shm" else None
    assert uart.output == "hi!\n"
    demo_reports = [e.reason.args[:3] for e in exits if e.kind == ExitKind.Hypercall
                    and e.reason.nr == 3]  # fmt: skip
    assert demo_reports == [(107, 0x5050, 0x1234)]
    kinds = {e.kind for e in exits}
    assert ExitKind.SysRegRead not in kinds  # answered in the firmware
    assert not any(e.kind == ExitKind.Hypercall and e.reason.nr == 0x50 for e in exits)
    if rule_hits is not None:
        assert rule_hits == [1, 1]
    assert len(trace) == len(exits)


def test_trace_columns_summary_export_and_replay(tmp_path, no_leaked_qemu):
    uart = Pl011()
    trace = Trace(meta={"guest": "uart"})
    policy = Demo() + uart.policy()
    with Hypervisor() as hv:
        hv.load(Guest.from_asm(UART_GUEST))
        hv.set_traps(hcr_el2=1 << 18)
        hv.run(policy, trace=trace)
    # UARTFR reads and UARTDR writes (4 chars), 2 hypercalls, SYSTEM_OFF
    summary = {s.kind: s.count for s in trace.summary()}
    assert summary == {"MmioRead": 4, "MmioWrite": 4, "Hypercall": 2, "SystemDown": 1}
    assert trace.kind.dtype == np.uint32
    assert (trace.esr[trace.kind == int(ExitKind.MmioWrite)] >> 26 == 0x24).all()
    assert set(trace.columns["handle_ns"]) != {0}

    path = trace.save(tmp_path / "run")
    assert path == tmp_path / "run.npz"
    # By the name it was saved under too, as `armvcpu run --trace run` then
    # `armvcpu trace show run` use it.
    assert Trace.load(tmp_path / "run").meta == Trace.load(path).meta
    loaded = Trace.load(path)
    assert loaded.meta["guest"] == "uart"
    assert np.array_equal(loaded.columns["records"], trace.columns["records"])

    frame = loaded.to_dataframe()
    assert list(frame["kind"].value_counts().sort_index().index) == sorted(summary)
    assert frame.loc[frame["kind"] == "MmioWrite", "detail"].str.contains("0x9000000").all()

    chrome = loaded.to_chrome_trace()
    json.dumps(chrome)  # valid JSON
    events = [e for e in chrome["traceEvents"] if e["ph"] == "X"]
    assert len(events) == len(trace) and events[0]["name"] == "MmioRead"

    # Offline: the host core agrees with every firmware classification, and the
    # same policy gives the same answers without QEMU.
    replay_uart = Pl011()
    result = loaded.replay(Demo() + replay_uart.policy())
    assert result.mismatches == 0
    assert replay_uart.output == "hi!\n"
    assert [a for a in result.answers] == [
        (int(a), int(x))
        for a, x in zip(trace.columns["action"], trace.columns["answer_x0"], strict=True)
    ]


def test_bad_trace_files(tmp_path):
    bogus = tmp_path / "bogus.npz"
    bogus.write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="not an armvcpu trace"):
        Trace.load(bogus)
    other = tmp_path / "other.npz"
    np.savez(other, meta=np.array(json.dumps({"format": "something-else"})))
    with pytest.raises(ValueError, match="not an armvcpu trace"):
        Trace.load(other)
    with pytest.raises(FileNotFoundError):
        Trace.load(tmp_path / "missing.npz")


def test_policy_declarations_are_checked():
    with pytest.raises(ValueError, match="start < end"):
        on.mmio(0x2000, 0x1000)
    with pytest.raises(ValueError, match="needs nr"):
        on.hypercall(result=3)
    with pytest.raises(ValueError, match="PSCI calls"):
        on.psci("MIGRATE")
    with pytest.raises(TypeError, match="takes no handler"):
        on.hypercall(nr=1, result=2)(lambda e: None)


def test_handler_returning_garbage_is_a_clear_error(no_leaked_qemu):
    policy = Policy()
    policy.add(on.hypercall(), lambda exit: "forty-two")
    with Hypervisor() as hv:
        hv.load(Guest.from_asm("mov x0, #1\nhvc #0\nb ."))
        with pytest.raises(TypeError, match="returned 'forty-two'"):
            hv.run(policy)


def test_psci_and_default_handlers(no_leaked_qemu):
    seen: list[str] = []
    policy = Policy()
    policy.add(on.psci("SYSTEM_OFF"), lambda exit: seen.append("off") or Policy.DEFAULT)

    @policy.on_default
    def anything(exit):
        seen.append(exit.kind.name)
        return 0

    guest = Guest.from_asm("mov x0, #9\nhvc #0\nldr x0, =0x84000008\nhvc #0")
    with Hypervisor() as hv:
        hv.load(guest)
        exits = hv.run(policy)
    assert seen == ["Hypercall", "off"]
    # SYSTEM_OFF's default answer ends the run; nothing follows it.
    assert [e.kind for e in exits] == [ExitKind.Hypercall, ExitKind.SystemDown]


def test_a_trapped_mrs_into_xzr_is_answered(no_leaked_qemu):
    """MRS XZR, <reg> (Rt = 31) traps like any MRS; the answer is discarded,
    as the instruction would discard it (found by armvcpu fuzz)."""

    class Ids(Policy):
        @on.sysreg("ID_AA64PFR0_EL1")
        def pfr0(self, exit):
            return 0x11

    source = """
    mrs xzr, id_aa64pfr0_el1
    mrs x5, id_aa64pfr0_el1
    mov x0, #1
    mov x1, x5
    hvc #0
    ldr x0, =0x84000008
    hvc #0
    """
    with Hypervisor() as hv:
        hv.load(Guest.from_asm(source))
        hv.set_traps(hcr_el2=1 << 18)  # TID3
        exits = hv.run(Ids())
    reads = [e for e in exits if e.kind == ExitKind.SysRegRead]
    assert [e.reason.reg for e in reads] == [31, 5]
    report = next(e for e in exits if e.kind == ExitKind.Hypercall)
    assert report.reason.args[0] == 0x11
