"""Answer the packaged `hypercalls` guest, and check the checksum it reports.

    armvcpu run "$(python examples/guest_path.py hypercalls)" \
        --policy examples/policies/answer_hypercalls.py

The guest (examples/guests/hypercalls.S) asks eight times for a value with
hypercall 1 (GET_VALUE, x1 = i), folds each answer into a checksum
(checksum = checksum * 31 + answer, modulo 2**64) and reports it with
hypercall 2 (REPORT, x1 = checksum, x2 = how many values). This policy
answers 1000 + 7 * i, recomputes the checksum from its own answers and stops
the VM (exit status 1) if the guest's differs.
"""

from __future__ import annotations

from armvcpu import Policy, on

MASK = (1 << 64) - 1


class AnswerHypercalls(Policy):
    def __init__(self) -> None:
        super().__init__()
        self.answers: list[int] = []

    @on.hypercall(nr=1)
    def get_value(self, exit):
        i = exit.reason.args[0]  # the guest's x1
        answer = 1000 + 7 * i
        self.answers.append(answer)
        print(f"GET_VALUE({i}) -> {answer}")
        return answer  # the guest's x0 after its HVC

    @on.hypercall(nr=2)
    def report(self, exit):
        checksum, count = exit.reason.args[:2]
        expected = 0
        for answer in self.answers:
            expected = (expected * 31 + answer) & MASK
        verdict = "match" if checksum == expected else "MISMATCH"
        print(f"REPORT: {count} values, checksum {checksum:#x}, expected {expected:#x}: {verdict}")
        return 0 if checksum == expected else Policy.STOP
