"""Real guests nobody here wrote: Debian's arm64 kernel and busybox, fetched
as Debian packages and cached, and a tiny initramfs built around them.

The packages come from the machine's own apt sources with the arm64
architecture added (``dpkg --add-architecture arm64`` and ``apt-get update``,
which ``scripts/bootstrap.sh`` does); ``apt-get download`` needs no root.

>>> assets = fetch_linux_assets()                  # doctest: +SKIP
>>> initrd = build_initramfs(assets.busybox, MARKER_INIT)   # doctest: +SKIP
"""

from __future__ import annotations

import fcntl
import gzip
import os
import shutil
import stat
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ..errors import ArmvcpuError, ToolNotFoundError

#: The line the marker init prints once the kernel has reached user space.
MARKER = "ARMVCPU-MARKER"
#: An /init that mounts proc and sys, prints the marker with the kernel's
#: release and the online CPU count, and powers off (PSCI SYSTEM_OFF).
MARKER_INIT = f"""#!/bin/busybox sh
/bin/busybox mkdir -p /proc /sys
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sysfs /sys
echo "{MARKER} kernel=$(/bin/busybox uname -r) cpus=$(/bin/busybox nproc)"
/bin/busybox poweroff -f
"""


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "armvcpu" / "debian"


#: Kernel modules kept from the package (Debian builds them as modules):
#: the virtio-mmio transport and the virtio block driver, for guests that get
#: QEMU's virtio devices passed through; and the virtio-pci transport (with
#: the two libraries it needs, loaded first), for virtio-pci devices that
#: interrupt by MSI-X through the ITS.
MODULES = (
    "kernel/drivers/virtio/virtio_mmio.ko",
    "kernel/drivers/block/virtio_blk.ko",
    "kernel/drivers/virtio/virtio_pci_legacy_dev.ko",
    "kernel/drivers/virtio/virtio_pci_modern_dev.ko",
    "kernel/drivers/virtio/virtio_pci.ko",
)
_CACHE_FORMAT = "2"

#: What a virtio block disk needs loaded, in order, on each transport.
VIRTIO_MMIO_DISK = ("virtio_mmio", "virtio_blk")
VIRTIO_PCI_DISK = ("virtio_pci_legacy_dev", "virtio_pci_modern_dev", "virtio_pci", "virtio_blk")


def device_init(body: str, modules: tuple[str, ...] = ()) -> str:
    """An /init that mounts proc, sysfs and devtmpfs, loads ``modules`` from
    /lib (the files :func:`build_initramfs` is given as ``lib/NAME.ko``), runs
    the shell lines ``body`` and powers off.

    >>> print(device_init('echo hi', VIRTIO_MMIO_DISK).splitlines()[-3])
    /bin/busybox insmod /lib/virtio_blk.ko
    """
    lines = [
        "#!/bin/busybox sh",
        "/bin/busybox mkdir -p /proc /sys /dev",
        "/bin/busybox mount -t proc proc /proc",
        "/bin/busybox mount -t sysfs sysfs /sys",
        "/bin/busybox mount -t devtmpfs dev /dev",
        *(f"/bin/busybox insmod /lib/{m}.ko" for m in modules),
        body.strip("\n"),
        "/bin/busybox poweroff -f",
    ]
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class LinuxAssets:
    kernel: Path  # the arm64 Image (Debian ships it as vmlinuz-*)
    busybox: Path  # a static arm64 busybox
    release: str  # the kernel's release, e.g. 6.1.0-26-arm64
    modules: tuple[Path, ...] = ()  # MODULES, in that (load) order


def _run(cmd: list[str], cwd: Path) -> str:
    try:
        done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=600)
    except FileNotFoundError as exc:
        raise ToolNotFoundError(f"{cmd[0]} is not installed (Debian's apt is needed)") from exc
    if done.returncode != 0:
        raise ArmvcpuError(
            f"{' '.join(cmd)} failed: {done.stderr.strip()[-800:]}\n"
            "Is the arm64 architecture added? sudo dpkg --add-architecture arm64 && "
            "sudo apt-get update (scripts/bootstrap.sh does this)"
        )
    return done.stdout


def _kernel_package() -> str:
    """The versioned kernel package the linux-image-arm64 metapackage names."""
    out = _run(["apt-cache", "depends", "linux-image-arm64:arm64"], Path("/"))
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] == "Depends:" and parts[1].startswith("linux-image-"):
            return parts[1] if ":" in parts[1] else parts[1] + ":arm64"
    raise ArmvcpuError(f"apt-cache does not name the kernel behind linux-image-arm64:\n{out}")


def fetch_linux_assets(cache: Path | None = None) -> LinuxAssets:
    """Debian's arm64 kernel and static busybox, downloaded once and
    unpacked into ``cache`` (default ``~/.cache/armvcpu/debian``). Safe to
    call from several processes at once (a lock file serialises them)."""
    cache = cache or default_cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    with (cache / "lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return _fetch_locked(cache)


def _fetch_locked(cache: Path) -> LinuxAssets:
    done = cache / "ready"
    if done.is_file():
        fields = done.read_text().split()
        if len(fields) == 4 and fields[0] == _CACHE_FORMAT:
            kernel, busybox, release = cache / fields[1], cache / fields[2], fields[3]
            modules = tuple(cache / "modules" / Path(m).name for m in MODULES)
            if all(p.is_file() for p in (kernel, busybox, *modules)):
                return LinuxAssets(kernel, busybox, release, modules)
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        work = Path(tmp)
        _run(["apt-get", "download", _kernel_package(), "busybox-static:arm64"], work)
        debs = sorted(work.glob("*.deb"))
        root = work / "root"
        for deb in debs:
            _run(["dpkg-deb", "-x", str(deb), str(root)], work)
        kernels = sorted((root / "boot").glob("vmlinuz-*"))
        busybox = root / "bin" / "busybox"
        if not kernels or not busybox.is_file():
            raise ArmvcpuError(f"the packages {[d.name for d in debs]} lack a kernel or busybox")
        release = kernels[-1].name.removeprefix("vmlinuz-")
        shutil.copy(kernels[-1], cache / kernels[-1].name)
        shutil.copy(busybox, cache / "busybox")
        (cache / "modules").mkdir(exist_ok=True)
        for module in MODULES:
            found = root / "lib" / "modules" / release / module
            if not found.is_file():
                raise ArmvcpuError(f"the kernel package lacks {module}")
            shutil.copy(found, cache / "modules" / found.name)
    done.write_text(f"{_CACHE_FORMAT} {kernels[-1].name} busybox {release}\n")
    modules = tuple(cache / "modules" / Path(m).name for m in MODULES)
    return LinuxAssets(cache / kernels[-1].name, cache / "busybox", release, modules)


def _newc_entry(name: str, mode: int, data: bytes, ino: int) -> bytes:
    # The "newc" cpio format the kernel unpacks (Documentation/driver-api/
    # early-userspace/buffer-format.rst): a 110-byte ASCII header of 13
    # eight-digit hex fields, the NUL-terminated name, then the data, both
    # padded to 4 bytes.
    fields = (ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(name) + 1, 0)
    head = ("070701" + "".join(f"{v:08x}" for v in fields)).encode() + name.encode() + b"\0"
    head += b"\0" * (-len(head) % 4)
    return head + data + b"\0" * (-len(data) % 4)


def build_initramfs(busybox: Path, init: str = MARKER_INIT,
                    files: dict[str, bytes] | None = None) -> bytes:  # fmt: skip
    """A gzip-compressed newc cpio: /bin/busybox, /bin/sh, ``init`` as /init,
    and ``files`` (path in the image -> contents; their directories must be
    /bin or /lib)."""
    entries = [
        ("bin", stat.S_IFDIR | 0o755, b""),
        ("lib", stat.S_IFDIR | 0o755, b""),
        ("bin/busybox", stat.S_IFREG | 0o755, busybox.read_bytes()),
        ("bin/sh", stat.S_IFLNK | 0o777, b"busybox"),
        ("init", stat.S_IFREG | 0o755, init.encode()),
    ]
    for path, data in (files or {}).items():
        entries.append((path.lstrip("/"), stat.S_IFREG | 0o644, data))
    out = b"".join(_newc_entry(n, m, d, i + 1) for i, (n, m, d) in enumerate(entries))
    out += _newc_entry("TRAILER!!!", 0, b"", 0)
    return gzip.compress(out + b"\0" * (-len(out) % 512), mtime=0)


def fetch_uboot(cache: Path | None = None) -> Path:
    """U-Boot's ``qemu_arm64`` build from Debian's ``u-boot-qemu`` package (an
    arch-independent package: no arm64 architecture needed), downloaded once
    into ``cache``; the image QEMU's ``-bios`` takes."""
    cache = cache or default_cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    image = cache / "u-boot-qemu_arm64.bin"
    with (cache / "lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if image.is_file():
            return image
        with tempfile.TemporaryDirectory(dir=cache) as tmp:
            work = Path(tmp)
            _run(["apt-get", "download", "u-boot-qemu"], work)
            (deb,) = work.glob("*.deb")
            _run(["dpkg-deb", "-x", str(deb), str(work / "root")], work)
            found = work / "root" / "usr" / "lib" / "u-boot" / "qemu_arm64" / "u-boot.bin"
            if not found.is_file():
                raise ArmvcpuError(f"{deb.name} has no qemu_arm64/u-boot.bin")
            shutil.copy(found, image.with_suffix(".tmp"))
            image.with_suffix(".tmp").replace(image)
    return image
