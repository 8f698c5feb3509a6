"""Debian's own arm64 kernel boots under armvcpu: fetched as a Debian package
(cached between runs), with a busybox initramfs whose /init prints a marker
with ``uname -r`` and ``nproc`` and powers off through PSCI SYSTEM_OFF.

Everything is real: the kernel nobody here wrote, the firmware's emulated
GICv3 (or GICv2 distributor behind the hardware GICV), its PSCI, SGI and
virtual-timer handling, QEMU's CPUs.
"""

from __future__ import annotations

import re
import struct
import subprocess
import sys

import numpy as np
import pytest
from armvcpu import Hypervisor, _core
from armvcpu.analysis.trace import Trace
from armvcpu.errors import GuestImageError
from armvcpu.guests.debian import (
    MARKER,
    VIRTIO_MMIO_DISK,
    build_initramfs,
    device_init,
    fetch_linux_assets,
)
from armvcpu.guests.linux import IMAGE_MAGIC, BootPlan, LinuxImage

# Linux boots in seconds on these CPU models (-cpu max emulates pointer
# authentication in software and takes several times longer).
CPU = "cortex-a57"


@pytest.fixture(scope="session")
def linux(tmp_path_factory: pytest.TempPathFactory):
    assets = fetch_linux_assets()
    initrd = tmp_path_factory.mktemp("linux") / "initrd.gz"
    initrd.write_bytes(build_initramfs(assets.busybox))
    return assets, initrd


def run_linux(*args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "armvcpu", "run", *args],
                          capture_output=True, text=True, timeout=timeout)  # fmt: skip


@pytest.mark.parametrize("gic", [3, 2], ids=["gicv3", "gicv2"])
@pytest.mark.parametrize("smp", [1, 2])
def test_debian_kernel_reaches_user_space_and_powers_off(linux, tmp_path, smp, gic,
                                                         no_leaked_qemu):  # fmt: skip
    assets, initrd = linux
    out = run_linux("--kernel", str(assets.kernel), "--initrd", str(initrd),
                    "--append", "console=ttyAMA0", "--smp", str(smp), "--cpu", CPU,
                    "--gic", str(gic), "--trace", str(tmp_path / "boot.npz"))  # fmt: skip
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr
    marker = re.search(rf"{MARKER} kernel=(\S+) cpus=(\d+)", out.stdout)
    assert marker is not None, out.stdout[-3000:]
    assert marker.group(1) == assets.release
    assert int(marker.group(2)) == smp
    # The kernel saw its GIC and the CPUs the device tree describes.
    if gic == 3:
        assert "GICv3" in out.stdout or "GIC: " in out.stdout
    assert f"Brought up 1 node, {smp} CPU" in out.stdout

    # The trace shows the boot's exits: the emulated GIC's registers, timer
    # interrupts, and for SMP the secondary's CPU_ON and IPIs; all answered
    # inside EL2 except the few the host saw.
    trace = Trace.load(tmp_path / "boot.npz")
    log = trace.firmware_log
    kinds = {_core.ExitKind(int(k)).name for k in np.unique(log["kind"])}
    assert {"MmioRead", "MmioWrite", "ExternalInterrupt"} <= kinds
    gic_writes = log[(log["kind"] == int(_core.ExitKind.MmioWrite))
                     & (log["arg"] >= 0x0800_0000) & (log["arg"] < 0x0A00_0000)]  # fmt: skip
    assert len(gic_writes) > 20  # the GIC driver's distributor and redistributor set-up
    timer = log[(log["kind"] == int(_core.ExitKind.ExternalInterrupt)) & (log["arg"] == 27)]
    assert len(timer) > 10  # the virtual timer ticks
    mmio = log[np.isin(log["kind"], [int(_core.ExitKind.MmioRead), int(_core.ExitKind.MmioWrite)])]
    if gic == 2:
        # GICv2: the CPU interface is the hardware GICV (never an exit), and
        # there are no redistributors to touch.
        assert not np.any((mmio["arg"] >= 0x0801_0000) & (mmio["arg"] < 0x0802_0000))
        assert not np.any((mmio["arg"] >= 0x080A_0000) & (mmio["arg"] < 0x0900_0000))
    if smp == 2:
        sgir = log[(log["kind"] == int(_core.ExitKind.MmioWrite)) & (log["arg"] == 0x0800_0F00)]
        assert "CpuUp" in kinds
        # IPIs: ICC_SGI1R_EL1 (SendIpi) on a GICv3, GICD_SGIR on a GICv2.
        assert "SendIpi" in kinds if gic == 3 else len(sgir) > 0
        assert set(np.unique(log["vcpu"])) == {0, 1}
    assert _core.ExitKind(int(trace.kind[-1])).name == "SystemDown"
    # The timeline export carries the firmware's log on a track of its own.
    events = trace.to_chrome_trace()["traceEvents"]
    assert sum(e.get("cat") == "firmware" for e in events) == len(log)


def test_linux_uses_pauth_sve_and_the_pmu_on_cpu_max(linux, tmp_path, no_leaked_qemu):
    """-cpu max has pointer authentication, SVE (and SME) and a PMU: the
    kernel finds and uses them, which it can only do if EL2 leaves them
    untrapped (HCR_EL2.API/APK, CPTR_EL2.TZ/TSM, MDCR_EL2.HPMN)."""
    assets, initrd = linux
    out = run_linux("--kernel", str(assets.kernel), "--initrd", str(initrd),
                    "--append", "console=ttyAMA0", "--cpu", "max")  # fmt: skip
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr
    assert f"{MARKER} kernel={assets.release} cpus=1" in out.stdout
    assert "detected: Address authentication" in out.stdout
    assert re.search(r"SVE: maximum available vector length \d+ bytes", out.stdout)
    pmu = re.search(r"armv8_pmuv3 PMU driver, (\d+) counters available", out.stdout)
    assert pmu is not None and int(pmu.group(1)) > 1


def test_linux_through_the_python_api_with_a_given_device_tree(linux, no_leaked_qemu):
    from armvcpu.guests.devicetree import qemu_device_tree

    assets, initrd = linux
    source = qemu_device_tree(cpu=CPU, smp=1, memory_mb=512)
    with Hypervisor(cpu=CPU, memory_mb=512, timeout=60) as hv:
        hv.enable_exit_log()
        plan = hv.load_linux(assets.kernel, initrd=initrd, append="console=ttyAMA0 quiet",
                             dtb=source)  # fmt: skip
        # QEMU's placement (hw/arm/boot.c), which follows the boot protocol:
        # the kernel at the 2 MiB-aligned base of RAM plus text_offset, the
        # initramfs at the base + min(RAM / 2, 128 MiB), the device tree on
        # the next 2 MiB boundary after it (8-byte aligned, as booting.rst asks).
        assert (
            plan.kernel == plan.ram_base + LinuxImage.parse(assets.kernel.read_bytes()).text_offset
        )
        assert plan.initrd == plan.ram_base + min(plan.ram_size // 2, 128 << 20)
        assert plan.dtb % (2 << 20) == 0 and plan.initrd_end <= plan.dtb < plan.initrd_end + (
            2 << 20
        )
        assert plan.kernel_end <= plan.initrd < plan.initrd_end
        assert hv.read_guest(plan.dtb, 4) == b"\xd0\x0d\xfe\xed"
        kernel = assets.kernel.read_bytes()  # copied from the file by the host kernel
        assert hv.read_guest(plan.kernel, len(kernel)) == kernel
        exits = hv.run()
    assert exits[-1].kind.name == "SystemDown"
    assert f"{MARKER} kernel={assets.release} cpus=1" in hv.console
    assert len(hv.firmware_exits()) > 100


# -- the boot protocol's rules, and bad kernels --------------------------------------------


def image_header(text_offset: int = 0, image_size: int = 0x200000, flags: int = 0x2,
                 magic: int = IMAGE_MAGIC) -> bytes:  # fmt: skip
    return struct.pack("<IIQQQQQQII", 0x91005A4D, 0x14000000, text_offset, image_size, flags,
                       0, 0, 0, magic, 0)  # fmt: skip


def test_image_header_is_read_per_booting_rst():
    image = LinuxImage.parse(image_header(text_offset=0x80000, image_size=0x1234000, flags=0xA))
    assert (image.text_offset, image.image_size, image.anywhere) == (0x80000, 0x1234000, True)
    # image_size 0 (kernels before 3.17): text_offset is 0x80000.
    old = LinuxImage.parse(image_header(text_offset=0, image_size=0) + bytes(0x1000))
    assert old.text_offset == 0x80000


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "too short"),
        (image_header()[:40], "too short"),
        (image_header(magic=0x12345678), "not an arm64 Image"),
        (image_header(flags=1), "big-endian"),
        (image_header(image_size=0x10), "malformed"),
        (b"\x1f\x8b\x08\x00garbage", "gzip"),
        (b"MZ\0\0zimg" + bytes(64), "EFI zboot"),
    ],
)
def test_bad_kernels_are_refused_with_a_reason(data, message):
    with pytest.raises(GuestImageError, match=message):
        LinuxImage.parse(data)


@pytest.mark.parametrize(
    "data",
    [
        image_header(text_offset=0x80000, image_size=0x1234000, flags=0xA) + bytes(0x1000),
        image_header(text_offset=0, image_size=0) + bytes(0x1000),
        image_header()[:60],
        image_header(flags=1),
        image_header(image_size=0x10),
    ],
)
def test_an_image_files_header_alone_says_what_the_whole_file_says(data):
    """A kernel file is copied into RAM without being read into Python: its
    first 64 bytes and its size must give the same placement, or the same
    refusal, as the whole file."""
    try:
        whole = LinuxImage.parse(data)
    except GuestImageError as exc:
        with pytest.raises(GuestImageError, match=re.escape(str(exc))):
            LinuxImage.parse_header(data[:64], len(data))
        return
    head = LinuxImage.parse_header(data[:64], len(data))
    assert (head.text_offset, head.image_size, head.anywhere) == (
        whole.text_offset, whole.image_size, whole.anywhere)  # fmt: skip


def test_a_kernel_that_does_not_fit_asks_for_more_memory():
    image = LinuxImage.parse(image_header(image_size=200 << 20))
    with pytest.raises(GuestImageError, match="give the machine more memory"):
        BootPlan.make(image, ram_base=0x4800_0000, ram_size=128 << 20, initrd_size=1 << 20,
                      dtb_size=4096)  # fmt: skip
    with pytest.raises(GuestImageError, match="2 MiB aligned"):
        BootPlan.make(image, ram_base=0x4810_0000, ram_size=512 << 20, initrd_size=None,
                      dtb_size=4096)  # fmt: skip


def test_cli_refuses_a_truncated_kernel_and_leaks_nothing(tmp_path, no_leaked_qemu):
    bad = tmp_path / "Image"
    bad.write_bytes(image_header()[:60])  # the magic is there, the rest is not
    out = run_linux("--kernel", str(bad), "--append", "console=ttyAMA0", timeout=60)
    assert out.returncode == 2
    assert "too short" in out.stderr or "malformed" in out.stderr


def test_cli_refuses_a_garbage_device_tree(linux, tmp_path, no_leaked_qemu):
    assets, initrd = linux
    bad = tmp_path / "bad.dtb"
    bad.write_bytes(b"\xd0\x0d\xfe\xed" + bytes(60))  # the magic, then nonsense
    out = run_linux("--kernel", str(assets.kernel), "--initrd", str(initrd),
                    "--dtb", str(bad), "--cpu", CPU, timeout=60)  # fmt: skip
    assert out.returncode == 2
    assert "device tree" in out.stderr.lower() or "devicetree" in out.stderr.lower()


def test_cli_refuses_a_gic_version_qemu_has_not(linux, no_leaked_qemu):
    assets, _ = linux
    out = run_linux("--kernel", str(assets.kernel), "--gic", "1", timeout=60)
    assert out.returncode == 2
    assert "--gic 1" in out.stderr


def test_cli_refuses_linux_options_for_an_elf(no_leaked_qemu):
    from armvcpu import example_guest_path

    out = run_linux("--kernel", str(example_guest_path("hypercalls")), "--append", "x", timeout=60)
    assert out.returncode == 2
    assert "not an arm64 Linux Image" in out.stderr


# -- passed-through devices: the PL031 and a virtio block disk ----------------------------

DEVICES_INIT = device_init(
    f"""echo "RTC=$(/bin/busybox cat /sys/class/rtc/rtc0/date)"
echo "DISK=$(/bin/busybox head -c 24 /dev/vda)"
echo "{MARKER} kernel=$(/bin/busybox uname -r) cpus=$(/bin/busybox nproc)"
""",
    VIRTIO_MMIO_DISK,
)


@pytest.mark.parametrize("gic", [3, 2], ids=["gicv3", "gicv2"])
def test_rtc_and_virtio_disk_passed_through_to_linux(linux, tmp_path, gic, no_leaked_qemu):
    """The PL031 and a virtio-blk disk on QEMU's virtio-mmio: their MMIO is
    mapped into the guest, their SPIs injected hardware-linked as the guest's
    GIC programming allows, and the disk's DMA reaches guest RAM because guest
    and machine physical addresses are the same."""
    import datetime

    assets, _ = linux
    files = {f"lib/{m.name}": m.read_bytes() for m in assets.modules}
    initrd = tmp_path / "initrd.gz"
    initrd.write_bytes(build_initramfs(assets.busybox, DEVICES_INIT, files))
    disk = tmp_path / "disk.img"
    disk.write_bytes(b"armvcpu-virtio-disk-0001" + bytes(1 << 20))
    extra = ("-drive", f"if=none,id=d0,format=raw,file={disk}",
             "-device", "virtio-blk-device,drive=d0")  # fmt: skip
    with Hypervisor(cpu=CPU, memory_mb=512, timeout=60, extra_args=extra, gic=gic) as hv:
        hv.enable_exit_log()
        hv.load_linux(assets.kernel, initrd=initrd, append="console=ttyAMA0 quiet",
                      devices=("uart", "rtc", "virtio"))  # fmt: skip
        exits = hv.run()
        log = hv.firmware_exits()
    assert exits[-1].kind.name == "SystemDown", hv.console[-2000:]
    assert "DISK=armvcpu-virtio-disk-0001" in hv.console, hv.console[-2000:]
    today = datetime.datetime.now(datetime.timezone.utc).date()
    rtc = re.search(r"RTC=(\d{4}-\d{2}-\d{2})", hv.console)
    assert rtc is not None and abs(datetime.date.fromisoformat(rtc.group(1)) - today).days <= 1
    # The disk's completions came as its SPI (virtio-mmio transports use
    # INTIDs 48..79), handled inside EL2.
    irqs = log[log["kind"] == int(_core.ExitKind.ExternalInterrupt)]
    assert ((irqs["arg"] >= 48) & (irqs["arg"] < 80)).any()
