"""The guest's vGICv2 against QEMU's own GICv2: the same raw test image runs
on bare ``qemu-system-aarch64 -M virt,gic-version=2`` and under ``armvcpu
run`` with the same command line, reads and writes its distributor (GICD,
emulated in EL2 under armvcpu) and prints what it saw; the two must agree.
Golden values are what QEMU's GICv2 model really answers, and where the
GICv2 specification (IHI 0048B) and QEMU differ the test names the register.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from armvcpu import Guest, Hypervisor

from .test_dropin import _PRINT

ARMVCPU = [sys.executable, "-m", "armvcpu", "run"]

# (what, offset, width, value written first or None). Reads of vCPU 0's view.
# ITARGETSR0..6 (SGIs and PPIs 0..27) are left out: IHI 0048B 4.3.12 says each
# byte reads as the reading CPU's own bit, which armvcpu's model does; QEMU 7.2
# answers that only for PPIs 29..31 (arm_gic.c, gic_dist_readb) and 0 for the rest.
ACCESSES: list[tuple[str, int, int, int | None]] = [
    ("CTLR", 0x000, 4, None),
    ("TYPER", 0x004, 4, None),
    ("IIDR", 0x008, 4, None),
    ("IGROUPR0", 0x080, 4, None),
    ("ISENABLER0", 0x100, 4, None),
    ("ISENABLER1", 0x104, 4, None),
    ("ISPENDR0", 0x200, 4, None),
    ("ISACTIVER0", 0x300, 4, None),
    ("IPRIORITYR8", 0x420, 4, None),
    ("ITARGETSR7.b31", 0x81F, 1, None),
    ("ITARGETSR8", 0x820, 4, None),
    ("ICFGR0", 0xC00, 4, None),
    ("ICFGR2", 0xC08, 4, None),
    ("PIDR4", 0xFD0, 4, None),
    ("PIDR0", 0xFE0, 4, None),
    ("PIDR1", 0xFE4, 4, None),
    ("PIDR2", 0xFE8, 4, None),
    ("PIDR3", 0xFEC, 4, None),
    ("CIDR0", 0xFF0, 4, None),
    ("CIDR1", 0xFF4, 4, None),
    ("CIDR2", 0xFF8, 4, None),
    ("CIDR3", 0xFFC, 4, None),
    # Writes, read back: the distributor on; a byte of priority; an SPI's target
    # byte (CPU 1); SPI 40's enable set then cleared; ICFGR of SPIs 32..47.
    ("CTLR=1", 0x000, 4, 0x1),
    ("IPRIORITYR10.b2=0x80", 0x42A, 1, 0x80),
    ("IPRIORITYR10", 0x428, 4, None),
    ("ITARGETSR10.b1=2", 0x829, 1, 0x2),
    ("ITARGETSR10", 0x828, 4, None),
    ("ISENABLER1=bit8", 0x104, 4, 1 << 8),
    ("ICENABLER1=bit8", 0x184, 4, 1 << 8),
    ("ICENABLER1", 0x184, 4, None),
    ("ICFGR2=0xaaaaaaaa", 0xC08, 4, 0xAAAAAAAA),
    ("ISPENDR1=bit9", 0x204, 4, 1 << 9),
    ("ISPENDR1", 0x204, 4, None),
    ("ICPENDR1=bit9", 0x284, 4, 1 << 9),
    # GICD_SGIR: SGI 5 to this CPU only (filter 2); this CPU interface is off,
    # so it stays pending: ISPENDR0 bit 5 and SPENDSGIR1 byte 1 (source CPU 0).
    ("SGIR=self,5", 0xF00, 4, (2 << 24) | 5),
    ("ISPENDR0", 0x200, 4, None),
    ("SPENDSGIR1", 0xF24, 4, None),
    ("CPENDSGIR1.b1=1", 0xF25, 1, 0x1),
    ("SPENDSGIR1", 0xF24, 4, None),
    ("ISPENDR0", 0x200, 4, None),
]


def _dumper() -> str:
    """A raw image (at RAM + 0x80000) that makes ACCESSES and prints each read."""
    lines = [
        "    ldr x20, =0x09000000          // PL011 data register",
        "    ldr x19, =0x08000000          // GICD",
    ]
    for i, (_, offset, width, value) in enumerate(ACCESSES):
        lines.append(f"    ldr x9, ={offset:#x}")
        if value is not None:
            lines.append(f"    ldr x2, ={value:#x}")
            store = "strb" if width == 1 else "str"
            lines.append(f"    {store} w2, [x19, x9]")
            lines.append("    dsb sy")
            continue
        load = "ldrb" if width == 1 else "ldr"
        lines += [
            f"    adr x1, s{i}",
            "    bl puts",
            f"    {load} w2, [x19, x9]",
            f"    mov x3, #{8 * width}",
            "    bl puthex",
            "    mov w0, #'\\n'",
            "    str w0, [x20]",
        ]
    lines += ["    ldr x0, =0x84000008           // PSCI SYSTEM_OFF", "    hvc #0", "    b ."]
    lines.append(_PRINT)
    lines += [f's{i}: .asciz "{what}="' for i, (what, *_rest) in enumerate(ACCESSES)]
    lines.append("    .ltorg")
    return "\n".join(lines)


def _image(tmp_path: Path) -> Path:
    (segment,) = Guest.from_asm(_dumper(), 0x4008_0000).segments
    path = tmp_path / "gicd.bin"
    path.write_bytes(segment.data)
    return path


def _values(out: str) -> list[tuple[str, str]]:
    return re.findall(r"^([A-Za-z0-9.]+)=([0-9a-f]+)$", out, re.MULTILINE)


@pytest.mark.parametrize("smp", [1, 2])
def test_gicd_reads_and_writes_as_on_bare_qemu(smp, tmp_path, no_leaked_qemu):
    image = _image(tmp_path)
    args = ["-M", "virt,gic-version=2", "-cpu", "cortex-a57", "-smp", str(smp), "-m", "256M",
            "-nographic", "-kernel", str(image)]  # fmt: skip

    def run(argv: list[str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run(argv, capture_output=True, text=True, timeout=120,
                              stdin=subprocess.DEVNULL, errors="replace")  # fmt: skip

    bare = run(["qemu-system-aarch64", *args])
    ours = run([*ARMVCPU, *args])
    assert bare.returncode == 0 and ours.returncode == 0, ours.stderr[-2000:]
    expected = _values(bare.stdout)
    reads = sum(value is None for *_rest, value in ACCESSES)
    assert len(expected) == reads, bare.stdout
    assert _values(ours.stdout) == expected
    # A few of QEMU's answers, as the specification reads them.
    seen = dict(expected)
    assert int(seen["TYPER"], 16) == 8 | (smp - 1) << 5  # 288 INTIDs, smp CPU interfaces
    assert int(seen["PIDR2"], 16) >> 4 == 2  # ArchRev: GICv2
    assert int(seen["ICFGR0"], 16) == 0xAAAAAAAA  # SGIs are edge-triggered
    assert int(seen["IPRIORITYR10"], 16) == 0x80 << 16


def test_hypervisor_refuses_a_gic_version_qemu_has_not():
    with pytest.raises(ValueError, match="gic=4"):
        Hypervisor(gic=4)


def test_the_virtual_interface_control_is_not_the_guests(no_leaked_qemu):
    """GICH (0x0803_0000) is the hypervisor's: stage 2 does not map it, so a
    guest's write to GICH_LR0 is an exit, never a list register; its GICC
    address is the hardware GICV, whose GICC_IIDR reads as a GICv2 CPU
    interface (ArchRev 2 in [19:16], Arm's 0x43B), without an exit."""
    guest = Guest.from_asm(
        """
        mov x9, #0x08010000
        ldr w1, [x9, #0xfc]          // GICC_IIDR, through GICV
        mov x0, #3
        hvc #0
        mov x9, #0x08030000
        mov w0, #0x10000000
        str w0, [x9, #0x100]         // GICH_LR0
        ldr x0, =0x84000008
        hvc #0
        """
    )
    with Hypervisor(gic=2) as hv:
        hv.load(guest)
        exits = hv.run(lambda e: 0 if e.kind.name == "Hypercall" else None)
    report, write = exits[0], exits[1]
    assert report.reason.nr == 3 and report.reason.args[0] == (2 << 16) | 0x43B
    assert write.kind.name == "MmioWrite" and write.reason.addr == 0x0803_0100


def test_four_vms_each_with_its_gicv(no_leaked_qemu):
    """Four VMs on a GICv2 machine, the PL011 passed through: each stage 2
    maps its GICC to GICV besides its RAM and the UART (the firmware's table
    pool holds them all: with 16 pages the fourth VM did not start), and
    each runs and ends."""
    from .test_vms import _guest

    with Hypervisor(smp=4, gic=2, memory_mb=64, uart="passthrough") as hv:
        hv.load(_guest(1))
        for n in range(3):
            hv.add_vm(_guest(n + 2))
        exits = hv.run(lambda e: 0 if e.kind.name == "Hypercall" else None)
        console = hv.console
    reports = {e.vm_id: e.reason.args[:2] for e in exits if e.kind.name == "Hypercall"}
    assert reports == {k: (k, k) for k in (1, 2, 3, 4)}
    assert "not started" not in console


PENDED_THEN_ENABLED = """
    mov x19, #0x08000000
    mov w0, #1
    str w0, [x19]                // GICD_CTLR.EnableGrp0
    mov w0, #(1 << 8)
    str w0, [x19, #0x204]        // GICD_ISPENDR1: SPI 40 pending, still disabled
    msr daifclr, #2
    mov x0, #1
    hvc #0                       // not taken yet: report x21 (0)
    mov x1, x21
    mov w0, #(1 << 8)
    str w0, [x19, #0x104]        // GICD_ISENABLER1: now it is delivered
1:  cbz x21, 1b
    mov x0, #3
    mov x2, x21
    hvc #0
    ldr x0, =0x84000008
    hvc #0
"""


def test_a_pended_spi_is_delivered_once_enabled(no_leaked_qemu):
    """IHI 0048B 4.3.5/4.3.7: an interrupt made pending while disabled is
    forwarded once enabled; the guest takes SPI 40 only after its enable."""
    from .test_interrupts import gic_program

    with Hypervisor(gic=2, vgic=True) as hv:
        hv.load(Guest.from_asm(gic_program(2, PENDED_THEN_ENABLED)))
        exits = hv.run(lambda e: 0 if e.kind.name == "Hypercall" else None)
    report = next(e for e in exits if e.kind.name == "Hypercall" and e.reason.nr == 3)
    before, taken = report.reason.args[:2]
    assert before == 0 and taken == 40
