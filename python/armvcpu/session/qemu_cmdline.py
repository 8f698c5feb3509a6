"""QEMU's own command line for the ``virt`` machine, read with QEMU's meaning.

``armvcpu run`` takes a command line written for ``qemu-system-aarch64 -M virt``
unchanged. This module reads it: the options that describe the guest
(``-kernel -initrd -append -dtb -bios -m -smp -cpu -M``) become a
:class:`VirtCommandLine`; the ones that add devices and their back ends
(``-device -drive -netdev -chardev -object -global`` ...) are kept, in order,
for QEMU itself; an option armvcpu cannot honour is a :class:`CommandLineError`
that names it. QEMU's spellings are accepted as QEMU accepts them: ``-opt`` or
``--opt``, the value as the next argument or after ``=``.

>>> c = parse_qemu_args(["-M", "virt,gic-version=3", "-cpu", "max", "-m", "512M",
...                      "-smp", "2", "-nographic", "-kernel", "Image"])
>>> c.memory_mb, c.smp, c.cpu, c.gic_version, c.kernel
(512, 2, 'max', 3, 'Image')
>>> parse_qemu_args(["-M", "virt,iommu=smmuv3", "-kernel", "Image"])
Traceback (most recent call last):
...
armvcpu.session.qemu_cmdline.CommandLineError: -M virt,iommu: a machine property ...
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ..errors import ArmvcpuError

#: QEMU's default RAM for ``virt`` (``-m`` absent): 128 MiB.
QEMU_DEFAULT_MEMORY_MB = 128


class CommandLineError(ArmvcpuError, ValueError):
    """A QEMU option armvcpu cannot honour, or one QEMU itself would refuse."""


@dataclass
class VirtCommandLine:
    """What a ``qemu-system-aarch64 -M virt`` command line asks for."""

    kernel: str | None = None
    initrd: str | None = None
    append: str = ""
    dtb: str | None = None
    bios: str | None = None
    memory_mb: int = QEMU_DEFAULT_MEMORY_MB
    smp: int = 1
    #: QEMU's ``-cpu``; None when the command line has none (QEMU's own default
    #: for ``virt``, cortex-a15, is an AArch32 CPU that cannot run EL2 firmware).
    cpu: str | None = None
    gic_version: int = 3
    mte: bool = False
    #: ``iommu=smmuv3``: the SMMU is the hypervisor's, to confine PCIe DMA.
    iommu: bool = False
    #: ``its``: QEMU's ITS (its default), passed through to the guest with
    #: the PCIe devices.
    its: bool = True
    no_reboot: bool = False
    #: Where the guest's console goes: QEMU's first ``-serial`` (``-nographic``
    #: makes it ``mon:stdio``), None when the command line does not say.
    serial: str | None = None
    #: Arguments passed to QEMU as they are: devices and their back ends.
    qemu_args: list[str] = field(default_factory=list)
    #: QEMU gives virt a NIC (virtio-net-pci, user networking) unless the
    #: command line has ``-nodefaults`` or any ``-net``/``-nic``/``-netdev``.
    default_nic: bool = True

    def default_devices(self) -> list[str]:
        """What QEMU would add for this command line's defaults, spelt out
        (armvcpu runs QEMU with ``-nodefaults`` for its own reasons).

        QEMU's default network is ``-net nic -net user``, not the ``-nic``
        shorthand: QEMU 7.2 gives a ``-nic`` virtio-net-pci no MSI-X vectors
        (no BAR 1), where the default NIC has them."""
        return ["-net", "nic", "-net", "user"] if self.default_nic else []


# The options that take a value, by what armvcpu does with them.
_GUEST = {"kernel", "initrd", "append", "dtb", "bios", "m", "smp", "cpu", "machine", "M"}
_PASSED = {"device", "drive", "netdev", "chardev", "object", "global", "blockdev", "nic", "net",
           "rtc", "semihosting-config"}  # fmt: skip
_HANDLED = {"serial", "display", "accel", "name", "monitor"}
# Flags (no value).
_FLAGS = {"nographic", "nodefaults", "no-reboot", "no-user-config", "no-shutdown", "semihosting"}
# Options armvcpu must refuse, with the reason.
_REFUSED = {
    "S": "armvcpu starts the CPUs itself (its firmware runs first); leave -S out",
    "s": "QEMU's gdbstub is armvcpu's own exit channel; use `armvcpu gdb` to debug",
    "gdb": "QEMU's gdbstub is armvcpu's own exit channel; use `armvcpu gdb` to debug",
    "enable-kvm": "armvcpu's firmware needs EL2 under TCG (KVM gives no nested EL2 here)",
    "pflash": "flash images are not passed to the guest yet; use -bios for flash 0",
    "icount": "armvcpu sets QEMU's clock options itself",
    "loadvm": "snapshots of the machine would include the hypervisor's own state",
    "incoming": "migration of the machine would include the hypervisor's own state",
    "daemonize": "armvcpu owns QEMU's lifetime; run armvcpu itself in the background",
}
_SIZE = re.compile(r"^(\d+(?:\.\d+)?)([KMGT]?)(?:i?B)?$", re.I)


def _size_mb(text: str, option: str) -> int:
    match = _SIZE.match(text.strip())
    if not match:
        raise CommandLineError(f"-{option} {text}: not a size (e.g. 512M, 2G)")
    number, unit = float(match.group(1)), match.group(2).upper() or "M"
    mib = number * {"K": 1 / 1024, "M": 1, "G": 1024, "T": 1024 * 1024}[unit]
    if mib != int(mib) or mib <= 0:
        raise CommandLineError(f"-{option} {text}: the size must be a positive whole MiB")
    return int(mib)


def _props(text: str) -> tuple[str, dict[str, str]]:
    """QEMU's ``first,key=value,...`` option syntax: the implied first value and the rest."""
    first, *rest = text.split(",")
    props = {}
    implied = first
    if "=" in first:
        implied = ""
        rest = [first, *rest]
    for item in rest:
        key, _, value = item.partition("=")
        props[key] = value if value else "on"
    return implied, props


def _on(value: str, what: str) -> bool:
    if value in ("on", "yes", "true"):
        return True
    if value in ("off", "no", "false"):
        return False
    raise CommandLineError(f"{what}={value}: expected on or off")


def _machine(config: VirtCommandLine, text: str) -> None:
    implied, props = _props(text)
    kind = props.pop("type", implied)
    if not re.fullmatch(r"virt(-\d+\.\d+)?", kind):
        raise CommandLineError(f"-M {kind}: armvcpu runs QEMU's virt machine only")
    for key, value in props.items():
        what = f"-M {kind},{key}"
        if key == "gic-version":
            if value in ("3", "max", "host"):
                config.gic_version = 3
            elif value == "2":
                config.gic_version = 2  # the firmware drives a GICv2 and gives a vGICv2
            else:
                raise CommandLineError(f"{what}={value}: QEMU knows 2, 3, max and host")
        elif key == "mte":
            config.mte = _on(value, what)
        elif key == "iommu":
            if value not in ("smmuv3", "none"):
                raise CommandLineError(f"{what}={value}: armvcpu knows smmuv3 and none")
            config.iommu = value == "smmuv3"
        elif key in ("virtualization", "highmem"):
            _on(value, what)  # armvcpu always has EL2; highmem is QEMU's default
        elif key == "its":
            config.its = _on(value, what)
        elif key == "accel":
            if value != "tcg":
                raise CommandLineError(f"{what}={value}: armvcpu runs under TCG only")
        elif key == "secure":
            if _on(value, what):
                raise CommandLineError(f"{what}=on: armvcpu does not give guests EL3")
        else:
            raise CommandLineError(f"{what}: a machine property armvcpu cannot honour (yet)")


def _smp(text: str) -> int:
    implied, props = _props(text)
    allowed = {"cpus", "maxcpus", "sockets", "cores", "threads", "clusters", "dies"}
    unknown = sorted(set(props) - allowed)
    if unknown:
        raise CommandLineError(f"-smp {text}: unknown {', '.join(unknown)}")
    try:
        cpus = int(props.get("cpus", implied or "0"))
        if not cpus:
            cpus = 1
            for key in ("sockets", "clusters", "dies", "cores", "threads"):
                cpus *= int(props.get(key, "1"))
        maxcpus = int(props.get("maxcpus", cpus))
    except ValueError:
        raise CommandLineError(f"-smp {text}: not a CPU count") from None
    if maxcpus != cpus:
        raise CommandLineError(f"-smp {text}: CPU hot-plug (maxcpus) is not supported")
    if cpus < 1:
        raise CommandLineError(f"-smp {text}: at least one CPU")
    return cpus


def is_qemu_option(arg: str) -> bool:
    """Whether ``arg`` is spelled as one of QEMU's options (``-kernel``, ``--smp``, ``-M``)."""
    name = arg.lstrip("-").split("=", 1)[0]
    return arg.startswith("-") and name in (_GUEST | _PASSED | _HANDLED | _FLAGS | set(_REFUSED))


def parse_qemu_args(argv: list[str]) -> VirtCommandLine:
    """Read a QEMU command line (without the program name) for ``-M virt``."""
    config = VirtCommandLine()
    args = list(argv)
    i = 0
    machine_seen = False
    while i < len(args):
        arg = args[i]
        if not arg.startswith("-") or arg in ("-", "--"):
            raise CommandLineError(f"{arg}: QEMU takes no bare arguments (did you mean -kernel?)")
        name, eq, inline = arg.lstrip("-").partition("=")
        if name in _REFUSED:
            raise CommandLineError(f"-{name}: {_REFUSED[name]}")
        if name in _FLAGS:
            if name == "nographic":
                config.serial = config.serial or "mon:stdio"
            elif name == "no-reboot":
                config.no_reboot = True
            elif name == "nodefaults":
                config.default_nic = False
            elif name == "semihosting":
                config.qemu_args.append("-semihosting")  # a guest may end QEMU with a code
            i += 1
            continue
        if name not in _GUEST | _PASSED | _HANDLED:
            raise CommandLineError(f"-{name}: not a QEMU option armvcpu knows for -M virt")
        if eq:
            value = inline
            i += 1
        else:
            if i + 1 >= len(args):
                raise CommandLineError(f"-{name} needs a value")
            value = args[i + 1]
            i += 2
        if name in _PASSED:
            config.qemu_args += [f"-{name}", value]
            if name in ("net", "nic", "netdev"):
                config.default_nic = False
        elif name in ("M", "machine"):
            _machine(config, value)
            machine_seen = True
        elif name == "m":
            implied, props = _props(value)
            extra = sorted(set(props) - {"size"})
            if extra:
                raise CommandLineError(f"-m {value}: memory hot-plug ({', '.join(extra)}) "
                                       "is not supported")  # fmt: skip
            config.memory_mb = _size_mb(props.get("size", implied), "m")
        elif name == "smp":
            config.smp = _smp(value)
        elif name == "cpu":
            config.cpu = value
        elif name == "append":
            config.append = value
        elif name in ("kernel", "initrd", "dtb", "bios"):
            setattr(config, name, value)
        elif name == "serial":
            config.serial = config.serial if config.serial is not None else value
        elif name == "accel":
            implied, _ = _props(value)
            if implied != "tcg":
                raise CommandLineError(f"-accel {value}: armvcpu runs under TCG only")
        elif name == "monitor" and value != "none":
            raise CommandLineError(f"-monitor {value}: QEMU's monitor is armvcpu's own; use none")
        # -display and -name change nothing a guest sees.
    if not machine_seen:
        raise CommandLineError("-M virt is missing: armvcpu runs QEMU's virt machine")
    if config.kernel is None and config.bios is None:
        raise CommandLineError("nothing to run: give -kernel (or -bios)")
    return config
