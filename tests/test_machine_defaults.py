"""A guest written for bare QEMU ``virt`` sees the same answers under armvcpu.

Without a hypervisor, QEMU answers an HVC with a function ID nobody
implements with SMCCC NOT_SUPPORTED (-1), and a load from a physical address
with neither RAM nor a device (0x0C00_0000 on ``virt``) with a synchronous
external abort taken to EL1. The golden values are what bare
``qemu-system-aarch64 -M virt -cpu max`` really produces, run here on the
same guest code.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from armvcpu import ExitKind, Guest, Hypervisor, Policy, _core, on
from armvcpu.guests.toolchain import assemble

from .conftest import pid_gone, qemu_pids, shm_files

UNMAPPED = 0x0C00_0000  # nothing on QEMU virt here: no RAM, no device
UNKNOWN_ID = 0x8600_0000  # SMCCC standard hypervisor service, fast call: nobody's
CLAIMED_ID = 0x8600_0001
NOT_SUPPORTED = (1 << 64) - 1
SYSTEM_OFF = 0x8400_0008
BARE_BASE = 0x4010_0000  # bare QEMU keeps its device tree at the start of RAM
STANDALONE_ENTRY = 0x4020_0000  # the firmware's standalone default entry (host_link.cpp)

# Prints (PL011 at 0x0900_0000, as "name=value" lines) what the guest saw:
# x0 after an unknown HVC, then ESR_EL1/FAR_EL1/ELR_EL1 (as an offset from
# the faulting instruction)/SPSR_EL1 for a load from UNMAPPED, a store to
# it and a branch to it, and powers off with PSCI. Its own handler at
# VBAR_EL1 + 0x200 (EL1h) returns past a data abort and to x30 after an
# instruction abort.
PROBE = f"""
_start:
    adr x0, vectors
    msr vbar_el1, x0
    isb
    ldr x0, ={UNKNOWN_ID:#x}
    hvc #0
    mov x9, x0
    mov x20, #'H'
    bl report
    ldr x1, ={UNMAPPED:#x}
    adr x21, load
load:
    ldr w2, [x1]
    adr x21, store
store:
    str w2, [x1]
    ldr x21, ={UNMAPPED:#x}
    blr x1
    mov x20, #'E'
    mov x9, #0
    bl report
    ldr x0, ={SYSTEM_OFF:#x}
    hvc #0
    b .

// x20: a tag letter, x9: the value; prints "<tag>=<16 hex digits>\\n".
report:
    ldr x10, =0x09000000
    strb w20, [x10]
    mov x12, #'='
    strb w12, [x10]
    mov x11, #60
1:  lsr x12, x9, x11
    and x12, x12, #0xf
    add x13, x12, #'0'
    add x12, x12, #('a' - 10)
    cmp x13, #'9'
    csel x12, x13, x12, ls
    strb w12, [x10]
    subs x11, x11, #4
    b.ge 1b
    mov x12, #'\\n'
    strb w12, [x10]
    ret

sync_handler:
    mov x22, x30
    mrs x9, esr_el1
    mov x20, #'S'
    bl report
    mrs x9, far_el1
    mov x20, #'F'
    bl report
    mrs x9, elr_el1
    sub x9, x9, x21
    mov x20, #'L'
    bl report
    mrs x9, spsr_el1
    mov x20, #'P'
    bl report
    mrs x9, esr_el1
    lsr x9, x9, #26
    cmp x9, #0x21
    b.eq 2f
    mrs x9, elr_el1
    add x9, x9, #4
    msr elr_el1, x9
    mov x30, x22
    eret
2:  msr elr_el1, x22
    mov x30, x22
    eret

    .balign 0x800
vectors:
    .skip 0x200
    b sync_handler
"""


def probe_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if len(line) == 18 and line[1] == "="]


def bare_qemu(source: str, tmp_path: Path) -> list[str]:
    """The guest on QEMU virt without a hypervisor: entered at EL1 from -kernel."""
    elf = tmp_path / "guest.elf"
    elf.write_bytes(assemble(source, BARE_BASE))
    out = tmp_path / "serial.txt"
    proc = subprocess.run(
        ["qemu-system-aarch64", "-M", "virt", "-cpu", "max", "-m", "256M", "-nodefaults",
         "-display", "none", "-monitor", "none", "-serial", f"file:{out}",
         "-kernel", str(elf)],
        timeout=120, capture_output=True,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return probe_lines(out.read_text())


def under_armvcpu(source: str, **session: object) -> tuple[list[str], list[object]]:
    with Hypervisor(uart="passthrough", **session) as hv:  # type: ignore[arg-type]
        hv.load(Guest.from_asm(source))
        seen = hv.run()
        return probe_lines(hv.console), seen


def test_an_unmapped_access_and_an_unknown_id_match_bare_qemu(tmp_path, no_leaked_qemu):
    bare = bare_qemu(PROBE, tmp_path)
    ours, seen = under_armvcpu(PROBE)
    # What QEMU itself answers (golden), and armvcpu the same, line by line.
    assert bare[0] == f"H={NOT_SUPPORTED:016x}"
    assert bare[1:5] == [
        f"S={0x96000010:016x}",
        f"F={UNMAPPED:016x}",
        f"L={0:016x}",
        f"P={0x800003C5:016x}",
    ]  # fmt: skip  (N from the last subs)
    assert bare[5] == f"S={0x96000050:016x}"  # the store: WnR
    assert bare[9] == f"S={0x86000010:016x}"  # the branch: instruction abort
    assert bare[10] == f"F={UNMAPPED:016x}"
    assert ours == bare
    # run() claims every hypercall: the unknown ID and the unmapped accesses
    # reached the host (a host device model may answer them) and got the
    # default, NOT_SUPPORTED and the abort.
    assert [e.kind for e in seen] == [ExitKind.Hypercall, ExitKind.MmioRead, ExitKind.MmioWrite,
                                      ExitKind.NestedPageFault, ExitKind.SystemDown]  # fmt: skip


def test_standalone_firmware_answers_the_same(tmp_path, no_leaked_qemu):
    """No host attached: the firmware itself gives NOT_SUPPORTED and the abort."""
    image = tmp_path / "guest.bin"
    guest = Guest.from_elf(assemble(PROBE, STANDALONE_ENTRY))
    (segment,) = guest.segments
    image.write_bytes(segment.data)
    out = tmp_path / "serial.txt"
    proc = subprocess.run(
        ["qemu-system-aarch64", "-M", "virt,virtualization=on,gic-version=3", "-cpu", "max",
         "-m", f"{_standalone_memory_mb()}M", "-nodefaults", "-display", "none", "-monitor", "none",
         "-serial", f"file:{out}", "-kernel", str(_firmware()),
         "-device", f"loader,file={image},addr={STANDALONE_ENTRY:#x}"],
        timeout=120, capture_output=True,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    lines = probe_lines(out.read_text())
    assert lines[0] == f"H={NOT_SUPPORTED:016x}"
    assert lines[1:3] == [f"S={0x96000010:016x}", f"F={UNMAPPED:016x}"]


def _standalone_memory_mb() -> int:
    """QEMU's RAM must reach past the firmware, which lives above guest RAM."""
    end = int(_core.FIRMWARE_BASE) + int(_core.FIRMWARE_SIZE)
    return max(256, (end - 0x4000_0000) >> 20)


def _firmware() -> Path:
    from armvcpu import firmware_path

    return Path(firmware_path())


HYPERCALLS = f"""
    ldr x0, ={UNKNOWN_ID:#x}
    hvc #0
    mov x19, x0
    ldr x0, ={CLAIMED_ID:#x}
    hvc #0
    mov x20, x0
    ldr x1, =0x40100000
    stp x19, x20, [x1]
    ldr x0, ={SYSTEM_OFF:#x}
    hvc #0
"""


def test_an_unknown_id_is_answered_in_el2_without_a_host_exit(no_leaked_qemu):
    with Hypervisor() as hv:
        hv.load(Guest.from_asm(HYPERCALLS))
        hv.enable_exit_log()
        # Claiming an ID the guest never calls turns off run()'s claim-all.
        hv.claim_hypercalls(0x10)
        seen = hv.run()
        x19, x20 = (int.from_bytes(hv.read_guest(0x4010_0000 + 8 * i, 8), "little")
                    for i in range(2))  # fmt: skip
        log = hv.firmware_exits()
    assert (x19, x20) == (NOT_SUPPORTED, NOT_SUPPORTED)
    assert [e.kind for e in seen] == [ExitKind.SystemDown]
    calls = [r for r in log if int(r["kind"]) == int(ExitKind.Hypercall)]
    assert [int(r["arg"]) for r in calls] == [UNKNOWN_ID, CLAIMED_ID]
    assert {int(r["handler"]) for r in calls} == {int(_core.ExitLogHandler.Firmware)}


def test_a_claimed_id_reaches_the_host(no_leaked_qemu):
    class Answers(Policy):
        @on.hypercall(nr=CLAIMED_ID)
        def claimed(self, exit):
            return 42

    with Hypervisor() as hv:
        hv.load(Guest.from_asm(HYPERCALLS))
        seen = hv.run(Answers())
        values = hv.read_guest(0x4010_0000, 16)
    assert [(e.kind, e.reason.nr if e.kind == ExitKind.Hypercall else None) for e in seen] == [
        (ExitKind.Hypercall, CLAIMED_ID), (ExitKind.SystemDown, None)]  # fmt: skip
    assert values == NOT_SUPPORTED.to_bytes(8, "little") + (42).to_bytes(8, "little")


def test_exits_claims_every_hypercall_by_default(no_leaked_qemu):
    with Hypervisor() as hv:
        hv.load(Guest.from_asm(HYPERCALLS))
        nrs = []
        for exit in hv.exits():
            if exit.kind == ExitKind.Hypercall:
                nrs.append(exit.reason.nr)  # left unanswered: the default, -1
        values = hv.read_guest(0x4010_0000, 16)
    assert nrs == [UNKNOWN_ID, CLAIMED_ID]
    assert values == NOT_SUPPORTED.to_bytes(8, "little") * 2


def test_run_claims_every_hypercall_without_a_handler_or_claims(no_leaked_qemu):
    with Hypervisor() as hv:
        hv.load(Guest.from_asm(HYPERCALLS))
        seen = hv.run()
        values = hv.read_guest(0x4010_0000, 16)
    assert [e.reason.nr for e in seen if e.kind == ExitKind.Hypercall] == [UNKNOWN_ID, CLAIMED_ID]
    assert values == NOT_SUPPORTED.to_bytes(8, "little") * 2  # the host's default


def test_a_policy_with_only_a_hypercall_rule_claims_just_that_id(no_leaked_qemu):
    class Rule(Policy):
        answer = on.hypercall(nr=CLAIMED_ID, result=7)

    with Hypervisor() as hv:
        hv.load(Guest.from_asm(HYPERCALLS))
        seen = hv.run(Rule())
        values = hv.read_guest(0x4010_0000, 16)
    assert [e.kind for e in seen] == [ExitKind.SystemDown]
    assert values == NOT_SUPPORTED.to_bytes(8, "little") + (7).to_bytes(8, "little")


def test_claim_hypercalls_takes_ids_and_ranges(no_leaked_qemu):
    with Hypervisor() as hv:
        hv.load(Guest.from_asm(HYPERCALLS))
        hv.claim_hypercalls(range(CLAIMED_ID, CLAIMED_ID + 1), (0x10, 0x20))
        nrs = [e.reason.nr for e in hv.exits() if e.kind == ExitKind.Hypercall]
    assert nrs == [CLAIMED_ID]


@pytest.mark.parametrize("bad", [True, "1", (3, 1), range(5, 5), -1, (0, 1 << 64)])
def test_bad_claims_are_refused(bad, no_leaked_qemu):
    with Hypervisor() as hv, pytest.raises((TypeError, ValueError)):
        hv.claim_hypercalls(bad)
    with Hypervisor() as hv, pytest.raises(ValueError):
        hv.claim_hypercalls()


# Records ESR_EL1 and ELR_EL1 of each exception its handler takes at
# 0x4010_0000 (pairs, count at 0x4010_0800) and returns past the instruction.
RECORDER = """
_start:
    adr x0, vectors
    msr vbar_el1, x0
    isb
    ldr x27, =0x40100000
    mov x28, #0
    ldr x0, =0x86000002
call:
    hvc #0                  // a policy answers: undefined instruction
    ldr x1, =0x0A000000
read:
    ldr w2, [x1]            // a policy answers: abort (data, load)
    ldr x1, =0x0A100000
write:
    str w2, [x1]            // a fast rule: abort (data, store)
    ldr x0, =0x86000003
rule_call:
    hvc #0                  // a fast rule: undefined instruction
    str x28, [x27, #0x800]
    ldr x0, =0x84000008
    hvc #0
    b .

sync_handler:
    mrs x9, esr_el1
    mrs x10, elr_el1
    mrs x11, far_el1
    lsl x12, x28, #4
    add x12, x12, x28, lsl #3
    add x12, x27, x12
    stp x9, x10, [x12]
    str x11, [x12, #16]
    add x28, x28, #1
    add x10, x10, #4
    msr elr_el1, x10
    eret

    .balign 0x800
vectors:
    .skip 0x200
    b sync_handler
"""


def recorder() -> tuple[Guest, dict[str, int]]:
    """RECORDER as a guest, and the addresses of its labels."""
    import io

    from elftools.elf.elffile import ELFFile

    elf = assemble(RECORDER, 0x4000_0000)
    symtab = ELFFile(io.BytesIO(elf)).get_section_by_name(".symtab")
    names = ("call", "read", "write", "rule_call")
    return Guest.from_elf(elf), {n: int(symtab.get_symbol_by_name(n)[0]["st_value"]) for n in names}


def test_policies_inject_aborts_and_undefined_instructions(transport, no_leaked_qemu):
    class Injects(Policy):
        @on.hypercall(nr=0x8600_0002)
        def undefined(self, exit):
            exit.inject_undef()

        @on.mmio(0x0A00_0000, 0x0A00_1000)
        def nothing_here(self, exit):
            exit.inject_abort()

        store_aborts = on.mmio(0x0A10_0000, 0x0A10_1000, abort=True)
        call_undefined = on.hypercall(nr=0x8600_0003, undef=True)

        @on.psci("SYSTEM_OFF")
        def read_back(self, exit):  # while the VM exists (the gdb transport)
            count = int.from_bytes(exit.vm.read(0x4010_0800, 8), "little")
            self.raw = exit.vm.read(0x4010_0000, 24 * count)
            return Policy.DEFAULT

    guest, symbols = recorder()
    policy = Injects()
    with Hypervisor(transport=transport) as hv:
        hv.load(guest)
        seen = hv.run(policy)
    raw = policy.raw
    taken = [tuple(int.from_bytes(raw[i + j : i + j + 8], "little") for j in (0, 8, 16))
             for i in range(0, len(raw), 24)]  # fmt: skip
    # Arm ARM golden values: EC 0x00 Unknown reason (IL RES1) = 0x02000000;
    # a data abort from EL1, synchronous external abort (DFSC 0b010000),
    # ISV = 0: 0x96000010, a store sets WnR: 0x96000050.
    assert [(esr, elr) for esr, elr, _ in taken] == [
        (0x0200_0000, symbols["call"]),
        (0x9600_0010, symbols["read"]),
        (0x9600_0050, symbols["write"]),
        (0x0200_0000, symbols["rule_call"]),
    ]
    assert taken[1][2] == 0x0A00_0000 and taken[2][2] == 0x0A10_0000  # FAR_EL1
    # The fast rules answered in EL2: only the handlers' exits reached the host.
    assert [e.kind for e in seen] == [ExitKind.Hypercall, ExitKind.MmioRead,
                                      ExitKind.SystemDown]  # fmt: skip


def test_inject_abort_takes_an_explicit_kind_and_address(no_leaked_qemu):
    guest, symbols = recorder()
    with Hypervisor() as hv:
        hv.load(guest)
        for exit in hv.exits():
            if exit.kind == ExitKind.Hypercall and exit.reason.nr == 0x8600_0002:
                exit.inject_abort("data", address=0x1234_5678)
            elif exit.kind == ExitKind.Hypercall and exit.reason.nr == 0x8600_0003:
                with pytest.raises(ValueError, match="kind"):
                    exit.inject_abort("both")  # type: ignore[arg-type]
                exit.inject_abort("instruction", address=exit.pc)
        raw = hv.read_guest(0x4010_0000, 24 * 4)
    esr0, elr0, far0 = (int.from_bytes(raw[j : j + 8], "little") for j in (0, 8, 16))
    assert (esr0, elr0, far0) == (0x9600_0010, symbols["call"], 0x1234_5678)
    # The two unmapped accesses the loop left unanswered: the default abort.
    assert int.from_bytes(raw[24:32], "little") == 0x9600_0010
    assert int.from_bytes(raw[48:56], "little") == 0x9600_0050
    esr3, elr3 = (int.from_bytes(raw[72 + j : 80 + j], "little") for j in (0, 8))
    assert (esr3, elr3) == (0x8600_0010, symbols["rule_call"])


# A guest without exception vectors (VBAR_EL1 = 0, where nothing is mapped)
# loads from an address with nothing behind it.
NO_VECTORS = f"""
    msr vbar_el1, xzr
    isb
    ldr x1, ={UNMAPPED:#x}
    ldr w2, [x1]
    b .
"""


def test_a_guest_without_vectors_stops_at_the_vector_instead_of_aborting_for_ever(
    transport, no_leaked_qemu
):
    """The default abort sends the guest to VBAR_EL1 + 0x200 (current EL,
    SP_ELx, synchronous); fetching there faults at stage 2 too. Another
    abort would only send it back there, so the VM stops at that exit."""
    with Hypervisor(transport=transport) as hv:
        hv.load(Guest.from_asm(NO_VECTORS))
        seen = hv.run()
    load, last = seen[-2], seen[-1]
    assert load.kind == ExitKind.MmioRead and load.reason.addr == UNMAPPED
    assert last.kind == ExitKind.NestedPageFault
    assert last.pc == 0x200 and last.reason.addr == 0x200
    flags = last.reason.access_flags
    assert flags & _core.ACCESS_EXECUTE and flags & _core.ACCESS_AT_INJECTED_VECTOR
    assert _core.default_stops_vm(last.record.reason)


COMPUTE = """
    ldr x0, =ITERATIONS
1:  subs x0, x0, #1
    b.ne 1b
    ldr x0, =0x84000008
    hvc #0
"""


def test_a_long_computation_is_not_taken_for_a_hang(tmp_path, no_leaked_qemu):
    """About 20 s of pure computation, no exit and no output: `armvcpu run`
    with no --timeout lets it finish (the old default gave up after 10 s)."""
    guest = tmp_path / "compute.elf"
    guest.write_bytes(assemble(COMPUTE.replace("ITERATIONS", str(_iterations_for(20.0))),
                               0x4000_0000))  # fmt: skip
    proc = subprocess.run([sys.executable, "-m", "armvcpu", "run", str(guest)],
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    assert proc.returncode == 0, proc.stderr


def _iterations_for(seconds: float) -> int:
    """Loop iterations that take about `seconds` on this machine's TCG (the
    test needs "longer than 10 s", not an exact time)."""
    probe = 50_000_000
    source = COMPUTE.replace("ITERATIONS", str(probe))
    with Hypervisor() as hv:
        hv.load(Guest.from_asm(source))
        t = time.monotonic()
        hv.run()
        elapsed = max(time.monotonic() - t, 0.01)
    return min(int(probe * seconds / elapsed), (1 << 48))


def test_a_guest_stuck_in_place_still_times_out_with_timeout(tmp_path, no_leaked_qemu):
    guest = tmp_path / "stuck.elf"
    guest.write_bytes(assemble("b .", 0x4000_0000))
    proc = subprocess.run([sys.executable, "-m", "armvcpu", "run", str(guest), "--timeout", "1"],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 3, proc.stderr
    assert "timeout" in proc.stderr


def test_ctrl_c_ends_a_run_cleanly(tmp_path, no_leaked_qemu):
    guest = tmp_path / "spin.elf"
    guest.write_bytes(assemble("b .", 0x4000_0000))
    before, files_before = qemu_pids(), shm_files()
    proc = subprocess.Popen([sys.executable, "-m", "armvcpu", "run", str(guest)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 120  # bounds a hang only
        while not (started := qemu_pids() - before):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "QEMU never started"
            time.sleep(0.05)
        # Past the start-up: the guest runs (its QEMU has mapped the RAM file).
        while _children_of(proc.pid) and not _session_running(proc.pid):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert "interrupted" in err
    assert all(pid_gone(pid) for pid in started)
    assert not shm_files() - files_before


def _children_of(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


def _session_running(pid: int) -> bool:
    """The run has unlinked its /dev/shm RAM file: the guest is running."""
    return not any(p.name.startswith(f"armvcpu-{pid}-") for p in Path("/dev/shm").glob("armvcpu-*"))
