"""One VM of a session: its memory, its guest, its console, its vCPUs.

A :class:`~armvcpu.Hypervisor` has VM 1 from the moment it starts
(``hv.vms[1]``); :meth:`~armvcpu.Hypervisor.add_vm` returns the others.

>>> with Hypervisor(smp=2, memory_mb=512, uart="emulate") as hv:   # doctest: +SKIP
...     hv.vms[1].load(guest_a)
...     b = hv.add_vm(guest_b)
...     hv.run()
...     print(b.id, b.vcpus, b.console)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from .. import _core
from ..errors import ArmvcpuError, GuestImageError

if TYPE_CHECKING:
    from collections.abc import Sequence

    from ..guests.guest import Guest
    from ..guests.linux import BootPlan


class _Session(Protocol):
    """What a VM needs from the session that owns it (the Hypervisor)."""

    @property
    def uart(self) -> str: ...

    def _vm_config(self, vm_id: int) -> Any: ...
    def _vm_first_cpu(self, vm_id: int) -> int: ...
    def placement(self) -> list[int]: ...
    def _vm_running(self, vm_id: int) -> bool: ...
    def _read_phys(self, pa: int, length: int) -> bytes: ...
    def _write_phys(self, pa: int, data: bytes) -> None: ...
    def _write_phys_file(self, pa: int, path: Path, size: int) -> None: ...
    def _can_read_phys(self) -> bool: ...
    def _console_ring(self, vm_id: int) -> int: ...
    def _before_start(self, what: str) -> None: ...
    def _publish_config(self, vm_id: int) -> None: ...
    def _boot(self, vm: VM, kernel: bytes | str | Path | None, initrd: bytes | str | Path | None,
              append: str, dtb: bytes | str | Path | None, devices: Sequence[str], *,
              images_only: bool = False) -> BootPlan: ...  # fmt: skip


@dataclass(frozen=True)
class VCpu:
    """One vCPU of a VM: its index in the VM (what the exit's ``vcpu_id``
    says), the physical CPU it runs on (shared with others when the session
    has fewer ``host_cpus`` than vCPUs) and its slot among all VMs' vCPUs
    (its exit record's index: ``exit.slot``)."""

    index: int
    cpu: int
    slot: int = field(default=-1, compare=False)


class VM:
    """A VM of a running session: isolated by its own stage-2 tables and VMID,
    with its own slice of machine RAM and its own vCPUs.

    Guest memory is addressed as the guest sees it (IPAs). ``console`` is
    everything the VM's emulated PL011 printed (``uart="emulate"``); it stays
    readable after the VM has stopped and after the session has closed.
    """

    def __init__(self, session: _Session, vm_id: int) -> None:
        self._session = session
        self.id = vm_id
        #: Where load_linux() put the kernel, initramfs and device tree.
        self.boot_plan: BootPlan | None = None
        self._console_read = 0  # bytes of the ring consumed so far
        self._console_text: list[str] = []
        self._console_given = 0  # characters of console that read_console() returned

    def __repr__(self) -> str:
        return f"<VM {self.id} vcpus={len(self.vcpus)} running={self.running}>"

    @property
    def config(self) -> Any:
        """The VM's ``_core.GuestConfig`` (where its RAM is, its entry, its features)."""
        return self._session._vm_config(self.id)

    @property
    def vcpus(self) -> tuple[VCpu, ...]:
        """The VM's vCPUs and where they run (VM 1's take the first slots)."""
        first = self._session._vm_first_cpu(self.id)
        count = int(self.config.num_vcpus) or 1
        where = self._session.placement()
        return tuple(VCpu(index=i, cpu=where[first + i], slot=first + i) for i in range(count))

    @property
    def running(self) -> bool:
        """True from the first ``exits()``/``run()`` until the VM has stopped
        (its last exit answered, or QEMU gone)."""
        return self._session._vm_running(self.id)

    # -- memory -------------------------------------------------------------------

    def ipa_to_pa(self, ipa: int, length: int = 1) -> int:
        """The physical address behind a guest address range (guest RAM only)."""
        cfg = self.config
        if ipa < cfg.ipa_base or ipa + length > cfg.ipa_base + cfg.size or length < 0:
            raise GuestImageError(
                f"guest range [{ipa:#x}, {ipa + length:#x}) lies outside VM {self.id}'s RAM "
                f"[{cfg.ipa_base:#x}, {cfg.ipa_base + cfg.size:#x})"
            )
        return int(cfg.pa_base + (ipa - cfg.ipa_base))

    def read(self, ipa: int, length: int) -> bytes:
        """Bytes of the VM's RAM at a guest physical address."""
        return self._session._read_phys(self.ipa_to_pa(ipa, length), length)

    def write(self, ipa: int, data: bytes) -> None:
        """Write the VM's RAM at a guest physical address."""
        self._session._write_phys(self.ipa_to_pa(ipa, len(data)), data)

    def write_file(self, ipa: int, path: str | Path) -> int:
        """Copy a whole file into the VM's RAM at a guest physical address;
        returns its size. Cheaper than ``write(ipa, path.read_bytes())`` for
        large images: the host kernel copies it."""
        path = Path(path)
        size = path.stat().st_size
        self._session._write_phys_file(self.ipa_to_pa(ipa, size), path, size)
        return size

    # -- the guest ----------------------------------------------------------------

    def load(self, guest: Guest) -> None:
        """Copy a guest into the VM's RAM and make its entry point the first
        vCPU's first PC (before the first ``exits()``)."""
        self._session._before_start("load()")
        for seg in guest.segments:
            self.ipa_to_pa(seg.addr, seg.memsz)  # range check before writing anything
        for seg in guest.segments:
            self.write(seg.addr, seg.data)
            if seg.memsz > len(seg.data):
                self.write(seg.addr + len(seg.data), bytes(seg.memsz - len(seg.data)))
        self.ipa_to_pa(guest.entry, 4)
        cfg = self.config
        cfg.entry = guest.entry
        cfg.x0 = guest.x0
        self._session._publish_config(self.id)

    def load_linux(self, kernel: bytes | str | Path, *, initrd: bytes | str | Path | None = None,
                   append: str = "", dtb: bytes | str | Path | None = None,
                   devices: Sequence[str] = ("uart",)) -> BootPlan:  # fmt: skip
        """Boot an arm64 kernel Image in this VM per the arm64 boot protocol
        (VM 1 only: its RAM is identity-mapped, as DMA needs); see
        :meth:`armvcpu.Hypervisor.load_linux`. Returns where things went."""
        if self.id != 1:
            raise ArmvcpuError(
                f"load_linux() boots VM 1 (its RAM is identity-mapped, as passed-through "
                f"DMA needs); VM {self.id} takes guests with load()"
            )
        plan = self._session._boot(self, kernel, initrd, append, dtb, devices, images_only=True)
        self.boot_plan = plan
        return plan

    def boot(self, kernel: bytes | str | Path | None, *, initrd: bytes | str | Path | None = None,
             append: str = "", dtb: bytes | str | Path | None = None,
             devices: Sequence[str] = ("uart",)) -> BootPlan:  # fmt: skip
        """Boot this VM as QEMU's ``-kernel`` boots ``virt`` (an Image, an ELF or
        a raw image; VM 1 only); see :meth:`armvcpu.Hypervisor.boot`."""
        if self.id != 1:
            raise ArmvcpuError(
                f"boot() boots VM 1 (its RAM is identity-mapped, as passed-through "
                f"DMA needs); VM {self.id} takes guests with load()"
            )
        plan = self._session._boot(self, kernel, initrd, append, dtb, devices)
        self.boot_plan = plan
        return plan

    # -- console ------------------------------------------------------------------

    def _drain_console(self) -> None:
        """Move what the VM's console ring holds beyond what was read into
        ``console`` (while the ring can be read: the session's RAM is mapped,
        or the target is stopped and reachable)."""
        session = self._session
        if session.uart != "emulate" or not session._can_read_phys():
            return
        base = session._console_ring(self.id)
        written = int.from_bytes(session._read_phys(base, 8), "little")
        size = int(_core.CONSOLE_RING_SIZE)
        start = max(self._console_read, written - size)
        lost = max(0, written - size - self._console_read)
        out = bytearray()
        data_at = base + int(_core.CONSOLE_RING_DATA_OFFSET)
        while start < written:
            offset = start % size
            chunk = min(written - start, size - offset)
            out += session._read_phys(data_at + offset, chunk)
            start += chunk
        self._console_read = max(self._console_read, written)
        if out or lost:
            text = (f"[{lost} bytes lost]" if lost else "") + out.decode("utf-8", "replace")
            self._console_text.append(text)

    def _require_emulated_uart(self) -> None:
        if self._session.uart != "emulate":
            raise ArmvcpuError("the guest console stream needs uart='emulate'")

    @property
    def console(self) -> str:
        """Everything the VM's emulated UART printed so far (``uart="emulate"``)."""
        self._require_emulated_uart()
        self._drain_console()
        if len(self._console_text) > 1:
            self._console_text = ["".join(self._console_text)]
        return self._console_text[0] if self._console_text else ""

    def read_console(self) -> str:
        """What the VM's emulated UART printed since the last ``read_console()``."""
        text = self.console
        new = text[self._console_given :]
        self._console_given = len(text)
        return new
