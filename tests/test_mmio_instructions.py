"""Real load/store instructions against unmapped memory, under real QEMU.

QEMU's CPU produces the syndrome of each access; the core classifies it in
the firmware; the expectations are written from the Arm ARM (DDI 0487,
D17.2.37, "ISS encoding for an exception from a Data Abort"): ISV is 1 only
for a load or store of a single general-purpose register without writeback,
Acquire/Release forms included (with AR = 1), Load/Store Exclusive excluded;
SAS is the access size, SSE marks sign-extending loads, SF a 64-bit Rt.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from armvcpu import ExitKind, Guest, Hypervisor, _core

BASE = 0x0900_0000  # not mapped in stage 2 for the guest
DEVICE_VALUE = 0x8182_8384_8586_8788
STORE_VALUE = 0x1122_3344_5566_7788


@dataclass(frozen=True)
class Form:
    asm: str
    kind: ExitKind
    addr: int = BASE
    width: int = 0
    reg: int = 0
    reg_width: int = 0
    signed: bool = False
    result: int | None = None  # register value after the read completes
    data: int | None = None  # for stores: what the device receives
    acquire_release: bool = False


FORMS = [
    Form("ldr x3, [x10]", ExitKind.MmioRead, BASE, 8, 3, 8, False, DEVICE_VALUE),
    Form("ldr w4, [x10, #4]", ExitKind.MmioRead, BASE + 4, 4, 4, 4, False, 0x85868788),
    Form("ldrb w5, [x10, #1]", ExitKind.MmioRead, BASE + 1, 1, 5, 4, False, 0x88),
    Form("ldrh w6, [x10, #2]", ExitKind.MmioRead, BASE + 2, 2, 6, 4, False, 0x8788),
    Form("ldrsb x7, [x10]", ExitKind.MmioRead, BASE, 1, 7, 8, True, 0xFFFF_FFFF_FFFF_FF88),
    Form("ldrsb w8, [x10]", ExitKind.MmioRead, BASE, 1, 8, 4, True, 0xFFFF_FF88),
    Form("ldrsh x9, [x10]", ExitKind.MmioRead, BASE, 2, 9, 8, True, 0xFFFF_FFFF_FFFF_8788),
    Form("ldrsh w9, [x10]", ExitKind.MmioRead, BASE, 2, 9, 4, True, 0xFFFF_8788),
    Form("ldrsw x11, [x10]", ExitKind.MmioRead, BASE, 4, 11, 8, True, 0xFFFF_FFFF_8586_8788),
    Form("ldur x12, [x10, #-8]", ExitKind.MmioRead, BASE - 8, 8, 12, 8, False, DEVICE_VALUE),
    Form("ldr x13, [x10, x14]", ExitKind.MmioRead, BASE + 16, 8, 13, 8, False, DEVICE_VALUE),
    Form("ldar x15, [x10]", ExitKind.MmioRead, BASE, 8, 15, 8, False, DEVICE_VALUE,
         acquire_release=True),
    Form("ldarb w15, [x10]", ExitKind.MmioRead, BASE, 1, 15, 4, False, 0x88,
         acquire_release=True),
    Form("str x16, [x10]", ExitKind.MmioWrite, BASE, 8, data=STORE_VALUE),
    Form("str w16, [x10, #8]", ExitKind.MmioWrite, BASE + 8, 4, data=0x55667788),
    Form("strh w16, [x10]", ExitKind.MmioWrite, BASE, 2, data=0x7788),
    Form("strb w16, [x10, #3]", ExitKind.MmioWrite, BASE + 3, 1, data=0x88),
    Form("stlr x16, [x10]", ExitKind.MmioWrite, BASE, 8, data=STORE_VALUE,
         acquire_release=True),
    Form("str xzr, [x10]", ExitKind.MmioWrite, BASE, 8, data=0),
    # ISV = 0: the syndrome does not describe these; never decoded from it.
    Form("ldp x17, x18, [x10]", ExitKind.NestedPageFault),
    Form("stp x16, x16, [x10]", ExitKind.NestedPageFault),
    Form("ldr x17, [x10], #8", ExitKind.NestedPageFault),  # post-index writeback
    Form("ldr x17, [x10, #8]!", ExitKind.NestedPageFault, BASE + 8),  # pre-index writeback
    Form("ldxr x17, [x10]", ExitKind.NestedPageFault),  # exclusive
    # (No STXR: with its exclusive monitor open, QEMU fails it without an access.)
    Form("ldadd x16, x17, [x10]", ExitKind.NestedPageFault),  # FEAT_LSE atomic
    Form("ldr q0, [x10]", ExitKind.NestedPageFault),  # SIMD&FP register
]  # fmt: skip

REPORT = 3  # hypercall: x1 = the register just loaded


def _guest_source() -> str:
    lines = [
        ".arch armv8.1-a",
        # CPACR_EL1.FPEN = 0b11: without it the SIMD&FP load traps to EL1 first.
        "mov x0, #(3 << 20)",
        "msr cpacr_el1, x0",
        "isb",
        f"movz x10, #{BASE >> 16:#x}, lsl #16",
        "mov x14, #16",
        f"ldr x16, ={STORE_VALUE:#x}",
    ]
    for form in FORMS:
        lines.append(form.asm)
        if form.kind == ExitKind.MmioRead:
            lines += [f"mov x0, #{REPORT}", f"mov x1, x{form.reg}", "hvc #0"]
    lines += ["ldr x0, =0x84000008", "hvc #0"]
    return "\n".join(lines)


def _encoding(asm: str) -> bytes:
    """The instruction word, from the real assembler."""
    return Guest.from_asm(f".arch armv8.1-a\n{asm}").segments[0].data[:4]


@pytest.fixture(scope="module", params=["shm", "gdb"])
def observed(request):
    """Run the guest once; pair every exit with the form that caused it."""
    results: list[tuple[Form, object, bytes, int | None]] = []
    forms = iter(FORMS)
    pending_read: Form | None = None
    with Hypervisor(transport=request.param) as hv:
        hv.load(Guest.from_asm(_guest_source()))
        for exit in hv.exits():
            if exit.kind == ExitKind.Hypercall and exit.reason.nr == REPORT:
                assert pending_read is not None
                results[-1] = (*results[-1][:3], exit.regs.x1)
                pending_read = None
                continue
            if exit.kind == ExitKind.SystemDown:
                continue
            form = next(forms)
            word = hv.read_guest(exit.pc, 4)  # the access itself, emulated or not
            text = exit.instruction
            results.append((form, exit, word, None))
            assert text.split()[0] == form.asm.split()[0], (text, form.asm)
            if exit.kind == ExitKind.MmioRead:
                pending_read = form
                exit.complete_read(DEVICE_VALUE)
            elif exit.kind == ExitKind.NestedPageFault:
                exit.resume(pc=exit.pc + 4)  # the host skips what it cannot emulate
            else:
                exit.resume()  # a store: the device took it
    assert len(results) == len(FORMS)
    return results


@pytest.mark.parametrize("index", range(len(FORMS)), ids=[f.asm for f in FORMS])
def test_instruction_form(observed, index):
    form, exit, word, loaded = observed[index]
    assert exit.kind == form.kind, f"{form.asm}: {exit.reason!r}"
    # Differential: the host core reaches the firmware's conclusion from the
    # same syndrome and registers.
    assert repr(exit.reclassify()) == repr(exit.reason)
    # The exit belongs to this instruction: the PC was moved past it exactly
    # when it was emulated (MMIO), and left on it otherwise.
    assert word == _encoding(form.asm)
    da = dict((name, value) for name, _, _, value in exit.esr.fields())
    assert exit.esr.exception_class == _core.ExceptionClass.DataAbortLower
    if form.kind == ExitKind.NestedPageFault:
        assert da["ISV"] == 0
        assert exit.reason.access_flags & _core.ACCESS_NO_SYNDROME
        assert exit.reason.addr == form.addr
        return
    assert da["ISV"] == 1
    assert da["AR"] == int(form.acquire_release)
    r = exit.reason
    assert r.addr == form.addr
    assert r.width == form.width
    if form.kind == ExitKind.MmioRead:
        assert (r.reg, r.reg_width, r.signed_ext) == (form.reg, form.reg_width, form.signed)
        assert loaded == form.result, f"{form.asm}: x{form.reg} = {loaded:#x}"
    else:
        assert r.data == form.data
