"""Fault injection: GET_VALUE hypercalls fail at random, the guest retries.

    armvcpu run "$(python examples/guest_path.py retry)" \
        --policy examples/policies/fault_injection.py

The guest (examples/guests/retry.S) asks for eight values with hypercall 1
and retries when the answer is an error (-1, SMCCC's NOT_SUPPORTED). This
policy makes each call fail with probability ERROR_RATE (a seeded generator,
so every run injects the same faults; FAULT_RATE and FAULT_SEED in the
environment change them), counts what it injected and checks the
guest's REPORT: the errors it saw must be the errors injected, and its
checksum must be that of the values it was eventually given.
"""

from __future__ import annotations

import os
import random

from armvcpu import Policy, on

MASK = (1 << 64) - 1
ERROR = -1 & MASK  # what the guest sees in x0: 0xffff_ffff_ffff_ffff
ERROR_RATE = float(os.environ.get("FAULT_RATE", "0.3"))
SEED = int(os.environ.get("FAULT_SEED", "7"))


class FlakyHypercalls(Policy):
    def __init__(self) -> None:
        super().__init__()
        self.random = random.Random(SEED)
        self.injected = 0
        self.delivered: list[int] = []

    @on.hypercall(nr=1)
    def get_value(self, exit):
        i = exit.reason.args[0]
        if self.random.random() < ERROR_RATE:
            self.injected += 1
            return ERROR
        value = 1000 + 7 * i
        self.delivered.append(value)
        return value

    @on.hypercall(nr=2)
    def report(self, exit):
        checksum, errors_seen, gave_up = exit.reason.args[:3]
        expected = 0
        for value in self.delivered:
            expected = (expected * 31 + value) & MASK
        ok = errors_seen == self.injected and checksum == expected
        print(
            f"faults: injected {self.injected} errors; the guest saw {errors_seen}, "
            f"gave up on {gave_up} values, checksum {checksum:#x} "
            f"({'as expected' if ok else f'EXPECTED {expected:#x}'})"
        )
        return 0 if ok else Policy.STOP
