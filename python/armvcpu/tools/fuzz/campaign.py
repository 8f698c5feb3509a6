"""Campaigns: many programs over worker processes or a Dask cluster, and their summary.

A campaign is a list of program lineages (see :mod:`.corpus`): all of them at
once for a plain campaign, one generation at a time for a coverage-guided one.
An *engine* runs them and yields each program's :class:`Outcome` as it ends:
local worker processes (``--workers``) or the workers of a Dask cluster
(``--scheduler``). The programs, and so the outcome table, depend on the seed
alone, never on the engine or on which worker ran what.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import multiprocessing
import os
import queue
import re
import signal
import socket
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..._process import die_with_parent
from ...errors import (
    ArmvcpuError,
)
from .corpus import GENERATION, Corpus, build_program, ident_of, parse_ident
from .runner import DEFAULT_WATCHDOG, FAILURES, HOST_ERROR, Outcome, Runner

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
    #: Seconds of guest time without an exit before the firmware ends a hang
    #: (None: the host's timeout alone).
    watchdog: float | None = DEFAULT_WATCHDOG
    #: The firmware answers the exits that do not end a program (False: the
    #: host answers and checks every exit).
    el2_answers: bool = True
    #: The machine's GIC version: 3, or 2 (a fresh session per program, as
    #: snapshots need a GICv3).
    gic: int = 3
    #: The ITS surface: some programs (:data:`.its.ITS_SHARE`) are ITS
    #: programs, each in a fresh session with the ITS (GICv3 only).
    its: bool = False
    #: Run the coverage build of the firmware and guide the campaign by it.
    coverage: bool = False
    #: Where a guided campaign writes its corpus (None: kept in memory only).
    corpus: str | None = None
    #: A Dask scheduler's address (``tcp://HOST:PORT``): run there, not locally.
    scheduler: str | None = None


def index_of(ident: str) -> int:
    """The program's own index (the last of its lineage)."""
    return parse_ident(ident)[1][-1]


def failure_signature(outcome: Outcome) -> tuple[str, str]:
    """What makes two failures the same one: the failure and its detail with
    numbers (addresses, counts, exit codes) blanked out."""
    return outcome.outcome, re.sub(r"0x[0-9a-fA-F]+|\d+", "#", outcome.detail)


@dataclass
class Summary:
    """Outcome counts of a campaign, every failure, and the coverage reached."""

    config: FuzzConfig
    counts: Counter[tuple[str, str]] = field(default_factory=Counter)
    #: the program with the lowest index for each row (so the table does not
    #: depend on which worker finished first)
    examples: dict[tuple[str, str], str] = field(default_factory=dict)
    failures: list[Outcome] = field(default_factory=list)
    el1_skipped: Counter[str] = field(default_factory=Counter)
    done: int = 0
    fresh_sessions: int = 0
    exits: int = 0
    #: LPIs the firmware delivered to ITS programs
    lpis: int = 0
    wall_seconds: float = 0.0
    interrupted: bool = False
    #: coverage points of the firmware reached so far (coverage build only)
    covered: set[int] = field(default_factory=set)
    #: (seconds, programs, points) after each generation of a guided campaign
    timeline: list[dict[str, Any]] = field(default_factory=list)
    corpus_size: int = 0
    #: corpus entries taken back from ``--corpus DIR`` (a resumed campaign)
    corpus_reloaded: int = 0
    #: programs run by each worker (a local worker process or a Dask worker)
    hosts: Counter[str] = field(default_factory=Counter)
    ran_on: dict[str, str] = field(default_factory=dict)

    def add(self, outcome: Outcome, host: str = "") -> None:
        key = (outcome.outcome, outcome.detail if not outcome.failure else "")
        self.counts[key] += 1
        old = self.examples.get(key)
        if old is None or index_of(outcome.ident) < index_of(old):
            self.examples[key] = outcome.ident
        self.done += 1
        self.exits += outcome.exits
        self.lpis += outcome.lpis
        self.fresh_sessions += outcome.fresh_session
        self.el1_skipped.update(outcome.el1_skipped)
        self.covered.update(outcome.coverage)
        if host:
            self.hosts[host] += 1
            self.ran_on[outcome.ident] = host
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

    def distinct_failures(self) -> list[tuple[Outcome, int]]:
        """One failure per signature (the lowest index) and how many share it."""
        groups: dict[tuple[str, str], list[Outcome]] = {}
        for f in self.failures:
            groups.setdefault(failure_signature(f), []).append(f)
        firsts = [(min(g, key=lambda o: index_of(o.ident)), len(g)) for g in groups.values()]
        return sorted(firsts, key=lambda r: index_of(r[0].ident))

    def as_dict(self) -> dict[str, Any]:
        def failure(f: Outcome, n: int) -> dict[str, Any]:
            d = f.as_dict()
            d.pop("coverage", None)
            d["same_signature"] = n
            return d

        report: dict[str, Any] = {
            "seed": self.config.seed,
            "programs": self.config.programs,
            "programs_run": self.done,
            "interrupted": self.interrupted,
            "workers": self.config.workers,
            "scheduler": self.config.scheduler,
            "length": self.config.length,
            "timeout": self.config.timeout,
            "budget": self.config.budget,
            "watchdog": self.config.watchdog,
            "el2_answers": self.config.el2_answers,
            "gic": self.config.gic,
            "its": self.config.its,
            "reuse": self.config.reuse,
            "wall_seconds": round(self.wall_seconds, 3),
            "programs_per_second": round(self.programs_per_second, 2),
            "fresh_sessions": self.fresh_sessions,
            "exits": self.exits,
            "lpis": self.lpis,
            "outcomes": [
                {"outcome": o, "detail": d, "count": n, "example": ex, "failure": o in FAILURES}
                for o, d, n, ex in self.rows()
            ],
            "el1_exceptions_skipped": dict(self.el1_skipped.most_common()),
            "failures": [failure(f, n) for f, n in self.distinct_failures()],
            "failures_total": len(self.failures),
            "hosts": dict(self.hosts.most_common()),
        }
        if self.config.coverage:
            report["coverage"] = {
                "points_covered": len(self.covered),
                "corpus": self.corpus_size,
                "corpus_reloaded": self.corpus_reloaded,
                "timeline": self.timeline,
            }
        return report


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _make_runner(config: FuzzConfig) -> Runner:
    coverage = None
    if config.coverage:
        from .coverage import CoverageMap

        coverage = CoverageMap.load()
    # A guided campaign answers every exit in the host: a session's first
    # program is the host's alone, so with answers in EL2 a program's coverage
    # would depend on whether it began a session, i.e. on the scheduling, and
    # the corpus with it (the same seed must pick the same corpus on any engine).
    return Runner(timeout=config.timeout, budget=config.budget, reuse=config.reuse,
                  coverage=coverage, watchdog=config.watchdog,
                  el2_answers=config.el2_answers and not config.coverage,
                  gic=config.gic)  # fmt: skip


def _outcome_from_dict(d: dict[str, Any]) -> Outcome:
    fields_ = {f.name for f in dataclasses.fields(Outcome)}
    out = Outcome(**{k: v for k, v in d.items() if k in fields_})
    out.coverage = tuple(out.coverage)
    return out


def _remove_shm_files(pids: Iterable[int]) -> None:
    """RAM files and session directories of workers that were killed before
    they could remove them."""
    from ...session.hypervisor import ram_file_dir
    from ...session.qemu import remove_orphaned_workdirs

    pids = list(pids)
    for pid in pids:
        for path in ram_file_dir().glob(f"armvcpu-{pid}-*"):
            path.unlink(missing_ok=True)
    remove_orphaned_workdirs(pids)


Spec = tuple[int, tuple[int, ...]]  # (seed, lineage)


# -- the local engine: worker processes -------------------------------------------------------


def _worker(wid: int, config: FuzzConfig, tasks: Any, results: Any, parent: int) -> None:
    """One worker process: takes lineages from the task queue and runs them
    in its own sessions until it takes None."""
    die_with_parent(signal.SIGTERM)
    if os.getppid() != parent:
        return
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when to stop
    signal.signal(signal.SIGTERM, _raise_interrupt)
    runner: Runner | None = None
    try:
        runner = _make_runner(config)
        results.put(("ready", wid, None))
        while True:
            spec = tasks.get()
            if spec is None:
                break
            seed, lineage = spec
            results.put(("start", wid, ident_of(seed, lineage)))
            program = build_program(seed, lineage, config.length, its=config.its)
            results.put(("result", wid, runner.run(program).as_dict()))
    except KeyboardInterrupt:
        pass
    finally:
        with contextlib.suppress(KeyboardInterrupt):
            if runner is not None:
                runner.close()
            results.put(("done", wid, None))


class _LocalEngine:
    """``config.workers`` worker processes fed through a task queue; a worker
    that dies is replaced, and its program is a finding (host library error)."""

    def __init__(self, config: FuzzConfig) -> None:
        self.config = config
        self.ctx = multiprocessing.get_context("spawn")
        self.tasks = self.ctx.Queue()
        self.results = self.ctx.Queue()
        self.procs: dict[int, Any] = {}
        self.pids: set[int] = set()
        self.finished: set[int] = set()
        self.ready: set[int] = set()
        self.running: dict[int, str] = {}
        self.next_wid = 0
        for _ in range(min(config.workers, max(1, config.programs))):
            self._spawn()

    def _spawn(self) -> None:
        # Workers start with SIGINT ignored (inherited across exec); the
        # parent turns Ctrl-C into an orderly stop.
        wid = self.next_wid
        self.next_wid += 1
        old = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            p = self.ctx.Process(target=_worker, daemon=True, name=f"armvcpu-fuzz-{wid}",
                                 args=(wid, self.config, self.tasks, self.results,
                                       os.getpid()))  # fmt: skip
            p.start()
        finally:
            signal.signal(signal.SIGINT, old)
        self.procs[wid] = p
        assert p.pid is not None
        self.pids.add(p.pid)

    def _handle(self, msg: tuple[str, int, Any]) -> tuple[Outcome, str] | None:
        what, wid, payload = msg
        if what == "ready":
            self.ready.add(wid)
        elif what == "start":
            self.running[wid] = payload
        elif what == "result":
            self.running.pop(wid, None)
            return _outcome_from_dict(payload), f"local worker {wid}"
        else:
            self.finished.add(wid)
        return None

    def run(self, specs: list[Spec]) -> Iterator[tuple[Outcome, str]]:
        # A few programs per worker in the queue, topped up as they end: a
        # queue holding a whole campaign would make stopping wait for it.
        todo = iter(specs)
        for spec in itertools.islice(todo, 2 * self.config.workers):
            self.tasks.put(spec)
        left = len(specs)
        while left:
            try:
                got = self._handle(self.results.get(timeout=0.2))
            except queue.Empty:
                got = self._reap()
            if got is not None:
                left -= 1
                for spec in itertools.islice(todo, 1):
                    self.tasks.put(spec)
                yield got

    def _reap(self) -> tuple[Outcome, str] | None:
        """A worker gone without saying so crashed: its program is a finding."""
        for wid, p in list(self.procs.items()):
            if wid in self.finished or p.is_alive():
                continue
            self.finished.add(wid)
            if wid not in self.ready:
                raise ArmvcpuError(
                    f"a fuzz worker process failed to start (exit code {p.exitcode}); "
                    "is the main module import-safe?"
                )
            if self.next_wid < self.config.workers + 8:
                self._spawn()
            ident = self.running.pop(wid, None)
            if ident is not None:
                crash = Outcome(ident, HOST_ERROR,
                                f"the worker process died (exit code {p.exitcode})")  # fmt: skip
                return crash, f"local worker {wid}"
        if all(wid in self.finished for wid in self.procs):
            raise ArmvcpuError("every fuzz worker process died")
        return None

    def close(self, interrupted: bool) -> None:
        """Let the workers end (at once after an interrupt: SIGTERM makes each one
        unwind and close its QEMU), keeping the queue drained meanwhile."""
        procs = list(self.procs.values())
        self.tasks.cancel_join_thread()  # never wait to flush programs nobody will run
        if interrupted:
            for p in procs:
                if p.is_alive():
                    p.terminate()
        else:
            for _ in procs:
                self.tasks.put(None)
        deadline = time.monotonic() + 10
        while any(p.is_alive() for p in procs) and time.monotonic() < deadline:
            with contextlib.suppress(queue.Empty):  # a worker flushing results waits for us
                self._handle(self.results.get(timeout=0.05))
        for p in procs:
            if p.is_alive():
                p.kill()  # its QEMU dies with it (parent-death signal)
            p.join(1)
        _remove_shm_files(self.pids)


# -- the Dask engine ------------------------------------------------------------------------

#: Each Dask worker thread keeps its own Runner (and so its own QEMU sessions)
#: from one program to the next; QEMU dies with the thread that started it.
_THREAD = threading.local()
_RUNNERS: list[Runner] = []
_RUNNERS_LOCK = threading.Lock()


def _dask_task(
    config: FuzzConfig, seed: int, lineage: tuple[int, ...]
) -> tuple[dict[str, Any], str]:
    """One program on a Dask worker: (its outcome, the worker's address)."""
    from distributed import get_worker

    runner = getattr(_THREAD, "runner", None)
    if runner is None or getattr(_THREAD, "config", None) != config:
        if runner is not None:
            runner.close()
        runner = _make_runner(config)
        _THREAD.runner, _THREAD.config = runner, config
        with _RUNNERS_LOCK:
            _RUNNERS.append(runner)
    outcome = runner.run(build_program(seed, lineage, config.length, its=config.its))
    return outcome.as_dict(), str(get_worker().address)


def _close_worker_runners() -> int:
    """Run on every worker at the end of a campaign: close its sessions."""
    with _RUNNERS_LOCK:
        runners = list(_RUNNERS)
        _RUNNERS.clear()
    for runner in runners:
        with contextlib.suppress(Exception):
            runner.close()
    return len(runners)


def _remove_dead_shm_files() -> int:
    """Run on every worker at the end of a campaign: remove RAM files and
    session directories whose creator is dead (a worker killed while it ran a
    session leaves its RAM file, named armvcpu-PID-*, and its directory, with
    an owner file; a worker on the same machine removes them)."""
    from ..._process import is_dead
    from ...session.hypervisor import ram_file_dir
    from ...session.qemu import remove_orphaned_workdirs

    removed = 0
    for path in ram_file_dir().glob("armvcpu-*-*"):
        pid = path.name.split("-")[1]
        if pid.isdigit() and is_dead(int(pid)):
            path.unlink(missing_ok=True)
            removed += 1
    return removed + remove_orphaned_workdirs()


def connect(address: str, timeout: float = 30.0) -> Any:
    """A Dask client of the scheduler at ``address`` (``tcp://HOST:PORT``)."""
    try:
        from distributed import Client
    except ImportError as exc:
        raise ArmvcpuError(
            "--scheduler runs the campaign on a Dask cluster, which needs the cluster "
            "extra: pip install 'armvcpu[cluster]'"
        ) from exc
    m = re.fullmatch(r"tcp://([^\s:/]+):(\d+)", address)
    if m is None:
        raise ArmvcpuError(f"--scheduler takes tcp://HOST:PORT, not {address!r}")
    # A plain connect first: Dask's client retries a refused connection until
    # its timeout, and a wrong address should fail at once.
    try:
        socket.create_connection((m[1], int(m[2])), timeout=min(timeout, 5.0)).close()
    except OSError as exc:
        raise ArmvcpuError(f"no Dask scheduler answered at {address}: {exc}") from exc
    try:
        client = Client(address, timeout=timeout, set_as_default=False)  # type: ignore[no-untyped-call]
    except (OSError, TimeoutError) as exc:
        raise ArmvcpuError(f"no Dask scheduler answered at {address}: {exc}") from exc
    try:  # a campaign on a cluster without workers would wait forever, silently
        client.wait_for_workers(1, timeout=timeout)
    except (OSError, TimeoutError) as exc:
        client.close()  # type: ignore[no-untyped-call]
        raise ArmvcpuError(f"the Dask scheduler at {address} has no workers "
                           f"(start some with: dask worker {address})") from exc  # fmt: skip
    return client


class _DaskEngine:
    """Each program is one Dask task. A worker that dies loses the task it was
    running; the scheduler gives that task to another worker (up to its
    ``allowed-failures``, then the program is a finding)."""

    def __init__(self, config: FuzzConfig, client: Any) -> None:
        self.config = config
        self.client = client
        self.token = uuid.uuid4().hex[:8]
        self.futures: list[Any] = []

    def run(self, specs: list[Spec]) -> Iterator[tuple[Outcome, str]]:
        from distributed import as_completed

        idents = {}
        futures = []
        for seed, lineage in specs:
            ident = ident_of(seed, lineage)
            fut = self.client.submit(_dask_task, self.config, seed, lineage, pure=False,
                                     key=f"armvcpu-fuzz-{self.token}-{ident}")  # fmt: skip
            idents[fut.key] = ident
            futures.append(fut)
        self.futures = futures
        for fut in as_completed(futures, loop=self.client.loop):  # type: ignore[no-untyped-call]
            ident = idents[fut.key]
            try:
                payload, host = fut.result()
                yield _outcome_from_dict(payload), host
            except Exception as exc:  # KilledWorker: it took a worker with it, every try
                yield Outcome(ident, HOST_ERROR, f"on the cluster: {type(exc).__name__}: {exc}"), ""
            fut.release()

    def close(self, interrupted: bool) -> None:
        with contextlib.suppress(Exception):
            if interrupted:
                self.client.cancel(self.futures)
            self.client.run(_close_worker_runners)
            self.client.run(_remove_dead_shm_files)
        with contextlib.suppress(Exception):
            self.client.close()


# -- the campaign -----------------------------------------------------------------------------


def run_campaign(
    config: FuzzConfig, on_result: Callable[[Outcome, Summary], None] | None = None
) -> Summary:
    """Run ``config.programs`` programs on ``config.workers`` worker processes,
    or on the Dask cluster at ``config.scheduler``.

    With ``config.coverage`` the sessions run the coverage build, and the
    campaign is guided: programs that reach new coverage points join the
    corpus (at the end of each generation, in index order), and later
    programs mutate them (see :mod:`.corpus`).

    Ctrl-C (KeyboardInterrupt) stops the workers, which close their QEMUs;
    the summary then has ``interrupted`` set.
    """
    if config.workers < 1 or config.programs < 0 or config.length < 0:
        raise ValueError("workers must be at least 1; programs and length not negative")
    if config.gic not in (2, 3):
        raise ValueError(f"gic={config.gic!r}: QEMU's virt has a GICv2 (2) or a GICv3 (3)")
    if config.its and config.gic != 3:
        raise ValueError("the ITS surface needs a GICv3: QEMU's virt has no ITS with gic=2")
    if config.coverage:
        from .coverage import coverage_firmware_path

        coverage_firmware_path()  # a clear error here, not one per program
    summary = Summary(config)
    corpus = Corpus(
        config.seed, config.length, Path(config.corpus) if config.corpus else None, its=config.its
    )
    if config.coverage:
        # A resumed campaign goes on from the corpus it left: its entries are
        # mutated from the first generation on, and only points none of them
        # reached add new ones.
        summary.corpus_reloaded = corpus.reload()
        summary.corpus_size = len(corpus.entries)
    guided: set[int] = set(corpus.reloaded_points)  # points the corpus decisions have seen
    t0 = time.monotonic()
    engine: _LocalEngine | _DaskEngine
    if config.scheduler:
        engine = _DaskEngine(config, connect(config.scheduler))
    else:
        engine = _LocalEngine(config)
    try:
        first = 0
        while first < config.programs:
            last = min(config.programs, first + GENERATION) if config.coverage else config.programs
            specs = [(config.seed, corpus.pick_lineage(i) if config.coverage else (i,))
                     for i in range(first, last)]  # fmt: skip
            outcomes = []
            for outcome, host in engine.run(specs):
                summary.add(outcome, host)
                outcomes.append(outcome)
                if on_result is not None:
                    on_result(outcome, summary)
            if config.coverage:
                for outcome in sorted(outcomes, key=lambda o: index_of(o.ident)):
                    new = set(outcome.coverage) - guided
                    guided |= new
                    if new and not outcome.failure:
                        corpus.add(parse_ident(outcome.ident)[1], len(new), outcome.as_dict())
                summary.corpus_size = len(corpus.entries)
                summary.timeline.append({"seconds": round(time.monotonic() - t0, 2),
                                         "programs": summary.done,
                                         "points": len(summary.covered)})  # fmt: skip
            first = last
    except KeyboardInterrupt:
        summary.interrupted = True
    finally:
        with contextlib.suppress(KeyboardInterrupt):
            engine.close(summary.interrupted)
            summary.wall_seconds = time.monotonic() - t0
    return summary
