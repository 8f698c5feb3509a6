"""VM snapshots: the firmware keeps VM 1 as it was at its first guest entry
and puts it back when an exit is answered with :meth:`Snapshots.restore`,
with no new QEMU (a fuzzer's reset between programs).

The snapshot holds the vCPU's registers and system registers, its GIC
virtual CPU interface, the emulated GIC (``vgic=True``) and guest RAM. RAM
is not copied: stage 2 maps it read-only after the snapshot, the first
write to each page saves that page in EL2 (without an exit to the host),
and a restore copies back only the pages written since.

>>> with Hypervisor(memory_mb=64) as hv:                     # doctest: +SKIP
...     hv.load(guest)
...     hv.snapshot.request()
...     for exit in hv.exits():
...         hv.snapshot.restore(exit, load=(0x4000_0000, next_program))
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .. import _core
from ..errors import ArmvcpuError, FirmwareError, SnapshotError

if TYPE_CHECKING:
    from ..exits import Exit

_OFFSETS = _core.SnapshotControl.OFFSETS
#: How many bytes a restore can load into guest RAM after it.
STAGING_SIZE = int(_core.SNAPSHOT_STAGING_SIZE)


@dataclass(frozen=True)
class SnapshotStatus:
    """What the firmware reports about VM 1's snapshot."""

    #: ``"none"`` (not taken: not asked for, or the guest has not started),
    #: ``"taken"``, or ``"failed"`` (see ``error``).
    state: str
    #: Why the snapshot or the last restore failed ("" when nothing did).
    error: str
    restores: int
    #: RAM pages written since the last restore (each saved once, in EL2).
    dirty_pages: int
    #: RAM pages copied back by every restore so far.
    pages_restored: int
    #: First writes to a page, answered in EL2.
    write_faults: int
    #: Pages the firmware can save between two restores.
    page_capacity: int


_STATES = {
    _core.SnapshotState.None_: "none",
    _core.SnapshotState.Taken: "taken",
    _core.SnapshotState.Failed: "failed",
}


class Snapshots:
    """VM 1's snapshot in one session (``hv.snapshot``)."""

    def __init__(self, hv: Any) -> None:
        # The Hypervisor that owns it (not named in the type: hypervisor.py
        # imports this module, and the package has no import cycles).
        self._hv = hv

    def _address(self) -> tuple[int, int]:
        fw = self._hv.firmware
        if fw.snapshot is None or fw.snapshot_staging is None:
            raise FirmwareError(
                f"{fw.path} has no VM snapshots (no armvcpu_snapshot symbol); "
                "use the firmware this package carries"
            )
        return fw.snapshot, fw.snapshot_staging

    @property
    def requested(self) -> bool:
        """Whether VM 1 takes a snapshot at its first entry."""
        cfg = self._hv.guest_config
        return cfg is not None and bool(int(cfg.features) & int(_core.FEATURE_SNAPSHOT))

    def request(self) -> None:
        """Snapshot VM 1 at its first guest entry (call before the first
        ``exits()``). VM 1 must have one vCPU (``smp=1``)."""
        hv = self._hv
        self._address()
        hv._require_gdb()
        if hv._started:
            raise ArmvcpuError(
                "snapshot.request() must come before the first exits() call: the "
                "snapshot is taken at VM 1's first guest entry"
            )
        if hv.gic != 3:
            # The firmware keeps the GICv3 virtual CPU interface (ICH_*
            # registers); a GICv2's (GICH) is not saved.
            raise ArmvcpuError("a snapshot needs a GICv3 machine (gic=3); this one has a GICv2")
        if int(hv.guest_config.num_vcpus) != 1:
            raise ArmvcpuError(
                f"a snapshot is of a VM with one vCPU; VM 1 has {hv.guest_config.num_vcpus}"
            )
        hv.guest_config.features |= int(_core.FEATURE_SNAPSHOT)
        hv._publish_config(1)

    def _control(self) -> Any:
        address, _ = self._address()
        return _core.SnapshotControl.from_bytes(
            self._hv._read_phys(address, _core.SnapshotControl.SIZE)
        )

    def status(self) -> SnapshotStatus:
        """The snapshot as the firmware reports it now."""
        c = self._control()
        if int(c.magic) != int(_core.SNAPSHOT_MAGIC):
            return SnapshotStatus("none", "", 0, 0, 0, 0, 0)
        error = "" if c.error == _core.SnapshotError.None_ else _core.snapshot_error_text(c.error)
        return SnapshotStatus(_STATES.get(c.state, "failed"), error, int(c.restores),
                              int(c.dirty_pages), int(c.pages_restored), int(c.write_faults),
                              int(c.page_capacity))  # fmt: skip

    def restore(self, exit: Exit, *, load: tuple[int, bytes] | None = None,
                traps: tuple[int, int] | None = None) -> None:  # fmt: skip
        """Answer ``exit`` by putting VM 1 back as the snapshot has it; the
        guest goes on from there (the next exit comes from the restored VM).

        ``load=(ipa, data)`` then writes ``data`` (at most
        :data:`STAGING_SIZE` bytes) into guest RAM at ``ipa``, through the
        firmware: QEMU sees the stores, so code written this way runs as
        written (a write into shared RAM leaves QEMU's translated code).
        ``traps=(hcr_el2, mdcr_el2)`` makes the VM run with these extra traps
        from then on, as :meth:`Hypervisor.set_traps` would have before the
        first entry (None: the traps it has).

        Raises :class:`~armvcpu.errors.SnapshotError` when there is no
        snapshot to go back to, with the firmware's reason.
        """
        hv = self._hv
        address, staging = self._address()
        if exit.vm_id != 1:
            raise ArmvcpuError(f"only VM 1 has a snapshot; this exit is VM {exit.vm_id}'s")
        if exit.resolved:
            raise ArmvcpuError(f"exit #{exit.seq} was already answered")
        if not self.requested:
            raise SnapshotError(
                "no snapshot to restore: ask for one with hv.snapshot.request() before "
                "the first exits() call"
            )
        status = self.status()
        if status.state != "taken":
            why = status.error or "the guest has not entered yet"
            raise SnapshotError(f"VM 1's snapshot cannot be restored: {why}")
        ipa, data = load if load is not None else (0, b"")
        if len(data) > STAGING_SIZE:
            raise ValueError(f"load: {len(data)} bytes; a restore loads at most {STAGING_SIZE}")
        if data:
            cfg = hv.guest_config
            lo, hi = int(cfg.ipa_base), int(cfg.ipa_base) + int(cfg.size)
            if not (lo <= ipa and ipa + len(data) <= hi):
                raise ValueError(
                    f"load: {ipa:#x}..{ipa + len(data):#x} is not inside VM 1's RAM "
                    f"{lo:#x}..{hi:#x}"
                )
            hv._write_phys(staging, bytes(data))
        hcr, mdcr = traps if traps is not None else (0, 0)
        request = b"".join(int(v).to_bytes(8, "little") for v in (ipa, len(data), hcr, mdcr))
        flags = int(_core.SNAPSHOT_SET_TRAPS) if traps is not None else 0
        # The firmware reads the request only after the answer's ack (a
        # release store), which the transport makes after these writes.
        hv._write_phys(address + _OFFSETS["load_ipa"], request)
        hv._write_phys(address + _OFFSETS["flags"], flags.to_bytes(4, "little"))
        if traps is not None:
            hv.guest_config.hcr_el2_set, hv.guest_config.mdcr_el2 = hcr, mdcr
        exit._check_open()
        exit._answer_with(_core.HostAction.Restore)
