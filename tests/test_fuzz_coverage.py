"""Coverage of the firmware: the coverage build, its map read after each
program, coverage-guided campaigns and the report by source line.

Real QEMU runs the real coverage build throughout; what counts as reached is
what the firmware's own instrumentation recorded.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from armvcpu.assets import firmware_path
from armvcpu.errors import ArmvcpuError
from armvcpu.tools import fuzz
from armvcpu.tools.fuzz.corpus import GENERATION, build_program, parse_ident
from armvcpu.tools.fuzz.coverage import CoverageMap
from elftools.elf.elffile import ELFFile

from .conftest import qemu_pids, shm_files


@pytest.fixture(scope="module")
def cmap() -> CoverageMap:
    return CoverageMap.load()


def _symbols(path: Path) -> set[str]:
    with path.open("rb") as f:
        symtab = ELFFile(f).get_section_by_name(".symtab")
        return {s.name for s in symtab.iter_symbols()}


def test_the_coverage_build_is_beside_the_normal_image(cmap):
    assert cmap.path.parent == firmware_path().parent
    # Every basic block calls the runtime: hundreds of points, all inside the map.
    assert len(cmap.points) > 500
    assert max(cmap.points) < cmap.map_size
    # The normal image is not instrumented and has no map.
    normal = _symbols(firmware_path())
    assert "__sanitizer_cov_trace_pc" not in normal and "armvcpu_cov_map" not in normal


def test_a_program_reaches_the_exit_path(cmap, no_leaked_qemu):
    with fuzz.Runner(timeout=5.0, coverage=cmap) as runner:
        first = runner.run(fuzz.Program.from_words([], name="empty"))
        second = runner.run(fuzz.Program.from_words([], name="empty again"))
    assert first.outcome == second.outcome == fuzz.COMPLETED
    assert second.fresh_session is False
    functions = {cmap.lines.function_at(cmap.address(p)) for p in first.coverage}
    # The hypercalls of the prologue and epilogue went to the host: the run
    # loop and the hand-off to the host ran.
    assert {"run_vcpu", "fw::report_exit"} <= functions, sorted(functions)
    # A fresh session's program includes the boot; the next one in the same
    # session starts from a cleared map, so it has fewer points, but the
    # exit path again.
    assert 0 < len(second.coverage) < len(first.coverage)
    assert "fw_main" in functions
    assert "fw_main" not in {cmap.lines.function_at(cmap.address(p)) for p in second.coverage}
    # Every recorded point is a call site of the runtime (no tail calls to it).
    assert set(first.coverage) | set(second.coverage) <= cmap.points


def test_hangs_are_told_apart_in_the_coverage_build(cmap, no_leaked_qemu):
    # Where a hung CPU waits is told from samples of its PC; in the coverage
    # build many land in the coverage callback, which every block calls.
    cpu_off = [*fuzz.mov64(0, 0x8400_0002), fuzz.hvc(0)]
    disable = fuzz.msr(next(r for r in fuzz.SYSREGS if r.name == "ICC_IGRPEN1_EL1"), 31)
    suspend = [disable, *fuzz.mov64(0, 0xC400_0001), fuzz.hvc(0)]
    with fuzz.Runner(timeout=2.0, reuse=False, coverage=cmap) as runner:
        off = runner.run(fuzz.Program.from_words(cpu_off))
        halted = runner.run(fuzz.Program.from_words(suspend))
    assert (off.outcome, off.detail) == (
        fuzz.TIMEOUT,
        "vCPU off (PSCI CPU_OFF), its CPU waits in EL2",
    )
    assert halted.outcome == fuzz.TIMEOUT and halted.detail.startswith("vCPU halted in EL2")


@pytest.mark.timeout(300)
def test_coverage_grows_with_a_fixed_seed_batch(tmp_path, no_leaked_qemu):
    seen: list[int] = []
    config = fuzz.FuzzConfig(seed=11, programs=3 * GENERATION, workers=2,
                             timeout=2.0, coverage=True, corpus=str(tmp_path))  # fmt: skip
    summary = fuzz.run_campaign(config, lambda o, s: seen.append(len(s.covered)))
    assert summary.done == config.programs and not summary.failures
    assert seen[0] > 0
    assert seen == sorted(seen) and seen[-1] > seen[0]
    # One timeline row per generation, never going down.
    edges = [t["points"] for t in summary.timeline]
    assert len(edges) == 3 and edges == sorted(edges) and edges[0] > 0
    # The corpus on disk: each entry added points and replays from its ident.
    entries = [json.loads(p.read_text()) for p in sorted(tmp_path.glob("*.json"))]
    assert len(entries) == summary.corpus_size > 0
    assert all(e["new_points"] > 0 for e in entries)
    for e in entries:
        seed, lineage = parse_ident(e["ident"])
        assert bytes.fromhex(e["image"]) == build_program(seed, lineage, 32).image
    # Later generations mutate corpus entries.
    assert any("/" in ident for ident in summary.ran_on)
    assert summary.as_dict()["coverage"]["points_covered"] == len(summary.covered)


def test_mutated_programs_are_functions_of_their_lineage():
    a = build_program(5, (3, 40, 77))
    assert a == build_program(5, (3, 40, 77)) and a.ident == "5:3/40/77"
    assert a.body != build_program(5, (3, 40)).body
    assert build_program(5, (3,)) == fuzz.generate(5, 3)
    assert parse_ident("5:3/40/77") == (5, (3, 40, 77))
    for bad in ("5", "5:", "5:3/", "5:3/x", ":1", "x:1"):
        with pytest.raises(ValueError, match="SEED:INDEX"):
            parse_ident(bad)


def run_cli(*args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "armvcpu", "fuzz", *args], capture_output=True,
                          text=True, timeout=timeout)  # fmt: skip


def test_cli_coverage_report_maps_points_to_source_lines(tmp_path, no_leaked_qemu):
    out = run_cli("--seed", "3", "--programs", "6", "--workers", "1", "--timeout", "2",
                  "--coverage-report", str(tmp_path), "--json")  # fmt: skip
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)["coverage"]
    assert 0 < report["points_covered"] < report["points_total"]
    text = (tmp_path / "coverage.txt").read_text()
    assert f"{report['points_covered']} of {report['points_total']} coverage points" in text
    # The run loop's function and its source lines, covered and not, with their text.
    lines = text.splitlines()
    assert any(re.match(r"\s+[1-9]\d*/\d+\s+run_vcpu\s", line) for line in lines)
    start = next(i for i, line in enumerate(lines) if line.startswith("-- ")
                 and line.endswith("firmware/main.cpp"))  # fmt: skip
    section = lines[start + 1 : next(i for i in range(start + 1, len(lines) + 1)
                                     if i == len(lines) or lines[i].startswith("-- "))]  # fmt: skip
    assert any(line.startswith("+ ") for line in section)
    assert any(line.startswith("- ") for line in section)
    # The programs' hypercalls went to the host: the run loop's line that asks it ran.
    assert any(line.startswith("+ ") and "fw::ask_host(" in line for line in section)
    page = (tmp_path / "index.html").read_text()
    assert "<pre class='y'>" in page and "<pre class='n'>" in page and "main.cpp" in page


def test_cli_replays_a_mutated_program(no_leaked_qemu):
    out = run_cli("--replay", "3:1/40", "--timeout", "2")
    assert out.returncode == 0, out.stderr
    assert "program 3:1/40 (length 32)" in out.stdout and "outcome: " in out.stdout
    bad = run_cli("--replay", "3:1/x")
    assert bad.returncode == 2 and "SEED:INDEX" in bad.stderr


def test_a_missing_coverage_build_is_a_clear_error(tmp_path):
    with pytest.raises(ArmvcpuError, match="not a coverage build"):
        CoverageMap.load(firmware_path())
    before, files = qemu_pids(), shm_files()
    missing = tmp_path / "nothing.elf"
    with pytest.raises(OSError):
        CoverageMap.load(missing)
    assert qemu_pids() == before and shm_files() == files


@pytest.mark.timeout(300)
def test_a_resumed_campaign_reloads_its_corpus(tmp_path, no_leaked_qemu):
    config = fuzz.FuzzConfig(seed=11, programs=GENERATION, workers=2, timeout=2.0,
                             coverage=True, corpus=str(tmp_path))  # fmt: skip
    first = fuzz.run_campaign(config)
    assert first.corpus_reloaded == 0 and first.corpus_size > 0
    before = {p.name: json.loads(p.read_text()) for p in tmp_path.glob("*.json")}
    reached = set().union(*(e["points"] for e in before.values()))
    assert reached == first.covered
    # An entry of another seed in the same directory is left alone.
    (tmp_path / "99-1.json").write_text(json.dumps({**next(iter(before.values())),
                                                    "ident": "99:1"}))  # fmt: skip
    second = fuzz.run_campaign(config)
    assert second.corpus_reloaded == len(before)
    # Its first generation already mutates the reloaded entries (a fresh
    # corpus has none to mutate until a generation has ended)...
    reloaded = {parse_ident(e["ident"])[1] for e in before.values()}
    mutated = [parse_ident(i)[1] for i in second.ran_on if "/" in i]
    assert mutated and all(lineage[:-1] in reloaded for lineage in mutated)
    # ...and a program joins the corpus only for points no reloaded entry reached.
    after = {p.name: json.loads(p.read_text()) for p in tmp_path.glob("*.json")}
    for name in after.keys() - before.keys() - {"99-1.json"}:
        assert set(after[name]["points"]) - reached, name
    assert second.corpus_size == len(after) - 1
    assert second.as_dict()["coverage"]["corpus_reloaded"] == len(before)


def test_a_corpus_directory_with_a_foreign_json_is_a_clear_error(tmp_path, no_leaked_qemu):
    (tmp_path / "notes.json").write_text('{"hello": 1}')
    config = fuzz.FuzzConfig(seed=11, programs=4, workers=1, coverage=True,
                             corpus=str(tmp_path))  # fmt: skip
    with pytest.raises(ValueError, match=r"notes\.json is not a corpus entry"):
        fuzz.run_campaign(config)


def _functions(cmap: CoverageMap, outcomes: list[fuzz.Outcome]) -> set[str]:
    return {cmap.lines.function_at(cmap.address(p)) for o in outcomes for p in o.coverage}


def _programs_naming(target: str, count: int, seed: int = 9) -> list[fuzz.Program]:
    """The first programs of a seed with an access to the generator's ``target``."""
    found = (fuzz.generate(seed, i) for i in range(400))
    return [p for p in found if any(target in note for _, note in p.notes)][:count]


@pytest.mark.timeout(300)
def test_a_gicv2_batch_reaches_the_firmwares_gicv2_code(cmap, no_leaked_qemu):
    programs = _programs_naming("GIC distributor", 3)
    with fuzz.Runner(timeout=2.0, gic=2, coverage=cmap) as runner:
        outs = [runner.run(p) for p in programs]
    assert not any(o.failure for o in outs), [(o.outcome, o.detail) for o in outs]
    assert all(o.fresh_session for o in outs)  # snapshots need a GICv3
    functions = _functions(cmap, outs)
    # The GICv2 driver, and the virtual timer's interrupt taken from the
    # distributor and put in the GICv2's list registers for the guest's GICV.
    assert {"fw::gicv2::init_cpu", "fw::gicv2::acknowledge",
            "fw::gicv2::inject"} <= functions, sorted(functions)  # fmt: skip


@pytest.mark.timeout(300)
def test_accesses_to_ipa_space_with_nothing_behind_it_reach_abort_injection(cmap, no_leaked_qemu):
    programs = _programs_naming("another VM's RAM", 3)
    with fuzz.Runner(timeout=2.0, coverage=cmap) as runner:
        outs = [runner.run(p) for p in programs]
    assert not any(o.failure for o in outs)
    # The first program's abort is the host's answer, the others' the
    # firmware's own: both take the abort to the guest in EL2.
    assert [o.answered_in_el2 > 0 for o in outs] == [False, True, True]
    for o in outs:
        assert "fw::inject_exception" in _functions(cmap, [o]), o.ident
