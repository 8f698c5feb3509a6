"""Exit-handling policies: Python functions keyed by exit kind.

A policy answers exits for you. Handlers are chosen by what the exit is
(hypercall number, MMIO range, system register, PSCI call, ...); the first
match in the order they were declared wins. Declarative rules (a constant
read value, ignored writes, a fixed hypercall result) become the firmware's
fast rules when the policy is installed, so they cost no round trip.

>>> from armvcpu import Policy, on
>>> class Demo(Policy):
...     @on.hypercall(nr=1)
...     def get_value(self, exit):
...         return 1000 + exit.reason.args[0]       # becomes x0
...     on_uart = on.mmio(0x0900_0000, 0x0900_1000, read_value=0, ignore_writes=True)
>>> policy = Demo()
>>> print(policy.rules[0].describe())
MMIO 0x9000000..0x9001000: reads 0x0, writes ignored

Handler return values: for a hypercall, an int is the value the guest sees in
x0; for an MMIO or system-register read, the value loaded into the target
register; ``Policy.DEFAULT`` asks for the firmware's default answer and
``Policy.STOP`` stops the VM; ``None`` resumes the guest as it is (unless the
handler answered the exit itself).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from .. import _core
from ..exits import Exit, ExitKind
from .rules import FastRules
from .traps import Trap, trap_for


class Target(Protocol):
    """What a policy needs of the session it is installed in (a
    :class:`~armvcpu.Hypervisor`): its fast-rule table, and the guest's extra
    trap controls (so that handlers for system registers see their exits). A
    protocol, so this room never imports the session's."""

    @property
    def rules(self) -> FastRules: ...

    @property
    def traps(self) -> tuple[int, int]:
        """The HCR_EL2 and MDCR_EL2 bits set so far with :meth:`set_traps`."""
        ...

    def set_traps(self, *, hcr_el2: int = 0, mdcr_el2: int = 0) -> None: ...

    def claim_hypercalls(self, *ids: int | range | tuple[int, int], all: bool = False) -> None:
        """Let these hypercall IDs (or all) reach the host."""
        ...


Handler = Callable[..., Any]

_PSCI_KINDS = {ExitKind.CpuUp, ExitKind.CpuDown, ExitKind.SystemDown}

# The kinds a policy tests on every exit, looked up once: an attribute of
# the pybind11 enum class costs about 0.1 us each time.
_HYPERCALL = ExitKind.Hypercall
_MMIO_READ = ExitKind.MmioRead
_MMIO_WRITE = ExitKind.MmioWrite
_SYSREG_READ = ExitKind.SysRegRead
_SYSTEM_DOWN = ExitKind.SystemDown
_MMIO_KINDS = frozenset({ExitKind.MmioRead, ExitKind.MmioWrite})
_SYSREG_KINDS = frozenset({ExitKind.SysRegRead, ExitKind.SysRegWrite})


class _Sentinel:
    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"Policy.{self.name}"


@dataclass(frozen=True)
class Match:
    """What a handler answers: an exit kind and an optional key."""

    kinds: frozenset[Any]
    nr: int | None = None
    start: int | None = None
    end: int | None = None
    reads: bool = True
    writes: bool = True
    sysreg_key: int | None = None
    psci: str | None = None

    def matches(self, exit: Exit) -> bool:
        kind = exit.kind
        if kind not in self.kinds:
            return False
        if kind == _HYPERCALL:
            return self.nr is None or exit.reason.nr == self.nr
        r = exit.reason
        if kind in _MMIO_KINDS:
            if not (self.reads if kind == _MMIO_READ else self.writes):
                return False
            return self.start is None or (self.start <= r.addr < (self.end or 0))
        if kind in _SYSREG_KINDS:
            return self.sysreg_key is None or r.addr == self.sysreg_key
        if self.psci is not None:
            return _psci_name(exit) == self.psci
        return True


def _psci_name(exit: Exit) -> str:
    if exit.kind == ExitKind.CpuUp:
        return "CPU_ON"
    if exit.kind == ExitKind.CpuDown:
        return "CPU_OFF"
    if exit.kind == ExitKind.SystemDown:
        return "SYSTEM_RESET" if exit.reason.reset else "SYSTEM_OFF"
    return ""


@dataclass(frozen=True)
class Rule:
    """A declarative answer that the firmware can give by itself."""

    kind: str  # "hypercall", "mmio" or "sysreg"
    key: int
    end: int = 0
    value: int | None = 0
    ignore_writes: bool = True
    #: "value" (the answer above), or an exception for the guest instead:
    #: "abort" (a synchronous external abort) or "undef".
    action: str = "value"

    def describe(self) -> str:
        if self.action != "value":
            what = {"hypercall": "hypercall", "sysreg": "system register", "mmio": "MMIO"}
            span = f"{self.key:#x}..{self.end:#x}" if self.kind == "mmio" else f"{self.key:#x}"
            exc = (
                "synchronous external abort" if self.action == "abort" else "undefined instruction"
            )
            return f"{what[self.kind]} {span}: {exc}"
        if self.kind == "hypercall":
            return f"hypercall {self.key:#x}: x0 = {self.value:#x}"
        if self.kind == "sysreg":
            name = _core.sysreg_name(self.key) or hex(self.key)
            return f"{name}: reads {self.value:#x}, writes ignored"
        reads = "not answered" if self.value is None else f"{self.value:#x}"
        writes = "ignored" if self.ignore_writes else "not answered"
        return f"MMIO {self.key:#x}..{self.end:#x}: reads {reads}, writes {writes}"

    def install(self, hv: Target) -> None:
        if self.action == "abort":
            hv.rules.mmio(self.key, self.end, abort=True)
        elif self.action == "undef" and self.kind == "hypercall":
            hv.rules.hypercall(self.key, undef=True)
        elif self.action == "undef":
            hv.rules.sysreg(self.key, undef=True)
        elif self.kind == "hypercall":
            hv.rules.hypercall(self.key, result=self.value or 0)
        elif self.kind == "sysreg":
            hv.rules.sysreg(self.key, read=self.value or 0)
        else:
            hv.rules.mmio(self.key, self.end, read=self.value, ignore_writes=self.ignore_writes)

    def answer(self, exit: Exit) -> bool:
        """Answer an exit the way the firmware's fast rule would (for replays,
        and for exits that reach the host before the rule was installed)."""
        k = exit.kind
        if self.action != "value":
            return self._answer_with_exception(exit)
        if self.kind == "hypercall" and k == _HYPERCALL and exit.reason.nr == self.key:
            exit.resume(x0=self.value or 0)
            return True
        if self.kind == "mmio" and k in (ExitKind.MmioRead, ExitKind.MmioWrite):
            if not self.key <= exit.reason.addr < self.end:
                return False
            if k == ExitKind.MmioRead and self.value is not None:
                exit.complete_read(self.value)
                return True
            if k == ExitKind.MmioWrite and self.ignore_writes:
                exit.resume()
                return True
        if self.kind == "sysreg" and k in (ExitKind.SysRegRead, ExitKind.SysRegWrite):
            if exit.reason.addr != self.key:
                return False
            if k == ExitKind.SysRegRead:
                exit.complete_sysreg_read(self.value or 0)
            else:
                exit.resume()
            return True
        return False

    def _answer_with_exception(self, exit: Exit) -> bool:
        k = exit.kind
        if self.kind == "mmio":
            hit = (
                k in (ExitKind.MmioRead, ExitKind.MmioWrite)
                and self.key <= exit.reason.addr < self.end
            )
        elif self.kind == "hypercall":
            hit = k == ExitKind.Hypercall and exit.reason.nr == self.key
        else:
            hit = k in (ExitKind.SysRegRead, ExitKind.SysRegWrite) and exit.reason.addr == self.key
        if not hit:
            return False
        if self.action == "abort":
            exit.inject_abort()
        else:
            exit.inject_undef()
        return True


@dataclass
class _Decl:
    """What an `on.*` decorator leaves on a function or in a class body."""

    match: Match | None = None
    rule: Rule | None = None
    function: Handler | None = None

    def __call__(self, function: Handler) -> Handler:
        if self.rule is not None:
            raise TypeError("a declarative rule (read_value=/result=) takes no handler")
        function.__dict__.setdefault("_armvcpu_matches", []).append(self.match)
        return function


class _On:
    """Decorators that key handlers by exit kind (``on.hypercall(nr=1)``, ...)."""

    @staticmethod
    def hypercall(nr: int | None = None, *, result: int | None = None,
                  undef: bool = False) -> _Decl:  # fmt: skip
        """Hypercalls (all, or number ``nr``); with ``result`` a fast rule, with
        ``undef`` a fast rule that makes the call an Undefined Instruction."""
        if undef:
            if nr is None or result is not None:
                raise ValueError("an undef hypercall rule needs nr= and no result=")
            return _Decl(rule=Rule("hypercall", nr, action="undef"))
        if result is not None:
            if nr is None:
                raise ValueError("a hypercall rule needs nr=")
            return _Decl(rule=Rule("hypercall", nr, value=result))
        return _Decl(Match(frozenset({ExitKind.Hypercall}), nr=nr))

    @staticmethod
    def mmio(start: int | range | None = None, end: int | None = None, *, read: bool = True,
             write: bool = True, read_value: int | None = None,
             ignore_writes: bool = False, abort: bool = False) -> _Decl:  # fmt: skip
        """MMIO accesses in [start, end) (a ``range`` works too). With
        ``read_value`` and/or ``ignore_writes`` it is a fast rule instead;
        with ``abort`` a fast rule that gives every access a synchronous
        external abort (an address with nothing behind it)."""
        if isinstance(start, range):
            span = start
            start, end = span.start, span.stop
        if start is not None and (end is None or end <= start):
            raise ValueError("an MMIO match needs start < end")
        if abort:
            if start is None or end is None or read_value is not None or ignore_writes:
                raise ValueError("an abort MMIO rule needs a range and no read_value/ignore_writes")
            return _Decl(rule=Rule("mmio", start, end, action="abort"))
        if read_value is not None or ignore_writes:
            if start is None or end is None:
                raise ValueError("an MMIO rule needs a range")
            return _Decl(rule=Rule("mmio", start, end, read_value, ignore_writes))
        kinds = {k for k, on_ in ((ExitKind.MmioRead, read), (ExitKind.MmioWrite, write)) if on_}
        return _Decl(Match(frozenset(kinds), start=start, end=end, reads=read, writes=write))

    @staticmethod
    def sysreg(register: str | int | None = None, *, read_value: int | None = None,
               undef: bool = False) -> _Decl:  # fmt: skip
        """Trapped MRS/MSR of one register (by Arm name) or all of them; with
        ``undef`` a fast rule that makes an access an Undefined Instruction."""
        key = None
        if register is not None:
            key = _core.sysreg_encoding(register).key if isinstance(register, str) else register
        if undef:
            if key is None or read_value is not None:
                raise ValueError("an undef system-register rule needs a register and no read_value")
            return _Decl(rule=Rule("sysreg", key, action="undef"))
        if read_value is not None:
            if key is None:
                raise ValueError("a system-register rule needs a register")
            return _Decl(rule=Rule("sysreg", key, value=read_value))
        return _Decl(Match(frozenset({ExitKind.SysRegRead, ExitKind.SysRegWrite}), sysreg_key=key))

    @staticmethod
    def psci(function: str | None = None) -> _Decl:
        """PSCI calls that reach the host: CPU_ON, CPU_OFF, SYSTEM_OFF, SYSTEM_RESET."""
        names = {"CPU_ON", "CPU_OFF", "SYSTEM_OFF", "SYSTEM_RESET", None}
        if function not in names:
            raise ValueError(f"PSCI calls that reach the host are {sorted(n for n in names if n)}")
        return _Decl(Match(frozenset(_PSCI_KINDS), psci=function))

    halt = _Decl(Match(frozenset({ExitKind.Halt})))
    interrupt = _Decl(Match(frozenset({ExitKind.ExternalInterrupt})))
    fault = _Decl(Match(frozenset({ExitKind.NestedPageFault, ExitKind.GuestException})))

    @staticmethod
    def kind(*kinds: Any) -> _Decl:
        """Any exit of these kinds (``on.kind(ExitKind.SendIpi)``)."""
        return _Decl(Match(frozenset(kinds)))


on = _On()


@dataclass
class _Entry:
    match: Match
    function: Handler


@dataclass
class Policy:
    """A set of handlers and rules. Subclass it with ``@on.*`` methods, or add
    functions with :meth:`add`; combine policies with ``+`` (the left one's
    handlers are tried first). Use it as ``hv.run(policy)``."""

    DEFAULT = _Sentinel("DEFAULT")
    STOP = _Sentinel("STOP")

    rules: list[Rule] = field(default_factory=list)
    handlers: list[_Entry] = field(default_factory=list)
    default: Handler | None = None
    #: Called once when the run ends (the guest powers off, or :meth:`close`):
    #: devices flush what they hold (e.g. :class:`Pl011`'s unfinished line).
    closers: list[Callable[[], None]] = field(default_factory=list)

    def __post_init__(self) -> None:
        # Collect @on methods and on.* rules from the class body, in order.
        for klass in reversed(type(self).__mro__):
            for name, value in vars(klass).items():
                if isinstance(value, _Decl) and value.rule is not None:
                    self.rules.append(value.rule)
                elif callable(value) and hasattr(value, "_armvcpu_matches"):
                    for match in value._armvcpu_matches:
                        self.handlers.append(_Entry(match, getattr(self, name)))

    def add(self, decl: _Decl | Rule, function: Handler | None = None) -> Policy:
        """Add a handler (``policy.add(on.hypercall(nr=2), fn)``) or a rule."""
        if isinstance(decl, Rule):
            self.rules.append(decl)
        elif decl.rule is not None:
            self.rules.append(decl.rule)
        elif function is None or decl.match is None:
            raise TypeError("add() needs a handler function for a match")
        else:
            self.handlers.append(_Entry(decl.match, function))
        return self

    def on_default(self, function: Handler) -> Handler:
        """Decorator: the handler for exits nothing else matches."""
        self.default = function
        return function

    def __add__(self, other: Policy) -> Policy:
        return Policy(rules=[*self.rules, *other.rules],
                      handlers=[*self.handlers, *other.handlers],
                      default=self.default or other.default,
                      closers=[*self.closers, *other.closers])  # fmt: skip

    def needed_traps(self) -> Trap:
        """The HCR_EL2/MDCR_EL2 trap bits this policy's system-register
        handlers and rules need (see :mod:`armvcpu.policy.traps`); raises
        :class:`~armvcpu.ArmvcpuError` for a register nothing can trap."""
        keys = [e.match.sysreg_key for e in self.handlers if e.match.sysreg_key is not None]
        keys += [r.key for r in self.rules if r.kind == "sysreg"]
        hcr = mdcr = 0
        controls: list[str] = []
        for key in keys:
            trap = trap_for(key)
            hcr, mdcr = hcr | trap.hcr_el2, mdcr | trap.mdcr_el2
            controls += [c for c in trap.controls if c not in controls]
        return Trap("policy", hcr, mdcr, tuple(controls))

    def hypercall_claims(self) -> list[int] | None:
        """The hypercall IDs this policy's handlers and rules name
        (``on.hypercall(nr=...)``, with or without ``result``); None when one
        handles every hypercall (``on.hypercall()`` without ``nr``,
        ``on.kind(ExitKind.Hypercall)``, or a default handler, which sees
        whatever nothing else answers). An empty list (no hypercall handler
        or rule at all) claims nothing here and leaves the choice to the
        caller: :meth:`~armvcpu.Hypervisor.run` then claims every ID, as for
        any handler, ``armvcpu run`` with a QEMU command line none."""
        if self.default is not None:
            return None
        ids: list[int] = [r.key for r in self.rules if r.kind == "hypercall"]
        for entry in self.handlers:
            if ExitKind.Hypercall not in entry.match.kinds:
                continue
            if entry.match.nr is None:
                return None
            ids.append(entry.match.nr)
        return ids

    def install(self, hv: Target) -> None:
        """Before the guest starts: arm the traps the system-register handlers
        need (added to any :meth:`~armvcpu.Hypervisor.set_traps` bits), push
        the declarative rules down to the firmware's fast rules, and claim
        the hypercalls the handlers answer (:meth:`hypercall_claims`)."""
        claims = self.hypercall_claims()
        if claims is None:
            hv.claim_hypercalls(all=True)
        elif claims:
            hv.claim_hypercalls(*claims)
        need = self.needed_traps()
        if need.hcr_el2 or need.mdcr_el2:
            hcr, mdcr = hv.traps
            hv.set_traps(hcr_el2=hcr | need.hcr_el2, mdcr_el2=mdcr | need.mdcr_el2)
        for rule in self.rules:
            rule.install(hv)

    def close(self) -> None:
        """The run is over: let devices flush what they hold (each closer
        flushes once, so calling this again does nothing new)."""
        for closer in self.closers:
            closer()

    def __call__(self, exit: Exit) -> None:
        """Answer one exit: the first matching handler, else a rule, else the
        default handler; an exit nothing answers gets the firmware's default."""
        try:
            for entry in self.handlers:
                if entry.match.matches(exit):
                    self._apply(exit, entry.function(exit))
                    return
            for rule in self.rules:
                if rule.answer(exit):
                    return
            if self.default is not None:
                self._apply(exit, self.default(exit))
        finally:
            if exit.kind == _SYSTEM_DOWN:
                self.close()  # the guest powered off: nothing more will come

    @staticmethod
    def answer(exit: Exit, result: Any) -> None:
        """Answer an exit with a handler's result (see the module docstring)."""
        Policy._apply(exit, result)

    @staticmethod
    def _apply(exit: Exit, result: Any) -> None:
        if exit.resolved:
            return
        if result is Policy.DEFAULT:
            exit.resume_default()
        elif result is Policy.STOP:
            exit.stop()
        elif isinstance(result, int):
            kind = exit.kind
            if kind == _MMIO_READ:
                exit.complete_read(result)
            elif kind == _SYSREG_READ:
                exit.complete_sysreg_read(result)
            else:
                exit.resume(x0=result)
        elif result is None:
            exit.resume()
        else:
            raise TypeError(f"a handler returned {result!r}; expected an int, None, "
                            "Policy.DEFAULT or Policy.STOP")  # fmt: skip


def compose(policies: Iterable[Policy]) -> Policy:
    """One policy trying each of ``policies`` in turn."""
    result = Policy()
    for p in policies:
        result = result + p
    return result
