"""Fuzz campaigns on a Dask cluster: a real scheduler and two real worker
processes on this machine, each worker running its own QEMU sessions."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from armvcpu.tools import fuzz

from .conftest import pid_gone

distributed = pytest.importorskip("distributed")

#: Programs of this seed whose outcomes do not depend on timing (no hang is
#: near the timeout); the campaign is small so the test stays short.
CONFIG = fuzz.FuzzConfig(seed=2024, programs=24, workers=2, timeout=2.0)


@dataclass
class Cluster:
    address: str
    client: Any
    scheduler: subprocess.Popen[bytes]
    workers: dict[str, subprocess.Popen[bytes]]  # worker address -> its process
    #: The workers' TMPDIR, where their sessions make their directories.
    tmpdir: Path

    def leftovers(self) -> list[str]:
        return sorted(p.name for p in self.tmpdir.glob("armvcpu-*"))


def _wait_for(what: str, ready: Any, procs: list[subprocess.Popen[bytes]], log: Path) -> None:
    """Wait for an event; the deadline only bounds a hang (or a process that died)."""
    deadline = time.monotonic() + 120
    while not ready():
        dead = [p.args for p in procs if p.poll() is not None]
        assert not dead, f"{what}: a process ended: {dead}\n{log.read_text()}"
        assert time.monotonic() < deadline, f"{what} never happened:\n{log.read_text()}"
        time.sleep(0.05)


@contextlib.contextmanager
def start_cluster(tmp_path: Path, workers: int) -> Iterator[Cluster]:
    """A scheduler and single-threaded workers (no nanny: a killed worker stays dead),
    with a TMPDIR of their own that goes with them: a worker killed outright
    leaves its session's directory there. (Not in tmp_path: the sessions'
    sockets are in it, and a Unix socket's path must fit in 107 bytes.)"""
    log = tmp_path / "cluster.log"
    sched_file = tmp_path / "scheduler.json"
    tmpdir = Path(tempfile.mkdtemp())
    env = {**os.environ, "TMPDIR": str(tmpdir)}
    procs: list[subprocess.Popen[bytes]] = []
    with log.open("wb") as out:
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1",
             "--port", "0", "--no-dashboard", "--scheduler-file", str(sched_file)],
            stdout=out, stderr=subprocess.STDOUT, env=env))  # fmt: skip
    client = None
    try:
        _wait_for("the scheduler file", sched_file.exists, procs, log)
        _wait_for("the scheduler's address", lambda: sched_file.read_text().strip(), procs, log)
        address = json.loads(sched_file.read_text())["address"]
        with log.open("ab") as out:
            for i in range(workers):
                procs.append(subprocess.Popen(
                    [sys.executable, "-m", "distributed.cli.dask_worker", address,
                     "--nthreads", "1", "--no-nanny", "--no-dashboard", "--name", f"w{i}"],
                    stdout=out, stderr=subprocess.STDOUT, env=env))  # fmt: skip
        client = distributed.Client(address, timeout=60, set_as_default=False)

        def joined() -> bool:
            return len(client.scheduler_info()["workers"]) == workers

        _wait_for(f"{workers} workers", joined, procs, log)
        pids = client.run(os.getpid)
        by_pid = {p.pid: p for p in procs[1:]}
        yield Cluster(address, client, procs[0], {a: by_pid[pid] for a, pid in pids.items()},
                      tmpdir)  # fmt: skip
    finally:
        if client is not None:
            client.close()
        for p in reversed(procs):
            if p.poll() is None:
                p.terminate()
        for p in procs:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        shutil.rmtree(tmpdir, ignore_errors=True)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    with start_cluster(tmp_path, 2) as c:
        yield c


@pytest.fixture(scope="module")
def local_summary() -> fuzz.Summary:
    """The same campaign on local worker processes."""
    summary = fuzz.run_campaign(CONFIG)
    assert summary.done == CONFIG.programs and not summary.failures
    return summary


@pytest.mark.timeout(600)
def test_a_cluster_campaign_has_the_local_outcome_table(local_summary, no_leaked_qemu, cluster):
    summary = fuzz.run_campaign(dataclasses.replace(CONFIG, scheduler=cluster.address))
    assert summary.done == CONFIG.programs and not summary.interrupted
    assert summary.rows() == local_summary.rows()
    # Both workers ran programs, each in its own sessions.
    assert set(summary.hosts) == set(cluster.workers)
    assert sum(summary.hosts.values()) == CONFIG.programs
    assert not cluster.leftovers()  # the campaign closed its sessions on the workers


@pytest.mark.timeout(600)
def test_a_guided_campaign_on_the_cluster_picks_the_local_programs(no_leaked_qemu, cluster):
    # Past the first generation, programs mutate the corpus: the same corpus,
    # so the same programs and outcomes, whichever engine ran them.
    config = dataclasses.replace(CONFIG, programs=fuzz.GENERATION + 8, coverage=True)
    local = fuzz.run_campaign(config)
    remote = fuzz.run_campaign(dataclasses.replace(config, scheduler=cluster.address))
    assert local.done == remote.done == config.programs
    assert sorted(local.ran_on) == sorted(remote.ran_on)
    assert any("/" in ident for ident in remote.ran_on)  # mutated programs ran
    assert remote.rows() == local.rows() and remote.corpus_size == local.corpus_size
    assert len(remote.covered) > 0


@pytest.mark.timeout(600)
def test_a_killed_worker_loses_only_its_program_in_flight(local_summary, no_leaked_qemu, cluster):
    victim, survivor = sorted(cluster.workers)
    done = threading.Event()
    results: list[fuzz.Summary] = []
    errors: list[BaseException] = []
    progress = threading.Semaphore(0)

    def campaign() -> None:
        try:
            results.append(fuzz.run_campaign(dataclasses.replace(CONFIG, scheduler=cluster.address),
                                             lambda o, s: progress.release()))  # fmt: skip
        except BaseException as exc:  # reported by the test thread
            errors.append(exc)
        finally:
            done.set()

    thread = threading.Thread(target=campaign)
    thread.start()
    try:
        # Mid-campaign: a few programs have ended and the victim is running one.
        for _ in range(3):
            assert progress.acquire(timeout=240), "the campaign made no progress"
        in_flight: list[str] = []
        deadline = time.monotonic() + 120
        worker = cluster.workers[victim]
        while not in_flight:
            assert time.monotonic() < deadline and not done.is_set(), "the victim never ran"
            # Frozen first, then asked: a program the victim finished just
            # before would otherwise be reported done after we saw it in
            # flight (the scheduler gets the messages already on their way
            # in the half second after the freeze).
            worker.send_signal(signal.SIGSTOP)
            time.sleep(0.5)
            in_flight = list(cluster.client.processing(workers=[victim]).get(victim, []))
            if not in_flight:
                worker.send_signal(signal.SIGCONT)
                time.sleep(0.01)
        worker.send_signal(signal.SIGKILL)
        assert pid_gone(cluster.workers[victim].pid, 30)
    finally:
        thread.join(300)
    assert not errors, errors
    summary = results[0]
    # Every program ran once and the table is the local one: nothing lost,
    # nothing counted twice, and the killed worker's programs ran elsewhere.
    assert summary.done == CONFIG.programs and not summary.failures
    assert summary.rows() == local_summary.rows()
    assert len(summary.ran_on) == CONFIG.programs
    for key in in_flight:
        ident = str(key).rsplit("-", 1)[1]
        assert summary.ran_on[ident] == survivor, (ident, summary.ran_on[ident])


def test_a_bad_scheduler_address_is_a_clear_error(no_leaked_qemu):
    for address, message in (("banana", "tcp://HOST:PORT"),
                             ("tcp://127.0.0.1:1", "no Dask scheduler answered")):  # fmt: skip
        out = subprocess.run([sys.executable, "-m", "armvcpu", "fuzz", "--seed", "1",
                              "--programs", "2", "--scheduler", address],
                             capture_output=True, text=True, timeout=120)  # fmt: skip
        assert out.returncode == 2, out.stderr
        assert message in out.stderr


def test_a_scheduler_without_workers_is_a_clear_error(tmp_path, no_leaked_qemu):
    from armvcpu.errors import ArmvcpuError
    from armvcpu.tools.fuzz.campaign import connect

    with start_cluster(tmp_path, 0) as empty, pytest.raises(ArmvcpuError, match="no workers"):
        connect(empty.address, timeout=2.0)


def test_failures_are_deduplicated_by_signature(tmp_path):
    # Two programs killed QEMU the same way (only the numbers differ), one
    # broke the protocol: two distinct failures, each kept once, with its
    # lowest-index reproducer, whatever order they arrived in.
    summary = fuzz.Summary(CONFIG)
    for ident, kind, detail in (("7:9", fuzz.HV_DIED, "QEMU exited with signal 11 at 0x4000"),
                                ("7:3", fuzz.HV_DIED, "QEMU exited with signal 6 at 0x4010"),
                                ("7:5", fuzz.PROTOCOL, "bad packet")):  # fmt: skip
        summary.add(fuzz.Outcome(ident, kind, detail))
    distinct = summary.distinct_failures()
    assert [(f.ident, n) for f, n in distinct] == [("7:3", 2), ("7:5", 1)]
    report = summary.as_dict()
    assert [f["ident"] for f in report["failures"]] == ["7:3", "7:5"]
    assert report["failures_total"] == 3
    saved = [fuzz.save_failure(tmp_path, f, 32) for f, _ in distinct]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "fuzz-7-3.bin", "fuzz-7-3.json", "fuzz-7-5.bin", "fuzz-7-5.json"]  # fmt: skip
    assert json.loads(saved[0].read_text())["replay"] == "armvcpu fuzz --replay 7:3 --length 32"
