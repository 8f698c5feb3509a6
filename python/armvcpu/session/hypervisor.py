"""The session: QEMU running the armvcpu firmware, driven from Python.

>>> from armvcpu import Hypervisor, Guest, example_guest_path
>>> with Hypervisor() as hv:                                # doctest: +SKIP
...     hv.load(Guest.from_elf(example_guest_path("hypercalls")))
...     for exit in hv.exits():
...         print(exit.reason)
...         exit.resume(x0=42)
"""

from __future__ import annotations

import atexit
import collections
import contextlib
import mmap
import os
import time
import types
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from .. import _core
from ..errors import (
    ArmvcpuError,
    FirmwareError,
    GuestImageError,
    GuestTimeout,
    QemuError,
    SessionClosedError,
    TargetConnectionError,
)
from ..exits import Exit
from ..guests.guest import Guest
from ..guests.linux import MAX_DTB_SIZE, BootPlan, LinuxImage
from ..policy.policy import Policy
from ..policy.rules import ClaimSpec, FastRules, HypercallClaims
from .firmware import Firmware
from .gdbstub import GdbRemote
from .qemu import QemuConfig, QemuProcess
from .snapshot import Snapshots
from .transport import RECORD_SIZE, GdbTransport, HandoffMode, SharedMemoryTransport, Transport
from .vm import VM

if TYPE_CHECKING:
    # numpy comes with both: imported where a session uses them, so a
    # session without an exit log or trace starts without it.
    from ..analysis.exitlog import ExitLogReader
    from ..analysis.switchlog import SwitchCosts, WorldSwitch
    from ..analysis.trace import Trace

#: Where QEMU virt's RAM starts in the physical address space (and a guest's).
RAM_BASE: int = _core.RAM_BASE
#: How often a waiting host checks that QEMU is still alive.
_POLL_SLICE = 0.1

_MAX_VMS = 4  # the firmware's kMaxVms
#: The most guest RAM VM 1 can have: it ends where the firmware starts
#: (``_core.FIRMWARE_BASE``, 8 GiB).
MAX_MEMORY_MB: int = _core.MAX_GUEST_RAM >> 20


def ram_file_dir() -> Path:
    """Where sessions create their RAM files: ``$ARMVCPU_SHM_DIR``, else
    /dev/shm (a tmpfs: the file is memory, shared by QEMU and the host). Each
    name is ``armvcpu-<pid>-<random>`` and is unlinked once both have it mapped."""
    return Path(os.environ.get("ARMVCPU_SHM_DIR", "/dev/shm"))


def machine_memory_mb(guest_mb: int) -> int:
    """QEMU's ``-m`` for a session whose VM 1 has ``guest_mb`` MiB: RAM from
    0x4000_0000 up past the firmware (8 GiB), and a slice as large as VM 1's
    for each further VM. Pages nobody touches cost the host nothing: the RAM
    is a sparse shared file."""
    return ((_core.EXTRA_VM_RAM_BASE - RAM_BASE) >> 20) + (_MAX_VMS - 1) * guest_mb


#: What ``boot(devices=...)`` may pass through, and the firmware's feature bit
#: for each (the PL011 follows the UART mode instead).
_PASSTHROUGH_FEATURES = {
    "uart": 0,
    "rtc": int(_core.FEATURE_RTC),
    "virtio": int(_core.FEATURE_VIRTIO),
    "fwcfg": int(_core.FEATURE_FWCFG),
    "gpio": int(_core.FEATURE_GPIO),
    "flash": int(_core.FEATURE_FLASH),
    "pcie": int(_core.FEATURE_PCIE),
}

_UART_MODES = {
    "host": int(_core.UartMode.Host),
    "emulate": int(_core.UartMode.Emulate),
    "passthrough": int(_core.UartMode.Passthrough),
}

_live_sessions: weakref.WeakSet[Hypervisor] = weakref.WeakSet()


@atexit.register
def _close_all_sessions() -> None:
    for hv in list(_live_sessions):
        hv.close()


@dataclass(frozen=True)
class DmaFault:
    """A DMA the SMMU blocked: a PCIe device reached outside its VM's RAM.

    ``stream_id`` is the device's PCI requester ID (bus << 8 | device << 3 |
    function); ``event`` the SMMUv3 event type (0x10 F_TRANSLATION: no
    mapping there)."""

    address: int
    stream_id: int
    event: int
    write: bool

    def __str__(self) -> str:
        bdf = f"{self.stream_id >> 8:02x}:{(self.stream_id >> 3) & 31:02x}.{self.stream_id & 7}"
        what = "write" if self.write else "read"
        return f"PCI device {bdf} DMA {what} at {self.address:#x} blocked (event {self.event:#x})"


class Hypervisor:
    """QEMU's ``virt`` machine at EL2 running the armvcpu firmware, owned by this object.

    Use it as a context manager; QEMU is stopped when the block ends, however
    it ends. ``exits()`` yields each VM exit the firmware hands to the host.

    Args:
        firmware: the firmware ELF (default: the one this package carries).
        transport: ``"shm"`` (guest RAM shared with the host; fastest) or
            ``"gdb"`` (the gdbstub hand-off; works with any GDB remote target).
        qemu: the QEMU binary.
        cpu: QEMU's ``-cpu`` model.
        smp: vCPUs of all VMs together (VM 1 has those that :meth:`add_vm`
            does not take; a guest starts vCPUs 1.. with PSCI CPU_ON), 1..8.
        host_cpus: the machine's physical CPUs (QEMU's ``-smp``; default
            ``smp``). With fewer CPUs than vCPUs the firmware's EL2 scheduler
            time-shares them (round-robin slices; a halted vCPU yields); see
            :meth:`world_switches`.
        memory_mb: VM 1's RAM, as QEMU's ``-m`` means it: the guest sees
            exactly this much at 0x4000_0000, at the same physical addresses
            (1 .. :data:`MAX_MEMORY_MB`). The firmware and other VMs' RAM lie
            above it; QEMU gets :func:`machine_memory_mb` of RAM in all.
        timeout: seconds to wait for the next exit before :class:`GuestTimeout`.
        uart: the guest's PL011: ``"host"`` (every access is an exit, e.g. for
            :class:`~armvcpu.Pl011`), ``"emulate"`` (emulated in EL2; read
            the output with ``hv.vms[n].console``) or ``"passthrough"``
            (the real PL011, shared with the firmware's log).
        gic: the GIC version of the machine (QEMU's ``gic-version``): 3, or
            2 (a GICv2 with its virtualization extensions, as on a GIC-400:
            the guest's CPU interface is the hardware GICV at its GICC
            address, its distributor is emulated with ``vgic``).
        vgic: give every VM an emulated distributor, and on a GICv3 its
            redistributors (as :meth:`load_linux` does): interrupts then reach a guest only
            as its own GIC programming allows. Without it a guest has the
            GIC's virtual CPU interface alone, and its GICD/GICR accesses are
            exits like any other MMIO.
        extra_args: more QEMU arguments, appended as given.
        remote: ``"host:port"`` of a GDB remote target already running the
            armvcpu firmware, halted (see :meth:`attach`); no QEMU is started.
        handoff: how the gdb transport stops the CPU at an exit:
            ``"watchpoint"`` (a write watchpoint on the firmware's doorbell;
            with QEMU several times faster), ``"breakpoint"`` (a breakpoint
            on the hand-off; any target with breakpoints), or ``"auto"``
            (the watchpoint when the target accepts it, else the breakpoint).
        quiet: the firmware prints nothing of its own on the PL011 but fatal
            errors, so a guest with the UART passed through owns the console
            (``armvcpu run`` with a QEMU command line).
        bios: a guest firmware image for flash 0, as QEMU's ``-bios`` takes it;
            boot it with ``boot(None)`` (the guest starts at address 0, its
            device tree at the base of RAM).
        console_input: let :meth:`type_console` type into the guest's PL011
            (with ``uart="passthrough"``).
        mte: QEMU's ``-M virt,mte=on``: the guest's RAM has allocation tags
            and EL1 may use them (the firmware sets HCR_EL2.ATA).
        iommu: QEMU's ``-M virt,iommu=smmuv3``, kept for the hypervisor: with
            PCIe passed through, the firmware programs the SMMU so PCIe
            devices' DMA reaches VM 1's RAM only; a DMA elsewhere is blocked
            and is an ``ExternalInterrupt`` exit (vector
            ``_core.DMA_FAULT_INTID``), the fault in :meth:`dma_faults`.
        its: QEMU's ITS (``-M virt,its=off`` when False). On a GICv3, the
            firmware passes it through with the PCIe devices, so their MSIs
            and MSI-Xs reach VM 1 as LPIs.
        doorbell: (``transport="shm"``) between exits the host sleeps in
            poll() on a doorbell the firmware rings through QEMU's
            semihosting console, instead of in timed steps of up to 1 ms:
            no host CPU while the guest runs, and an exit after a quiet
            spell is seen in microseconds. Off by default, for trusted
            guests only: it enables QEMU's semihosting, which the guest
            can then call too (``HLT #0xF000``), host files and
            ``SYS_SYSTEM`` included.
    """

    def __init__(
        self,
        *,
        firmware: str | Path | None = None,
        transport: Literal["shm", "gdb"] = "shm",
        qemu: str = "qemu-system-aarch64",
        cpu: str = "max",
        smp: int = 1,
        host_cpus: int | None = None,
        memory_mb: int = 256,
        timeout: float = 10.0,
        uart: Literal["host", "emulate", "passthrough"] = "host",
        extra_args: Sequence[str] = (),
        remote: str | None = None,
        gic: int = 3,
        vgic: bool = False,
        handoff: HandoffMode = "auto",
        quiet: bool = False,
        bios: str | Path | None = None,
        console_input: bool = False,
        mte: bool = False,
        iommu: bool = False,
        doorbell: bool = False,
        its: bool = True,
    ) -> None:
        if transport not in ("shm", "gdb"):
            raise ValueError(f"transport must be 'shm' or 'gdb', not {transport!r}")
        if remote is not None:
            transport = "gdb"  # a remote target shares no memory with this host
        self.remote = remote
        if handoff not in ("auto", "watchpoint", "breakpoint"):
            raise ValueError(
                f"handoff must be 'auto', 'watchpoint' or 'breakpoint', not {handoff!r}"
            )
        self.handoff = handoff
        if uart not in _UART_MODES:
            raise ValueError(f"uart must be one of {sorted(_UART_MODES)}, not {uart!r}")
        self.uart = uart
        if not 1 <= memory_mb <= MAX_MEMORY_MB:
            raise ValueError(
                f"memory_mb={memory_mb}: a guest's RAM starts at 0x4000_0000 and must end "
                f"below the firmware at {_core.FIRMWARE_BASE:#x}; use 1..{MAX_MEMORY_MB} MiB"
            )
        self.memory_mb = memory_mb
        self.quiet = quiet
        self.firmware = Firmware.load(firmware)
        self.transport_name = transport
        if gic not in (2, 3):
            raise ValueError(f"gic={gic!r}: QEMU's virt has a GICv2 (gic=2) or a GICv3 (gic=3)")
        self.gic = gic
        if not 1 <= smp <= 8:
            raise ValueError(f"smp must be 1..8 (the firmware runs up to 8 CPUs), not {smp}")
        self.smp = smp
        if host_cpus is None:
            host_cpus = smp
        if isinstance(host_cpus, bool) or not isinstance(host_cpus, int) or not 1 <= host_cpus <= 8:
            raise ValueError(
                f"host_cpus must be 1..8 (the firmware starts up to 8 CPUs), not {host_cpus!r}"
            )
        #: The machine's physical CPUs (QEMU's -smp); ``smp`` vCPUs share them.
        self.host_cpus = host_cpus
        #: Each VM's allowed physical CPUs (``add_vm(cpus=...)``); absent: any.
        self._vm_cpus: dict[int, frozenset[int]] = {}
        #: Each VM's favoured CPU per vCPU (``add_vm(favor_cpus=...)``).
        self._vm_favor: dict[int, tuple[int | None, ...]] = {}
        if bios is not None and not Path(bios).is_file():
            raise GuestImageError(f"the -bios image {bios} does not exist")
        self.config = QemuConfig(binary=qemu, cpu=cpu, memory_mb=machine_memory_mb(memory_mb),
                                 smp=host_cpus, gic_version=gic, extra_args=tuple(extra_args),
                                 bios=Path(bios) if bios is not None else None,
                                 console_input=console_input, mte=mte,
                                 iommu=iommu, its=its)  # fmt: skip
        if doorbell:
            # Its ring is QEMU's semihosting console: a command line with
            # semihosting of its own would lose its output to the doorbell.
            if transport != "shm":
                raise ValueError("doorbell=True needs transport='shm' (the gdb transport "
                                 "wakes on the gdbstub's stop replies)")  # fmt: skip
            if any(str(a).startswith("-semihosting") for a in extra_args):
                raise ValueError("doorbell=True rings through QEMU's semihosting console, "
                                 "which this command line uses itself")  # fmt: skip
            if self.firmware.host_sleeping is None:
                raise FirmwareError(f"{self.firmware.path} predates the doorbell "
                                    "(no armvcpu_host_sleeping)")  # fmt: skip
        self.config.doorbell = doorbell
        self.timeout = timeout
        self.qemu: QemuProcess | None = None
        self.gdb: GdbRemote | None = None
        self.transport: Transport | None = None
        self.ram: mmap.mmap | None = None
        self.guest_config: Any = None
        self.rules = FastRules(self.firmware.fast_rules, self._write_phys, self._read_phys,
                               self._publish_phys)  # fmt: skip
        #: The hypercall IDs that reach the host (see :meth:`claim_hypercalls`).
        self.claims = HypercallClaims(self.firmware.hypercall_claims, self._write_phys,
                                      self._publish_phys)  # fmt: skip
        self.last_exit: Exit | None = None
        #: The most recent exits (for error reports), newest last.
        self.recent_exits: collections.deque[Exit] = collections.deque(maxlen=20)
        self.exit_count = 0
        self._ram_file: Path | None = None
        self._ram_fd: int | None = None  # the RAM file, open while self.ram maps it
        self._started = False
        self._finished = False  # QEMU has gone
        self._end_expected = False  # the last answered exit ends the last VM
        self._vms_running: set[int] = {1}
        self._vm_configs: dict[int, Any] = {}
        self._vms: dict[int, VM] = {}
        self._closed = False
        self._guest_progress = False
        self._last_registers = ""
        self._exit_log: ExitLogReader | None = None
        self._exit_log_rows: list[Any] = []
        self._console_size = 0
        #: Called about every 0.1 s while the host waits for an exit (e.g. to
        #: show the guest's console as it is written).
        self.watchers: list[Callable[[], None]] = []
        self.boot_plan: BootPlan | None = None
        self.vgic = vgic
        #: VM 1's snapshot: ``request()`` it before the first exit, ``restore()`` at an exit.
        self.snapshot = Snapshots(self)

    # -- lifecycle ------------------------------------------------------------------

    def __enter__(self) -> Hypervisor:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> None:
        """Start QEMU halted, attach to it and tell the firmware a host is there."""
        if self._closed:
            raise SessionClosedError("this Hypervisor session is closed")
        if self.qemu is not None or self.gdb is not None:
            return
        _live_sessions.add(self)
        try:
            if self.remote is not None:
                self._start_remote(self.remote)
                return
            # RAM is a sparse shared file for either transport: QEMU's RAM
            # reaches past the firmware at 8 GiB, and an anonymous mapping
            # that large would count against the host's commit limit.
            self._ram_file = self._create_ram_file()
            self.config.ram_file = self._ram_file
            self.qemu = QemuProcess(self.config, self.firmware.path)
            self.qemu.wait_for_socket()
            self.gdb = self._connect_gdbstub()
            self.gdb.handshake()
            if self.transport_name == "shm":
                self.ram = self._map_ram_file(self._ram_file)
                self.transport = SharedMemoryTransport(
                    self.ram, RAM_BASE, self.firmware.exit_records, self.smp
                )
                if self.config.doorbell and self.firmware.host_sleeping is not None:
                    self.transport.use_doorbell(self.qemu.connect_doorbell(),
                                                self.firmware.host_sleeping, RAM_BASE)  # fmt: skip
            else:
                self._ram_file.unlink(missing_ok=True)  # QEMU has it open; we never map it
                self._ram_file = None
                self.transport = self._gdb_transport(self.gdb, self.smp)
            raw = self.gdb.read_memory(self.firmware.guest_config, _core.GuestConfig.SIZE)
            self.guest_config = _core.GuestConfig.from_bytes(raw)
            # VM 1's RAM is QEMU virt's: at 0x4000_0000, identity-mapped.
            self.guest_config.ipa_base = RAM_BASE
            self.guest_config.pa_base = RAM_BASE
            self.guest_config.size = self.memory_mb << 20
            self.guest_config.uart_mode = _UART_MODES[self.uart]
            self.guest_config.num_vcpus = self.smp  # until add_vm() takes some
            if self.vgic:
                self.guest_config.features |= int(_core.FEATURE_VGIC)
            if self.quiet:
                self.guest_config.features |= int(_core.FEATURE_QUIET)
            self.gdb.write_memory(self.firmware.guest_config, self.guest_config.to_bytes())
            self._publish_sched()
            attach = self.transport.attach_value().to_bytes(4, "little")
            self.gdb.write_memory(self.firmware.host_attached, attach)
            self._vms[1] = VM(self, 1)
        except BaseException:
            self.close()
            raise

    @classmethod
    def attach(cls, address: str, *, firmware: str | Path | None = None, timeout: float = 10.0,
               uart: Literal["host", "emulate", "passthrough"] = "host",
               handoff: HandoffMode = "auto") -> Hypervisor:  # fmt: skip
        """A session on a GDB remote target at ``"host:port"`` that already runs
        the armvcpu firmware and is halted before its first instruction: a
        board behind OpenOCD's gdbserver, or a QEMU started by someone else
        (``-m 8G -kernel armvcpu-firmware.elf -gdb tcp::1234 -S``: the firmware lives
        at 8 GiB, so the target's RAM must reach past it). Exits use the gdb
        transport; closing the session detaches and leaves the target running.

        >>> with Hypervisor.attach("localhost:1234") as hv:   # doctest: +SKIP
        ...     hv.load(guest); hv.run(policy)
        """
        return cls(firmware=firmware, timeout=timeout, uart=uart, remote=address, handoff=handoff)

    def _start_remote(self, address: str) -> None:
        host, _, port = address.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"remote target must be 'host:port', not {address!r}")
        try:
            self.gdb = GdbRemote.connect_tcp(host, int(port), timeout=self.timeout)
        except OSError as exc:
            raise TargetConnectionError(
                f"cannot reach the GDB remote target {address}: {exc}"
            ) from exc
        self.gdb.handshake()
        self.transport = self._gdb_transport(self.gdb, 1)
        raw = self.gdb.read_memory(self.firmware.guest_config, _core.GuestConfig.SIZE)
        self.guest_config = _core.GuestConfig.from_bytes(raw)
        self.guest_config.uart_mode = _UART_MODES[self.uart]
        self.gdb.write_memory(self.firmware.guest_config, self.guest_config.to_bytes())
        attach = self.transport.attach_value().to_bytes(4, "little")
        self.gdb.write_memory(self.firmware.host_attached, attach)
        self._vms[1] = VM(self, 1)

    def _gdb_transport(self, gdb: GdbRemote, vcpus: int) -> GdbTransport:
        fw = self.firmware
        transport = GdbTransport(gdb, fw.exit_records, fw.host_handoff, vcpus,
                                 doorbell=fw.host_doorbell, doorbell_store=fw.host_doorbell_store,
                                 mode=self.handoff)  # fmt: skip
        transport.prepare()
        return transport

    def _connect_gdbstub(self) -> GdbRemote:
        """Connect to QEMU's gdbstub socket. The file appears when QEMU binds it,
        a moment before QEMU listens: refusals are retried while QEMU lives."""
        assert self.qemu is not None
        deadline = time.monotonic() + 10.0
        while True:
            try:
                return GdbRemote.connect_unix(str(self.qemu.gdb_socket), timeout=self.timeout)
            except (ConnectionRefusedError, FileNotFoundError):
                if not self.qemu.alive():
                    raise QemuError(f"QEMU failed to start: {self.qemu.describe_exit()}") from None
                if time.monotonic() > deadline:
                    raise QemuError("QEMU's gdbstub refused connections for 10 s") from None
                time.sleep(0.005)

    def _create_ram_file(self) -> Path:
        path = ram_file_dir() / f"armvcpu-{os.getpid()}-{os.urandom(4).hex()}"
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.ftruncate(fd, self.config.memory_mb << 20)
        finally:
            os.close(fd)
        return path

    def _map_ram_file(self, path: Path) -> mmap.mmap:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        try:
            ram = mmap.mmap(fd, self.config.memory_mb << 20, mmap.MAP_SHARED)
        except BaseException:
            os.close(fd)
            raise
        # Kept open: files are copied into RAM through it (_write_phys_file).
        self._ram_fd = fd
        # QEMU and we both hold mappings now: the name is no longer needed, and
        # removing it here means no /dev/shm file can outlive the session.
        path.unlink(missing_ok=True)
        self._ram_file = None
        return ram

    def close(self) -> None:
        """Stop QEMU and release everything; safe to call more than once.

        What the VMs' emulated UARTs printed is read first, while the target
        can still be read, so ``vm.console`` keeps it."""
        if not self._closed:
            self._drain_consoles()
        self._closed = True
        if self.gdb is not None:
            if self.remote is not None and not self._finished:
                with contextlib.suppress(ArmvcpuError, OSError):
                    transport = self.transport
                    if isinstance(transport, GdbTransport) and not transport.running:
                        transport.release(self.firmware.host_attached)
                    self.gdb.detach()  # leave a remote target running
            self.gdb.close()
        if self.qemu is not None:
            self.qemu.terminate()
        self._drain_exit_log()  # what the firmware logged last stays readable
        if self.ram is not None:
            with contextlib.suppress(BufferError):
                self.ram.close()
        if self._ram_fd is not None:
            os.close(self._ram_fd)
            self._ram_fd = None
        if self._ram_file is not None:
            self._ram_file.unlink(missing_ok=True)
            self._ram_file = None
        _live_sessions.discard(self)

    def release_gdbstub(self) -> str:
        """Let an interactive gdb attach to this session's QEMU; returns the
        gdbstub's socket path (``target remote <path>`` in gdb-multiarch).

        Only with the shared-memory transport, whose exits do not need the
        gdbstub: the CPU is released to run, then this session disconnects
        (QEMU's gdbstub takes one client at a time). Exits keep flowing to
        ``exits()``; a timeout can no longer report where the CPU is.
        """
        gdb = self._require_gdb()
        if not isinstance(self.transport, SharedMemoryTransport):
            raise ArmvcpuError("release_gdbstub() needs transport='shm'")
        assert self.qemu is not None
        if not self._started:
            gdb.cont()
            self._started = True
        gdb.detach()
        gdb.close()
        self.gdb = None
        return str(self.qemu.gdb_socket)

    @property
    def vms(self) -> Mapping[int, VM]:
        """The session's VMs by id: VM 1 once the session has started, and
        those :meth:`add_vm` added."""
        return types.MappingProxyType(self._vms)

    def read_guest_console(self) -> str:
        """What VM 1's emulated UART printed since the last call
        (``uart="emulate"``); the same as ``hv.vms[1].read_console()``."""
        return self._vm(1).read_console()

    @property
    def guest_console(self) -> str:
        """Everything VM 1's emulated UART printed so far (``hv.vms[1].console``)."""
        return self._vm(1).console

    def _vm(self, vm_id: int) -> VM:
        if vm_id not in self._vms:
            if not self._vms:
                raise SessionClosedError(
                    "the Hypervisor session is not running; use it in a with block"
                )
            raise ArmvcpuError(f"there is no VM {vm_id}; add it with add_vm()")
        return self._vms[vm_id]

    def _drain_consoles(self) -> None:
        """Keep what every VM's emulated UART printed (the target may be about
        to go: the last VM stopping, or the session closing)."""
        for vm in self._vms.values():
            with contextlib.suppress(ArmvcpuError, OSError, ValueError):
                vm._drain_console()

    @property
    def console(self) -> str:
        """Everything the firmware printed on its UART so far."""
        return self.qemu.console_text() if self.qemu is not None else ""

    @property
    def qemu_pid(self) -> int | None:
        return self.qemu.pid if self.qemu is not None else None

    def _require_live(self) -> None:
        if self._closed or (self.qemu is None and self.gdb is None):
            raise SessionClosedError(
                "the Hypervisor session is not running; use it in a with block"
            )

    def _require_gdb(self) -> GdbRemote:
        self._require_live()
        if self.gdb is None:
            raise ArmvcpuError("this session released its gdbstub (release_gdbstub())")
        return self.gdb

    # -- guest memory ---------------------------------------------------------------

    # What a VM (session/vm.py) asks of its session.

    def _vm_config(self, vm_id: int) -> Any:
        if self.guest_config is None:
            raise SessionClosedError("start the session first")
        if vm_id == 1:
            return self.guest_config
        if vm_id not in self._vm_configs:
            raise ArmvcpuError(f"there is no VM {vm_id}; add it with add_vm()")
        return self._vm_configs[vm_id]

    def _vm_first_cpu(self, vm_id: int) -> int:
        """The firmware puts the VMs on consecutive physical CPUs, by id."""
        return sum(int(self._vm_config(v).num_vcpus) or 1 for v in self._vms if v < vm_id)

    def _vm_running(self, vm_id: int) -> bool:
        return self._started and not self._finished and vm_id in self._vms_running

    def _console_ring(self, vm_id: int) -> int:
        return int(self.firmware.guest_console + (vm_id - 1) * int(_core.CONSOLE_RING_STRIDE))

    def _can_read_phys(self) -> bool:
        """Physical memory can be read now without disturbing the target."""
        if self.ram is not None:
            return not self.ram.closed
        if self.gdb is None or self._finished or self._closed:
            return False
        # The gdb transport reads memory only while the CPUs are stopped.
        return not (isinstance(self.transport, GdbTransport) and self.transport.running)

    def _before_start(self, what: str) -> None:
        self._require_gdb()
        if self._started:
            raise ArmvcpuError(f"{what} must come before the first exits() call")

    def _publish_config(self, vm_id: int) -> None:
        self._write_phys(self._config_address(vm_id), self._vm_config(vm_id).to_bytes())

    def _config_address(self, vm: int) -> int:
        return int(self.firmware.guest_config + (vm - 1) * _core.GuestConfig.SIZE)

    def _read_phys(self, pa: int, length: int) -> bytes:
        """Physical memory: through the shared RAM mapping, or the gdbstub."""
        if self.ram is not None and not self.ram.closed:
            return bytes(self.ram[pa - RAM_BASE : pa - RAM_BASE + length])
        if self._closed:
            raise SessionClosedError("the session is closed: guest memory is gone")
        if self._finished:
            raise SessionClosedError(
                "QEMU has exited: with the gdb transport, memory (and rule hits) can only be "
                "read while the VM exists, e.g. at its last exit"
            )
        return self._require_gdb().read_memory(pa, length)

    def _write_phys(self, pa: int, data: bytes) -> None:
        if self.ram is not None:
            self.ram[pa - RAM_BASE : pa - RAM_BASE + len(data)] = data
        else:
            self._require_gdb().write_memory(pa, data)

    def _write_phys_file(self, pa: int, path: Path, size: int) -> None:
        """The first ``size`` bytes of a file at ``pa``. With the RAM file open
        the kernel copies it (sendfile): a Debian kernel's 32 MiB took ~50 ms
        read into Python and written through the mapping, ~17 ms this way, and
        the mapping gains no page-table entries to tear down at close."""
        if self._ram_fd is None:
            with path.open("rb") as src:
                self._write_phys(pa, src.read(size))
            return
        with path.open("rb") as src:
            os.lseek(self._ram_fd, pa - RAM_BASE, os.SEEK_SET)
            done = 0
            while done < size:
                sent = os.sendfile(self._ram_fd, src.fileno(), done, size - done)
                if sent == 0:
                    raise GuestImageError(f"{path} shrank while it was copied into guest RAM")
                done += sent

    def _publish_phys(self, pa: int, value: int) -> None:
        """Store 8 bytes with release ordering (the CPU may be running)."""
        if self.ram is not None:
            _core.mailbox_store(self.ram, pa - RAM_BASE, value)
        else:
            self._require_gdb().write_memory(pa, value.to_bytes(8, "little"))

    @property
    def traps(self) -> tuple[int, int]:
        """The HCR_EL2 and MDCR_EL2 bits :meth:`set_traps` set (a Policy
        adds the ones its system-register handlers need)."""
        if self.guest_config is None:
            return 0, 0
        return int(self.guest_config.hcr_el2_set), int(self.guest_config.mdcr_el2)

    def set_traps(self, *, hcr_el2: int = 0, mdcr_el2: int = 0) -> None:
        """Extra traps for the guest, before it starts: bits ORed into its
        HCR_EL2 (e.g. ``1 << 18``, TID3, traps the ID registers) and its
        MDCR_EL2 (e.g. ``1 << 9``, TDA, traps the debug registers)."""
        self._require_gdb()
        if self._started:
            raise ArmvcpuError("set_traps() must come before the first exits() call")
        self.guest_config.hcr_el2_set = hcr_el2
        self.guest_config.mdcr_el2 = mdcr_el2
        self._write_phys(self.firmware.guest_config, self.guest_config.to_bytes())

    def request_selftest(self, name: Literal["stack-overflow", "count-el2"]) -> None:
        """Ask the firmware to test or measure itself before the guest starts.

        ``"stack-overflow"`` recurses at EL2 until the stack hits its guard
        page, which must end in a reported exit (a GuestException with EL2's
        own abort syndrome) and a clean stop. ``"count-el2"`` counts the
        instructions EL2 executes with the PMU (exact under QEMU's
        ``-icount shift=0``); read it with :meth:`el2_instructions`.
        """
        self._require_gdb()
        if self._started:
            raise ArmvcpuError("request_selftest() must come before the first exits() call")
        flags = {"stack-overflow": _core.SELFTEST_STACK_OVERFLOW,
                 "count-el2": _core.SELFTEST_COUNT_EL2}  # fmt: skip
        if name not in flags:
            raise ValueError(f"unknown self-test {name!r}")
        self.guest_config.selftest |= int(flags[name])
        self._write_phys(self.firmware.guest_config, self.guest_config.to_bytes())

    def el2_instructions(self) -> int:
        """EL2 instructions retired up to the last exit reported to the host
        (after ``request_selftest("count-el2")``)."""
        return int.from_bytes(self._read_phys(self.firmware.el2_instructions, 8), "little")

    def read_guest(self, ipa: int, length: int) -> bytes:
        """Bytes of VM 1's RAM at a guest physical address (``hv.vms[1].read``)."""
        return self._vm(1).read(ipa, length)

    def write_guest(self, ipa: int, data: bytes) -> None:
        """Write VM 1's RAM at a guest physical address (``hv.vms[1].write``)."""
        self._vm(1).write(ipa, data)

    def load(self, guest: Guest) -> None:
        """Copy a guest into VM 1's RAM and make its entry point the first
        vCPU's first PC (``hv.vms[1].load``; :meth:`add_vm` loads the others)."""
        self._vm(1).load(guest)

    def enable_exit_log(self) -> None:
        """Log every exit of every VM, including those the firmware answers
        itself, for :meth:`firmware_exits` (``transport="shm"`` only: the log
        is read while the guest runs). Call before the first ``exits()``."""
        self._require_gdb()
        if self._started:
            raise ArmvcpuError("enable_exit_log() must come before the first exits() call")
        if self.ram is None:
            raise ArmvcpuError("the exit log is read as the guest runs: it needs transport='shm'")
        for vm in (1, *self._vm_configs):
            self._vm_config(vm).features |= int(_core.FEATURE_EXIT_LOG)
            self._publish_config(vm)
        from ..analysis.exitlog import ExitLogReader

        self._exit_log = ExitLogReader(self._read_phys, self.firmware.exit_log, self.smp,
                                       placement=self.placement)  # fmt: skip

    def firmware_exits(self) -> Any:
        """Every logged exit so far (after :meth:`enable_exit_log`), oldest
        first: a numpy structured array with ``time_s``, ``cpu``, ``vm``,
        ``vcpu``, ``kind`` (ExitKind), ``handler`` (ExitLogHandler), ``esr``
        and ``arg`` (the MMIO address, system register, hypercall number or
        INTID). With vCPUs time-sharing CPUs the EL2 scheduler's world
        switches are rows too, in order with the exits (kind
        ``exitlog.WORLD_SWITCH``, handler ``Scheduler``; :meth:`world_switches`
        decodes them). See :mod:`armvcpu.analysis.exitlog`."""
        import numpy as np

        from ..analysis.exitlog import DTYPE

        if self._exit_log is None:
            raise ArmvcpuError("call enable_exit_log() before the run")
        self._drain_exit_log()
        if not self._exit_log_rows:
            return np.empty(0, dtype=DTYPE)
        if len(self._exit_log_rows) > 1:
            self._exit_log_rows = [np.concatenate(self._exit_log_rows)]
        return self._exit_log_rows[0]

    def _drain_exit_log(self) -> bool:
        if self._exit_log is None or self.ram is None or self.ram.closed:
            return False
        rows = self._exit_log.drain()
        if len(rows):
            self._exit_log_rows.append(rows)
        return len(rows) > 0

    @property
    def exit_log_dropped(self) -> int:
        """Logged exits lost because the host read the log too slowly."""
        return self._exit_log.dropped if self._exit_log is not None else 0

    def load_linux(self, kernel: bytes | str | Path, *, initrd: bytes | str | Path | None = None,
                   append: str = "", dtb: bytes | str | Path | None = None,
                   devices: Sequence[str] = ("uart",)) -> BootPlan:  # fmt: skip
        """Boot an arm64 kernel Image in VM 1 per the arm64 boot protocol
        (``hv.vms[1].load_linux``); returns where things went.

        Guest RAM is ``memory_mb`` at 0x4000_0000, as QEMU's ``-m`` gives it, at
        the same addresses as the guest sees them (so passed-through DMA works).
        The guest's GIC is emulated in EL2; its device tree is derived from
        QEMU's (or ``dtb``'s) with the guest's memory, vCPUs, PSCI over HVC,
        ``append`` as the command line, the initramfs, and only ``devices``:
        ``"uart"`` (the PL011, passed through), ``"rtc"`` (PL031) and
        ``"virtio"`` (the virtio-mmio transports).

        >>> with Hypervisor(smp=2, memory_mb=512, uart="passthrough") as hv:  # doctest: +SKIP
        ...     hv.load_linux("vmlinuz", initrd="initrd.gz", append="console=ttyAMA0")
        ...     hv.run()
        """
        return self._vm(1).load_linux(kernel, initrd=initrd, append=append, dtb=dtb,
                                      devices=devices)  # fmt: skip

    def boot(self, kernel: bytes | str | Path | None, *, initrd: bytes | str | Path | None = None,
             append: str = "", dtb: bytes | str | Path | None = None,
             devices: Sequence[str] = ("uart",)) -> BootPlan:  # fmt: skip
        """Boot VM 1 the way QEMU's ``-kernel`` boots ``virt``: an arm64 Image
        (booting.rst), an ELF (loaded at its program headers' addresses, entered
        at its entry point) or any other file as a raw image (at the base of
        RAM + 0x80000, entered there). Image and raw images get x0 = the device
        tree, placed as QEMU places it; an ELF gets the tree at the base of RAM
        when it leaves room there, as QEMU does, and no initramfs (QEMU loads
        one only for Linux). The tree is QEMU's own for this machine with
        armvcpu's changes (see :meth:`load_linux`). Returns where things went.

        ``kernel=None`` boots the session's ``bios`` image from flash 0, as
        QEMU's ``-bios`` does: the guest starts at address 0 with x0 = 0, its
        device tree at the base of RAM, the flash passed through.

        >>> with Hypervisor(memory_mb=256, uart="passthrough") as hv:  # doctest: +SKIP
        ...     hv.boot("test.bin", append="-p 1")   # a unit-test image for QEMU virt
        ...     hv.run()
        """
        return self._vm(1).boot(kernel, initrd=initrd, append=append, dtb=dtb, devices=devices)

    def _boot(self, vm: VM, kernel: bytes | str | Path | None,
              initrd: bytes | str | Path | None,
              append: str, dtb: bytes | str | Path | None, devices: Sequence[str], *,
              images_only: bool = False) -> BootPlan:  # fmt: skip
        from ..guests.devicetree import (
            guest_device_tree,
            padded,
            qemu_device_tree,
            qemu_loaded_size,
        )

        self._before_start("load_linux()" if images_only else "boot()")
        known = _PASSTHROUGH_FEATURES
        unknown = sorted(set(devices) - set(known))
        if unknown:
            raise ValueError(f"unknown devices {unknown}; armvcpu passes through {sorted(known)}")
        if kernel is None:
            return self._boot_bios(vm, append, dtb, devices)
        # An uncompressed Image file is copied into RAM from the file, not read.
        kernel_file = _plain_image_file(kernel)
        data = _read_input(kernel, "kernel") if kernel_file is None else b""
        is_elf = data[:4] == b"\x7fELF"
        if kernel_file is not None:
            image = LinuxImage.parse_header(kernel_file[1], kernel_file[0].stat().st_size)
        elif images_only or LinuxImage.is_image(data):
            image = LinuxImage.parse(data)
        elif not is_elf:
            image = LinuxImage.raw(data)
        initrd_file = None
        initrd_size: int | None = None
        initrd_data = None
        if initrd is not None and not is_elf:
            if isinstance(initrd, bytes):
                initrd_data = initrd
                initrd_size = len(initrd)
            else:
                initrd_file = _existing_file(initrd, "initrd")
                initrd_size = initrd_file.stat().st_size
        source = _read_input(dtb, "device tree") if dtb is not None else None
        cfg = self.guest_config
        ram_base = RAM_BASE  # QEMU virt's RAM, identity-mapped (DMA lands in guest RAM)
        ram_size = self.memory_mb << 20
        if source is None:
            source = qemu_device_tree(qemu=self.config.binary, cpu=self.config.cpu,
                                      smp=self.smp, memory_mb=self.memory_mb,
                                      gic_version=self.gic, its=self.config.its)  # fmt: skip
        if is_elf:
            elf = Guest.from_elf(data)
            low = min(seg.addr for seg in elf.segments)
            high = max(seg.addr + seg.memsz for seg in elf.segments)
            plan = BootPlan(ram_base, ram_size, low, high, None, None, ram_base)
        else:
            plan = BootPlan.make(image, ram_base=ram_base, ram_size=ram_size,
                                 initrd_size=initrd_size, dtb_size=0)  # fmt: skip
        initrd_range = None
        if plan.initrd is not None and plan.initrd_end is not None:
            initrd_range = (plan.initrd, plan.initrd_end)
        tree = guest_device_tree(source, ram_base=ram_base, ram_size=ram_size,
                                 num_cpus=int(cfg.num_vcpus) or 1, bootargs=append,
                                 initrd=initrd_range, devices=tuple(devices))  # fmt: skip
        # As large as QEMU's: the guest reserves the same memory for it.
        tree = padded(tree, min(qemu_loaded_size(source, from_file=dtb is not None), MAX_DTB_SIZE))
        if len(tree) > MAX_DTB_SIZE:  # the placement does not depend on its size
            raise GuestImageError(f"the device tree is {len(tree)} bytes; the limit is 2 MiB")
        self._pass_through(cfg, devices)
        if is_elf:
            vm.load(elf)  # entry, and x0 = 0 as QEMU leaves it for an ELF
            # QEMU puts the tree at the base of RAM when the ELF leaves room.
            if low >= ram_base + len(tree) or high <= ram_base:
                vm.write(ram_base, tree)
        else:
            if kernel_file is not None:
                vm.write_file(plan.kernel, kernel_file[0])
            else:
                vm.write(plan.kernel, image.data)
            if plan.initrd is not None:
                if initrd_file is not None:
                    vm.write_file(plan.initrd, initrd_file)
                elif initrd_data is not None:
                    vm.write(plan.initrd, initrd_data)
            vm.write(plan.dtb, tree)
            cfg.entry = plan.kernel
            cfg.x0 = plan.dtb
        self._publish_config(vm.id)
        self.boot_plan = plan
        return plan

    def _boot_bios(self, vm: VM, append: str, dtb: bytes | str | Path | None,
                   devices: Sequence[str]) -> BootPlan:  # fmt: skip
        from ..guests.devicetree import (
            guest_device_tree,
            padded,
            present_devices,
            qemu_device_tree,
            qemu_loaded_size,
        )

        if self.config.bios is None:
            raise ArmvcpuError("boot(None) boots the session's bios image: give Hypervisor(bios=)")
        cfg = self.guest_config
        source = _read_input(dtb, "device tree") if dtb is not None else None
        if source is None:
            source = qemu_device_tree(qemu=self.config.binary, cpu=self.config.cpu,
                                      smp=self.smp, memory_mb=self.memory_mb,
                                      bios=self.config.bios, gic_version=self.gic,
                                      its=self.config.its)  # fmt: skip
        devices = tuple(dict.fromkeys((*devices, "flash")))
        if dtb is None:  # QEMU with -bios has an ACPI GED, not the PL061
            devices = tuple(d for d in devices if d != "gpio" or "gpio" in present_devices(source))
        tree = guest_device_tree(source, ram_base=RAM_BASE, ram_size=self.memory_mb << 20,
                                 num_cpus=int(cfg.num_vcpus) or 1, bootargs=append,
                                 initrd=None, devices=devices)  # fmt: skip
        tree = padded(tree, min(qemu_loaded_size(source, from_file=dtb is not None), MAX_DTB_SIZE))
        self._pass_through(cfg, devices)
        vm.write(RAM_BASE, tree)  # where QEMU leaves it for -bios firmware to find
        cfg.entry = 0  # flash 0, as the CPU starts on bare QEMU
        cfg.x0 = 0
        self._publish_config(vm.id)
        plan = BootPlan(RAM_BASE, self.memory_mb << 20, 0, 0, None, None, RAM_BASE)
        self.boot_plan = plan
        return plan

    def _pass_through(self, cfg: Any, devices: Sequence[str]) -> None:
        """The VM's platform for a boot: the emulated GIC and ``devices``
        passed through (the UART then the guest's own). The firmware confines
        PCIe DMA when the machine has an SMMU and the VM has the host bridge."""
        cfg.features |= int(_core.FEATURE_VGIC) | sum(_PASSTHROUGH_FEATURES[d] for d in devices)
        # PSCI and SMCCC as QEMU's own PSCI offers them: no SMCCC_VERSION, so
        # Linux says "SMC Calling Convention v1.0", as on bare QEMU.
        cfg.features |= int(_core.FEATURE_QEMU_SMCCC)
        if self.config.iommu and "pcie" in devices:
            cfg.features |= int(_core.FEATURE_SMMU)
        if "uart" in devices:
            self.uart = "passthrough"
            cfg.uart_mode = _UART_MODES["passthrough"]

    def dma_faults(self) -> list[DmaFault]:
        """The DMAs the SMMU blocked so far (``iommu=True``), oldest first: at
        most the last ``_core.DMA_FAULT_ENTRIES``."""
        if self.firmware.dma_faults is None:
            return []
        layout = _core.DMA_FAULT_LAYOUT
        base = self.firmware.dma_faults
        count = int.from_bytes(self._read_phys(base, 8), "little")
        entries = int(_core.DMA_FAULT_ENTRIES)
        faults = []
        for n in range(max(0, count - entries), count):
            at = base + layout["entries_offset"] + (n % entries) * layout["size"]
            raw = self._read_phys(at, layout["size"])
            faults.append(DmaFault(
                address=int.from_bytes(raw[layout["address"]:][:8], "little"),
                stream_id=int.from_bytes(raw[layout["stream_id"]:][:4], "little"),
                event=raw[layout["event"]], write=bool(raw[layout["write"]])))  # fmt: skip
        return faults

    def type_console(self, text: str | bytes) -> None:
        """Type into the guest's PL011, as on QEMU's ``-serial stdio``
        (``Hypervisor(console_input=True)``, the UART passed through)."""
        if self.qemu is None:
            raise ArmvcpuError("no QEMU of this session to type into")
        self.qemu.send_console(text.encode() if isinstance(text, str) else text)

    def add_vm(self, guest: Guest, *, vcpus: int = 1, cpus: Iterable[int] | None = None,
               favor_cpus: Sequence[int | None] | None = None) -> VM:  # fmt: skip
        """Another VM, isolated from VM 1 by its own stage-2 tables and VMID,
        with its own RAM (as large as VM 1's, at the same guest addresses, in
        machine RAM above the firmware) and ``vcpus`` vCPUs, taken from the
        session's ``smp``. Returns it (also in :attr:`vms`), with ``guest``
        loaded.

        ``cpus`` names the physical CPUs (``0 .. host_cpus - 1``) its vCPUs
        may run on (the seeds' ``phys_cpu_set``); by default any.
        ``favor_cpus[i]`` is the CPU vCPU i prefers (``favor_phys_cpu``; None:
        no preference), taken when it is among ``cpus``; otherwise a vCPU goes
        to the allowed CPU with the fewest vCPUs. vCPUs placed on one CPU
        time-share it (see :meth:`placement`).

        >>> with Hypervisor(smp=2, memory_mb=512) as hv:    # doctest: +SKIP
        ...     hv.load(guest_a)
        ...     b = hv.add_vm(guest_b)
        ...     hv.run(); b.read(0x4010_0000, 8)
        """
        self._before_start("add_vm()")
        if vcpus < 1:
            raise ValueError(f"a VM needs at least one vCPU, not vcpus={vcpus}")
        allowed = self._check_cpus(cpus)
        favor = self._check_favor(favor_cpus, vcpus)
        vm = 2 + len(self._vm_configs)
        if vm > _MAX_VMS:
            raise ArmvcpuError(f"the firmware runs at most {_MAX_VMS} VMs")
        # VM 1 keeps the physical CPUs the other VMs do not take.
        others = sum(c.num_vcpus for c in self._vm_configs.values()) + vcpus
        if others + 1 > self.smp:
            raise ArmvcpuError(
                f"VMs need at least {others + 1} vCPUs (VM 1 keeps one) but smp={self.smp} "
                "(smp counts the vCPUs of all VMs; host_cpus the CPUs they share)"
            )
        base = self.guest_config
        cfg = _core.GuestConfig.from_bytes(base.to_bytes())
        # Its RAM sits above the firmware (machine_memory_mb() leaves room for
        # every VM), seen by its guest at 0x4000_0000 like VM 1's.
        cfg.ipa_base = RAM_BASE
        cfg.pa_base = _core.EXTRA_VM_RAM_BASE + (vm - 2) * base.size
        cfg.num_vcpus = vcpus
        self._vm_configs[vm] = cfg
        new = self._vms[vm] = VM(self, vm)
        try:
            new.load(guest)
        except BaseException:
            del self._vm_configs[vm], self._vms[vm]  # no half-made VM stays behind
            raise
        self._vms_running.add(vm)
        self.guest_config.num_vcpus = self.smp - others
        self._publish_config(1)
        if allowed is not None:
            self._vm_cpus[vm] = allowed
        if favor is not None:
            self._vm_favor[vm] = favor
        self._publish_sched()
        return new

    def _check_cpus(self, cpus: Iterable[int] | None) -> frozenset[int] | None:
        if cpus is None:
            return None
        if isinstance(cpus, (str, bytes)) or not isinstance(cpus, Iterable):
            raise TypeError(f"cpus must be a set of physical CPU numbers, not {cpus!r}")
        allowed = frozenset(cpus)
        bad = sorted(
            repr(c) for c in allowed
            if isinstance(c, bool) or not isinstance(c, int) or not 0 <= c < self.host_cpus
        )  # fmt: skip
        if bad:
            raise ValueError(
                f"cpus: {', '.join(bad)} is not a CPU of this machine "
                f"(host_cpus={self.host_cpus}: 0..{self.host_cpus - 1})"
            )
        if not allowed:
            raise ValueError("cpus must name at least one physical CPU")
        return allowed

    def _check_favor(
        self, favor: Sequence[int | None] | None, vcpus: int
    ) -> tuple[int | None, ...] | None:
        if favor is None:
            return None
        if isinstance(favor, (str, bytes)) or not isinstance(favor, Sequence):
            raise TypeError(
                f"favor_cpus must be a sequence (one CPU or None per vCPU), not {favor!r}"
            )
        if len(favor) != vcpus:
            raise ValueError(f"favor_cpus names {len(favor)} CPUs for {vcpus} vCPUs")
        for c in favor:
            if c is not None and (isinstance(c, bool) or not isinstance(c, int)
                                  or not 0 <= c < self.host_cpus):  # fmt: skip
                raise ValueError(
                    f"favor_cpus: {c!r} is not a CPU of this machine "
                    f"(host_cpus={self.host_cpus}: 0..{self.host_cpus - 1})"
                )
        return tuple(favor)

    def _publish_sched(self) -> None:
        """Tell the firmware which CPUs each vCPU slot may run on (VM 1's
        slots first, then each added VM's)."""
        address = self.firmware.sched_config
        if address is None or self.guest_config is None:
            return
        config = self._sched_config()
        self._write_phys(address, config.to_bytes())
        where = _core.place_vcpus(config, self.smp, self.host_cpus)
        shared = where is not None and list(where) != list(range(self.smp))
        if isinstance(self.transport, GdbTransport):
            self.transport.slot_map = self.firmware.current_slot if shared else None

    def world_switches(self) -> list[WorldSwitch]:
        """The EL2 scheduler's world switches so far, oldest first: which vCPU
        left which physical CPU for which, why, and how long it had run.
        They are entries of the exit log: with :meth:`enable_exit_log` every
        one :meth:`firmware_exits` holds, otherwise the last 4096 of each
        vCPU's ring. Empty without time sharing.

        >>> with Hypervisor(smp=2, host_cpus=1) as hv:      # doctest: +SKIP
        ...     hv.load(guest); hv.run()
        ...     for s in hv.world_switches(): print(s.cpu, s.from_vcpu, s.to_vcpu, s.ran_s)
        """
        if getattr(self.firmware, "switch_log", None) is None:
            return []  # a firmware without the scheduler
        slots: list[tuple[int, int]] = []
        for vm in sorted(self._vms):
            slots += [(vm, i) for i in range(int(self._vm_config(vm).num_vcpus) or 1)]
        # Here, not at the top: the analysis package brings numpy, which a
        # plain run does without.
        from ..analysis.exitlog import ExitLogReader
        from ..analysis.switchlog import world_switches

        if self._exit_log is not None:
            rows = self.firmware_exits()
        else:
            # Nobody drains the rings: they hold only switches, read whole.
            reader = ExitLogReader(self._read_phys, self.firmware.exit_log, self.smp,
                                   placement=self.placement)  # fmt: skip
            rows = reader.drain()
        return world_switches(rows, slots)

    def world_switch_costs(self) -> SwitchCosts:
        """EL2 instructions per world switch and per lazy FP hand-over, as the
        firmware counted them (after ``request_selftest("count-el2")``)."""
        from ..analysis.switchlog import SwitchCosts, parse_switch_costs

        address = self.firmware.switch_log
        if address is None:
            return SwitchCosts(0, 0, 0, 0)
        return parse_switch_costs(self._read_phys(address, 48))

    def _sched_config(self) -> Any:
        """The placement request: each slot's allowed CPUs (its VM's)."""
        config = _core.SchedConfig()
        if self.guest_config is None:
            return config
        sets = [0] * 8
        favors = [int(_core.NO_FAVOR)] * 8
        for vm in sorted(self._vms):
            first = self._vm_first_cpu(vm)
            mask = sum(1 << c for c in self._vm_cpus.get(vm, ()))
            favor = self._vm_favor.get(vm, ())
            for i in range(int(self._vm_config(vm).num_vcpus) or 1):
                if first + i < 8:
                    sets[first + i] = mask
                    if i < len(favor) and favor[i] is not None:
                        favors[first + i] = int(favor[i])  # type: ignore[arg-type]
        config.phys_cpu_set = sets
        config.favor_phys_cpu = favors
        return config

    def placement(self) -> list[int]:
        """Each vCPU slot's physical CPU, as the firmware places them
        (VM 1's vCPUs first, then each added VM's; the core's place_vcpus)."""
        where = _core.place_vcpus(self._sched_config(), self.smp, self.host_cpus)
        if where is None:  # _check_cpus keeps every set inside the machine
            raise ArmvcpuError("no placement: a VM's cpus name no CPU of this machine")
        return list(where)

    # -- running --------------------------------------------------------------------

    def claim_hypercalls(self, *ids: ClaimSpec, all: bool = False) -> None:
        """Let these hypercall function IDs reach the host: single IDs,
        ``range`` objects (stop excluded) or ``(first, last)`` pairs (both
        included); ``all=True`` claims every ID. An HVC or SMC whose ID no
        fast rule answers and nobody claimed gets SMCCC NOT_SUPPORTED (-1 in
        x0) in EL2 without a round trip, as on QEMU ``virt`` without a
        hypervisor. PSCI and the SMCCC calls the firmware implements never
        reach the host.

        Claims add up and cannot be withdrawn. Before the guest starts
        they may be made with either transport, while it runs with
        ``transport="shm"``. :meth:`exits` claims every ID when nothing was
        claimed before it; :meth:`run` claims what its handler answers.

        >>> with Hypervisor() as hv:                            # doctest: +SKIP
        ...     hv.claim_hypercalls(0x10, range(0xC600_0000, 0xC600_0100))
        """
        if all:
            self.claims.claim_all()
        if ids:
            self.claims.claim(*ids)
        if not all and not ids:
            raise ValueError("claim_hypercalls() needs IDs, ranges or all=True")

    def exits(self, timeout: float | None = None, *, claim_hypercalls: bool | None = None,
              guest_progress: bool = False) -> Iterator[Exit]:  # fmt: skip
        """Run the guest and yield each exit until the VM stops.

        Answer each exit (``resume()``, ``complete_read()``, ``stop()``, ...);
        one left unanswered gets the firmware's default when the loop goes on.

        ``claim_hypercalls``: whether every hypercall reaches this loop. The
        default (None) claims them all unless some were claimed already
        (:meth:`claim_hypercalls`, a policy's ``install``), so a script that
        reads every exit sees every hypercall; False leaves the claims as
        they are (unclaimed IDs get NOT_SUPPORTED in EL2).

        ``timeout`` (default: the session's) is how long to wait for the
        next exit, console output or exit-log entry; ``math.inf`` waits for
        ever. With ``guest_progress`` (``transport="shm"``), a guest whose
        registers keep changing is making progress too: when the timeout
        passes with nothing else, the CPU is stopped through the gdbstub
        for a moment and its registers compared with the last look, so a
        guest that only computes is not taken for a hung one.
        """
        self._require_live()
        if claim_hypercalls or (claim_hypercalls is None and not self.claims.explicit):
            self.claims.claim_all()
        self._guest_progress = guest_progress
        gdb = self.gdb
        wait = self.timeout if timeout is None else timeout
        if not self._started and self.transport_name == "shm":
            self._require_gdb().cont()  # the CPU runs freely from here; exits come through RAM
        self._started = True
        transport = self.transport
        answer = self._answer
        recent = self.recent_exits
        # The shared-memory fast path: one C++ call per exit answers the
        # previous exit with the default if the loop left it open, waits one
        # slice for the next record and makes its Exit straight from the
        # mapping (one copy); the general path (timeouts, progress, QEMU's
        # end) when none comes.
        stream = None
        if isinstance(transport, SharedMemoryTransport):
            assert self.ram is not None
            stream = _core.exit_stream(Exit, self.ram, transport.record_offsets,
                                       transport.last_seqs, answer, self, transport.doorbell_fd,
                                       transport.sleeping_offset)  # fmt: skip
        exit: Exit | None
        while not self._finished:
            exit = None
            if stream is not None and not self._end_expected:
                exit = stream.next(_POLL_SLICE)
            if exit is None:
                if stream is not None:
                    stream.settle()
                try:
                    found = self._next_record(gdb, wait)
                except TargetConnectionError as exc:
                    raise self._qemu_error_for(exc) from exc
                if found is None:
                    return
                slot, raw = found
                if stream is not None:
                    exit = stream.view(slot)
                else:
                    exit = Exit(_core.ExitRecord.from_bytes(raw), answer, raw, self)
                    exit.slot = slot
            self.last_exit = exit
            recent.append(exit)
            self.exit_count += 1
            yield exit
            if stream is None and not exit.resolved:
                exit.resume_default()  # the stream does this in C++ before its next wait

    def run(self, handler: Callable[[Exit], Any] | None = None, timeout: float | None = None,
            trace: Trace | None = None) -> list[Exit]:  # fmt: skip
        """Run to the end, letting ``handler`` answer each exit; returns them all.

        ``handler`` is a :class:`~armvcpu.Policy` (its declarative rules
        are installed as fast rules first) or any callable. A callable's int
        answers the exit as a Policy handler's would (x0 for a hypercall, the
        loaded value for an MMIO or system-register read); None leaves the exit
        to its own answer, or the firmware's default. With ``trace``, every
        exit is recorded.

        Hypercalls: every ID reaches the host (and this list), as
        :meth:`exits` claims them, unless :meth:`claim_hypercalls` was
        called before the first exit, or ``handler`` is a Policy whose
        hypercall handlers and rules all name IDs: then exactly those reach
        it, and the others get SMCCC NOT_SUPPORTED (-1) in EL2.
        """
        install = getattr(handler, "install", None)
        if install is not None and not self._started:
            install(self)
        seen = []
        try:
            for exit in self.exits(timeout):
                seen.append(exit)
                if handler is not None:
                    value = handler(exit)
                    if value is not None and not exit.resolved:
                        Policy.answer(exit, value)
                if trace is not None:
                    if not exit.resolved:
                        exit.resume_default()
                    trace.add(exit)
        finally:
            close = getattr(handler, "close", None)  # a Policy's devices flush (Pl011)
            if close is not None:
                close()
        return seen

    def serve_hypercalls(self, handler: Callable[..., int | None],
                         timeout: float | None = None) -> int:  # fmt: skip
        """Answer hypercall exits at full speed: ``handler(nr, x1, ..., x6)``
        returns the guest's x0, and the answer is written into the shared exit
        record by C++ with no :class:`Exit` object in between
        (``transport="shm"`` only). Returns how many were answered. Stops at
        the first exit that is not a hypercall, or that ``handler`` returns
        None for: that exit is the next one :meth:`exits` yields. Served
        exits are not in ``recent_exits`` or a trace.

        >>> with Hypervisor() as hv:                            # doctest: +SKIP
        ...     hv.load(guest)
        ...     hv.serve_hypercalls(lambda nr, *args: nr + 1)
        ...     for exit in hv.exits():
        ...         ...
        """
        self._require_live()
        transport = self.transport
        if not isinstance(transport, SharedMemoryTransport) or self.ram is None:
            raise ArmvcpuError("serve_hypercalls() needs transport='shm'")
        # Claimed before the guest starts: a call made before the claim is
        # published would get NOT_SUPPORTED in EL2 and never reach `answer`.
        if not self.claims.explicit:
            self.claims.claim_all()  # the hypercalls this serves
        if not self._started:
            self._require_gdb().cont()
            self._started = True
        wait = self.timeout if timeout is None else timeout
        records = [transport.offset + i * RECORD_SIZE for i in range(transport.vcpus)]
        served_total = 0
        deadline = time.monotonic() + wait
        while not self._finished:
            served, slot, _seq, lasts = _core.mailbox_serve_hypercalls(
                self.ram,
                records,
                transport.last_seqs,
                handler,
                min(_POLL_SLICE * 5, wait),
                transport.doorbell_fd,
                transport.sleeping_offset,
            )
            transport.last_seqs[:] = lasts  # in place: an exits() stream holds this list
            served_total += served
            self.exit_count += served
            if slot is not None:
                break  # left for exits()
            if served or self._made_progress():
                deadline = time.monotonic() + wait
            if self.qemu is not None and not self.qemu.alive():
                self._ended_or_died()
            elif time.monotonic() >= deadline:
                raise self._timeout_error(self.gdb, wait)
        return served_total

    def _next_record(self, gdb: GdbRemote | None, timeout: float) -> tuple[int, bytes] | None:
        """The next exit record, or None when the VM has ended as expected."""
        assert self.transport is not None
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise self._timeout_error(gdb, timeout)
            if (
                self._end_expected
                and isinstance(self.transport, SharedMemoryTransport)
                and self.qemu is not None
                and self.qemu.wait(min(remaining, 60.0)) is not None
            ):
                # Powered off, as the last answer asked; the gdb transport
                # instead sees the exit as a stop reply after its continue.
                self._ended_or_died()
                return None
            try:
                raw = self.transport.wait_record(min(remaining, _POLL_SLICE))
            except TargetConnectionError:
                if self._end_expected or self.qemu is None:
                    self._ended_or_died()
                    return None
                raise  # QEMU died, or only the connection went: exits() says which
            if raw is not None:
                return raw
            if self.qemu is not None and not self.qemu.alive():
                self._ended_or_died()
                return None
            if self._made_progress():
                # A guest that prints or makes exits the firmware answers is
                # alive even when no exit reaches the host (a Linux boot).
                deadline = time.monotonic() + timeout
            elif time.monotonic() >= deadline and self._guest_moved():
                deadline = time.monotonic() + timeout

    def _guest_moved(self) -> bool:
        """With ``guest_progress``: stop the CPU, compare its registers (the
        ``g`` packet: x0..x30, sp, pc, cpsr) with the last look, let it go
        on. A computing guest changes them; a stuck one (``b .``) does not."""
        gdb = self.gdb
        if not self._guest_progress or gdb is None:
            return False
        if not isinstance(self.transport, SharedMemoryTransport):
            return False  # with the gdb transport a stop is an exit hand-off
        try:
            gdb.interrupt()
            gdb.wait_stop(2.0)
            registers = gdb.request("g")
            gdb.cont()
        except (TimeoutError, ArmvcpuError):
            return False
        moved = registers != self._last_registers
        self._last_registers = registers
        return moved

    def _made_progress(self) -> bool:
        for watch in self.watchers:
            watch()
        progress = False
        if self.qemu is not None:
            with contextlib.suppress(OSError):
                size = self.qemu.console_path.stat().st_size
                progress = size != self._console_size
                self._console_size = size
        return self._drain_exit_log() or progress

    def _inject(self, slot: int, intid: int) -> None:
        self._publish_phys(self.firmware.pending_irq + 8 * slot, intid + 1)

    def _answer(self, exit: Exit, frame_changed: bool) -> None:
        assert self.transport is not None
        record = exit.record
        if record.action == _core.HostAction.Stop or (
            record.action == _core.HostAction.Default and _core.default_stops_vm(exit.record.reason)
        ):
            vm = self._vms.get(exit.vm_id)
            if vm is not None:
                # While the VM still exists: with the gdb transport its memory
                # cannot be read once QEMU has powered off.
                with contextlib.suppress(ArmvcpuError, OSError):
                    vm._drain_console()
            self._vms_running.discard(exit.vm_id)
            if not self._vms_running:
                self._end_expected = True  # QEMU powers off after the last VM
        try:
            self.transport.answer(exit.slot, record, frame_changed)
        except TargetConnectionError as exc:
            raise self._qemu_error_for(exc) from exc

    def _qemu_error_for(self, exc: TargetConnectionError) -> ArmvcpuError:
        """A broken gdbstub connection because QEMU died becomes a QemuError;
        with QEMU alive, only the connection went, and the error says so."""
        if self.qemu is not None and self.qemu.wait(1.0) is not None:
            self._finished = True
            return QemuError(
                f"{self.qemu.describe_exit()} while the VM was running; last exit: "
                f"{self.last_exit!r}; firmware log:\n{self._console_tail()}"
            )
        return TargetConnectionError(
            f"the GDB remote target closed the connection while the VM was running ({exc}); "
            f"last exit: {self.last_exit!r}"
        )

    def _ended_or_died(self) -> None:
        """QEMU is gone: a normal end after SystemDown/stop, otherwise an error."""
        self._finished = True
        if self.qemu is not None:
            self.qemu.wait(5.0)
        if self._end_expected:
            return None
        gone = self.qemu.describe_exit() if self.qemu is not None else "the remote target went away"
        raise QemuError(
            f"{gone} before the VM stopped; last exit: "
            f"{self.last_exit!r}; firmware log:\n{self._console_tail()}"
        )

    def _timeout_error(self, gdb: GdbRemote | None, timeout: float) -> GuestTimeout:
        where = ""
        try:
            if gdb is None:
                raise ArmvcpuError("no gdbstub connection")
            gdb.interrupt()
            gdb.wait_stop(2.0)
            where = f"; the CPU is now at pc={gdb.read_register('pc'):#x}"
        except (TimeoutError, ArmvcpuError):
            pass
        return GuestTimeout(
            f"the guest made no exit within {timeout:g} s (exits so far: {self.exit_count}; "
            f"last: {self.last_exit!r}){where}"
        )

    def _console_tail(self, lines: int = 10) -> str:
        return "\n".join(self.console.splitlines()[-lines:])


#: Enough of a file to tell an uncompressed Image by its header.
_IMAGE_HEAD = 64


def _existing_file(what: str | Path, name: str) -> Path:
    path = Path(what)
    if not path.is_file():
        raise GuestImageError(f"the {name} {path} does not exist")
    return path


def _read_input(what: bytes | str | Path, name: str) -> bytes:
    if isinstance(what, bytes):
        return what
    return _existing_file(what, name).read_bytes()


def _plain_image_file(kernel: bytes | str | Path) -> tuple[Path, bytes] | None:
    """The file and its first bytes when ``kernel`` names an uncompressed arm64
    Image: one that goes into RAM byte for byte, so it need not be read."""
    if isinstance(kernel, bytes):
        return None
    path = _existing_file(kernel, "kernel")
    with path.open("rb") as f:
        head = f.read(_IMAGE_HEAD)
    if head[:2] == b"\x1f\x8b" or not LinuxImage.is_image(head):
        return None
    return path, head
