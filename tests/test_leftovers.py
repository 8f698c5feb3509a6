"""The suite's own check on temporary files (conftest.py's ``leftovers``).

A run of tests with this suite's conftest, in a pytester directory: it fails
when a test leaves an ``armvcpu-*`` entry in the run's TMPDIR and names that
test, and passes when nothing is left, also with two pytest-xdist workers,
each of which checks only its own TMPDIR.
"""

from __future__ import annotations

from pathlib import Path

import pytest

CONFTEST = (Path(__file__).parent / "conftest.py").read_text()

TESTS = """
import tempfile

def test_clean(tmp_path):
    (tmp_path / "x").write_text("x")  # tmp_path is the test's, not armvcpu's

def test_session_dir_closed():
    tempfile.TemporaryDirectory(prefix="armvcpu-").cleanup()
"""

LEAKS = """
import os, tempfile

def test_leaves_a_dir():
    tempfile.mkdtemp(prefix="armvcpu-")

def test_leaves_a_ram_file():
    open(os.path.join(os.environ["ARMVCPU_SHM_DIR"], "armvcpu-1-2"), "w").close()
"""


@pytest.mark.parametrize("workers", [[], ["-p", "xdist", "-n", "2"]], ids=["serial", "xdist"])
def test_leftovers_fail_the_run_and_name_their_test(pytester, workers):
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_clean=TESTS)
    clean = pytester.runpytest_subprocess("-p", "no:cacheprovider", *workers)
    assert clean.ret == 0, clean.stdout.str()

    pytester.makepyfile(test_leaks=LEAKS)
    leaky = pytester.runpytest_subprocess("-p", "no:cacheprovider", *workers)
    out = leaky.stdout.str()
    assert leaky.ret == 1, out
    assert "the tests left armvcpu's temporary files behind" in out
    assert "(made by test_leaks.py::test_leaves_a_dir)" in out
    assert "(made by test_leaks.py::test_leaves_a_ram_file)" in out
    # The directory is in the run's own TMPDIR, under pytest's base temp.
    line = next(line for line in out.splitlines() if "test_leaves_a_dir)" in line)
    left = Path(line.split()[0])
    assert left.parent.name == "tmp" and "pytest-of-" in str(left), line
