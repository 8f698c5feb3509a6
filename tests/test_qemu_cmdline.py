"""QEMU's own command line for -M virt, read with QEMU's meaning.

Each command line armvcpu accepts is also given to the real QEMU (with
``dumpdtb``, so QEMU parses it all, builds the machine and stops), so armvcpu
never accepts a spelling QEMU would refuse; and the memory and CPU count armvcpu
reads are the ones QEMU's own device tree says.
"""

from __future__ import annotations

import subprocess

import pytest
from armvcpu.guests.devicetree import DeviceTree
from armvcpu.session.qemu_cmdline import CommandLineError, is_qemu_option, parse_qemu_args

# Command lines of the kind guests' own runners use (a unit-test runner's, a
# Linux boot's, a disk and a network device), with the values QEMU means.
ACCEPTED = [
    (["-M", "virt", "-cpu", "max", "-m", "512M", "-nographic", "-kernel", "Image"],
     {"memory_mb": 512, "smp": 1, "cpu": "max", "serial": "mon:stdio", "default_nic": True}),
    (["-machine", "virt,gic-version=3", "-cpu", "cortex-a57", "-smp", "2", "-m", "1G",
      "-display", "none", "-serial", "stdio", "-kernel", "test.bin", "-initrd", "env.txt",
      "-append", "-p 1 -q"],
     {"memory_mb": 1024, "smp": 2, "cpu": "cortex-a57", "initrd": "env.txt",
      "append": "-p 1 -q", "serial": "stdio"}),
    (["--machine", "type=virt,virtualization=on", "--smp", "cpus=2", "--m", "size=256M",
      "--kernel=Image"],
     {"memory_mb": 256, "smp": 2, "kernel": "Image"}),
    (["-M", "virt,gic-version=max", "-smp", "sockets=1,cores=2,threads=1", "-m", "384",
      "-kernel", "Image", "-device", "pci-testdev",
      "-device", "virtio-serial-device", "-device", "virtconsole,chardev=ctd",
      "-chardev", "testdev,id=ctd", "-no-reboot", "-nodefaults", "-accel", "tcg"],
     {"memory_mb": 384, "smp": 2, "gic_version": 3, "no_reboot": True, "default_nic": False,
      "qemu_args": ["-device", "pci-testdev", "-device", "virtio-serial-device",
                    "-device", "virtconsole,chardev=ctd", "-chardev", "testdev,id=ctd"]}),
    (["-M", "virt,mte=on", "-cpu", "max", "-bios", "u-boot.bin", "-m", "2G"],
     {"mte": True, "bios": "u-boot.bin", "memory_mb": 2048, "kernel": None}),
    (["-M", "virt", "-kernel", "Image"], {"memory_mb": 128, "smp": 1, "cpu": None}),
    (["-M", "virt,iommu=smmuv3", "-kernel", "Image"], {"iommu": True}),
    (["-M", "virt,its=off", "-kernel", "Image"], {"its": False}),
    (["-M", "virt,its=on", "-kernel", "Image"], {"its": True}),
    # Any network option replaces QEMU's default NIC, as in QEMU.
    (["-M", "virt", "-kernel", "Image", "-net", "none"],
     {"default_nic": False, "qemu_args": ["-net", "none"]}),
    (["-M", "virt", "-kernel", "Image", "-netdev", "user,id=n0",
      "-device", "virtio-net-pci,netdev=n0"],
     {"default_nic": False}),
    (["-M", "virt,gic-version=2", "-cpu", "cortex-a57", "-smp", "2", "-kernel", "Image"],
     {"gic_version": 2, "smp": 2}),
]  # fmt: skip


@pytest.mark.parametrize("argv,expected", ACCEPTED, ids=lambda a: " ".join(a)[:40])
def test_accepted_command_lines_mean_what_qemu_means(argv, expected):
    config = parse_qemu_args(argv)
    for key, value in expected.items():
        assert getattr(config, key) == value, key


@pytest.mark.parametrize(
    "argv",
    [
        ["-M", "virt", "-cpu", "max", "-m", "512M", "-smp", "2"],
        ["-machine", "virt,gic-version=3", "-cpu", "cortex-a57", "-m", "1G", "-smp", "cpus=3"],
        ["-M", "virt", "-cpu", "max", "-m", "size=384M", "-smp", "sockets=1,cores=2,threads=1"],
    ],
)
def test_qemu_itself_agrees_on_memory_and_cpus(argv, tmp_path):
    """QEMU's own device tree for the same options has that RAM and those CPUs."""
    dtb = tmp_path / "virt.dtb"
    machine = argv.index("-M") if "-M" in argv else argv.index("-machine")
    qemu_argv = list(argv)
    qemu_argv[machine + 1] += f",dumpdtb={dtb}"
    run = subprocess.run(["qemu-system-aarch64", *qemu_argv, "-display", "none", "-nodefaults"],
                         capture_output=True, text=True, timeout=60)  # fmt: skip
    assert run.returncode == 0, run.stderr
    config = parse_qemu_args([*argv, "-kernel", "Image"])
    tree = DeviceTree.from_bytes(dtb.read_bytes())
    nodes = dict(tree.walk())
    memory = next(n for path, n in nodes.items() if path.startswith("/memory@"))
    base_hi, base_lo, size_hi, size_lo = memory.u32s("reg")
    assert (base_hi << 32 | base_lo) == 0x4000_0000
    assert (size_hi << 32 | size_lo) == config.memory_mb << 20
    assert sum(1 for path in nodes if path.startswith("/cpus/cpu@")) == config.smp


@pytest.mark.parametrize(
    "argv,message",
    [
        (["-M", "virt", "-kernel", "Image", "-S"], "-S: armvcpu starts the CPUs itself"),
        (["-M", "virt", "-kernel", "Image", "-s"], "-s: QEMU's gdbstub is armvcpu's"),
        (["-M", "virt", "-kernel", "Image", "-enable-kvm"], "-enable-kvm"),
        (["-M", "virt,gic-version=4", "-kernel", "Image"], "QEMU knows 2, 3, max and host"),
        (["-M", "virt,iommu=virtio", "-kernel", "Image"], "-M virt,iommu=virtio"),
        (["-M", "virt,its=maybe", "-kernel", "Image"], "its=maybe: expected on or off"),
        (["-M", "sbsa-ref", "-kernel", "Image"], "-M sbsa-ref: armvcpu runs QEMU's virt"),
        (["-kernel", "Image"], "-M virt is missing"),
        (["-M", "virt"], "nothing to run"),
        (["-M", "virt", "-kernel"], "-kernel needs a value"),
        (["-M", "virt", "-kernel", "Image", "-m", "lots"], "-m lots: not a size"),
        (["-M", "virt", "-kernel", "Image", "-m", "1G,maxmem=4G"], "memory hot-plug"),
        (["-M", "virt", "-kernel", "Image", "-smp", "2,maxcpus=4"], "hot-plug"),
        (["-M", "virt", "-kernel", "Image", "-accel", "kvm"], "TCG only"),
        (["-M", "virt", "-kernel", "Image", "-frobnicate", "x"], "-frobnicate: not a QEMU"),
        (["-M", "virt", "Image"], "Image: QEMU takes no bare arguments"),
        (["-M", "virt", "-kernel", "Image", "-monitor", "stdio"], "-monitor stdio"),
    ],
)
def test_what_armvcpu_cannot_honour_is_a_one_line_error_naming_it(argv, message):
    with pytest.raises(CommandLineError) as info:
        parse_qemu_args(argv)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_qemu_spellings_are_recognised():
    for arg in ("-kernel", "--kernel=x", "-M", "-machine", "-nographic", "-device", "-S"):
        assert is_qemu_option(arg), arg
    for arg in ("--policy", "--trace", "--transport", "guest.elf"):
        assert not is_qemu_option(arg), arg
