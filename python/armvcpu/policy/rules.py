"""Fast rules: answers the firmware gives by itself, without a host round trip.

>>> with Hypervisor() as hv:                                  # doctest: +SKIP
...     uart = hv.rules.mmio(0x0900_0000, 0x0900_1000, read=0)  # reads 0, writes ignored
...     hv.rules.hypercall(0x10, result=42)
...     hv.rules.sysreg("ID_AA64ISAR0_EL1", read=0)             # needs the register trapped
...     ...
...     uart.hits                                               # how often it answered
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .. import _core

RULE_SIZE: int = _core.FastRule.SIZE
RULES_OFFSET: int = _core.FAST_RULES_OFFSET
HITS_OFFSET: int = _core.FastRule.OFFSETS["hits"]


@dataclass
class Rule:
    """One installed rule; ``hits`` reads its counter from firmware memory."""

    index: int
    rule: _core.FastRule
    _read_hits: Callable[[int], int]

    @property
    def hits(self) -> int:
        return self._read_hits(self.index)


class FastRules:
    """The firmware's fast-rule table, written through the session's memory access.

    Rules may be added before the guest starts and, with the shared-memory
    transport, while it runs: each rule is written with its kind last, with
    release ordering, so the firmware never sees half a rule.
    """

    def __init__(
        self,
        address: int,
        write: Callable[[int, bytes], None],
        read: Callable[[int, int], bytes],
        publish: Callable[[int, int], None],
    ) -> None:
        self._address = address
        self._write = write
        self._read = read
        self._publish = publish
        self._rules: list[Rule] = []

    def _slot(self, index: int) -> int:
        return self._address + RULES_OFFSET + index * RULE_SIZE

    def _install(self, rule: _core.FastRule) -> Rule:
        index = len(self._rules)
        if index >= _core.MAX_FAST_RULES:
            raise ValueError(f"the firmware holds at most {_core.MAX_FAST_RULES} fast rules")
        raw = bytearray(rule.to_bytes())
        kind_and_flags = int.from_bytes(raw[0:8], "little")
        raw[0:8] = bytes(8)  # an empty slot until published
        self._write(self._slot(index), bytes(raw))
        self._publish(self._slot(index), kind_and_flags)
        installed = Rule(index, rule, self._hits)
        self._rules.append(installed)
        return installed

    def _hits(self, index: int) -> int:
        return int.from_bytes(self._read(self._slot(index) + HITS_OFFSET, 8), "little")

    def mmio(self, start: int, end: int, *, read: int | None = 0, ignore_writes: bool = True,
             count_only: bool = False, abort: bool = False) -> Rule:  # fmt: skip
        """Guest accesses to [start, end): reads return ``read`` (None: not
        answered), writes are ignored when ``ignore_writes``. With
        ``count_only`` the accesses are counted and still reach the host.
        With ``abort`` every access takes a synchronous external abort in
        the guest instead, as an address with nothing behind it does."""
        if end <= start:
            raise ValueError(f"empty MMIO range [{start:#x}, {end:#x})")
        if abort:
            flags = _core.RULE_READS | _core.RULE_WRITES | _core.RULE_INJECT_ABORT
            return self._install(_core.FastRule(_core.RuleKind.Mmio, flags, start, end, 0))
        flags = (_core.RULE_READS if read is not None else 0) | (
            _core.RULE_WRITES if ignore_writes else 0
        )
        if count_only:
            flags |= _core.RULE_COUNT_ONLY | _core.RULE_READS | _core.RULE_WRITES
        if flags == 0:
            raise ValueError("a rule that answers neither reads nor writes does nothing")
        return self._install(_core.FastRule(_core.RuleKind.Mmio, flags, start, end, read or 0))

    def hypercall(self, nr: int, *, result: int = 0, count_only: bool = False,
                  undef: bool = False) -> Rule:  # fmt: skip
        """Hypercall ``nr`` returns ``result`` in x0 without leaving EL2; with
        ``undef`` the call is an Undefined Instruction in the guest instead."""
        flags = _core.RULE_COUNT_ONLY if count_only else 0
        if undef:
            flags |= _core.RULE_INJECT_UNDEF
        return self._install(_core.FastRule(_core.RuleKind.Hypercall, flags, nr, 0, result))

    def sysreg(self, register: str | int, *, read: int = 0, count_only: bool = False,
               undef: bool = False) -> Rule:  # fmt: skip
        """A trapped system register (by Arm name or SysRegRead/Write key):
        reads return ``read`` (0 is read-as-zero), writes are ignored; with
        ``undef`` an access is an Undefined Instruction in the guest."""
        key = _core.sysreg_encoding(register).key if isinstance(register, str) else int(register)
        flags = _core.RULE_COUNT_ONLY if count_only else 0
        if undef:
            flags |= _core.RULE_INJECT_UNDEF
        return self._install(_core.FastRule(_core.RuleKind.SysReg, flags, key, 0, read))

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self._rules)

    def __len__(self) -> int:
        return len(self._rules)


ClaimSpec = int | range | tuple[int, int]
_CLAIM = _core.HYPERCALL_CLAIMS_OFFSETS
_U64 = (1 << 64) - 1


def claim_range(spec: ClaimSpec) -> tuple[int, int]:
    """One claim as (first, last), both inclusive: an ID, a ``range`` (its stop
    excluded, as Python's), or a ``(first, last)`` pair (both included)."""
    if isinstance(spec, bool):
        raise TypeError("a hypercall claim is an ID, a range or a (first, last) pair, not a bool")
    if isinstance(spec, int):
        first = last = spec
    elif isinstance(spec, range):
        if spec.step != 1 or len(spec) == 0:
            raise ValueError(f"claim a non-empty range with step 1, not {spec!r}")
        first, last = spec.start, spec.stop - 1
    elif isinstance(spec, tuple) and len(spec) == 2 and all(isinstance(v, int) for v in spec):
        first, last = spec
    else:
        raise TypeError(f"a hypercall claim is an ID, a range or a (first, last) pair: {spec!r}")
    if not 0 <= first <= last <= _U64:
        raise ValueError(f"hypercall IDs {first:#x}..{last:#x} are not a 64-bit range")
    return first, last


class HypercallClaims:
    """The firmware's hypercall claims: the HVC/SMC function IDs that reach the
    host. Any other ID that no fast rule answers gets SMCCC NOT_SUPPORTED (-1)
    in EL2, without a round trip, as on QEMU ``virt`` without a hypervisor.

    Claims only grow; each range is written before the count that publishes
    it (release ordering), so they may be added while the guest runs
    (shared-memory transport).
    """

    def __init__(self, address: int | None, write: Callable[[int, bytes], None],
                 publish: Callable[[int, int], None]) -> None:  # fmt: skip
        self._address = address
        self._write = write
        self._publish = publish
        self.ranges: list[tuple[int, int]] = []
        #: Every ID is claimed.
        self.all = False
        #: Something claimed IDs (or all) on purpose, so the session's
        #: claim-everything default for ``exits()`` no longer applies.
        self.explicit = False

    def claim(self, *specs: ClaimSpec) -> None:
        """Claim IDs or ranges (see :func:`claim_range`)."""
        new = [claim_range(s) for s in specs]
        self.explicit = True
        for first, last in new:
            if self.all or any(a <= first and last <= b for a, b in self.ranges):
                continue
            if len(self.ranges) >= _core.MAX_HYPERCALL_CLAIMS:
                raise ValueError(
                    f"the firmware holds at most {_core.MAX_HYPERCALL_CLAIMS} hypercall claims; "
                    "claim ranges instead of single IDs"
                )
            index = len(self.ranges)
            self.ranges.append((first, last))
            if self._address is not None:
                at = self._address + _CLAIM["ranges"] + index * _core.HYPERCALL_CLAIM_SIZE
                self._write(at, first.to_bytes(8, "little") + last.to_bytes(8, "little"))
                self._publish(self._address + _CLAIM["count"], len(self.ranges))

    def claim_all(self) -> None:
        """Every hypercall reaches the host."""
        self.explicit = True
        if not self.all and self._address is not None:
            self._publish(self._address + _CLAIM["all"], 1)
        self.all = True

    def claimed(self, nr: int) -> bool:
        """Whether hypercall ``nr`` reaches the host (as the firmware decides)."""
        return self.all or any(a <= nr <= b for a, b in self.ranges)
