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
             count_only: bool = False) -> Rule:  # fmt: skip
        """Guest accesses to [start, end): reads return ``read`` (None: not
        answered), writes are ignored when ``ignore_writes``. With
        ``count_only`` the accesses are counted and still reach the host."""
        if end <= start:
            raise ValueError(f"empty MMIO range [{start:#x}, {end:#x})")
        flags = (_core.RULE_READS if read is not None else 0) | (
            _core.RULE_WRITES if ignore_writes else 0
        )
        if count_only:
            flags |= _core.RULE_COUNT_ONLY | _core.RULE_READS | _core.RULE_WRITES
        if flags == 0:
            raise ValueError("a rule that answers neither reads nor writes does nothing")
        return self._install(_core.FastRule(_core.RuleKind.Mmio, flags, start, end, read or 0))

    def hypercall(self, nr: int, *, result: int, count_only: bool = False) -> Rule:
        """Hypercall ``nr`` returns ``result`` in x0 without leaving EL2."""
        flags = _core.RULE_COUNT_ONLY if count_only else 0
        return self._install(_core.FastRule(_core.RuleKind.Hypercall, flags, nr, 0, result))

    def sysreg(self, register: str | int, *, read: int = 0, count_only: bool = False) -> Rule:
        """A trapped system register (by Arm name or SysRegRead/Write key):
        reads return ``read`` (0 is read-as-zero), writes are ignored."""
        key = _core.sysreg_encoding(register).key if isinstance(register, str) else int(register)
        flags = _core.RULE_COUNT_ONLY if count_only else 0
        return self._install(_core.FastRule(_core.RuleKind.SysReg, flags, key, 0, read))

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self._rules)

    def __len__(self) -> int:
        return len(self._rules)
