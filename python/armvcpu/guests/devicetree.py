"""Device trees for Linux guests: read, edit and write flattened devicetree blobs.

Blobs are read and written by the C++ core (``cpp/include/armvcpu/fdt.hpp``),
which validates every byte; in between, a :class:`DeviceTree` is plain
dataclasses to edit.

>>> tree = DeviceTree(Node("", {"#address-cells": u32(2), "#size-cells": u32(2)}))
>>> tree.root.add(Node("memory@40000000", {"device_type": string("memory"),
...                                        "reg": u64(0x4000_0000, 0x1000_0000)}))
Node(name='memory@40000000', ...)
>>> address, size = DeviceTree.from_bytes(tree.to_bytes()).reg("/memory")[0]
>>> hex(address), hex(size)
('0x40000000', '0x10000000')

A guest's tree comes from QEMU's own (``qemu_device_tree``) or a user's
``--dtb``, cut down by :func:`guest_device_tree` to what the guest is given.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeAlias

from .. import _core
from .._process import die_with_parent
from ..errors import DeviceTreeError, QemuError, ToolNotFoundError

__all__ = [
    "DeviceTree",
    "Node",
    "cells",
    "decode_strings",
    "decode_u32",
    "guest_device_tree",
    "qemu_device_tree",
    "string",
    "strings",
    "u32",
    "u64",
]

# ---- property values (Devicetree Specification v0.4, 2.2.4) ----


def u32(*values: int) -> bytes:
    """32-bit big-endian cells: ``<a b c>``."""
    return b"".join(_cell(v, 1) for v in values)


def u64(*values: int) -> bytes:
    """Each value as two cells (64 bits), as ``reg`` with 2 address/size cells."""
    return b"".join(_cell(v, 2) for v in values)


def cells(value: int, count: int) -> bytes:
    """One number in ``count`` cells (what ``#address-cells = <count>`` asks)."""
    return _cell(value, count)


def string(text: str) -> bytes:
    """A string property: the text and its NUL."""
    return strings(text)


def strings(*texts: str) -> bytes:
    """A string list: each string NUL-terminated, one after the other."""
    for t in texts:
        if "\0" in t:
            raise DeviceTreeError(f"a devicetree string cannot hold a NUL: {t!r}")
    return b"".join(t.encode() + b"\0" for t in texts)


def decode_u32(value: bytes) -> list[int]:
    """A property's 32-bit cells."""
    if len(value) % 4:
        raise DeviceTreeError(f"{len(value)} bytes are not a whole number of 32-bit cells")
    return [int.from_bytes(value[i : i + 4], "big") for i in range(0, len(value), 4)]


def decode_strings(value: bytes) -> list[str]:
    """A string list (``compatible``, ``clock-names``, ...)."""
    if not value.endswith(b"\0"):
        raise DeviceTreeError("a string property must end with a NUL")
    return [s.decode(errors="surrogateescape") for s in value[:-1].split(b"\0")]


def _cell(value: int, count: int) -> bytes:
    if not 0 <= value < 1 << (32 * count):
        raise DeviceTreeError(f"{value:#x} does not fit in {count} cell(s)")
    return value.to_bytes(4 * count, "big")


def _number(value: bytes) -> int:
    return int.from_bytes(value, "big")


# ---- the tree ----


@dataclass
class Node:
    """One node: its name (with any unit address), its properties in order,
    and its children in order."""

    name: str
    properties: dict[str, bytes] = field(default_factory=dict)
    children: list[Node] = field(default_factory=list)

    def child(self, name: str) -> Node | None:
        """The child called ``name``; as in paths (2.2.3), a name without
        ``@`` also finds ``name@unit-address``. An exact match wins."""
        for c in self.children:
            if c.name == name:
                return c
        if "@" not in name:
            for c in self.children:
                if c.name.split("@", 1)[0] == name:
                    return c
        return None

    def add(self, node: Node, *, index: int | None = None) -> Node:
        """Adds ``node`` as a child (at the end, or at ``index``) and returns it."""
        if any(c.name == node.name for c in self.children):
            raise DeviceTreeError(f"{self.name or '/'} already has a child {node.name}")
        self.children.insert(len(self.children) if index is None else index, node)
        return node

    def remove(self, name: str) -> Node:
        """Removes the child called ``name`` (exactly) and returns it."""
        for i, c in enumerate(self.children):
            if c.name == name:
                return self.children.pop(i)
        raise KeyError(f"{self.name or '/'} has no child {name}")

    def u32(self, name: str) -> int:
        """A property of exactly one cell."""
        values = decode_u32(self.properties[name])
        if len(values) != 1:
            raise DeviceTreeError(f"{name} of {self.name or '/'} is not one cell")
        return values[0]

    def u32s(self, name: str) -> list[int]:
        return decode_u32(self.properties[name])

    def string(self, name: str) -> str:
        values = decode_strings(self.properties[name])
        if len(values) != 1:
            raise DeviceTreeError(f"{name} of {self.name or '/'} is not one string")
        return values[0]

    def strings(self, name: str) -> list[str]:
        return decode_strings(self.properties[name])

    def compatible(self) -> list[str]:
        """The ``compatible`` strings, or none."""
        value = self.properties.get("compatible")
        return decode_strings(value) if value else []

    def walk(self, path: str = "/") -> Iterator[tuple[str, Node]]:
        """(path, node) for this node and every node below it, depth first."""
        todo: list[tuple[str, Node]] = [(path, self)]
        while todo:
            at, node = todo.pop()
            yield at, node
            prefix = at.rstrip("/")
            todo.extend((f"{prefix}/{c.name}", c) for c in reversed(node.children))


@dataclass
class DeviceTree:
    """A whole device tree: the root node, the memory reservation block
    (address, size) and the boot CPU's physical id."""

    root: Node = field(default_factory=lambda: Node(""))
    reservations: list[tuple[int, int]] = field(default_factory=list)
    boot_cpuid_phys: int = 0

    @classmethod
    def from_bytes(cls, data: bytes | bytearray | memoryview) -> DeviceTree:
        """Reads a blob. Raises :class:`DeviceTreeError` when the core finds it
        malformed, or when two siblings or two properties of one node share a
        name (paths and property lookups would be ambiguous)."""
        try:
            raw = _core.fdt_parse(data)
        except _core.FdtError as exc:
            raise _error_from(exc) from None
        except (TypeError, BufferError) as exc:
            raise DeviceTreeError(f"a device tree blob must be contiguous bytes: {exc}") from None
        return cls(
            _from_core(raw["root"], "/"),
            [(int(a), int(s)) for a, s in raw["reservations"]],
            int(raw["boot_cpuid_phys"]),
        )

    def to_bytes(self) -> bytes:
        """Writes a version 17 blob (property names shared in the strings block)."""
        try:
            return bytes(
                _core.fdt_build(_to_core(self.root), self.reservations, self.boot_cpuid_phys)
            )
        except _core.FdtError as exc:
            raise _error_from(exc) from None

    def find(self, path: str) -> Node | None:
        """The node at an absolute path (``/cpus/cpu@0``; ``/memory`` finds
        ``memory@40000000``), or None."""
        if not path.startswith("/"):
            raise DeviceTreeError(f"not an absolute path: {path!r}")
        node: Node | None = self.root
        for part in path.split("/"):
            if part and node is not None:
                node = node.child(part)
        return node

    def node(self, path: str) -> Node:
        """The node at ``path``; KeyError when there is none."""
        found = self.find(path)
        if found is None:
            raise KeyError(f"no node {path}")
        return found

    def parent(self, path: str) -> Node:
        """The node above ``path``'s node."""
        head = path.rstrip("/").rsplit("/", 1)[0]
        return self.node(head or "/")

    def delete_node(self, path: str) -> Node:
        """Removes the node at ``path`` (and everything below it) and returns it."""
        if path.strip("/") == "":
            raise DeviceTreeError("the root node cannot be deleted")
        node = self.node(path)
        self.parent(path).children.remove(node)
        return node

    def delete_property(self, path: str, name: str) -> bytes:
        """Removes property ``name`` of the node at ``path`` and returns its value."""
        return self.node(path).properties.pop(name)

    def walk(self) -> Iterator[tuple[str, Node]]:
        """(path, node) for every node, depth first."""
        return self.root.walk()

    def address_cells(self, path: str) -> int:
        """``#address-cells`` of the node at ``path``: how many cells its
        children's addresses take (2 when absent, 2.3.5)."""
        node = self.node(path)
        return node.u32("#address-cells") if "#address-cells" in node.properties else 2

    def size_cells(self, path: str) -> int:
        """``#size-cells`` of the node at ``path`` (1 when absent, 2.3.5)."""
        node = self.node(path)
        return node.u32("#size-cells") if "#size-cells" in node.properties else 1

    def reg(self, path: str) -> list[tuple[int, int]]:
        """The (address, size) pairs of a node's ``reg``, read with its
        parent's ``#address-cells`` and ``#size-cells``."""
        head = path.rstrip("/").rsplit("/", 1)[0] or "/"
        return _decode_reg(
            self.node(path).properties.get("reg", b""),
            self.address_cells(head),
            self.size_cells(head),
            path,
        )

    def by_phandle(self) -> dict[int, Node]:
        """Every node that has a ``phandle``, by its value."""
        found: dict[int, Node] = {}
        for _, node in self.walk():
            value = node.properties.get("phandle", node.properties.get("linux,phandle"))
            if value is not None and len(value) == 4:
                found[_number(value)] = node
        return found


# A node as _core.fdt_parse returns it and _core.fdt_build takes it.
_CoreNode: TypeAlias = "tuple[str, list[tuple[str, bytes]], list[_CoreNode]]"


def _error_from(exc: Exception) -> DeviceTreeError:
    """The core's FdtError as a DeviceTreeError, with its code and offset."""
    return DeviceTreeError(
        str(exc), code=getattr(exc, "code", None), offset=getattr(exc, "offset", None)
    )


def _from_core(raw: _CoreNode, path: str) -> Node:
    name, props, children = raw
    node = Node(str(name))
    for pname, value in props:
        if pname in node.properties:
            raise DeviceTreeError(f"{path} has two properties called {pname}", code="Duplicate")
        node.properties[str(pname)] = bytes(value)
    prefix = path.rstrip("/")
    names: set[str] = set()
    for child in children:
        kid = _from_core(child, f"{prefix}/{child[0]}")
        if kid.name in names:
            raise DeviceTreeError(f"{path} has two children called {kid.name}", code="Duplicate")
        names.add(kid.name)
        node.children.append(kid)
    return node


def _to_core(node: Node) -> _CoreNode:
    return (node.name, list(node.properties.items()), [_to_core(c) for c in node.children])


def _decode_reg(
    value: bytes, address_cells: int, size_cells: int, what: str
) -> list[tuple[int, int]]:
    words = decode_u32(value)
    step = address_cells + size_cells
    if step == 0 or len(words) % step:
        raise DeviceTreeError(
            f"reg of {what} is {len(words)} cells, not pairs of {address_cells}+{size_cells}"
        )
    out = []
    for i in range(0, len(words), step):
        address = _number(u32(*words[i : i + address_cells]))
        size = _number(u32(*words[i + address_cells : i + step]))
        out.append((address, size))
    return out


# ---- QEMU's tree ----


def qemu_device_tree(
    qemu: str = "qemu-system-aarch64",
    cpu: str = "max",
    smp: int = 1,
    memory_mb: int = 256,
    gic_version: int = 3,
    *,
    bios: str | Path | None = None,
    its: bool = True,
    timeout: float = 30.0,
    cache: bool = True,
) -> bytes:
    """The device tree QEMU's ``virt`` machine (EL2 on, as armvcpu runs it)
    would give its firmware, as QEMU dumps it (``dumpdtb``, padded to 1 MiB).
    With ``bios`` (QEMU's ``-bios``) the tree is the one QEMU makes for a
    machine booting firmware from flash: QEMU then gives it an ACPI GED in
    place of the PL061, so the tree has no GPIO. ``its=False`` is
    ``-M virt,its=off``: a GICv3 without its ITS (and PCIe without
    ``msi-map``).

    QEMU only builds the tree and exits; nothing runs. The tree is kept in
    ``~/.cache/armvcpu/dtb`` under a digest of the QEMU binary (its path,
    size and modification time) and the options, so each session does not
    pay for a second QEMU start (``cache=False`` asks QEMU every time); the
    random seeds QEMU writes into ``/chosen`` are made anew for each guest
    tree (:func:`guest_device_tree`), so a kept tree is as good as a new one.
    Raises :class:`ToolNotFoundError` without QEMU and :class:`QemuError`,
    with the end of QEMU's stderr, when it fails (a failure is not kept).
    """
    binary = shutil.which(qemu)
    if binary is None:
        raise ToolNotFoundError(
            f"{qemu} not found; install Debian's qemu-system-arm package "
            "(sudo apt-get install qemu-system-arm)"
        )
    if smp < 1 or memory_mb < 1:
        raise ValueError(f"smp ({smp}) and memory_mb ({memory_mb}) must be at least 1")
    options = ["virt,virtualization=on", f"gic-version={gic_version}", cpu, str(smp),
               str(memory_mb), str(Path(bios).resolve()) if bios is not None else "",
               *([] if its else ["its=off"])]  # fmt: skip
    kept = _dtb_cache_file(binary, options) if cache else None
    if kept is not None and kept.is_file():
        return kept.read_bytes()
    with tempfile.TemporaryDirectory(prefix="armvcpu-dtb-") as tmp:
        path = Path(tmp) / "virt.dtb"
        # QEMU's option syntax: a comma inside a value is written twice.
        dump = str(path).replace(",", ",,")
        command = [
            binary,
            "-machine", f"virt,virtualization=on,gic-version={gic_version}"
                        f"{'' if its else ',its=off'},dumpdtb={dump}",
            "-cpu", cpu, "-smp", str(smp), "-m", f"{memory_mb}M",
            "-nodefaults", "-no-user-config", "-display", "none",
            *(["-bios", str(bios)] if bios is not None else []),
        ]  # fmt: skip
        try:
            done = subprocess.run(
                command,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=timeout,
                preexec_fn=die_with_parent,
            )
        except subprocess.TimeoutExpired:
            raise QemuError(f"QEMU did not dump its device tree within {timeout:.0f} s") from None
        blob = path.read_bytes() if path.is_file() else b""
    if done.returncode != 0 or not blob:
        tail = "\n".join(done.stderr.decode(errors="replace").strip().splitlines()[-10:])
        raise QemuError(
            f"QEMU could not dump its device tree (exit status {done.returncode})"
            + (f":\n{tail}" if tail else "")
        )
    if kept is not None:
        with contextlib.suppress(OSError):  # a cache that cannot be written is no error
            kept.parent.mkdir(parents=True, exist_ok=True)
            partial = kept.with_suffix(f".{os.getpid()}.partial")
            partial.write_bytes(blob)
            os.replace(partial, kept)  # atomic: parallel sessions see all or nothing
    return blob


def _dtb_cache_file(binary: str, options: list[str]) -> Path | None:
    """Where the tree QEMU ``binary`` makes for ``options`` is kept."""
    try:
        st = os.stat(binary)
    except OSError:
        return None
    key = "\0".join([os.path.realpath(binary), str(st.st_size), str(st.st_mtime_ns), *options])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "armvcpu" / "dtb" / f"{hashlib.sha256(key.encode()).hexdigest()[:32]}.dtb"


# ---- the guest's tree ----

#: What ``devices=`` may name, and what each keeps of QEMU's virt tree.
GUEST_DEVICES = {
    "uart": "the PL011 at 0x0900_0000",
    "rtc": "the PL031 at 0x0901_0000",
    "virtio": "the virtio_mmio@* transports",
    "flash": "the CFI flash banks at 0x0000_0000 (QEMU's -bios)",
    "fwcfg": "QEMU's fw_cfg at 0x0902_0000",
    "gpio": "the PL061 at 0x0903_0000 and its gpio-keys (the power button)",
    "pcie": "the PCIe host bridge (pcie@10000000: ECAM, MMIO and I/O windows, INTx)",
}
UART_BASE = 0x0900_0000
RTC_BASE = 0x0901_0000
#: One redistributor per CPU: RD_base and SGI_base frames, 64 KiB each.
GICR_SIZE_PER_CPU = 0x2_0000
#: A GICv2's CPU interface as the guest has it: the hardware GICV, whose
#: registers span two 4 KiB pages (GICV_DIR at 0x1000), mapped at GICC.
GICV2_CPU_INTERFACE_SIZE = 0x2000
#: Compatible strings of the GICv2s Linux's irq-gic driver matches that a
#: virt-shaped tree may carry (QEMU writes "arm,cortex-a15-gic").
GICV2_COMPATIBLE = ("arm,cortex-a15-gic", "arm,gic-400", "arm,cortex-a7-gic", "arm,cortex-a9-gic")
RAM_ALIGNMENT = 2 << 20  # Linux places its image 2 MiB aligned
PSCI_COMPATIBLE = ("arm,psci-1.0", "arm,psci-0.2", "arm,psci")
# What points PCIe devices at the ITS; dropped with it (a guest without
# passed-through PCIe has no MSI controller).
_MSI_PROPERTIES = ("msi-parent", "msi-map", "msi-map-mask")


def guest_device_tree(
    source: bytes,
    *,
    ram_base: int,
    ram_size: int,
    num_cpus: int,
    bootargs: str = "",
    initrd: tuple[int, int] | None = None,
    devices: Collection[str] = ("uart",),
    psci_method: str = "hvc",
) -> bytes:
    """The device tree a guest boots with, derived from a ``virt``-shaped
    tree (QEMU's, from :func:`qemu_device_tree`, or a user's ``--dtb``).

    - ``/memory`` becomes ``memory@<ram_base>`` with ``reg`` = the guest's RAM;
    - ``/cpus`` keeps ``cpu@0`` .. ``cpu@<num_cpus - 1>`` (``reg`` 0..n-1,
      made from cpu@0 where the source has fewer), all started by PSCI; the
      source's ``cpu-map`` only when it names exactly those CPUs;
    - ``/psci`` is PSCI 1.0 (0.2 and 0.1 compatible) called by ``psci_method``,
      keeping the source's 0.1 function ids;
    - a GICv3 keeps its distributor and has one redistributor region, one
      frame pair per CPU; its ITS (QEMU's, which the hypervisor passes
      through with the PCIe devices) stays with ``pcie`` in ``devices``,
      and otherwise goes with every ``msi-parent``/``msi-map``. A GICv2 keeps
      its distributor and CPU interface (8 KiB, what the hypervisor maps
      there); its virtual interface regions, maintenance interrupt and GICv2m
      frame go (they are the hypervisor's);
    - ``/timer``, ``/pmu``, an empty platform bus and the root's own
      properties stay;
    - ``/chosen`` has ``bootargs``, ``stdout-path`` (with the UART) and
      ``linux,initrd-start``/``-end`` (one cell, as QEMU writes them, or two
      above 4 GiB) when ``initrd`` = (start, end)
      is given; where QEMU's tree has random seeds (``rng-seed``,
      ``kaslr-seed``), fresh ones of the same sizes, as QEMU makes new ones
      for every boot (so Linux randomises its layout as on bare QEMU);
    - of the devices, only those in ``devices`` (see ``GUEST_DEVICES``) stay,
      with the clocks they use; the rest (the secure devices, ...) go. PCIe
      keeps its ``interrupt-map`` (INTx) and, with the ITS, its ``msi-map``
      (MSI and MSI-X).

    Addresses are read and written with the root's ``#address-cells`` and
    ``#size-cells``. Raises :class:`DeviceTreeError` for a malformed source,
    a source without what the guest needs, or inconsistent arguments.
    """
    wanted = _check_guest_arguments(
        ram_base, ram_size, num_cpus, bootargs, initrd, devices, psci_method
    )
    tree = DeviceTree.from_bytes(source)
    root = tree.root
    acells, scells = tree.address_cells("/"), tree.size_cells("/")
    if ram_base + ram_size > 1 << (32 * acells) or ram_size >= 1 << (32 * scells):
        raise DeviceTreeError(
            f"RAM [{ram_base:#x}, {ram_base + ram_size:#x}) does not fit the root's "
            f"#address-cells = {acells} / #size-cells = {scells}"
        )

    roles = {id(n): _role(n, acells, scells) for n in root.children}
    keep: list[Node] = []
    found_devices: dict[str, list[Node]] = {d: [] for d in GUEST_DEVICES}
    gic = memory = chosen = psci = cpus = aliases = None
    for node in root.children:
        role = roles[id(node)]
        if role in GUEST_DEVICES:
            found_devices[role].append(node)
            if role in wanted:
                keep.append(node)
        elif role == "gic" and gic is None:
            gic = node
        elif role == "memory" and memory is None:
            memory = node
        elif role in ("timer", "pmu", "platform-bus"):
            # The empty platform bus too: nothing behind it to reach, and the
            # guest unflattens the same tree as on bare QEMU.
            keep.append(node)
        elif role == "chosen":
            chosen = node
        elif role == "psci":
            psci = node
        elif role == "cpus":
            cpus = node
        elif role == "aliases":
            aliases = node
    for name in sorted(wanted):
        if not found_devices[name]:
            raise DeviceTreeError(f"the source tree has no {name} ({GUEST_DEVICES[name]})")
    if gic is None:
        raise DeviceTreeError(
            "the source tree has no GIC (compatible 'arm,gic-v3' or "
            "'arm,cortex-a15-gic') at its root"
        )
    if cpus is None or not _cpu_nodes(cpus):
        raise DeviceTreeError("the source tree has no /cpus with cpu nodes")

    has_its = _make_gic(gic, acells, scells, num_cpus, keep_its="pcie" in wanted)
    _make_cpus(tree, cpus, num_cpus)
    if memory is None:
        memory = Node("memory")
    memory.name = f"memory@{ram_base:x}"
    memory.properties.pop("numa-node-id", None)
    memory.properties["device_type"] = string("memory")
    memory.properties["reg"] = cells(ram_base, acells) + cells(ram_size, scells)
    if psci is None:
        psci = Node("psci")
    # PSCI 0.1's function ids (cpu_on, ...) stay as the source has them:
    # a guest reading compatible 0.2 or later ignores them, and the guest
    # unflattens the same tree as on bare QEMU (so reserves the same memory).
    psci.properties["compatible"] = strings(*PSCI_COMPATIBLE)
    psci.properties["method"] = string(psci_method)
    keep += [gic, cpus, memory, psci]
    keep += _clocks_used_by(keep, tree.by_phandle())

    new_chosen = Node("chosen", {"bootargs": string(bootargs)})
    if chosen is not None:
        for seed in ("rng-seed", "kaslr-seed"):
            if seed in chosen.properties:
                new_chosen.properties[seed] = os.urandom(len(chosen.properties[seed]))
    if "uart" in wanted:
        new_chosen.properties["stdout-path"] = string(f"/{found_devices['uart'][0].name}")
    if initrd is not None:
        # One cell, as QEMU writes them (hw/arm/boot.c), when the address fits.
        cell = u32 if initrd[1] < 1 << 32 else u64
        new_chosen.properties["linux,initrd-start"] = cell(initrd[0])
        new_chosen.properties["linux,initrd-end"] = cell(initrd[1])

    # The root's children in their source order; nodes the source lacked last.
    kept = {id(n) for n in keep}
    children: list[Node] = []
    for node in root.children:
        if node is chosen:
            children.append(new_chosen)
        elif id(node) in kept or node is aliases:
            children.append(node)
    present = {id(n) for n in children}
    children += [n for n in (memory, psci, new_chosen) if id(n) not in present]
    if aliases is not None:
        _prune_aliases(aliases, {n.name for n in children})
        if not aliases.properties:
            children = [n for n in children if n is not aliases]
    root.children = children

    if not has_its:
        for _, node in tree.walk():
            for prop in _MSI_PROPERTIES:
                node.properties.pop(prop, None)
    _check_ram_is_free(tree, ram_base, ram_size, acells, scells)
    return tree.to_bytes()


def qemu_loaded_size(source: bytes, *, from_file: bool) -> int:
    """How large the tree QEMU hands a guest is (its ``totalsize``, which the
    guest reserves in memory): QEMU's own virt tree keeps the size it was
    made with (1 MiB, as :func:`qemu_device_tree` dumps it); a ``-dtb`` file
    is opened into twice its size plus 10000 bytes (QEMU's
    ``load_device_tree``)."""
    if from_file:
        return 2 * (len(source) + 10000)
    return int.from_bytes(source[4:8], "big")


def padded(tree: bytes, size: int) -> bytes:
    """``tree`` with free space after its blocks up to ``size`` bytes, its
    ``totalsize`` saying so; unchanged when it is as large already."""
    if size <= len(tree):
        return tree
    return tree[:4] + size.to_bytes(4, "big") + tree[8:] + bytes(size - len(tree))


def present_devices(source: bytes) -> set[str]:
    """Which of :data:`GUEST_DEVICES` a ``virt``-shaped tree has."""
    tree = DeviceTree.from_bytes(source)
    acells, scells = tree.address_cells("/"), tree.size_cells("/")
    return {r for r in (_role(n, acells, scells) for n in tree.root.children) if r in GUEST_DEVICES}


def _check_guest_arguments(
    ram_base: int,
    ram_size: int,
    num_cpus: int,
    bootargs: str,
    initrd: tuple[int, int] | None,
    devices: Collection[str],
    psci_method: str,
) -> set[str]:
    if num_cpus < 1:
        raise DeviceTreeError(f"num_cpus must be at least 1, not {num_cpus}")
    if ram_size <= 0 or ram_base < 0:
        raise DeviceTreeError(f"no RAM: base {ram_base:#x}, size {ram_size:#x}")
    if ram_base % RAM_ALIGNMENT or ram_size % RAM_ALIGNMENT:
        raise DeviceTreeError(
            f"guest RAM (base {ram_base:#x}, size {ram_size:#x}) must be 2 MiB aligned"
        )
    if psci_method not in ("hvc", "smc"):
        raise DeviceTreeError(f"psci_method must be 'hvc' or 'smc', not {psci_method!r}")
    if "\0" in bootargs:
        raise DeviceTreeError("bootargs cannot hold a NUL")
    if isinstance(devices, str):
        raise TypeError(f"devices is a collection of names, e.g. ({devices!r},)")
    unknown = set(devices) - set(GUEST_DEVICES)
    if unknown:
        raise DeviceTreeError(
            f"unknown devices {sorted(unknown)}; known: {', '.join(sorted(GUEST_DEVICES))}"
        )
    if initrd is not None:
        start, end = initrd
        if not ram_base <= start < end <= ram_base + ram_size:
            raise DeviceTreeError(
                f"initrd [{start:#x}, {end:#x}) is not inside guest RAM "
                f"[{ram_base:#x}, {ram_base + ram_size:#x})"
            )
    return set(devices)


def _base(node: Node, acells: int, scells: int) -> int | None:
    value = node.properties.get("reg")
    if not value:
        return None
    return _decode_reg(value, acells, scells, node.name)[0][0]


def _role(node: Node, acells: int, scells: int) -> str:
    """What a root child is to the guest's tree."""
    name = node.name.split("@", 1)[0]
    if name in ("cpus", "chosen", "aliases", "psci"):
        return name
    compatible = node.compatible()
    if node.properties.get("device_type") == string("memory"):
        return "memory"
    if "arm,gic-v3" in compatible or any(c in compatible for c in GICV2_COMPATIBLE):
        return "gic"
    if "arm,armv8-timer" in compatible or name == "timer":
        return "timer"
    if "arm,armv8-pmuv3" in compatible or name == "pmu":
        return "pmu"
    if "virtio,mmio" in compatible:
        return "virtio"
    if "cfi-flash" in compatible and _base(node, acells, scells) == 0:
        return "flash"
    if "qemu,fw-cfg-mmio" in compatible:
        return "fwcfg"
    if "pci-host-ecam-generic" in compatible:
        return "pcie"
    if "arm,pl061" in compatible or "gpio-keys" in compatible:
        return "gpio"
    if "arm,pl011" in compatible and _base(node, acells, scells) == UART_BASE:
        return "uart"
    if "arm,pl031" in compatible and _base(node, acells, scells) == RTC_BASE:
        return "rtc"
    if "qemu,platform" in compatible and not node.children:
        return "platform-bus"
    return "other"


def _make_gic(gic: Node, acells: int, scells: int, num_cpus: int, *, keep_its: bool) -> bool:
    """Shapes the GIC node for the guest; True when it keeps an ITS (which
    only a GICv3 with one in the source does, and only with ``keep_its``)."""
    if "arm,gic-v3" not in gic.compatible():
        _make_gicv2(gic, acells, scells)
        return False
    regions = _decode_reg(gic.properties.get("reg", b""), acells, scells, gic.name)
    if len(regions) < 2:
        raise DeviceTreeError(f"{gic.name}: a GICv3 needs GICD and GICR regions in reg")
    (gicd, gicd_size), (gicr, gicr_room) = regions[0], regions[1]
    gicr_size = num_cpus * GICR_SIZE_PER_CPU
    if gicr_size > gicr_room:
        raise DeviceTreeError(
            f"{num_cpus} CPUs need {gicr_size:#x} bytes of redistributors; the source "
            f"tree's region at {gicr:#x} has {gicr_room:#x}"
        )
    gic.properties["reg"] = (
        cells(gicd, acells)
        + cells(gicd_size, scells)
        + cells(gicr, acells)
        + cells(gicr_size, scells)
    )
    gic.properties["#redistributor-regions"] = u32(1)
    gic.properties.pop("redistributor-stride", None)
    its = [c for c in gic.children if "arm,gic-v3-its" in c.compatible()]
    gic.children = [
        c
        for c in gic.children
        if "msi-controller" not in c.properties and "arm,gic-v3-its" not in c.compatible()
    ]
    if keep_its and its:
        gic.children.append(its[0])
        return True
    return False


def _make_gicv2(gic: Node, acells: int, scells: int) -> None:
    regions = _decode_reg(gic.properties.get("reg", b""), acells, scells, gic.name)
    if len(regions) < 2:
        raise DeviceTreeError(f"{gic.name}: a GICv2 needs GICD and GICC regions in reg")
    (gicd, gicd_size), (gicc, _gicc_size) = regions[0], regions[1]
    gic.properties["reg"] = (
        cells(gicd, acells)
        + cells(gicd_size, scells)
        + cells(gicc, acells)
        + cells(GICV2_CPU_INTERFACE_SIZE, scells)
    )
    # The maintenance interrupt belongs with GICH and GICV, which are the
    # hypervisor's; so is the GICv2m MSI frame.
    gic.properties.pop("interrupts", None)
    gic.children = [
        c
        for c in gic.children
        if "msi-controller" not in c.properties and "arm,gic-v2m-frame" not in c.compatible()
    ]


def _cpu_nodes(cpus: Node) -> list[Node]:
    return [
        c
        for c in cpus.children
        if c.properties.get("device_type") == string("cpu") or c.name.split("@")[0] == "cpu"
    ]


def _make_cpus(tree: DeviceTree, cpus: Node, num_cpus: int) -> None:
    acells = tree.address_cells("/cpus")
    by_reg: dict[int, Node] = {}
    for cpu in _cpu_nodes(cpus):
        reg = cpu.properties.get("reg", b"")
        if len(reg) == 4 * acells:
            by_reg.setdefault(_number(reg), cpu)
    template = by_reg.get(0) or _cpu_nodes(cpus)[0]
    made = []
    for i in range(num_cpus):
        node = by_reg.get(i)
        if node is None:
            copied = {k: v for k, v in template.properties.items() if k != "phandle"}
            node = Node(f"cpu@{i:x}", copied)
        node.name = f"cpu@{i:x}"
        node.properties["reg"] = cells(i, acells)
        node.properties["enable-method"] = string("psci")
        node.properties.pop("cpu-release-addr", None)  # spin-table's, not PSCI's
        made.append(node)
    old = {id(c) for c in _cpu_nodes(cpus)}
    # QEMU's cpu-map stays when it names exactly the guest's CPUs (the same
    # count as QEMU's -smp): Linux unflattens it, and so reserves the same
    # memory as on bare QEMU. Otherwise it would name CPUs the guest lacks.
    mapped = {
        p
        for _, n in _walk_nodes(cpus.child("cpu-map"))
        for p in decode_u32(n.properties.get("cpu", b""))
    }
    ours = {_number(n.properties["phandle"]) for n in made if "phandle" in n.properties}
    keep_map = bool(mapped) and mapped == ours and len(ours) == num_cpus
    others = [c for c in cpus.children if id(c) not in old and (c.name != "cpu-map" or keep_map)]
    cpus.children = others + made


def _walk_nodes(node: Node | None) -> Iterator[tuple[str, Node]]:
    """``node`` and every node below it (nothing for None)."""
    if node is None:
        return
    yield node.name, node
    for child in node.children:
        yield from _walk_nodes(child)


def _clocks_used_by(nodes: list[Node], by_phandle: dict[int, Node]) -> list[Node]:
    """The clock providers ``clocks`` properties reach, and the ones they reach."""
    found: list[Node] = []
    todo = list(nodes)
    while todo:
        words = decode_u32(todo.pop().properties.get("clocks", b""))
        i = 0
        while i < len(words):
            provider = by_phandle.get(words[i])
            if provider is None:
                raise DeviceTreeError(f"clocks refers to phandle {words[i]:#x}, which no node has")
            count = provider.u32("#clock-cells") if "#clock-cells" in provider.properties else 0
            i += 1 + count
            if all(provider is not f for f in found):
                found.append(provider)
                todo.append(provider)
    return found


def _prune_aliases(aliases: Node, kept: set[str]) -> None:
    """Drops the aliases whose path leads into a root child that is gone."""
    for name, value in list(aliases.properties.items()):
        target = value.rstrip(b"\0").decode(errors="replace")
        first = target.split("/")[1] if target.startswith("/") and target != "/" else ""
        if first not in kept:
            del aliases.properties[name]


def _check_ram_is_free(
    tree: DeviceTree, ram_base: int, ram_size: int, acells: int, scells: int
) -> None:
    for node in tree.root.children:
        if node.name.startswith("memory") or "reg" not in node.properties:
            continue
        for address, size in _decode_reg(node.properties["reg"], acells, scells, node.name):
            if address < ram_base + ram_size and ram_base < address + size:
                raise DeviceTreeError(
                    f"guest RAM [{ram_base:#x}, {ram_base + ram_size:#x}) overlaps /{node.name} "
                    f"at [{address:#x}, {address + size:#x})"
                )
