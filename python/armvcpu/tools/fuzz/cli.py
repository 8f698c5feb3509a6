"""``armvcpu fuzz``: the command line, replays and saved failures."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from ...exits import Exit
from .campaign import FuzzConfig, Summary, run_campaign
from .corpus import build_program, parse_ident
from .generator import ENTRY
from .runner import DEFAULT_WATCHDOG, FAILURES, Outcome, Runner

# -- the command line ------------------------------------------------------------------------


def parse_replay(text: str) -> tuple[int, int]:
    """``"SEED:INDEX"`` -> (seed, index)."""
    seed, sep, index = text.partition(":")
    if not sep or not seed.strip().isdigit() or not index.strip().isdigit():
        raise ValueError(f"--replay takes SEED:INDEX (two non-negative integers), not {text!r}")
    return int(seed), int(index)


def save_failure(directory: Path, outcome: Outcome, length: int, its: bool = False) -> Path:
    """Write what reproduces a failure: a JSON report and the raw image
    (``armvcpu run FILE.bin`` runs it without the fuzzer's answers)."""
    import json

    directory.mkdir(parents=True, exist_ok=True)
    seed, lineage = parse_ident(outcome.ident)
    program = build_program(seed, lineage, length, its=its)
    stem = directory / f"fuzz-{seed}-{'-'.join(str(i) for i in lineage)}"
    stem.with_suffix(".bin").write_bytes(program.image)
    report = {
        "outcome": outcome.as_dict(),
        "replay": f"armvcpu fuzz --replay {outcome.ident} --length {length}"
                  + (" --its" if its else ""),
        "program": {"seed": seed, "index": lineage[-1], "lineage": list(lineage),
                    "length": length, "flavor": program.flavor,
                    "clean": program.clean, "traps": list(program.traps), "its": program.its,
                    "load_address": ENTRY, "image": program.image.hex(),
                    "body": program.listing().splitlines()},
    }  # fmt: skip
    path = stem.with_suffix(".json")
    path.write_text(json.dumps(report, indent=2))
    return path


def replay(seed: int, index: int | tuple[int, ...], length: int, timeout: float,
           budget: int, watchdog: float | None = DEFAULT_WATCHDOG,
           gic: int = 3, its: bool = False) -> int:  # fmt: skip
    """Run one program (an index, or a mutated program's lineage) alone in a
    fresh session and show everything (``its``: of a campaign with the ITS
    surface)."""
    from rich.console import Console

    out = Console(highlight=False)
    if its and gic != 3:
        raise ValueError("the ITS surface needs a GICv3: QEMU's virt has no ITS with gic=2")
    program = build_program(seed, index if isinstance(index, tuple) else (index,), length, its=its)
    traps = "default" if program.traps == (0, 0) else (
        f"HCR_EL2 |= {program.traps[0]:#x}, MDCR_EL2 = {program.traps[1]:#x}")  # fmt: skip
    out.print(f"program {program.ident} (length {length}): flavor {program.flavor}"
              f"{' (ITS program)' if program.its else ''}, "
              f"{'clean' if program.clean else 'may leave state'}, traps {traps}")  # fmt: skip
    out.print(program.listing(), markup=False)

    def show(exit: Exit, answer: str) -> None:
        out.print(f"  exit #{exit.seq:<4} {exit.reason!r}  pc={exit.pc:#x}  -> {answer}",
                  markup=False)  # fmt: skip

    with Runner(
        timeout=timeout, budget=budget, reuse=False, on_exit=show, watchdog=watchdog, gic=gic
    ) as runner:
        out.print("exits:")
        result = runner.run(program)
    out.print(f"outcome: {result.outcome}" + (f" ({result.detail})" if result.detail else "")
              + f" after {result.exits} exits in {result.seconds:.3f} s", markup=False)  # fmt: skip
    if result.el1_skipped:
        out.print(f"EL1 exceptions returned from: {result.el1_skipped}", markup=False)
    if program.its:
        out.print(f"LPIs the firmware delivered: {result.lpis}")
    if result.log:
        out.print(result.log, markup=False)
    return 1 if result.failure else 0


def _watchdog(args: Any) -> float | None:
    """--watchdog MS as the Runner takes it (seconds; 0 ms: off)."""
    ms = getattr(args, "watchdog", DEFAULT_WATCHDOG * 1000)
    return ms / 1000 if ms else None


def main(args: Any) -> int:
    """``armvcpu fuzz``: see docs/fuzzing.md."""
    import secrets

    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,  # fmt: skip
        TimeRemainingColumn,
    )
    from rich.table import Table

    from ..jsonout import print_json

    if args.replay:
        seed, lineage = parse_ident(args.replay)
        return replay(
            seed,
            lineage,
            args.length,
            args.timeout,
            args.budget,
            _watchdog(args),
            getattr(args, "gic", 3),
            getattr(args, "its", False),
        )
    seed = args.seed if args.seed is not None else secrets.randbelow(1 << 32)
    config = FuzzConfig(seed=seed, programs=args.programs, workers=args.workers,
                        length=args.length, timeout=args.timeout, budget=args.budget,
                        reuse=not args.no_reuse, watchdog=_watchdog(args),
                        el2_answers=not getattr(args, "host_answers", False),
                        gic=getattr(args, "gic", 3), its=getattr(args, "its", False),
                        coverage=bool(args.coverage or args.coverage_report or args.corpus),
                        corpus=args.corpus, scheduler=args.scheduler)  # fmt: skip
    cmap = None
    if config.coverage:
        from .coverage import CoverageMap

        cmap = CoverageMap.load()  # a missing or wrong coverage build fails here, clearly
    err = Console(stderr=True)
    progress = Progress(TextColumn("[bold]fuzz seed {task.fields[seed]}"), BarColumn(),
                        MofNCompleteColumn(), TextColumn("{task.fields[rate]} programs/s"),
                        TextColumn("{task.fields[failures]}"), TextColumn("{task.fields[cov]}"),
                        TimeElapsedColumn(), TimeRemainingColumn(), console=err,
                        transient=True)  # fmt: skip
    task = progress.add_task("fuzz", total=config.programs, seed=seed, rate="-", failures="",
                             cov="")  # fmt: skip
    where = f" on {config.scheduler}" if config.scheduler else ""
    t0 = time.monotonic()
    saved: list[Path] = []

    last_line = [t0]

    def on_result(outcome: Outcome, summary: Summary) -> None:
        now = time.monotonic()
        rate = summary.done / max(1e-9, now - t0)
        n = len(summary.failures)
        if not err.is_terminal and (
            summary.done in (1, config.programs) or now - last_line[0] > 30
        ):
            last_line[0] = now  # a log, not a live bar: the first program, then a line every 30 s
            cov = f", {len(summary.covered)} coverage points" if config.coverage else ""
            err.print(f"fuzz seed {seed}{where}: {summary.done}/{config.programs} programs, "
                      f"{rate:.1f}/s, {n} hypervisor failures{cov}", highlight=False)  # fmt: skip
        progress.update(
            task,
            completed=summary.done,
            rate=f"{rate:.1f}",
            failures=f"[red]{n} hypervisor failure{'s' * (n != 1)}" if n else "",
            cov=f"{len(summary.covered)} points" if config.coverage else "",
        )
        if outcome.failure:
            progress.console.print(
                f"[red]hypervisor failure[/red] at {outcome.ident}: "
                f"{outcome.outcome}: {outcome.detail}",
                highlight=False,
            )

    with progress:
        summary = run_campaign(config, on_result)
    if args.save_failures:  # one per signature: the reproducer with the lowest index
        for outcome, _ in summary.distinct_failures():
            saved.append(save_failure(Path(args.save_failures), outcome, config.length,
                                      config.its))  # fmt: skip
    report_files: list[Path] = []
    if args.coverage_report and cmap is not None:
        cov_report = cmap.report(summary.covered, timeline=summary.timeline,
                                 title=f"armvcpu fuzz seed {seed}: firmware coverage")  # fmt: skip
        report_files = cov_report.write(Path(args.coverage_report))
    if args.json:
        report = summary.as_dict()
        report["saved"] = [str(p) for p in saved]
        if cmap is not None and "coverage" in report:
            report["coverage"]["points_total"] = len(cmap.points)
            report["coverage"]["report"] = [str(p) for p in report_files]
        print_json(report)
    else:
        out = Console(highlight=False)
        _print_summary(out, summary, Table)
        if cmap is not None:
            out.print(f"firmware coverage: {len(summary.covered)} of {len(cmap.points)} points "
                  f"(basic blocks) reached; corpus of {summary.corpus_size} programs"
                  + (f" ({summary.corpus_reloaded} reloaded from {config.corpus})"
                     if summary.corpus_reloaded else ""))  # fmt: skip
        for path in saved:
            err.print(f"saved {path}")
        for path in report_files:
            err.print(f"coverage report: {path}")
    if summary.failures:
        return 1
    return 130 if summary.interrupted else 0


def _print_summary(out: Any, summary: Summary, table_cls: Any) -> None:
    c = summary.config
    title = (f"armvcpu fuzz: seed {c.seed}, {summary.done} of {c.programs} programs"
             f"{' (interrupted)' if summary.interrupted else ''}")  # fmt: skip
    table = table_cls(title=title)
    for col, justify in (("outcome", "left"), ("detail", "left"), ("programs", "right"),
                         ("share", "right"), ("e.g. seed:index", "left")):  # fmt: skip
        table.add_column(col, justify=justify)
    for outcome, detail, count, example in summary.rows():
        style = "red" if outcome in FAILURES else None
        table.add_row(outcome, detail, str(count), f"{count / max(1, summary.done):.1%}",
                      example, style=style)  # fmt: skip
    out.print(table)
    where = (f"{len(summary.hosts)} Dask workers at {c.scheduler}" if c.scheduler
             else f"{c.workers} workers")  # fmt: skip
    out.print(f"{summary.done} programs in {summary.wall_seconds:.1f} s "
              f"({summary.programs_per_second:.1f} programs/s) on {where}; "
              f"{summary.fresh_sessions} fresh QEMU sessions, {summary.exits} exits"
              + (f", {summary.lpis} LPIs delivered to ITS programs" if c.its else ""))  # fmt: skip
    if c.coverage and summary.timeline:
        steps = summary.timeline[:: max(1, len(summary.timeline) // 8)]
        if steps[-1] is not summary.timeline[-1]:
            steps.append(summary.timeline[-1])
        out.print(
            "coverage points over time: "
            + ", ".join(
                f"{t['points']} at {t['programs']} programs ({t['seconds']:.0f} s)" for t in steps
            )
        )
    if summary.failures:
        distinct = summary.distinct_failures()
        failures = table_cls(title=f"hypervisor failures (findings): {len(summary.failures)} "
                             f"programs, {len(distinct)} distinct")  # fmt: skip
        for col in ("seed:index", "failure", "detail", "programs", "reproduce"):
            failures.add_column(col)
        for f, n in distinct:
            failures.add_row(f.ident, f.outcome, f.detail, str(n),
                             f"armvcpu fuzz --replay {f.ident} --length {c.length}"
                             + (" --its" if c.its else ""))  # fmt: skip
        out.print(failures)
    else:
        out.print("no hypervisor failures")
