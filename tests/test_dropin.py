"""``armvcpu run`` in place of ``qemu-system-aarch64``: the same command line,
the same results.

Every test runs the same command line twice, once on bare QEMU and once under
armvcpu, and compares what the guest printed and how the run ended. The guests
are raw images (what a unit-test runner for QEMU virt passes to ``-kernel``)
and Debian's own kernel.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from armvcpu.guests.devicetree import DeviceTree
from armvcpu.guests.guest import Guest

ARMVCPU = [sys.executable, "-m", "armvcpu", "run"]

# Printing on the PL011 (x20 = its data register), for the guests below.
_PRINT = r"""
puts:                             // x1: a NUL-terminated string
    ldrb w0, [x1], #1
    cbz w0, 9f
    str w0, [x20]
    b puts
9:  ret
puthex:                           // x2: the value, x3: its width in bits
    sub x3, x3, #4
    lsr x0, x2, x3
    and x0, x0, #0xf
    cmp x0, #10
    add x4, x0, #'0'
    add x5, x0, #('a' - 10)
    csel x0, x4, x5, lt
    str w0, [x20]
    cbnz x3, puthex
    ret
"""

# A raw image (linked where QEMU puts one: RAM + 0x80000) that prints x0 (the
# device tree QEMU or armvcpu handed it) and the whole tree in hex, then ends
# the run: by PSCI SYSTEM_OFF over HVC (the conduit the tree names without
# EL2, and the one armvcpu answers), or by semihosting's SYS_EXIT_EXTENDED
# with a status of its own when EXIT_CODE is not 0.
_DUMPER = r"""
    mov x19, x0
    ldr x20, =0x09000000          // PL011 data register
    adr x1, s_x0
    bl puts
    mov x2, x19
    mov x3, #64
    bl puthex
    ldr w21, [x19, #4]            // totalsize, big-endian
    rev w21, w21
    adr x1, s_dtb
    bl puts
    mov x22, #0
1:  cmp x22, x21
    b.ge 2f
    ldrb w2, [x19, x22]
    mov x3, #8
    bl puthex
    add x22, x22, #1
    b 1b
2:  mov w0, #'\n'
    str w0, [x20]
    mov x0, #EXIT_CODE
    cbnz x0, 3f
    ldr x0, =0x84000008           // PSCI SYSTEM_OFF
    hvc #0
    b .
3:  adr x1, exit_block            // semihosting SYS_EXIT_EXTENDED
    str x0, [x1, #8]
    mov x0, #0x20
    hlt #0xf000
    b .
PRINT_ROUTINES
    .align 3
exit_block: .quad 0x20026, 0      // ADP_Stopped_ApplicationExit, the status
s_x0: .asciz "x0=0x"
s_dtb: .asciz "\ndtb="
    .ltorg
""".replace("PRINT_ROUTINES\n", _PRINT)


def _raw_image(tmp_path: Path, exit_code: int = 0) -> Path:
    guest = Guest.from_asm(_DUMPER.replace("EXIT_CODE", str(exit_code)), 0x4008_0000)
    (segment,) = guest.segments
    path = tmp_path / f"test{exit_code}.bin"
    path.write_bytes(segment.data)
    return path


def _both(
    args: list[str], cwd: Path, timeout: float = 120
) -> tuple[subprocess.CompletedProcess[str], subprocess.CompletedProcess[str]]:
    def run(argv: list[str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL, errors="replace")  # fmt: skip

    return run(["qemu-system-aarch64", *args]), run([*ARMVCPU, *args])


def _dump(out: str) -> tuple[int, DeviceTree]:
    x0 = int(re.search(r"x0=0x([0-9a-f]{16})", out).group(1), 16)
    tree = DeviceTree.from_bytes(bytes.fromhex(re.search(r"dtb=([0-9a-f]+)", out).group(1)))
    return x0, tree


def _memory(tree: DeviceTree) -> tuple[int, int]:
    node = next(n for path, n in tree.walk() if path.startswith("/memory@"))
    hi, lo, size_hi, size_lo = node.u32s("reg")
    return hi << 32 | lo, size_hi << 32 | size_lo


def test_a_raw_test_image_gets_qemus_device_tree_at_qemus_address(tmp_path, no_leaked_qemu):
    """QEMU's -kernel with a raw image: entered at RAM + 0x80000 with x0 = the
    device tree, placed as QEMU places it; its memory is -m at 0x4000_0000,
    /chosen has -append and the initrd, /cpus has -smp CPUs."""
    image = _raw_image(tmp_path)
    (tmp_path / "env.txt").write_text("TESTNAME=dropin\n")
    args = ["-M", "virt", "-cpu", "max", "-m", "256M", "-smp", "2", "-nographic",
            "-kernel", image.name, "-initrd", "env.txt", "-append", "-p 1 -q"]  # fmt: skip
    bare, ours = _both(args, tmp_path)
    assert bare.returncode == 0, bare.stderr
    assert ours.returncode == 0, ours.stderr
    bare_x0, bare_tree = _dump(bare.stdout)
    x0, tree = _dump(ours.stdout)
    assert x0 == bare_x0 == 0x4820_0000  # QEMU-VIRT.md: -m 256 puts the tree there
    assert _memory(tree) == _memory(bare_tree) == (0x4000_0000, 256 << 20)
    chosen, bare_chosen = tree.node("/chosen"), bare_tree.node("/chosen")
    assert chosen.string("bootargs") == bare_chosen.string("bootargs") == "-p 1 -q"
    for prop in ("linux,initrd-start", "linux,initrd-end"):
        assert chosen.properties[prop] == bare_chosen.properties[prop]
    cpus = [p for p, _ in tree.walk() if re.fullmatch(r"/cpus/cpu@\d+", p)]
    assert len(cpus) == 2
    assert tree.node("/psci").string("method") == bare_tree.node("/psci").string("method") == "hvc"
    # What the guest printed is the same, byte for byte but for the tree's
    # edits (armvcpu's changes: vCPUs, PSCI, devices it does not pass through).
    assert ours.stdout.splitlines()[0] == bare.stdout.splitlines()[0]


def test_the_exit_status_is_qemus_when_the_guest_ends_qemu(tmp_path, no_leaked_qemu):
    """A guest that ends QEMU with a status of its own (semihosting's
    SYS_EXIT_EXTENDED) ends `armvcpu run` with that status too."""
    image = _raw_image(tmp_path, exit_code=3)
    args = ["-M", "virt", "-cpu", "max", "-m", "128M", "-nographic", "-semihosting",
            "-kernel", image.name]  # fmt: skip
    bare, ours = _both(args, tmp_path)
    assert bare.returncode == 3, bare.stderr
    assert ours.returncode == 3, ours.stderr
    assert _dump(ours.stdout)[0] == _dump(bare.stdout)[0]


@pytest.mark.parametrize(
    "extra,message",
    [
        (["-M", "virt,gic-version=4"], "gic-version=4"),
        (["-M", "virt", "-S"], "-S: armvcpu starts the CPUs itself"),
    ],
)
def test_what_cannot_be_honoured_is_one_line_naming_it(extra, message, tmp_path, no_leaked_qemu):
    image = _raw_image(tmp_path)
    out = subprocess.run([*ARMVCPU, *extra, "-kernel", str(image)], capture_output=True,
                         text=True, timeout=60)  # fmt: skip
    assert out.returncode == 2
    assert message in out.stderr and len(out.stderr.strip().splitlines()) == 1, out.stderr


@pytest.mark.timeout(600)
@pytest.mark.parametrize("gic", [3, 2], ids=["gicv3", "gicv2"])
def test_debians_kernel_boots_with_the_bare_qemu_command_line(gic, tmp_path, no_leaked_qemu):
    from armvcpu.guests.debian import MARKER, build_initramfs, fetch_linux_assets

    assets = fetch_linux_assets()
    (tmp_path / "initrd.gz").write_bytes(build_initramfs(assets.busybox))
    args = ["-M", f"virt,gic-version={gic}", "-cpu", "cortex-a57", "-m", "512M", "-smp", "2",
            "-nographic", "-kernel", str(assets.kernel), "-initrd", "initrd.gz",
            "-append", "console=ttyAMA0", "-device", "pci-testdev"]  # fmt: skip
    bare, ours = _both(args, tmp_path, timeout=500)
    marker = f"{MARKER} kernel={assets.release} cpus=2"
    assert bare.returncode == 0 and marker in bare.stdout, bare.stderr[-2000:]
    assert ours.returncode == 0, ours.stderr[-2000:]
    assert marker in ours.stdout
    # The firmware says nothing of its own: the console is the guest's.
    assert "armvcpu" not in ours.stdout.replace(MARKER, "")
    for what in ("Machine model: linux,dummy-virt", "Memory: ", "/524288K available",
                 "psci: PSCIv1.1 detected in firmware.",
                 # QEMU's own PSCI has no SMCCC_VERSION; under armvcpu neither.
                 "psci: SMC Calling Convention v1.0"):  # fmt: skip
        assert what in ours.stdout and what in bare.stdout

    # The same memory, to the kilobyte on a GICv3: reserved includes the device tree,
    # as large as QEMU's (1 MiB), and the tree Linux unflattens, which is
    # QEMU's own (its cpu-map, platform bus and PSCI ids kept), and KASLR is
    # on in both (fresh seeds in /chosen, as QEMU writes them).
    def memory(out: str) -> str:
        line = re.search(r"Memory: .*", out)
        assert line is not None, out[-2000:]
        return line.group(0)

    # Linux's reserved figure varies by a page from boot to boot of the same
    # command line on bare QEMU itself (KASLR's random offset: 45184K in 7 of 8
    # boots, 45188K in the eighth), so it may differ by 4 KiB either way. A
    # GICv2 guest's tree lacks QEMU's GICv2m frame (no MSI on GICv2,
    # docs/dropin.md): Linux unflattens one node less, 4 KiB less reserved.
    pattern = re.compile(r"Memory: (\S+) available (.*), (\d+)K reserved(.*)")
    ours_line, bare_line = (pattern.search(memory(run.stdout)) for run in (ours, bare))
    assert ours_line is not None and bare_line is not None
    assert ours_line.group(1, 2, 4) == bare_line.group(1, 2, 4)  # all but reserved
    fewer = int(bare_line.group(3)) - int(ours_line.group(3))
    assert abs(fewer - (0 if gic == 3 else 4)) <= 4, (memory(ours.stdout), memory(bare.stdout))
    for run in (ours, bare):
        assert "kernel page table isolation forced ON by KASLR" in run.stdout

    # Linux's PCI host driver enumerates the same bus: the host bridge, QEMU's
    # default NIC and the pci-testdev from the command line.
    # Every line of it, BARs included (QEMU's default NIC has an MSI-X BAR).
    def pci_lines(out: str) -> list[str]:
        return re.findall(r"\] (pci 0000:.*)", out)

    assert pci_lines(ours.stdout) == pci_lines(bare.stdout)
    assert any("[1b36:0005]" in line for line in pci_lines(ours.stdout)), pci_lines(ours.stdout)


def test_debians_u_boot_runs_from_flash_and_answers_the_console(tmp_path, no_leaked_qemu):
    """QEMU's -bios: Debian's U-Boot (qemu_arm64) in flash 0, the CPU starting
    there; it reaches its prompt, answers a command typed on stdin and powers
    off; bare QEMU does the same with the same command line and input."""
    from armvcpu.guests.debian import fetch_uboot

    bios = fetch_uboot()
    args = ["-M", "virt", "-cpu", "max", "-m", "256M", "-smp", "2", "-nographic",
            "-bios", str(bios)]  # fmt: skip
    for argv in (["qemu-system-aarch64", *args], [*ARMVCPU, *args]):
        proc = subprocess.Popen(argv, cwd=tmp_path, stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
        try:
            out = _type_at_prompt(proc, [b"\n", b"version\n", b"qfw cpus\n", b"pci\n",
                                         b"poweroff\n"])  # fmt: skip
            assert proc.wait(60) == 0, proc.stderr.read() if proc.stderr else ""
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        text = out.decode(errors="replace")
        assert "DRAM:  256 MiB" in text
        assert "U-Boot 2023" in text.split("=> version", 1)[1]  # the answer to our command
        assert "2 cpu(s) online" in text  # fw_cfg, passed through, answers as QEMU's
        # U-Boot's own PCIe driver finds the host bridge and QEMU's default NIC.
        assert re.search(r"00\.01\.00\s+0x1af4\s+0x1000", text), text
        assert "poweroff ..." in text


@pytest.mark.timeout(600)
def test_debians_u_boot_boots_the_kernel_qemu_hands_it_through_fw_cfg(tmp_path, no_leaked_qemu):
    """QEMU's -bios with -kernel: QEMU puts the kernel, initramfs and command
    line in fw_cfg, U-Boot loads them from there and boots Linux, which
    reaches its marker; the same command line on bare QEMU does the same
    (and QEMU with -bios has an ACPI GED, not a PL061, in both trees)."""
    from armvcpu.guests.debian import MARKER, build_initramfs, fetch_linux_assets, fetch_uboot

    assets = fetch_linux_assets()
    (tmp_path / "initrd.gz").write_bytes(build_initramfs(assets.busybox))
    args = ["-M", "virt", "-cpu", "cortex-a57", "-m", "512M", "-nographic",
            "-bios", str(fetch_uboot()), "-kernel", str(assets.kernel), "-initrd", "initrd.gz",
            "-append", "console=ttyAMA0"]  # fmt: skip
    bare, ours = _both(args, tmp_path, timeout=500)
    marker = f"{MARKER} kernel={assets.release} cpus=1"
    for run in (bare, ours):
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
        assert "Starting kernel ..." in run.stdout  # U-Boot's booti
        assert marker in run.stdout
        assert "Internal error" not in run.stdout


def _type_at_prompt(proc: subprocess.Popen[bytes], lines: list[bytes]) -> bytes:
    """Read the console; at each '=> ' prompt, type the next line (the first
    keypress also stops U-Boot's autoboot countdown)."""
    import os
    import select
    import time

    assert proc.stdout is not None and proc.stdin is not None
    out = b""
    deadline = time.monotonic() + 120
    fd = proc.stdout.fileno()
    while lines and time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 1.0)
        if ready:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            out += chunk
        waiting = out.rstrip().endswith(b"=>") or out.endswith(b"autoboot:  2 ")
        if waiting:
            proc.stdin.write(lines.pop(0))
            proc.stdin.flush()
            time.sleep(0.5)  # let the echo arrive before looking for the next prompt
    while time.monotonic() < deadline:  # to the end of the output, after QEMU is gone too
        ready, _, _ = select.select([fd], [], [], 1.0)
        if ready:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            out += chunk
    return out


# A raw image that turns on its MMU with RAM mapped as Tagged Normal memory,
# tags a granule with 3, loads through a pointer tagged 3 (fine) and one
# tagged 5 (a synchronous tag check fault, SCTLR_EL1.TCF = 01), and prints
# what its own exception vector saw: ESR_EL1 and the fault address.
_MTE_GUEST = r"""
    .arch armv8.5-a+memtag
    ldr x20, =0x09000000
    adr x0, l1_table
    ldr x1, =0x401                    // 0 GiB: a block, Device-nGnRnE (AttrIndx 0), AF
    str x1, [x0]
    ldr x1, =0x40000705               // 1 GiB: a block, Tagged Normal (AttrIndx 1), ISH, AF
    str x1, [x0, #8]
    msr ttbr0_el1, x0
    ldr x1, =0xf000                   // MAIR_EL1: Attr0 Device-nGnRnE, Attr1 Tagged Normal
    msr mair_el1, x1
    // TCR_EL1: T0SZ 25, walks write-back inner shareable, EPD1, IPS 40 bits, TBI0
    ldr x1, =(25 | (1 << 8) | (1 << 10) | (3 << 12) | (1 << 23) | (2 << 32) | (1 << 37))
    msr tcr_el1, x1
    adr x1, vectors
    msr vbar_el1, x1
    isb
    // SCTLR_EL1: RES1 bits, M, C, I, TCF = 01 (synchronous), ATA
    ldr x1, =(0x30d00800 | 1 | (1 << 2) | (1 << 12) | (1 << 40) | (1 << 43))
    msr sctlr_el1, x1
    isb
    msr tco, #0
    adr x3, granule
    orr x4, x3, #0x0300000000000000
    stg x4, [x4]                      // the granule's tag is 3
    ldr x5, [x4]                      // tag 3 through a pointer tagged 3: no fault
    movz x7, #0x0500, lsl #48
    orr x6, x3, x7
    ldr x5, [x6]                      // tag 5: a tag check fault
    adr x1, s_none
    bl puts
    b off
    .align 11
vectors:
    .space 0x200
    mrs x2, esr_el1                   // current EL with SP_ELx, synchronous
    adr x1, s_esr
    bl puts
    mov x3, #32
    bl puthex
    mrs x2, far_el1
    and x2, x2, #0x00ffffffffffffff   // FAR[63:56] may hold the tag or be UNKNOWN
    adr x1, s_far
    bl puts
    mov x3, #64
    bl puthex
    mov w0, #'\n'
    str w0, [x20]
off:
    ldr x0, =0x84000008
    hvc #0
    b .
PRINT_ROUTINES
s_none: .asciz "no tag check fault\n"
s_esr: .asciz "esr=0x"
s_far: .asciz " far=0x"
    .ltorg
    .align 12
l1_table: .space 4096
    .align 4
granule: .space 64
""".replace("PRINT_ROUTINES\n", _PRINT)


@pytest.mark.parametrize("machine,esr", [("virt,mte=on", 0x9600_0011), ("virt", 0x0200_0000)])
def test_mte_tags_work_in_the_guest_with_mte_on(machine, esr, tmp_path, no_leaked_qemu):
    """-M virt,mte=on: the guest's own tag check fault is taken at EL1, with
    the ESR_EL1 (EC 0x25, DFSC 0x11: a synchronous tag check fault) and fault
    address bare QEMU gives it; without mte=on its first MTE instruction is
    UNDEFINED (EC 0x00), as on bare QEMU. The last line of output counts too:
    the console is read to QEMU's end."""
    (segment,) = Guest.from_asm(_MTE_GUEST, 0x4008_0000).segments
    (tmp_path / "mte.bin").write_bytes(segment.data)
    args = ["-M", machine, "-cpu", "max", "-m", "128M", "-nographic", "-kernel", "mte.bin"]
    bare, ours = _both(args, tmp_path)
    assert bare.returncode == 0 and ours.returncode == 0, ours.stderr
    line = re.search(r"esr=0x([0-9a-f]{8}) far=0x([0-9a-f]{16})", bare.stdout)
    assert line is not None, bare.stdout
    assert int(line.group(1), 16) == esr
    assert line.group(0) in ours.stdout, ours.stdout


# A raw image that scans PCI bus 0 through QEMU virt's ECAM (the high one at
# 0x40_1000_0000, where QEMU's tree puts it for a machine with highmem) and
# prints each function's vendor/device and class; then it gives the
# pci-testdev (1b36:0005) BAR 0 an address in the low MMIO window, turns on
# memory decoding, and prints the first words of its test register block.
_PCI_SCAN = r"""
    ldr x20, =0x09000000          // PL011 data register
    ldr x21, =0x4010000000        // ECAM: bus 0
    mov x22, #0                   // device
1:  lsl x23, x22, #15
    add x23, x23, x21             // config space of 00:<dev>.0
    ldr w24, [x23]                // vendor | device << 16
    mov w0, #0xffff
    and w1, w24, w0
    cmp w1, w0
    b.eq 2f
    adr x1, s_dev
    bl puts
    mov x2, x22
    mov x3, #8
    bl puthex
    mov w0, #' '
    str w0, [x20]
    mov x2, x24
    mov x3, #32
    bl puthex
    mov w0, #' '
    str w0, [x20]
    ldr w2, [x23, #8]             // class code | revision
    mov x3, #32
    bl puthex
    mov w0, #'\n'
    str w0, [x20]
    ldr w0, =0x00051b36           // pci-testdev: remember its config space
    cmp w24, w0
    csel x25, x23, x25, eq
2:  add x22, x22, #1
    cmp x22, #32
    b.lt 1b
    cbz x25, 4f
    ldr w0, =0x10000000           // BAR 0 in the low MMIO window
    str w0, [x25, #0x10]
    mov w0, #2                    // COMMAND: memory space enable
    strh w0, [x25, #4]
    ldr x26, =0x10000000
    adr x1, s_bar
    bl puts
    ldr w2, [x25, #0x10]
    mov x3, #32
    bl puthex
    mov x27, #0
3:  mov w0, #' '
    str w0, [x20]
    ldr w2, [x26, x27]
    mov x3, #32
    bl puthex
    add x27, x27, #4
    cmp x27, #32
    b.lt 3b
    mov w0, #'\n'
    str w0, [x20]
4:  ldr x0, =0x84000008           // PSCI SYSTEM_OFF
    hvc #0
    b .
PRINT_ROUTINES
s_dev: .asciz "pci 00:"
s_bar: .asciz "bar0="
    .ltorg
""".replace("PRINT_ROUTINES\n", _PRINT)


def test_a_pcie_device_from_the_command_line_answers_in_config_space(tmp_path, no_leaked_qemu):
    """-device pci-testdev: the guest finds it on bus 0 through the ECAM with
    QEMU's IDs (Red Hat's 1b36, device 0005), next to the host bridge
    (1b36:0008) and QEMU's default NIC (virtio-net-pci, 1af4:1000), and reads
    its BAR 0 registers once it has given the BAR an address: all as on bare
    QEMU."""
    guest = Guest.from_asm(_PCI_SCAN, 0x4008_0000)
    (segment,) = guest.segments
    (tmp_path / "scan.bin").write_bytes(segment.data)
    args = ["-M", "virt", "-cpu", "cortex-a57", "-m", "128M", "-nographic",
            "-device", "pci-testdev", "-kernel", "scan.bin"]  # fmt: skip
    bare, ours = _both(args, tmp_path)
    assert bare.returncode == 0, bare.stderr
    assert ours.returncode == 0, ours.stderr
    assert "pci 00:00 00081b36 06000000" in bare.stdout  # the host bridge: class 0600
    assert "pci 00:01 10001af4 02000000" in bare.stdout  # QEMU's default NIC, virtio-net
    assert "pci 00:02 00051b36 00ff0000" in bare.stdout  # pci-testdev: class 00ff
    assert "bar0=10000000" in bare.stdout
    assert ours.stdout == bare.stdout
