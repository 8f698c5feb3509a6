"""Campaigns: many programs over worker processes, and their summary."""

from __future__ import annotations

import contextlib
import dataclasses
import multiprocessing
import os
import queue
import signal
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from ..._process import die_with_parent
from ...errors import (
    ArmvcpuError,
)
from .generator import generate
from .runner import FAILURES, HOST_ERROR, Outcome, Runner

# -- campaigns ------------------------------------------------------------------------------


@dataclass
class FuzzConfig:
    seed: int
    programs: int
    workers: int = 2
    length: int = 32
    timeout: float = 0.5
    budget: int = 200
    reuse: bool = True


@dataclass
class Summary:
    """Outcome counts of a campaign, and every failure."""

    config: FuzzConfig
    counts: Counter[tuple[str, str]] = field(default_factory=Counter)
    examples: dict[tuple[str, str], str] = field(default_factory=dict)
    failures: list[Outcome] = field(default_factory=list)
    el1_skipped: Counter[str] = field(default_factory=Counter)
    done: int = 0
    fresh_sessions: int = 0
    exits: int = 0
    wall_seconds: float = 0.0
    interrupted: bool = False

    def add(self, outcome: Outcome) -> None:
        key = (outcome.outcome, outcome.detail if not outcome.failure else "")
        self.counts[key] += 1
        self.examples.setdefault(key, outcome.ident)
        self.done += 1
        self.exits += outcome.exits
        self.fresh_sessions += outcome.fresh_session
        self.el1_skipped.update(outcome.el1_skipped)
        if outcome.failure:
            self.failures.append(outcome)

    @property
    def programs_per_second(self) -> float:
        return self.done / self.wall_seconds if self.wall_seconds > 0 else 0.0

    def rows(self) -> list[tuple[str, str, int, str]]:
        """(outcome, detail, count, an example seed:index), failures first."""
        order = {name: i for i, name in enumerate(FAILURES)}
        return sorted(((o, d, n, self.examples[(o, d)]) for (o, d), n in self.counts.items()),
                      key=lambda r: (r[0] not in order, -r[2], r[0], r[1]))  # fmt: skip

    def as_dict(self) -> dict[str, Any]:
        return {
            "seed": self.config.seed,
            "programs": self.config.programs,
            "programs_run": self.done,
            "interrupted": self.interrupted,
            "workers": self.config.workers,
            "length": self.config.length,
            "timeout": self.config.timeout,
            "budget": self.config.budget,
            "reuse": self.config.reuse,
            "wall_seconds": round(self.wall_seconds, 3),
            "programs_per_second": round(self.programs_per_second, 2),
            "fresh_sessions": self.fresh_sessions,
            "exits": self.exits,
            "outcomes": [
                {"outcome": o, "detail": d, "count": n, "example": ex, "failure": o in FAILURES}
                for o, d, n, ex in self.rows()
            ],
            "el1_exceptions_skipped": dict(self.el1_skipped.most_common()),
            "failures": [f.as_dict() for f in self.failures],
        }


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _worker(wid: int, config: FuzzConfig, counter: Any, results: Any, parent: int) -> None:
    """One worker process: claims program indices and runs them in its own sessions."""
    die_with_parent(signal.SIGTERM)
    if os.getppid() != parent:
        return
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when to stop
    signal.signal(signal.SIGTERM, _raise_interrupt)
    runner = Runner(timeout=config.timeout, budget=config.budget, reuse=config.reuse)
    try:
        while True:
            with counter.get_lock():
                index = counter.value
                counter.value += 1
            if index >= config.programs:
                break
            results.put(("start", wid, index))
            program = generate(config.seed, index, config.length)
            results.put(("result", wid, runner.run(program).as_dict()))
    except KeyboardInterrupt:
        pass
    finally:
        with contextlib.suppress(KeyboardInterrupt):
            runner.close()
            results.put(("done", wid, None))


def _outcome_from_dict(d: dict[str, Any]) -> Outcome:
    fields_ = {f.name for f in dataclasses.fields(Outcome)}
    return Outcome(**{k: v for k, v in d.items() if k in fields_})


def _remove_shm_files(pids: Iterable[int]) -> None:
    """RAM files of workers that were killed before they could unlink them."""
    from ...session.hypervisor import ram_file_dir

    for pid in pids:
        for path in ram_file_dir().glob(f"armvcpu-{pid}-*"):
            path.unlink(missing_ok=True)


def run_campaign(
    config: FuzzConfig, on_result: Callable[[Outcome, Summary], None] | None = None
) -> Summary:
    """Run ``config.programs`` programs on ``config.workers`` worker processes.

    Ctrl-C (KeyboardInterrupt) stops the workers, which close their QEMUs;
    the summary then has ``interrupted`` set.
    """
    if config.workers < 1 or config.programs < 0 or config.length < 0:
        raise ValueError("workers must be at least 1; programs and length not negative")
    ctx = multiprocessing.get_context("spawn")
    counter = ctx.Value("q", 0)
    results = ctx.Queue()
    summary = Summary(config)
    running: dict[int, int] = {}  # worker id -> the index it runs
    procs: dict[int, Any] = {}
    pids: set[int] = set()
    finished: set[int] = set()
    started: set[int] = set()  # workers that began a program
    t0 = time.monotonic()

    def spawn(wid: int) -> None:
        # Workers start with SIGINT ignored (inherited across exec); the
        # parent turns Ctrl-C into an orderly stop.
        old = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            p = ctx.Process(target=_worker, args=(wid, config, counter, results, os.getpid()),
                            name=f"armvcpu-fuzz-{wid}", daemon=True)  # fmt: skip
            p.start()
        finally:
            signal.signal(signal.SIGINT, old)
        procs[wid] = p
        assert p.pid is not None
        pids.add(p.pid)

    def handle(msg: tuple[str, int, Any]) -> None:
        what, wid, payload = msg
        if what == "start":
            running[wid] = payload
            started.add(wid)
        elif what == "result":
            running.pop(wid, None)
            outcome = _outcome_from_dict(payload)
            summary.add(outcome)
            if on_result is not None:
                on_result(outcome, summary)
        else:
            finished.add(wid)

    next_wid = 0
    try:
        for _ in range(min(config.workers, max(1, config.programs))):
            spawn(next_wid)
            next_wid += 1
        while len(finished) < len(procs):
            try:
                handle(results.get(timeout=0.2))
                continue
            except queue.Empty:
                pass
            for wid, p in list(procs.items()):
                if wid in finished or p.is_alive():
                    continue
                finished.add(wid)
                if wid not in started:
                    raise ArmvcpuError(
                        f"a fuzz worker process failed to start (exit code {p.exitcode}); "
                        "is the main module import-safe?"
                    )
                # Gone without saying so: it crashed. Its program is a finding.
                index = running.pop(wid, None)
                if index is not None:
                    crash = Outcome(
                        f"{config.seed}:{index}",
                        HOST_ERROR,
                        f"the worker process died (exit code {p.exitcode})",
                    )
                    summary.add(crash)
                    if on_result is not None:
                        on_result(crash, summary)
                if counter.value < config.programs and next_wid < config.workers + 8:
                    spawn(next_wid)
                    next_wid += 1
    except KeyboardInterrupt:
        summary.interrupted = True
    finally:
        with contextlib.suppress(KeyboardInterrupt):
            _stop_workers(list(procs.values()), results, handle, summary.interrupted)
            _remove_shm_files(pids)
            summary.wall_seconds = time.monotonic() - t0
    return summary


def _stop_workers(procs: list[Any], results: Any, handle: Callable[[Any], None],
                  interrupted: bool) -> None:  # fmt: skip
    """Let the workers end (at once after an interrupt: SIGTERM makes each one
    unwind and close its QEMU), keeping the queue drained meanwhile."""
    if interrupted:
        for p in procs:
            if p.is_alive():
                p.terminate()
    deadline = time.monotonic() + 10
    while any(p.is_alive() for p in procs) and time.monotonic() < deadline:
        with contextlib.suppress(queue.Empty):  # a worker flushing results waits for us
            handle(results.get(timeout=0.05))
    for p in procs:
        if p.is_alive():
            p.kill()  # its QEMU dies with it (parent-death signal)
        p.join(1)
    with contextlib.suppress(queue.Empty, OSError, ValueError):
        while True:
            handle(results.get_nowait())
