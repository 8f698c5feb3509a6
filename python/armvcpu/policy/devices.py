"""MMIO device models written in Python, with named registers.

A device occupies an address range; each register is declared with its
offset, and accesses call ``read_<NAME>`` / ``write_<NAME>`` methods (or read a
constant). ``device.policy()`` turns it into a :class:`~armvcpu.Policy`.

>>> dev = Pl011(base=0x0900_0000)
>>> dev.write(0x0900_0000, ord("h")); dev.write(0x0900_0000, ord("i"))
>>> dev.output
'hi'
>>> hex(dev.read(0x0900_0018))   # UARTFR: transmit FIFO empty, never full
'0x90'
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ..exits import Exit, ExitKind
from .policy import Match, Policy, _Entry


@dataclass(frozen=True)
class Register:
    """A device register: its offset, and a constant value for reads if it has one."""

    offset: int
    width: int = 4
    reset: int | None = None


class MmioDevice:
    """Base class: subclass it, declare ``Register`` attributes, add
    ``read_<NAME>(self) -> int`` and ``write_<NAME>(self, value)`` methods."""

    size: int = 0x1000

    def __init__(self, base: int) -> None:
        self.base = base
        self.reads = 0
        self.writes = 0
        self._by_offset: dict[int, tuple[str, Register]] = {}
        for klass in reversed(type(self).__mro__):
            for name, value in vars(klass).items():
                if isinstance(value, Register):
                    self._by_offset[value.offset] = (name, value)

    @property
    def end(self) -> int:
        return self.base + self.size

    def _register(self, addr: int) -> tuple[str, Register] | None:
        return self._by_offset.get(addr - self.base)

    def read(self, addr: int) -> int:
        """A guest read at ``addr``: the register's method or constant, else 0
        (reads of undefined offsets are RAZ, as most Arm peripherals do)."""
        self.reads += 1
        found = self._register(addr)
        if found is None:
            return 0
        name, reg = found
        method: Callable[[], int] | None = getattr(self, f"read_{name}", None)
        if method is not None:
            return int(method())
        return reg.reset or 0

    def write(self, addr: int, value: int) -> None:
        """A guest write at ``addr``: the register's method, else ignored (WI)."""
        self.writes += 1
        found = self._register(addr)
        if found is None:
            return
        method: Callable[[int], None] | None = getattr(self, f"write_{found[0]}", None)
        if method is not None:
            method(value)

    def handle(self, exit: Exit) -> int | None:
        if exit.kind == ExitKind.MmioRead:
            return self.read(exit.reason.addr)
        self.write(exit.reason.addr, exit.reason.data)
        return None

    def policy(self) -> Policy:
        """A policy answering every access to this device's range."""
        kinds = frozenset({ExitKind.MmioRead, ExitKind.MmioWrite})
        p = Policy()
        p.handlers.append(_Entry(Match(kinds, start=self.base, end=self.end), self.handle))
        return p


class Pl011(MmioDevice):
    """The transmit side of an Arm PL011 UART (PL011 TRM, DDI 0183): what the
    guest writes to UARTDR becomes ``output``; UARTFR always says the transmit
    FIFO is empty (TXFE) and the receiver empty (RXFE); the guest can poll it.

    ``on_output`` is called with each whole line the guest writes, without its
    ``"\\n"`` (so ``Pl011(on_output=print)`` prints the guest's lines as it
    wrote them); a line still unfinished when the run ends (the guest powers
    off, or :meth:`close`) is passed as it is.

    >>> lines = []
    >>> uart = Pl011(on_output=lines.append)
    >>> for ch in "one\\ntwo\\nthr":
    ...     uart.write(0x0900_0000, ord(ch))
    >>> lines
    ['one', 'two']
    >>> uart.close(); lines
    ['one', 'two', 'thr']
    """

    UARTDR = Register(0x000)
    UARTFR = Register(0x018, reset=0x90)  # TXFE (bit 7) | RXFE (bit 4)
    UARTCR = Register(0x030)
    UARTIMSC = Register(0x038)

    def __init__(self, base: int = 0x0900_0000,
                 on_output: Callable[[str], None] | None = None) -> None:  # fmt: skip
        super().__init__(base)
        self.chars: list[str] = []
        self.on_output = on_output
        self.control = 0
        self._line: list[str] = []

    @property
    def output(self) -> str:
        return "".join(self.chars)

    def write_UARTDR(self, value: int) -> None:
        ch = chr(value & 0xFF)
        self.chars.append(ch)
        if self.on_output is None:
            return
        if ch == "\n":
            line, self._line = "".join(self._line), []
            self.on_output(line)
        else:
            self._line.append(ch)

    def close(self) -> None:
        """The console is done: hand ``on_output`` the unfinished line, if any."""
        if self._line and self.on_output is not None:
            line, self._line = "".join(self._line), []
            self.on_output(line)

    def write_UARTCR(self, value: int) -> None:
        self.control = value

    def read_UARTCR(self) -> int:
        return self.control

    def policy(self) -> Policy:
        """A policy answering every access to this device's range; its
        :meth:`~armvcpu.Policy.close` (and the guest powering off) flushes
        the unfinished line."""
        p = super().policy()
        p.closers.append(self.close)
        return p
