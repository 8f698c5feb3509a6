"""Device trees: QEMU's own tree, cut down to a guest's, checked by reading the
result back and by the independent dtc (Debian's device-tree-compiler)."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from armvcpu import _core
from armvcpu.errors import ArmvcpuError, DeviceTreeError, QemuError, ToolNotFoundError
from armvcpu.guests.devicetree import (
    DeviceTree,
    Node,
    decode_strings,
    decode_u32,
    guest_device_tree,
    qemu_device_tree,
    string,
    strings,
    u32,
    u64,
)

from .conftest import qemu_pids

RAM_BASE = 0x4000_0000
RAM_SIZE = 0x800_0000  # 128 MiB
INITRD = (0x4400_0000, 0x4410_0000)
BOOTARGS = "console=ttyAMA0 earlycon rdinit=/init"
GICD = (0x0800_0000, 0x1_0000)
GICR_BASE = 0x080A_0000
# Everything QEMU's virt tree has at its root that is a device of no use to
# a guest here: all of it must go.
NEVER_KEPT = ("pcie@", "flash@", "fw-cfg@", "pl061@", "gpio-keys")


def dtb_temp_dirs() -> set[str]:
    return {p.name for p in Path(tempfile.gettempdir()).glob("armvcpu-dtb-*")}


@pytest.fixture(scope="module")
def qemu_dtb(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """QEMU's virt tree with 4 CPUs (so the guest's 2 are a real cut), once."""
    before = qemu_pids()
    saved, tempfile.tempdir = tempfile.tempdir, str(tmp_path_factory.mktemp("dtb"))
    try:  # a temporary directory of its own: other xdist workers use the shared one
        blob = qemu_device_tree(smp=4, memory_mb=512)
        assert dtb_temp_dirs() == set(), "qemu_device_tree left its temporary files"
    finally:
        tempfile.tempdir = saved
    assert qemu_pids() <= before, "qemu_device_tree left QEMU running"
    return blob


def guest(source: bytes, **overrides: object) -> DeviceTree:
    args: dict[str, object] = {
        "ram_base": RAM_BASE, "ram_size": RAM_SIZE, "num_cpus": 2, "bootargs": BOOTARGS,
        "initrd": INITRD, "devices": ("uart",),
    }  # fmt: skip
    args.update(overrides)
    return DeviceTree.from_bytes(guest_device_tree(source, **args))  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def guest_tree(qemu_dtb: bytes) -> DeviceTree:
    return guest(qemu_dtb)


def root_names(tree: DeviceTree) -> set[str]:
    return {n.name for n in tree.root.children}


@pytest.fixture
def dtc() -> str:
    path = shutil.which("dtc")
    if path is None:
        pytest.skip("dtc not installed (Debian's device-tree-compiler; scripts/bootstrap.sh)")
    return path


def run_dtc(dtc: str, *args: str | Path) -> tuple[str, str]:
    """dtc's output and its warnings; fails the test when dtc fails."""
    done = subprocess.run(
        [dtc, *map(str, args)], capture_output=True, text=True, timeout=30, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout, done.stderr


def decompile(dtc: str, blob: bytes, tmp_path: Path) -> tuple[str, str]:
    (tmp_path / "in.dtb").write_bytes(blob)
    return run_dtc(dtc, "-I", "dtb", "-O", "dts", tmp_path / "in.dtb")


# ---- QEMU's tree ----


def test_qemu_device_tree_is_qemus_virt_tree(qemu_dtb):
    tree = DeviceTree.from_bytes(qemu_dtb)
    assert qemu_dtb[:4] == bytes.fromhex("d00dfeed")
    assert tree.root.string("compatible") == "linux,dummy-virt"
    assert [c.name for c in tree.node("/cpus").children if c.name.startswith("cpu@")] == [
        "cpu@0", "cpu@1", "cpu@2", "cpu@3",
    ]  # fmt: skip
    assert tree.reg("/memory") == [(0x4000_0000, 512 << 20)]
    gic = tree.node("/intc")
    assert "arm,gic-v3" in gic.compatible()
    assert any("msi-controller" in c.properties for c in gic.children)  # the ITS


def test_qemu_failure_is_a_qemu_error_with_its_stderr(no_leaked_qemu, tmp_path, monkeypatch):
    # A temporary directory of this test's own: other processes (xdist
    # workers) make and remove theirs in the shared one meanwhile.
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    with pytest.raises(QemuError, match="no-such-cpu") as info:
        qemu_device_tree(cpu="no-such-cpu")
    assert "exit status" in str(info.value)
    assert dtb_temp_dirs() == set()


def test_missing_qemu_is_a_tool_error():
    with pytest.raises(ToolNotFoundError):
        qemu_device_tree(qemu="qemu-system-none-such")


# ---- the guest's tree, rule by rule ----


def test_memory_is_the_guests_ram(guest_tree):
    memories = [n for n in guest_tree.root.children if n.name.startswith("memory")]
    assert [m.name for m in memories] == ["memory@40000000"]
    assert memories[0].string("device_type") == "memory"
    assert guest_tree.reg("/memory@40000000") == [(RAM_BASE, RAM_SIZE)]


def test_cpus_are_the_guests_and_started_by_psci(guest_tree):
    cpus = guest_tree.node("/cpus")
    assert [c.name for c in cpus.children] == ["cpu@0", "cpu@1"]
    assert [c.u32("reg") for c in cpus.children] == [0, 1]
    assert all(c.string("enable-method") == "psci" for c in cpus.children)
    assert guest_tree.find("/cpus/cpu-map") is None


def test_psci_is_1_0_by_hvc_with_qemus_0_1_ids(guest_tree, qemu_dtb):
    psci = guest_tree.node("/psci")
    assert psci.strings("compatible") == ["arm,psci-1.0", "arm,psci-0.2", "arm,psci"]
    assert psci.string("method") == "hvc"
    # QEMU writes PSCI 0.1's ids too (the 0.2 function ids, DEN0022); they
    # stay, so the guest's tree is as large as on bare QEMU.
    source = DeviceTree.from_bytes(qemu_dtb).node("/psci")
    for name in ("cpu_on", "cpu_off", "cpu_suspend", "migrate"):
        assert psci.properties[name] == source.properties[name]
    assert psci.u32("cpu_on") == 0xC400_0003 and psci.u32("cpu_off") == 0x8400_0002


def test_the_cpu_map_and_the_empty_platform_bus_stay_when_the_cpus_are_qemus(qemu_dtb):
    """With as many CPUs as QEMU's -smp, the guest unflattens QEMU's own tree:
    Linux then reserves the same memory as on bare QEMU (its "Memory:" line,
    compared in test_dropin)."""
    same = guest(qemu_dtb, num_cpus=4)
    source = DeviceTree.from_bytes(qemu_dtb)
    assert {p for p, _ in same.walk() if p.startswith("/cpus/cpu-map")} == {
        p for p, _ in source.walk() if p.startswith("/cpus/cpu-map")
    }
    assert any(n.name.startswith("platform-bus@") for n in same.root.children)
    # Fewer CPUs than QEMU's: the map would name CPUs the guest lacks.
    assert guest(qemu_dtb, num_cpus=2).find("/cpus/cpu-map") is None


def test_psci_method_smc(qemu_dtb):
    assert guest(qemu_dtb, psci_method="smc").node("/psci").string("method") == "smc"


@pytest.fixture(scope="module")
def gicv2_tree() -> DeviceTree:
    """The guest's tree cut from QEMU's own gic-version=2 tree (4 CPUs)."""
    return guest(qemu_device_tree(smp=4, memory_mb=512, gic_version=2))


def test_gicv2_keeps_its_distributor_and_cpu_interface_only(gicv2_tree):
    """QEMU's GICv2 node has GICD, GICC, GICH and GICV, the maintenance
    interrupt and a GICv2m frame; the guest has GICD and the 8 KiB of
    GICC the hypervisor maps there (the hardware GICV)."""
    gic = gicv2_tree.node("/intc@8000000")
    assert gic.compatible() == ["arm,cortex-a15-gic"]
    assert gicv2_tree.reg("/intc@8000000") == [GICD, (0x0801_0000, 0x2000)]
    assert "interrupts" not in gic.properties
    assert gic.children == []
    assert "interrupt-controller" in gic.properties
    for path, node in gicv2_tree.walk():
        assert "msi-controller" not in node.properties, path
        assert "msi-parent" not in node.properties, path
    assert len([p for p, _ in gicv2_tree.walk() if p.startswith("/cpus/cpu@")]) == 2


def test_gicv2_tree_reads_back_in_dtc_without_warnings(gicv2_tree, dtc, tmp_path):
    dts, warnings = decompile(dtc, gicv2_tree.to_bytes(), tmp_path)
    assert warnings == ""
    assert "reg = <0x00 0x8000000 0x00 0x10000 0x00 0x8010000 0x00 0x2000>;" in dts


def test_gic_has_one_redistributor_region_and_no_its(guest_tree):
    gic = guest_tree.node("/intc@8000000")
    assert gic.compatible() == ["arm,gic-v3"]
    assert guest_tree.reg("/intc@8000000") == [GICD, (GICR_BASE, 2 * 0x2_0000)]
    assert gic.u32("#redistributor-regions") == 1
    assert gic.children == []
    for path, node in guest_tree.walk():
        assert "msi-controller" not in node.properties, path
        assert "msi-parent" not in node.properties, path
        assert "msi-map" not in node.properties, path


def test_with_pcie_the_its_and_the_msi_map_stay_as_qemu_wrote_them(qemu_dtb):
    """PCIe passed through brings QEMU's ITS with it (the hypervisor passes
    it through to the VM that owns the devices): the ITS node, and the host
    bridge's msi-map pointing at it, are QEMU's own."""
    source = DeviceTree.from_bytes(qemu_dtb)
    tree = guest(qemu_dtb, devices=("uart", "pcie"))
    (its,) = [c for c in tree.node("/intc@8000000").children if c.name.startswith("its@")]
    (source_its,) = [c for c in source.node("/intc").children if c.name.startswith("its@")]
    assert its == source_its and "msi-controller" in its.properties
    assert its.properties["compatible"] == source_its.properties["compatible"]
    pcie = tree.node("/pcie@10000000")
    assert pcie.properties["msi-map"] == source.node("/pcie@10000000").properties["msi-map"]
    assert _number_at(pcie.properties["msi-map"], 1) == its.u32("phandle")


def _number_at(value: bytes, cell: int) -> int:
    return int.from_bytes(value[4 * cell : 4 * cell + 4], "big")


def test_timer_pmu_and_root_properties_are_qemus(guest_tree, qemu_dtb):
    source = DeviceTree.from_bytes(qemu_dtb)
    assert guest_tree.node("/timer") == source.node("/timer")
    assert guest_tree.node("/pmu") == source.node("/pmu")
    assert guest_tree.root.properties == source.root.properties
    # The root's interrupt-parent is still the GIC.
    assert guest_tree.by_phandle()[guest_tree.root.u32("interrupt-parent")].name == "intc@8000000"


def test_chosen_has_bootargs_console_and_initrd(guest_tree):
    chosen = guest_tree.node("/chosen")
    assert chosen.string("bootargs") == BOOTARGS
    assert chosen.string("stdout-path") == "/pl011@9000000"
    # One cell each, as QEMU's hw/arm/boot.c writes them (tests/test_dropin.py
    # compares with QEMU's own tree).
    assert chosen.properties["linux,initrd-start"] == u32(INITRD[0])
    assert chosen.properties["linux,initrd-end"] == u32(INITRD[1])


def test_chosen_has_fresh_random_seeds_as_qemu_gives_each_boot(qemu_dtb, guest_tree):
    """QEMU 7.2 writes a 32-byte rng-seed and an 8-byte kaslr-seed into
    /chosen for every boot (Linux seeds its RNG and KASLR from them); the
    guest gets seeds of the same sizes, new ones, not QEMU's dump's."""
    source = DeviceTree.from_bytes(qemu_dtb).node("/chosen").properties
    chosen = guest_tree.node("/chosen").properties
    for seed, size in (("rng-seed", 32), ("kaslr-seed", 8)):
        assert len(source[seed]) == len(chosen[seed]) == size
        assert chosen[seed] != source[seed]


def test_only_the_uart_and_its_clock_stay(guest_tree):
    assert root_names(guest_tree) == {
        "psci", "memory@40000000", "pl011@9000000", "pmu", "intc@8000000", "cpus",
        "timer", "apb-pclk", "chosen", "platform-bus@c000000",
    }  # fmt: skip
    uart = guest_tree.node("/pl011@9000000")
    assert guest_tree.by_phandle()[uart.u32s("clocks")[0]].name == "apb-pclk"


def test_rtc_and_virtio_when_assigned(qemu_dtb):
    tree = guest(qemu_dtb, devices=("rtc", "virtio"))
    names = root_names(tree)
    assert "pl031@9010000" in names
    assert "pl011@9000000" not in names
    assert "stdout-path" not in tree.node("/chosen").properties
    virtio = sorted(n for n in names if n.startswith("virtio_mmio@"))
    assert len(virtio) == 32
    assert tree.reg(f"/{virtio[0]}") == [(0x0A00_0000, 0x200)]
    assert "apb-pclk" in names  # the PL031's clock
    assert not any(n.startswith(NEVER_KEPT) for n in names)


def test_no_devices_no_clock(qemu_dtb):
    tree = guest(qemu_dtb, devices=(), initrd=None, bootargs="")
    assert root_names(tree) == {
        "psci", "memory@40000000", "pmu", "intc@8000000", "cpus", "timer", "chosen",
        "platform-bus@c000000",
    }  # fmt: skip
    chosen = tree.node("/chosen").properties
    assert chosen["bootargs"] == b"\0" and "stdout-path" not in chosen
    assert set(chosen) == {"bootargs", "rng-seed", "kaslr-seed"}


def test_secondary_uarts_and_other_devices_go_aliases_follow(qemu_dtb):
    """Newer QEMUs add a second PL011 and /aliases; a user's --dtb may have more."""
    source = DeviceTree.from_bytes(qemu_dtb)
    uart = source.node("/pl011@9000000")
    source.root.add(Node("pl011@9040000", {**uart.properties, "reg": u64(0x0904_0000, 0x1000)}))
    source.root.add(Node("reserved-memory", {"#address-cells": u32(2)}))
    source.root.add(
        Node("aliases", {"serial0": string("/pl011@9000000"), "serial1": string("/pl011@9040000")}),
        index=0,
    )
    tree = guest(source.to_bytes())
    names = root_names(tree)
    assert "pl011@9000000" in names
    assert "pl011@9040000" not in names
    assert "reserved-memory" not in names
    assert tree.root.children[0].name == "aliases"  # where the source had it
    assert tree.node("/aliases").properties == {"serial0": string("/pl011@9000000")}
    assert "aliases" not in root_names(guest(source.to_bytes(), devices=()))


def test_every_reference_in_the_guest_tree_resolves(qemu_dtb):
    tree = guest(qemu_dtb, devices=("uart", "rtc", "virtio"))
    phandles = tree.by_phandle()
    for path, node in tree.walk():
        if "interrupt-parent" in node.properties:
            assert node.u32("interrupt-parent") in phandles, path
        for cell in decode_u32(node.properties.get("clocks", b"")):
            assert cell in phandles, path
        assert not node.name.startswith(NEVER_KEPT), path


def test_more_cpus_than_the_source_are_made_from_cpu0(qemu_dtb):
    tree = guest(qemu_dtb, num_cpus=6)
    cpus = tree.node("/cpus").children
    assert [c.name for c in cpus] == [f"cpu@{i}" for i in range(6)]
    assert [c.u32("reg") for c in cpus] == list(range(6))
    assert all("phandle" not in c.properties for c in cpus[4:])  # phandles stay unique
    assert cpus[5].properties["compatible"] == cpus[0].properties["compatible"]
    assert tree.reg("/intc")[1] == (GICR_BASE, 6 * 0x2_0000)


def test_cells_are_read_from_the_root_not_assumed():
    """A virt-shaped tree with one address cell and one size cell."""
    root = Node("", {"#address-cells": u32(1), "#size-cells": u32(1), "interrupt-parent": u32(1)})
    root.add(Node("cpus", {"#address-cells": u32(1), "#size-cells": u32(0)}))
    root.children[0].add(Node("cpu@0", {"device_type": string("cpu"), "reg": u32(0)}))
    root.add(Node("intc@8000000", {
        "compatible": string("arm,gic-v3"), "phandle": u32(1),
        "reg": u32(0x0800_0000, 0x1_0000, 0x080A_0000, 0xF6_0000),
    }))  # fmt: skip
    root.add(Node("pl011@9000000", {
        "compatible": strings("arm,pl011", "arm,primecell"), "reg": u32(0x0900_0000, 0x1000),
    }))  # fmt: skip
    source = DeviceTree(root).to_bytes()
    tree = DeviceTree.from_bytes(
        guest_device_tree(source, ram_base=RAM_BASE, ram_size=RAM_SIZE, num_cpus=1)
    )
    assert tree.node("/memory@40000000").properties["reg"] == u32(RAM_BASE, RAM_SIZE)
    assert tree.node("/intc").properties["reg"] == u32(*GICD, GICR_BASE, 0x2_0000)
    assert tree.node("/psci").string("method") == "hvc"  # made, as the source had none
    with pytest.raises(DeviceTreeError, match="does not fit"):
        guest_device_tree(source, ram_base=0xFFE0_0000, ram_size=0x40_0000, num_cpus=1)


# ---- what guest_device_tree refuses ----


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"num_cpus": 0}, "num_cpus"),
        ({"ram_base": RAM_BASE + 0x1000}, "2 MiB aligned"),
        ({"ram_size": RAM_SIZE + 0x10_0000}, "2 MiB aligned"),
        ({"ram_size": 0}, "no RAM"),
        ({"ram_base": 0x0800_0000, "ram_size": 0x20_0000, "initrd": None}, "overlaps /intc@"),
        ({"psci_method": "svc"}, "psci_method"),
        ({"devices": ("uart", "isa")}, "unknown devices"),
        ({"initrd": (0x3000_0000, 0x3010_0000)}, "initrd"),
        ({"initrd": (0x4410_0000, 0x4400_0000)}, "initrd"),
        ({"bootargs": "a\0b"}, "NUL"),
        ({"num_cpus": 124}, "redistributors"),  # QEMU's region holds 123
    ],
)  # fmt: skip
def test_bad_arguments_are_device_tree_errors(qemu_dtb, overrides, match):
    with pytest.raises(DeviceTreeError, match=match):
        guest(qemu_dtb, **overrides)


def test_devices_must_be_a_collection(qemu_dtb):
    with pytest.raises(TypeError, match="collection"):
        guest(qemu_dtb, devices="uart")


def test_a_source_without_gic_or_uart_is_refused():
    root = Node("", {"#address-cells": u32(2), "#size-cells": u32(2)})
    root.add(Node("cpus")).add(Node("cpu@0", {"reg": u32(0)}))
    with pytest.raises(DeviceTreeError, match="uart"):
        guest_device_tree(DeviceTree(root).to_bytes(), ram_base=RAM_BASE, ram_size=RAM_SIZE,
                          num_cpus=1)  # fmt: skip
    with pytest.raises(DeviceTreeError, match="no GIC"):
        guest_device_tree(DeviceTree(root).to_bytes(), ram_base=RAM_BASE, ram_size=RAM_SIZE,
                          num_cpus=1, devices=())  # fmt: skip


@pytest.mark.parametrize(
    ("blob", "code"),
    [
        (b"", "Truncated"),
        (bytes.fromhex("d00dfeed") + bytes(20), "Truncated"),
        (b"\x7fELF" + bytes(100), "BadMagic"),
        (bytes(range(256)) * 4, "BadMagic"),
    ],
)
def test_malformed_blobs_are_device_tree_errors(blob, code):
    with pytest.raises(DeviceTreeError) as info:
        guest_device_tree(blob, ram_base=RAM_BASE, ram_size=RAM_SIZE, num_cpus=1)
    assert info.value.code == code
    assert isinstance(info.value, ArmvcpuError)
    assert isinstance(info.value, ValueError)


def test_truncated_qemu_blob(qemu_dtb):
    used = int.from_bytes(qemu_dtb[12:16], "big") + int.from_bytes(qemu_dtb[32:36], "big")
    for cut in (39, 200, used - 1):
        with pytest.raises(DeviceTreeError, match="Truncated"):
            DeviceTree.from_bytes(qemu_dtb[:cut])


def test_corrupt_offset_reports_where(qemu_dtb):
    blob = bytearray(qemu_dtb)
    blob[20:24] = (16).to_bytes(4, "big")  # version 16
    with pytest.raises(DeviceTreeError) as info:
        DeviceTree.from_bytes(bytes(blob))
    assert (info.value.code, info.value.offset) == ("BadVersion", 20)


def test_not_bytes_is_a_device_tree_error():
    with pytest.raises(DeviceTreeError, match="contiguous bytes"):
        DeviceTree.from_bytes("d00dfeed")  # type: ignore[arg-type]
    with pytest.raises(DeviceTreeError, match="contiguous bytes"):
        DeviceTree.from_bytes(memoryview(bytes(64))[::2])


# ---- checked by dtc ----


def test_dtc_reads_the_guest_tree(qemu_dtb, dtc, tmp_path):
    blob = guest_device_tree(
        qemu_dtb, ram_base=RAM_BASE, ram_size=RAM_SIZE, num_cpus=2, bootargs=BOOTARGS,
        initrd=INITRD, devices=("uart",),
    )  # fmt: skip
    dts, warnings = decompile(dtc, blob, tmp_path)
    assert warnings == ""
    for line in (
        "memory@40000000 {",
        "reg = <0x00 0x40000000 0x00 0x8000000>;",
        'device_type = "memory";',
        'compatible = "arm,psci-1.0\\0arm,psci-0.2\\0arm,psci";',
        'method = "hvc";',
        "reg = <0x00 0x8000000 0x00 0x10000 0x00 0x80a0000 0x00 0x40000>;",
        "#redistributor-regions = <0x01>;",
        f'bootargs = "{BOOTARGS}";',
        'stdout-path = "/pl011@9000000";',
        "linux,initrd-start = <0x44000000>;",
        "linux,initrd-end = <0x44100000>;",
        "cpu@1 {",
        "pl011@9000000 {",
        "apb-pclk {",
    ):
        assert line in dts, line
    gone = ("cpu@2", "cpu-map", "its@", "msi-", "pl031@", "virtio_mmio@")
    for absent in gone + NEVER_KEPT:
        assert absent not in dts, absent


def test_dtc_output_reads_back_the_same(qemu_dtb, dtc, tmp_path):
    """dtc's writer, our reader: dtc recompiles our blob to a blob of its own."""
    ours = guest_device_tree(qemu_dtb, ram_base=RAM_BASE, ram_size=RAM_SIZE, num_cpus=2,
                             devices=("uart", "rtc", "virtio"))  # fmt: skip
    (tmp_path / "ours.dtb").write_bytes(ours)
    run_dtc(dtc, "-I", "dtb", "-O", "dtb", "-o", tmp_path / "dtc.dtb", tmp_path / "ours.dtb")
    theirs = (tmp_path / "dtc.dtb").read_bytes()
    assert DeviceTree.from_bytes(theirs) == DeviceTree.from_bytes(ours)
    assert DeviceTree.from_bytes(theirs).to_bytes() == ours


def test_dtc_compiled_source_reads_as_written(dtc, tmp_path):
    (tmp_path / "t.dts").write_text(
        "/dts-v1/;\n/memreserve/ 0x48000000 0x200000;\n"
        '/ { #address-cells = <2>; #size-cells = <2>; model = "t";\n'
        '  memory@40000000 { device_type = "memory"; reg = <0 0x40000000 0 0x10000000>; };\n'
        '  uart@9000000 { compatible = "arm,pl011", "arm,primecell";\n'
        "                 reg = /bits/ 64 <0x9000000 0x1000>; };\n"
        "};\n"
    )
    run_dtc(dtc, "-I", "dts", "-O", "dtb", "-o", tmp_path / "t.dtb", tmp_path / "t.dts")
    tree = DeviceTree.from_bytes((tmp_path / "t.dtb").read_bytes())
    assert tree.reservations == [(0x4800_0000, 0x20_0000)]
    assert tree.reg("/memory") == [(0x4000_0000, 0x1000_0000)]
    assert tree.node("/uart@9000000").strings("compatible") == ["arm,pl011", "arm,primecell"]
    assert tree.root.string("model") == "t"


# ---- the tree itself ----


def test_round_trip_keeps_everything_in_order(qemu_dtb):
    tree = DeviceTree.from_bytes(qemu_dtb)
    blob = tree.to_bytes()
    again = DeviceTree.from_bytes(blob)
    assert again == tree
    assert [list(n.properties) for _, n in again.walk()] == [
        list(n.properties) for _, n in tree.walk()
    ]
    assert [p for p, _ in again.walk()] == [p for p, _ in tree.walk()]
    assert again.to_bytes() == blob  # canonical: writing again changes nothing
    assert len(blob) < 8192  # not QEMU's 1 MiB of padding


def test_reservations_and_boot_cpu_round_trip():
    tree = DeviceTree(Node(""), [(0x4800_0000, 0x20_0000), (0x5000_0000, 0)], boot_cpuid_phys=2)
    again = DeviceTree.from_bytes(tree.to_bytes())
    assert again.reservations == tree.reservations
    assert again.boot_cpuid_phys == 2


def test_editing(qemu_dtb):
    tree = DeviceTree.from_bytes(qemu_dtb)
    assert tree.find("/memory") is tree.node("/memory@40000000")
    tree.delete_node("/pcie@10000000")
    assert tree.find("/pcie") is None
    assert tree.delete_property("/psci", "cpu_on") == u32(0xC400_0003)
    tree.node("/chosen").properties["bootargs"] = string("quiet")
    with pytest.raises(DeviceTreeError, match="already has"):
        tree.root.add(Node("psci"))
    with pytest.raises(DeviceTreeError, match="root"):
        tree.delete_node("/")
    with pytest.raises(KeyError):
        tree.delete_node("/no-such-node")
    again = DeviceTree.from_bytes(tree.to_bytes())
    assert again.find("/pcie") is None
    assert "cpu_on" not in again.node("/psci").properties
    assert again.node("/chosen").string("bootargs") == "quiet"
    assert tree.parent("/cpus/cpu@1").name == "cpus"


def test_value_helpers():
    assert u32(1, 0x8000) == bytes.fromhex("00000001 00008000")
    assert u64(0x1_0000_0000) == bytes.fromhex("00000001 00000000")
    assert decode_strings(strings("a", "bc")) == ["a", "bc"]
    with pytest.raises(DeviceTreeError):
        u32(1 << 32)
    with pytest.raises(DeviceTreeError):
        decode_u32(b"\0\0\0")
    with pytest.raises(DeviceTreeError):
        string("a\0b")


def test_names_the_writer_cannot_hold_are_refused():
    for bad in ("a/b", ""):
        with pytest.raises(DeviceTreeError) as info:
            DeviceTree(Node("", children=[Node(bad)])).to_bytes()
        assert info.value.code == "BadNodeName"
    deep = Node("")
    at = deep
    for _ in range(_core.FDT_MAX_DEPTH):
        at = at.add(Node("n"))
    with pytest.raises(DeviceTreeError) as info:
        DeviceTree(deep).to_bytes()
    assert info.value.code == "TooDeep"


def test_ambiguous_blobs_are_refused():
    """The core reads them; the editable tree could not tell the twins apart."""
    twins = _core.fdt_build(("", [], [("a", [], []), ("a", [], [])]))
    with pytest.raises(DeviceTreeError, match="two children"):
        DeviceTree.from_bytes(twins)
    same_prop = _core.fdt_build(("", [("p", b""), ("p", b"1")], []))
    with pytest.raises(DeviceTreeError, match="two properties"):
        DeviceTree.from_bytes(same_prop)


def test_names_that_are_not_utf8_survive():
    tree = DeviceTree(Node("", {"\udcff-prop": b"1"}, [Node("n\udcfe")]))
    again = DeviceTree.from_bytes(tree.to_bytes())
    assert again == tree


def test_qemus_tree_is_kept_and_the_kept_one_is_qemus(tmp_path, monkeypatch, no_leaked_qemu):
    """A second session with the same QEMU and options takes the tree from
    the cache instead of starting QEMU again; it is byte for byte what QEMU
    dumps. A different option is a different tree."""
    import shutil

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    calls = tmp_path / "calls"
    wrapper = tmp_path / "qemu-counting"
    real = shutil.which("qemu-system-aarch64")
    wrapper.write_text(f'#!/bin/sh\necho x >> "{calls}"\nexec "{real}" "$@"\n')
    wrapper.chmod(0o755)
    first = qemu_device_tree(str(wrapper), smp=2, memory_mb=256)
    again = qemu_device_tree(str(wrapper), smp=2, memory_mb=256)
    assert calls.read_text().count("x") == 1
    assert again == first

    def without_seeds(blob: bytes) -> DeviceTree:  # QEMU makes new ones each time
        tree = DeviceTree.from_bytes(blob)
        for seed in ("rng-seed", "kaslr-seed"):
            tree.node("/chosen").properties.pop(seed, None)
        return tree

    fresh = qemu_device_tree(str(wrapper), smp=2, memory_mb=256, cache=False)
    assert without_seeds(fresh).to_bytes() == without_seeds(first).to_bytes()
    other = qemu_device_tree(str(wrapper), smp=3, memory_mb=256)
    assert calls.read_text().count("x") == 3  # the cache=False call, and this one
    assert len([c for c in DeviceTree.from_bytes(other).node("/cpus").children
                if c.name.startswith("cpu@")]) == 3  # fmt: skip
    assert list((tmp_path / "cache" / "armvcpu" / "dtb").glob("*.partial")) == []
