"""A policy that is a plain function: count every exit by kind.

    armvcpu run "$(python examples/guest_path.py rng_driver)" \
        --policy examples/policies/exit_census.py

`armvcpu run` accepts any callable named ``policy``. This one answers the
RNG device's accesses itself (every read loads 1: STATUS always ready, DATA
always 1, so the guest prints eight ones; writes are ignored) and leaves the
rest to the PL011 model ``armvcpu run`` adds after it, or to the firmware's
default. When the guest powers off it prints how many exits of each kind it
saw. It answers with ``exit.complete_read()``/``exit.resume()`` rather than a
return value, so the load's own register gets the value.
"""

from __future__ import annotations

from collections import Counter

from armvcpu import ExitKind

RNG = range(0x0A00_0000, 0x0A00_1000)
census: Counter[str] = Counter()


def policy(exit):
    census[exit.kind.name] += 1
    if exit.kind in (ExitKind.MmioRead, ExitKind.MmioWrite) and exit.reason.addr in RNG:
        if exit.kind == ExitKind.MmioRead:
            exit.complete_read(1)  # into the load's register, at the load's width
        else:
            exit.resume()  # a write: ignored
    elif exit.kind == ExitKind.SystemDown:
        print("census: " + ", ".join(f"{kind} {n}" for kind, n in census.most_common()))
    return None  # everything else: the next policy (the PL011) or the default
