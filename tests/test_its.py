"""MSIs through the ITS: a PCIe device's message-signalled interrupt reaches
the guest as an LPI, as on the bare machine.

armvcpu passes QEMU's own ITS through to VM 1 (which owns the PCIe devices)
and forwards the redistributors' LPI registers to the physical ones; each
physical LPI is taken at EL2 and put into a list register as a virtual LPI
(docs/architecture.md, "ITS and LPIs", says why and what it costs). The
golden output is what bare QEMU 7.2 printed for the same command line.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from armvcpu import Guest
from armvcpu.guests.debian import VIRTIO_PCI_DISK, device_init
from armvcpu.guests.devicetree import DeviceTree, guest_device_tree, qemu_device_tree

ARMVCPU = [sys.executable, "-m", "armvcpu", "run"]
GUEST_SOURCE = Path(__file__).with_name("its_guest.c")


def _image(tmp_path: Path, raises: int = 5) -> Path:
    source = GUEST_SOURCE.read_text().replace("#define NRAISE 5", f"#define NRAISE {raises}")
    (segment,) = Guest.from_c(source, 0x4008_0000).segments
    path = tmp_path / "its.bin"
    path.write_bytes(segment.data)
    return path


def _run(argv: list[str], cwd: Path) -> str:
    done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=180,
                          stdin=subprocess.DEVNULL, errors="replace")  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


@pytest.mark.parametrize("machine", ["virt,gic-version=3", "virt,gic-version=3,iommu=smmuv3"],
                         ids=["its", "its+smmuv3"])  # fmt: skip
def test_an_msi_from_a_pcie_device_arrives_as_the_lpi_the_guest_mapped(
    machine, tmp_path, no_leaked_qemu
):
    """The edu device's MSI, aimed at GITS_TRANSLATER with EventID 0 and
    mapped by MAPD/MAPC/MAPTI to LPI 8195, is taken five times out of five;
    GICD_TYPER.LPIS, GICR_TYPER.PLPIS, the ITS's registers and the LPI
    tables read back as on bare QEMU. Then six more events mapped to six
    LPIs (MAPTI) are raised at once by INT commands, more than the four list
    registers hold: all six arrive. With the SMMUv3 on (armvcpu confines
    PCIe DMA to VM 1's RAM) the device's write to the doorbell still
    translates."""
    image = _image(tmp_path)
    args = ["-M", machine, "-cpu", "max", "-m", "128M", "-nographic",
            "-device", "edu", "-kernel", image.name]  # fmt: skip
    bare = _run(["qemu-system-aarch64", *args], tmp_path)
    assert "GICD_TYPER.LPIS=1" in bare and "received=05" in bare, bare
    assert bare.count("LPI 2003") == 5  # 8195
    assert "burst=003f" in bare  # six LPIs raised at once by INT, all taken
    ours = _run([*ARMVCPU, *args], tmp_path)
    assert ours == bare


def test_lpi_tables_outside_the_vms_ram_are_refused(tmp_path, no_leaked_qemu):
    """The redistributor reads and writes the LPI tables at the physical
    addresses the guest names, past stage 2: GICR_PROPBASER/PENDBASER
    pointing at the firmware (0x2_0000_0000, outside VM 1's RAM) keep their
    values under armvcpu (bare QEMU takes them), whole or by 32-bit half;
    tables in the guest's RAM then work as before."""
    source = GUEST_SOURCE.read_text().replace("#define PROBE 0", "#define PROBE 1")
    (segment,) = Guest.from_c(source, 0x4008_0000).segments
    (tmp_path / "its.bin").write_bytes(segment.data)
    args = ["-M", "virt,gic-version=3", "-cpu", "max", "-m", "128M", "-nographic",
            "-device", "edu", "-kernel", "its.bin"]  # fmt: skip
    bare = _run(["qemu-system-aarch64", *args], tmp_path)
    ours = _run([*ARMVCPU, *args], tmp_path)
    assert "probe GICR_PROPBASER=000000020000000d" in bare
    assert "probe GICR_PENDBASER=0000000200000000" in bare
    assert "probe GICR_PROPBASER=0000000000000000" in ours
    assert "probe GICR_PENDBASER=0000000000000000" in ours
    assert "received=05" in ours and ours.count("LPI 2003") == 5


def test_its_off_is_honoured_and_the_gic_reads_as_on_bare_qemu(tmp_path, no_leaked_qemu):
    """-M virt,its=off reaches QEMU: the guest's device tree has no ITS and no
    msi-map, and its GIC's identification registers read as bare QEMU's
    (QEMU 7.2's GICv3 keeps LPIs without an ITS)."""
    source = GUEST_SOURCE.read_text().replace("#define USE_ITS 1", "#define USE_ITS 0")
    (segment,) = Guest.from_c(source, 0x4008_0000).segments
    (tmp_path / "its.bin").write_bytes(segment.data)
    args = ["-M", "virt,gic-version=3,its=off", "-cpu", "max", "-m", "128M", "-nographic",
            "-kernel", "its.bin"]  # fmt: skip
    bare = _run(["qemu-system-aarch64", *args], tmp_path)
    assert "ITS not used" in bare
    assert _run([*ARMVCPU, *args], tmp_path) == bare
    source = qemu_device_tree(its=False, cache=False)
    tree = DeviceTree.from_bytes(guest_device_tree(source, ram_base=0x4000_0000,
                                                   ram_size=128 << 20, num_cpus=1,
                                                   devices=("uart", "pcie")))  # fmt: skip
    assert not any("its@" in path for path, _ in tree.walk())
    assert not any("msi-map" in node.properties for _, node in tree.walk())


# -- Debian's kernel: a virtio-pci disk interrupting by MSI-X ------------------------------

_LINUX_INIT = device_init(
    """echo "DISK=$(/bin/busybox head -c 24 /dev/vda)"
/bin/busybox cat /proc/interrupts
echo "MARKER"
""",
    VIRTIO_PCI_DISK,
)


def _its_msi_counts(console: str) -> dict[str, int]:
    """The ITS-MSI lines of /proc/interrupts: the action's name -> the sum of
    its per-CPU counts."""
    counts = {}
    for line in console.splitlines():
        fields = line.split()
        if "ITS-MSI" in fields and fields[0].endswith(":"):
            at = fields.index("ITS-MSI")
            counts[fields[-1]] = sum(int(n) for n in fields[1:at])
    return counts


@pytest.mark.timeout(900)
@pytest.mark.parametrize("smp", [1, 2])
def test_debians_virtio_pci_disk_interrupts_by_msix_through_the_its(smp, tmp_path, no_leaked_qemu):
    """Debian's kernel with a virtio-blk-pci disk, the same command line on
    bare QEMU and under ``armvcpu run``: Linux finds the ITS in its device
    tree, the disk's queues get MSI-X vectors through it (ITS-MSI in
    /proc/interrupts) and the disk is read, its completions counted there:
    non-zero, on both."""
    from armvcpu.guests.debian import MARKER, build_initramfs, fetch_linux_assets

    assets = fetch_linux_assets()
    files = {f"lib/{m.name}": m.read_bytes() for m in assets.modules}
    init = _LINUX_INIT.replace('"MARKER"', f'"{MARKER} cpus=$(/bin/busybox nproc)"')
    (tmp_path / "initrd.gz").write_bytes(build_initramfs(assets.busybox, init, files))
    (tmp_path / "disk.img").write_bytes(b"armvcpu-virtio-pci-disk1" + bytes(1 << 20))
    args = ["-M", "virt,gic-version=3", "-cpu", "cortex-a57", "-m", "512M", "-smp", str(smp),
            "-nographic", "-kernel", str(assets.kernel), "-initrd", "initrd.gz",
            "-append", "console=ttyAMA0",
            "-drive", "if=none,id=d0,format=raw,file=disk.img",
            "-device", "virtio-blk-pci,drive=d0"]  # fmt: skip
    for argv in (["qemu-system-aarch64", *args], [*ARMVCPU, *args]):
        out = _run(argv, tmp_path)
        assert f"{MARKER} cpus={smp}" in out, out[-3000:]
        assert "DISK=armvcpu-virtio-pci-disk1" in out, out[-3000:]
        assert "PCI/MSI: /intc@8000000/its@8080000 domain created" in out
        counts = _its_msi_counts(out)
        queues = {name: n for name, n in counts.items() if "-req." in name}
        assert queues and sum(queues.values()) > 0, (argv[0], counts)


@pytest.mark.timeout(600)
def test_each_msi_costs_one_physical_interrupt_exit_answered_in_el2(tmp_path, no_leaked_qemu):
    """Through the Python API (load_linux with ``pcie``): every MSI-X the disk
    raised is a physical LPI taken at EL2 (an ExternalInterrupt exit with the
    LPI's INTID in the firmware's exit log), at least as many as Linux
    counted in /proc/interrupts; the host is asked about none of them."""
    from armvcpu import Hypervisor, _core
    from armvcpu.guests.debian import MARKER, build_initramfs, fetch_linux_assets

    assets = fetch_linux_assets()
    files = {f"lib/{m.name}": m.read_bytes() for m in assets.modules}
    init = _LINUX_INIT.replace('"MARKER"', f'"{MARKER}"')
    initrd = tmp_path / "initrd.gz"
    initrd.write_bytes(build_initramfs(assets.busybox, init, files))
    disk = tmp_path / "disk.img"
    disk.write_bytes(b"armvcpu-virtio-pci-disk1" + bytes(1 << 20))
    extra = ("-drive", f"if=none,id=d0,format=raw,file={disk}",
             "-device", "virtio-blk-pci,drive=d0")  # fmt: skip
    with Hypervisor(cpu="cortex-a57", memory_mb=512, timeout=120, extra_args=extra) as hv:
        hv.enable_exit_log()
        hv.load_linux(assets.kernel, initrd=initrd, append="console=ttyAMA0 quiet",
                      devices=("uart", "pcie"))  # fmt: skip
        exits = hv.run()
        log = hv.firmware_exits()
    assert exits[-1].kind.name == "SystemDown", hv.console[-2000:]
    assert "DISK=armvcpu-virtio-pci-disk1" in hv.console, hv.console[-2000:]
    msis = sum(_its_msi_counts(hv.console).values())
    irqs = log[log["kind"] == int(_core.ExitKind.ExternalInterrupt)]
    lpi_exits = irqs[irqs["arg"] >= 8192]
    # At least one exit per completion Linux counted: two MSIs may merge into
    # one interrupt at either level (an LPI pending physically, or still in
    # a list register), so equality is usual but not promised.
    assert msis > 0 and len(lpi_exits) >= msis, (msis, len(lpi_exits))
    assert not any(e.kind.name == "ExternalInterrupt" for e in exits)
