"""A device modelled in Python: a random-number generator at 0x0a00_0000.

    armvcpu run "$(python examples/guest_path.py rng_driver)" \
        --policy examples/policies/rng_device.py

The guest (examples/guests/rng_driver.S) seeds the device, polls STATUS,
reads eight values from DATA and prints them; its REPORT hypercall carries
the XOR of what it read and the device's COUNT, which this policy checks
against what the device produced. Every access is a VM exit (the range is
unmapped for the guest) answered by ``Rng``'s ``read_*``/``write_*`` methods.
"""

from __future__ import annotations

from armvcpu import MmioDevice, Policy, Register, on

RNG_BASE = 0x0A00_0000


def xorshift32(x: int) -> int:
    """Marsaglia's xorshift32 step (never 0 for a non-zero x)."""
    x ^= (x << 13) & 0xFFFF_FFFF
    x ^= x >> 17
    x ^= (x << 5) & 0xFFFF_FFFF
    return x


class Rng(MmioDevice):
    CTRL = Register(0x00)
    SEED = Register(0x04)
    STATUS = Register(0x08)
    DATA = Register(0x0C)
    COUNT = Register(0x10)

    def __init__(self, base: int = RNG_BASE) -> None:
        super().__init__(base)
        self.enabled = False
        self.state = 1
        self.produced: list[int] = []
        self.busy = False  # the value after a DATA read needs one more STATUS poll

    def write_CTRL(self, value: int) -> None:
        self.enabled = bool(value & 1)

    def write_SEED(self, value: int) -> None:
        self.state = (value & 0xFFFF_FFFF) or 1

    def read_STATUS(self) -> int:
        if self.busy:  # a little latency, visible as extra polls in a trace
            self.busy = False
            return 0
        return int(self.enabled)

    def read_DATA(self) -> int:
        if not self.enabled:
            return 0
        self.state = xorshift32(self.state)
        self.produced.append(self.state)
        self.busy = True
        return self.state

    def read_COUNT(self) -> int:
        return len(self.produced)


class CheckReport(Policy):
    def __init__(self, rng: Rng) -> None:
        super().__init__()
        self.rng = rng

    @on.hypercall(nr=2)
    def report(self, exit):
        xor, count = exit.reason.args[:2]
        expected = 0
        for value in self.rng.produced:
            expected ^= value
        ok = xor == expected and count == len(self.rng.produced)
        print(
            f"rng: the guest read {count} values, xor {xor:#x}; the device produced "
            f"{len(self.rng.produced)}, xor {expected:#x}: {'match' if ok else 'MISMATCH'}"
        )
        return 0 if ok else Policy.STOP


rng = Rng()
policy = rng.policy() + CheckReport(rng)
