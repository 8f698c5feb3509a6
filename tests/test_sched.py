"""vCPUs time-sharing physical CPUs: the EL2 scheduler and the full world
switch (issue 15). Every guest checks its own state in a loop while the
other vCPU on the same CPU runs, and reports how many values it found
changed; the switches themselves are read back from the firmware's log."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from armvcpu import ArmvcpuError, ExitKind, Guest, Hypervisor, _core
from armvcpu.analysis.trace import Trace
from armvcpu.guests.debian import MARKER
from armvcpu.tools.sched_guest import REPORT, state_guest

from .test_interrupts import GIC_SETUP_V2, GIC_SETUP_V3, VECTORS_V2, VECTORS_V3
from .test_linux_boot import CPU, linux, run_linux  # noqa: F401 (linux: a fixture)

CPU_ON = 0xC4000003
CPU_OFF = 0x84000002
SYSTEM_OFF = 0x84000008


def _reports(exits: list) -> dict[int, tuple[int, int, int]]:
    out = {}
    for e in exits:
        if e.kind == ExitKind.Hypercall and e.reason.nr in (REPORT, REPORT + 1):
            out[e.reason.nr - REPORT] = tuple(e.reason.args[:3])
    return out


@pytest.mark.parametrize(("sve", "gic", "mte"), [(False, 3, False), (True, 3, False),
                                                 (False, 2, False), (False, 3, True)],
                         ids=["fpsimd", "sve", "gicv2", "mte"])  # fmt: skip
def test_two_vcpus_on_one_cpu_keep_their_own_state(sve, gic, mte, tmp_path, no_leaked_qemu):
    with Hypervisor(smp=2, host_cpus=1, gic=gic, mte=mte) as hv:
        assert hv.config.smp == 1  # QEMU's machine has one CPU
        hv.load(Guest.from_asm(state_guest(sve, gic=gic, mte=mte)))
        exits = hv.run(lambda e: 0 if e.kind == ExitKind.Hypercall else None)
        switches = hv.world_switches()
        assert hv.placement() == [0, 0]
    reports = _reports(exits)
    assert set(reports) == {0, 1}
    for vcpu, (changed, passes, _) in reports.items():
        assert changed == 0, f"vCPU {vcpu} found {changed} of its values changed"
        assert passes > 0
    if sve:
        # Each kept its own vector length: 256 and 512 bits (4 and 8 doublewords).
        assert reports[0][2] == 4 and reports[1][2] == 8
    # Both ran on CPU 0, and each handed it to the other.
    assert {(s.from_vcpu, s.to_vcpu) for s in switches} >= {((1, 0), (1, 1)), ((1, 1), (1, 0))}
    assert all(s.cpu == 0 and s.ran_s >= 0 for s in switches)
    assert "slice" in {s.reason for s in switches}
    assert exits[-1].kind == ExitKind.SystemDown
    # A trace keeps them (npz) and shows each CPU's vCPUs as spans.
    trace = Trace()
    trace.add_world_switches(switches)
    loaded = Trace.load(trace.save(tmp_path / "switches.npz"))
    assert len(loaded.world_switches) == len(switches)
    spans = [e for e in loaded.to_chrome_trace()["traceEvents"] if e.get("cat") == "world switch"]
    assert {e["name"] for e in spans} == {"VM 1 vCPU 0", "VM 1 vCPU 1"}
    assert all(e["tid"] == 0 and e["dur"] >= 0 for e in spans)


# vCPU 1 sleeps in WFI with its virtual timer armed for 10 ms; vCPU 0 spins
# without a single exit until vCPU 1 is back. Only the scheduler's EL2 timer,
# set to vCPU 1's deadline, can give vCPU 1 the CPU again.
def wfi_guest(gic: int) -> str:
    setup, vectors = (GIC_SETUP_V2, VECTORS_V2) if gic == 2 else (GIC_SETUP_V3, VECTORS_V3)
    return f"""
    ldr x0, ={CPU_ON:#x}
    mov x1, #1
    adr x2, secondary
    mov x3, #0
    hvc #0
    adr x10, done
1:  ldr x11, [x10]                  // spin, no exits, until vCPU 1 woke
    cbz x11, 1b
    ldr x0, ={SYSTEM_OFF:#x}
    hvc #0
secondary:
{setup}
    mrs x20, cntfrq_el0
    mov x0, #100
    udiv x23, x20, x0               // 10 ms of counter ticks
    mrs x19, cntvct_el0
    add x24, x19, x23               // the deadline
    msr cntv_cval_el0, x24
    mov x0, #1                      // CNTV_CTL_EL0.ENABLE, not masked
    msr cntv_ctl_el0, x0
    isb
2:  cbnz x21, 3f                    // checked with PSTATE.I masked: see
    wfi                             // test_interrupts.VTIMER_BODY
    msr daifclr, #2
    isb
    msr daifset, #2
    b 2b
3:  mrs x22, cntvct_el0
    mov x0, #0x20
    mov x1, x21                     // the INTID taken
    sub x2, x22, x24                // how long after the deadline it woke (>= 0)
    hvc #0
    adr x10, done
    mov x11, #1
    str x11, [x10]
    ldr x0, ={CPU_OFF:#x}
    hvc #0
    b .
{vectors}
    .balign 8
done: .quad 0
"""


WFI_GUEST = wfi_guest(3)


@pytest.mark.parametrize(("transport", "gic"), [("shm", 3), ("gdb", 3), ("shm", 2)],
                         ids=["shm", "gdb", "gicv2"])  # fmt: skip
def test_sleeping_vcpu_wakes_on_its_timer_while_another_runs(transport, gic, no_leaked_qemu):
    # (gdb: the stopped CPU's record is that of the vCPU it runs now)
    switches = []

    def answer(e):
        if e.kind == ExitKind.Hypercall and e.reason.nr == 0x20:
            switches.extend(hv.world_switches())  # (gdb: while QEMU is there)
        return 0 if e.kind == ExitKind.Hypercall else None

    with Hypervisor(smp=2, host_cpus=1, transport=transport, gic=gic) as hv:
        hv.load(Guest.from_asm(wfi_guest(gic)))
        exits = hv.run(answer)
    woke = next(e for e in exits if e.kind == ExitKind.Hypercall and e.reason.nr == 0x20)
    assert woke.vcpu_id == 1
    assert woke.reason.args[0] == 27  # the virtual timer's PPI
    assert woke.reason.args[1] < 2**63  # not before its deadline
    pairs = {(s.from_vcpu, s.to_vcpu) for s in switches}
    assert {((1, 0), (1, 1)), ((1, 1), (1, 0))} <= pairs
    # Whenever its WFI gave the CPU away (unless its deadline had passed by
    # then, on a slow host), something gave it back: only the scheduler's EL2
    # timer can, vCPU 0 never exits.
    for i, s in enumerate(switches):
        if s.from_vcpu == (1, 1) and s.reason == "blocked":
            assert any(later.to_vcpu == (1, 1) for later in switches[i + 1 :])
    assert exits[-1].kind == ExitKind.SystemDown


def test_host_cpus_is_checked(no_leaked_qemu):
    for bad in (0, 9, "2", True):
        with pytest.raises(ValueError, match=r"host_cpus must be 1\.\.8"):
            Hypervisor(smp=2, host_cpus=bad)  # type: ignore[arg-type]


def test_add_vm_cpus_are_checked(no_leaked_qemu):
    with Hypervisor(smp=2, host_cpus=2) as hv:
        guest = Guest.from_asm(f"ldr x0, ={SYSTEM_OFF:#x}\n hvc #0")
        hv.load(guest)
        with pytest.raises(ValueError, match="cpus: 2 is not a CPU of this machine"):
            hv.add_vm(guest, cpus={2})
        with pytest.raises(ValueError, match="at least one physical CPU"):
            hv.add_vm(guest, cpus=set())
        with pytest.raises(TypeError, match="set of physical CPU numbers"):
            hv.add_vm(guest, cpus="0")  # type: ignore[arg-type]
        with pytest.raises(ArmvcpuError, match="VMs need at least 3 vCPUs"):
            hv.add_vm(guest, vcpus=2)


def test_two_vms_share_one_cpu_and_both_finish(no_leaked_qemu):
    a, b = 0xAAAA_0000_AAAA_0001, 0xBBBB_0000_BBBB_0002
    # Two CPUs, but VM 2 may run only on CPU 0 (phys_cpu_set), where VM 1's
    # vCPU also lands (the least loaded CPU first): one CPU, two VMs.
    with Hypervisor(smp=2, host_cpus=2) as hv:
        hv.load(_pattern_guest(a))
        vm_b = hv.add_vm(_pattern_guest(b), cpus={0})
        assert hv.placement() == [0, 0]
        assert hv.vms[1].vcpus[0].cpu == 0 and vm_b.vcpus[0].cpu == 0
        exits = hv.run(lambda e: 0 if e.kind == ExitKind.Hypercall else None)
        switches = hv.world_switches()
        console = hv.console
    reports = {e.vm_id: tuple(e.reason.args[:2]) for e in exits if e.kind == ExitKind.Hypercall}
    assert reports == {1: (a, a), 2: (b, b)}  # each read back its own pattern
    assert "VM 1 stopped" in console and "VM 2 stopped" in console
    assert all(s.cpu == 0 for s in switches)
    assert {s.from_vcpu for s in switches} | {s.to_vcpu for s in switches} == {(1, 0), (2, 0)}


def _pattern_guest(pattern: int) -> Guest:
    from .test_vms import _guest

    return _guest(pattern)


@pytest.mark.timeout(900)  # slower than Linux on its own CPUs, on a loaded machine
@pytest.mark.parametrize(("vcpus", "host_cpus", "gic"), [(2, 1, 3), (4, 2, 3), (2, 1, 2)],
                         ids=["2-on-1", "4-on-2", "2-on-1-gicv2"])  # fmt: skip
def test_debian_kernel_counts_its_vcpus_on_fewer_cpus(linux, vcpus, host_cpus, gic,  # noqa: F811
                                                      no_leaked_qemu):  # fmt: skip
    assets, initrd = linux
    out = run_linux("--kernel", str(assets.kernel), "--initrd", str(initrd),
                    "--append", "console=ttyAMA0", "--smp", str(vcpus),
                    "--host-cpus", str(host_cpus), "--cpu", CPU, "--gic", str(gic),
                    timeout=600)  # fmt: skip
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr
    marker = re.search(rf"{MARKER} kernel=(\S+) cpus=(\d+)", out.stdout)
    assert marker is not None, out.stdout[-3000:]
    assert int(marker.group(2)) == vcpus
    assert f"Brought up 1 node, {vcpus} CPU" in out.stdout


@pytest.mark.parametrize("form", ["dropin", "image"])
def test_cli_host_cpus_out_of_range_is_a_usage_error(form, tmp_path, no_leaked_qemu):
    image = _raw_image(tmp_path, f"ldr x0, ={SYSTEM_OFF:#x}\n hvc #0")
    if form == "dropin":
        args = ["-M", "virt", "-smp", "2", "--host-cpus", "9", "-kernel", str(image)]
    else:
        args = [str(image), "--smp", "2", "--host-cpus", "9"]
    out = subprocess.run([sys.executable, "-m", "armvcpu", "run", *args],
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    assert out.returncode == 2, out.stdout + out.stderr
    assert "host_cpus must be 1..8" in out.stderr


def test_cli_runs_two_vcpus_on_one_host_cpu(tmp_path, no_leaked_qemu):
    image = _raw_image(tmp_path, WFI_GUEST)
    # (the image form: the drop-in gives a raw image an emulated GIC, whose
    # redistributor this guest does not program for its timer)
    out = subprocess.run([sys.executable, "-m", "armvcpu", "run", str(image), "--smp", "2",
                          "--host-cpus", "1", "--timeout", "60"],
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr  # powered off: vCPU 1 woke


def _raw_image(tmp_path: Path, source: str) -> Path:
    """A raw binary where QEMU's -kernel puts one (position-independent code)."""
    (segment,) = Guest.from_asm(source, 0x4008_0000).segments
    path = tmp_path / "guest.bin"
    path.write_bytes(segment.data)
    return path


def test_favoured_cpus_place_vcpus(no_leaked_qemu):
    guest = Guest.from_asm(f"ldr x0, ={SYSTEM_OFF:#x}\n hvc #0")
    with Hypervisor(smp=4, host_cpus=2) as hv:
        hv.load(guest)  # VM 1: slots 0-1, by load: CPUs 0 and 1
        b = hv.add_vm(guest, vcpus=2, favor_cpus=[1, None])
        # Slot 2 favours CPU 1; slot 3 takes the least loaded (CPU 0).
        assert hv.placement() == [0, 1, 1, 0]
        assert [v.cpu for v in b.vcpus] == [1, 0]
        with pytest.raises(ValueError, match="favor_cpus names 1 CPUs for 2 vCPUs"):
            hv.add_vm(guest, vcpus=2, favor_cpus=[0])
        with pytest.raises(ValueError, match="favor_cpus: 5 is not a CPU"):
            hv.add_vm(guest, vcpus=1, favor_cpus=[5])


# Both vCPUs make an exit the firmware answers (PSCI_VERSION) on every pass
# of a loop; vCPU 0 powers off once it has seen vCPU 1's counter move
# ROUNDS times (each move a switch away from vCPU 0 and back), and vCPU 1
# never stops, so the run ends whatever the slices' timing.
PSCI_VERSION = 0x84000000
ROUNDS = 3
EXITING_GUEST = f"""
    ldr x0, ={CPU_ON:#x}
    mov x1, #1
    adr x2, secondary
    mov x3, #0
    hvc #0
    mov x19, #0
    b common
secondary:
    mov x19, #1
common:
    adr x20, counters
    add x21, x20, x19, lsl #3       // this vCPU's counter
    eor x9, x19, #1
    add x22, x20, x9, lsl #3        // the other's
    ldr x23, [x22]
    mov x24, #0                     // moves of the other's counter seen
1:  ldr x9, [x21]
    add x9, x9, #1
    str x9, [x21]
    ldr x0, ={PSCI_VERSION:#x}
    hvc #0                          // logged, answered in EL2
    mov x10, #2000
2:  subs x10, x10, #1               // (fewer exits per slice: the rings keep them all)
    b.ne 2b
    cbnz x19, 1b                    // vCPU 1 only counts
    ldr x9, [x22]
    cmp x9, x23
    b.eq 1b
    mov x23, x9
    add x24, x24, #1
    cmp x24, #{ROUNDS}
    b.lo 1b
    ldr x0, ={SYSTEM_OFF:#x}
    hvc #0
    .balign 8
counters: .quad 0, 0
"""


def test_world_switches_are_in_the_exit_log_in_order_with_the_exits(tmp_path, no_leaked_qemu):
    from armvcpu.analysis import exitlog

    with Hypervisor(smp=2, host_cpus=1) as hv:
        hv.load(Guest.from_asm(EXITING_GUEST))
        hv.enable_exit_log()
        hv.run()
        log = hv.firmware_exits()
        switches = hv.world_switches()
        dropped = hv.exit_log_dropped
    is_switch = log["kind"] == exitlog.WORLD_SWITCH
    rows = exitlog.switch_rows(log)
    assert len(rows) >= 2 * ROUNDS and len(switches) == len(rows)
    # hv.world_switches() reads the same entries.
    assert [(s.time_s, s.from_vcpu, s.to_vcpu) for s in switches] == [
        (float(r["time_s"]), (1, int(r["from_vcpu"])), (1, int(r["to_vcpu"]))) for r in rows
    ]
    assert set(log["handler"][is_switch]) == {int(_core.ExitLogHandler.Scheduler)}
    assert all(s.cpu == 0 and s.from_vcpu != s.to_vcpu for s in switches)
    assert "slice" in {s.reason for s in switches}
    assert list(log["time_s"]) == sorted(log["time_s"])
    exits = log[~is_switch]
    assert set(exits["cpu"]) == {0}  # the physical CPU, for both vCPUs
    # (PSCI_VERSION is answered inside the vCPU: kind Nothing.)
    answered = exits[exits["kind"] == int(ExitKind.Nothing)]
    assert set(answered["vcpu"]) == {0, 1} and len(answered) > 2 * ROUNDS
    if dropped == 0:  # (a host too slow to drain loses the oldest entries)
        # Each exit falls while its vCPU held the CPU: the last switch before
        # it put that vCPU on, and a vCPU's time on the CPU is the span
        # between the switch that put it on and the one that took it off.
        on, since = 0, None  # vCPU 0 runs first
        for row in log:
            if row["kind"] == exitlog.WORLD_SWITCH:
                assert row["vcpu"] == on
                if since is not None:
                    assert abs(int(row["arg"]) / 1e9 - (row["time_s"] - since)) < 1e-6
                on, since = (int(row["esr"]) >> 16) & 0xFF, float(row["time_s"])
            else:
                assert row["vcpu"] == on, f"an exit of vCPU {row['vcpu']} while {on} ran"
    # A trace keeps them with the exits, and shows them.
    trace = Trace()
    trace.add_firmware_log(log)
    trace.add_world_switches(switches)  # counted once
    loaded = Trace.load(trace.save(tmp_path / "log.npz"))
    assert len(loaded.world_switches) == len(switches)
    summary = {(s.kind, s.handler): s.count for s in loaded.firmware_summary()}
    assert summary[("WorldSwitch", "Scheduler")] == len(switches)
    events = loaded.to_chrome_trace()["traceEvents"]
    assert sum(e.get("cat") == "world switch" for e in events) == len(switches)
    marks = [e for e in events if e.get("cat") == "firmware" and e["name"] == "WorldSwitch"]
    assert len(marks) == len(switches)
    out = subprocess.run([sys.executable, "-m", "armvcpu", "trace", "show",
                          str(tmp_path / "log.npz"), "--firmware", "--limit", "100000", "--json"],
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    assert out.returncode == 0, out.stderr
    import json

    shown = json.loads(out.stdout)
    assert len(shown) == len(log)
    assert [r["entry"] for r in shown if r["entry"] == "WorldSwitch"] == ["WorldSwitch"] * len(rows)
    first = next(r for r in shown if r["entry"] == "WorldSwitch")
    assert (first["cpu"], first["vm"], first["vcpu"], first["by"]) == (0, 1, 0, "Scheduler")
    assert first["detail"].startswith("to VM 1 vCPU 1 after ")


# Load balancing. A worker vCPU computes and asks the host (hypercall ASK,
# x1 its vCPU index) whether to stop; the host says so (x0 = 1) once it has
# seen what the test waits for, or after MAX_ASKS asks (a bound on a hang
# only: the test's assertions then fail).
ASK = 0x40
MAX_ASKS = 20000


# After the work: vCPU 0 (x19 = 0) waits until the other one says it is done,
# then powers the machine off; the other one says so and turns itself off.
_FINISH = f"""    adr x10, done
    cbnz x19, 3f
4:  ldr x11, [x10]
    cbz x11, 4b
    ldr x0, ={SYSTEM_OFF:#x}
    hvc #0
3:  mov x11, #1
    str x11, [x10]
    ldr x0, ={CPU_OFF:#x}
    hvc #0
    .balign 8
done: .quad 0
"""


def _work(label: str) -> str:
    return f"""
{label}:
1:  ldr x9, =20000
2:  subs x9, x9, #1
    b.ne 2b
    mov x0, #{ASK}
    mov x1, x19
    hvc #0
    cbz x0, 1b
"""


def _cpu_on(target: int, entry: str) -> str:
    return f"""
    ldr x0, ={CPU_ON:#x}
    mov x1, #{target}
    adr x2, {entry}
    mov x3, #0
    hvc #0
"""


# VM 1, four vCPUs on two CPUs: vCPUs 0 and 2 land on CPU 0, 1 and 3 on
# CPU 1. The odd ones turn off at once; the even ones work until told.
FOUR_ON_TWO = f"""
{_cpu_on(1, "off")}
{_cpu_on(2, "even")}
{_cpu_on(3, "off")}
    mov x19, #0
    b work
off:
    ldr x0, ={CPU_OFF:#x}
    hvc #0
even:
    mov x19, #2
{_work("work")}
{_FINISH}"""


def _asks(hv: Hypervisor, stop) -> tuple[list, list]:
    """Runs the VMs; answers every ASK with stop(switches so far)."""
    asked = 0
    seen: list = []

    def answer(e):
        nonlocal asked, seen
        if e.kind != ExitKind.Hypercall:
            return None
        if e.reason.nr != ASK:
            return 0
        asked += 1
        seen = hv.world_switches()
        return 1 if stop(seen) or asked >= MAX_ASKS else 0

    exits = hv.run(answer)
    return exits, hv.world_switches()


def test_an_idle_cpu_pulls_a_ready_vcpu(no_leaked_qemu):
    def pulled(switches) -> bool:
        return any(s.cpu == 1 and s.to_vcpu in {(1, 0), (1, 2)} for s in switches)

    with Hypervisor(smp=4, host_cpus=2) as hv:
        hv.load(Guest.from_asm(FOUR_ON_TWO))
        assert hv.placement() == [0, 1, 0, 1]
        exits, switches = _asks(hv, pulled)
    assert exits[-1].kind == ExitKind.SystemDown
    # CPU 1's vCPUs turned off; CPU 1 then ran one of CPU 0's.
    assert pulled(switches), [(s.cpu, s.from_vcpu, s.to_vcpu, s.reason) for s in switches]
    # The vCPU pulled had been on CPU 0 before (it moved, not doubled).
    first = next(s for s in switches if s.cpu == 1 and s.to_vcpu in {(1, 0), (1, 2)})
    before = [s for s in switches if s.time_s < first.time_s and first.to_vcpu == s.from_vcpu]
    assert before and before[-1].cpu == 0


# VM 1: vCPU 1 (CPU 1) turns off and vCPU 0 powers VM 1 off, so CPU 1 has
# nothing to run; VM 2's two vCPUs may run only on CPU 0 (phys_cpu_set).
ONE_OFF = f"""
{_cpu_on(1, "off")}
    ldr x0, ={SYSTEM_OFF:#x}
    hvc #0
off:
    ldr x0, ={CPU_OFF:#x}
    hvc #0
"""
TWO_PINNED = f"""
{_cpu_on(1, "second")}
    mov x19, #0
    b work
second:
    mov x19, #1
{_work("work")}
{_FINISH}"""


def test_an_idle_cpu_pulls_no_vcpu_its_set_forbids(no_leaked_qemu):
    def taken_turns(switches) -> bool:
        # VM 2's vCPUs handed CPU 0 to each other a few times, each time
        # leaving a Ready vCPU that an unrestricted one would lose to CPU 1.
        return sum(s.from_vcpu[0] == 2 and s.to_vcpu[0] == 2 for s in switches) >= 6

    with Hypervisor(smp=4, host_cpus=2) as hv:
        hv.load(Guest.from_asm(ONE_OFF))
        hv.add_vm(Guest.from_asm(TWO_PINNED), vcpus=2, cpus={0})
        assert hv.placement() == [0, 1, 0, 0]
        _exits, switches = _asks(hv, taken_turns)
        console = hv.console
    assert "VM 1 stopped" in console and "VM 2 stopped" in console
    assert taken_turns(switches)
    assert all(s.cpu == 0 for s in switches if 2 in (s.from_vcpu[0], s.to_vcpu[0]))


# PMU state each vCPU owns (Arm ARM D13; encodings D24.5): vCPU 0 counts
# cycles in PMEVCNTR0 (event 0x11 CPU_CYCLES: QEMU counts INST_RETIRED only
# with -icount) and PMCCNTR with PMCR_EL0.E set; vCPU 1 has other events,
# enables, selections and counter values, with counting off (E clear), so
# its counters must read back exactly. Both
# check everything on every pass while the other runs on the same CPU.
_PMU_CONFIG = {  # register: (vCPU 0's value, vCPU 1's)
    "pmevtyper0_el0": (0x11, (1 << 31) | 0x08),
    "pmccfiltr_el0": (1 << 27, 1 << 30),
    "pmselr_el0": (3, 5),
    "pmuserenr_el0": (1, 0xD),
    "pmintenset_el1": (1 << 1, 1 << 2),
    "pmovsset_el0": (0, 1 << 3),
    "pmcntenset_el0": ((1 << 31) | 1, 1 << 1),
    "pmcr_el0": ((1 << 6) | 1, 1 << 6),  # LC, and E for vCPU 0 only
}
_PMU_COUNTS_1 = {
    "pmevcntr0_el0": 0x1234_5678,
    "pmevcntr1_el0": 0x5555,
    "pmccntr_el0": 0xABCD_0000_1234,
}
# What vCPU 0's own counts stay below (started at 0): vCPU 1's values are
# above, so one leaked in shows.
_PMU_LIMIT_0 = {"pmevcntr0_el0": 0x1000_0000, "pmccntr_el0": 0xA000_0000_0000}


def _check(reg: str, value: int) -> str:
    # PMCR_EL0's upper bits are read-only (N [15:11], IDCODE, IMP): its
    # control bits [7:0] are the guest's.
    mask = "\n    and x10, x10, #0xff" if reg == "pmcr_el0" else ""
    return f"""    ldr x9, ={value:#x}
    mrs x10, {reg}{mask}
    cmp x10, x9
    cinc x24, x24, ne"""


def _pmu_setup(vcpu: int) -> str:
    lines = []
    if vcpu == 1:
        lines += [f"    ldr x9, ={v:#x}\n    msr {r}, x9" for r, v in _PMU_COUNTS_1.items()]
    else:
        lines += [f"    msr {r}, xzr" for r in _PMU_LIMIT_0]
    lines += [f"    ldr x9, ={v[vcpu]:#x}\n    msr {r}, x9" for r, v in _PMU_CONFIG.items()]
    return "\n".join(lines) + "\n    isb"


def _pmu_checks(vcpu: int) -> str:
    lines = [_check(r, v[vcpu]) for r, v in _PMU_CONFIG.items()]
    if vcpu == 1:
        lines += [_check(r, v) for r, v in _PMU_COUNTS_1.items()]
    else:
        for reg, limit in _PMU_LIMIT_0.items():
            lines.append(f"""    ldr x9, ={limit:#x}
    mrs x10, {reg}
    cmp x10, x9
    cinc x24, x24, hs""")
        # ... and never went back (x21: its value at the last pass).
        lines.append("""    mrs x10, pmevcntr0_el0
    cmp x10, x21
    cinc x24, x24, lo
    mov x21, x10""")
    return "\n".join(lines)


PMU_GUEST = f"""
    mov x19, #0
    ldr x0, ={CPU_ON:#x}
    mov x1, #1
    adr x2, secondary
    mov x3, #0
    hvc #0
{_pmu_setup(0)}
    b common
secondary:
    mov x19, #1
{_pmu_setup(1)}
common:
    mov x21, #0
    adr x25, counters
    eor x26, x19, #1
    add x26, x25, x26, lsl #3       // the other vCPU's counter
    add x25, x25, x19, lsl #3       // mine
    mov x23, #0                     // passes
    mov x24, #0                     // values found wrong
    mov x27, #0                     // moves of the other's counter seen
    ldr x28, [x26]
loop:
    cbnz x19, 1f
{_pmu_checks(0)}
    b 2f
1:
{_pmu_checks(1)}
2:  add x23, x23, #1
    str x23, [x25]
    ldr x10, [x26]
    cmp x10, x28
    b.eq loop
    mov x28, x10
    add x27, x27, #1
    cmp x27, #4
    b.lo loop
    cbnz x19, 5f
    cmp x21, #0                     // vCPU 0's counter counted at all
    cinc x24, x24, eq
5:  mov x0, #{REPORT}
    add x0, x0, x19
    mov x1, x24
    mov x2, x23
    hvc #0
    adr x10, done
    mov x11, #1
    str x11, [x10, x19, lsl #3]
    eor x12, x19, #1
finish:                             // keep my counter moving until both are done
    add x23, x23, #1
    str x23, [x25]
    ldr x11, [x10, x12, lsl #3]
    cbz x11, finish
    cbnz x19, 3f
    ldr x0, ={SYSTEM_OFF:#x}
    hvc #0
3:  ldr x0, ={CPU_OFF:#x}
    hvc #0
    b .
    .balign 8
counters: .quad 0, 0
done: .quad 0, 0
"""


def test_two_vcpus_on_one_cpu_keep_their_own_pmu(no_leaked_qemu):
    with Hypervisor(smp=2, host_cpus=1) as hv:
        hv.load(Guest.from_asm(PMU_GUEST))
        exits = hv.run(lambda e: 0 if e.kind == ExitKind.Hypercall else None)
        switches = hv.world_switches()
    reports = _reports(exits)
    assert set(reports) == {0, 1}
    for vcpu, (wrong, passes, _) in reports.items():
        assert wrong == 0, f"vCPU {vcpu} found {wrong} PMU values wrong"
        assert passes > 0
    assert {(s.from_vcpu, s.to_vcpu) for s in switches} >= {((1, 0), (1, 1)), ((1, 1), (1, 0))}


def test_an_el2_thread_stack_overflow_hits_its_guard(no_leaked_qemu):
    # With time-shared CPUs the stack self-test recurses on the first EL2
    # thread's stack: the guard page below it is unmapped, so the overflow is
    # a data abort taken at EL2 (EC 0x25), reported, then a power-off.
    with Hypervisor(smp=2, host_cpus=1) as hv:
        hv.load(Guest.from_asm("b ."))
        hv.request_selftest("stack-overflow")
        exits = hv.run()
    assert len(exits) == 1
    assert exits[0].kind == ExitKind.GuestException
    assert exits[0].reason.ec == 0x25
    assert "EL2 stack overflow (guard page hit)" in hv.console
