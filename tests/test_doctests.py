"""Every example in the docstrings runs and prints what it claims."""

from __future__ import annotations

import doctest
import importlib
import types

import pytest
from armvcpu import _core

# Each module here must run at least one example: one whose examples are all
# +SKIP would pass while checking nothing. (armvcpu.session.gdbstub and
# .firmware left the list for that reason: their examples need a live target;
# so do those of analysis.exitlog, guests.debian, guests.linux, policy.rules.)
PYTHON_MODULES = [
    "armvcpu",
    "armvcpu.analysis.trace",
    "armvcpu.policy.traps",
    "armvcpu.tools.jsonout",
    "armvcpu.assets",
    "armvcpu.exits",
    "armvcpu.guests.devicetree",
    "armvcpu.guests.guest",
    "armvcpu.policy.devices",
    "armvcpu.policy.policy",
    "armvcpu.session.hypervisor",
    "armvcpu.tools.fuzz.generator",
    "armvcpu.tools.gdb_launch",
]


def _core_doctests() -> list[doctest.DocTest]:
    """The _core docstrings that hold examples (a class's methods carry only
    their pybind11 signatures and none)."""
    finder = doctest.DocTestFinder(exclude_empty=True)
    found = []
    for owner in (_core,):
        for name in dir(owner):
            obj = getattr(owner, name)
            if getattr(obj, "__module__", None) != _core.__name__:
                continue  # a constant: an int's docstring is Python's, not ours
            if ">>>" in (getattr(obj, "__doc__", None) or ""):
                found += finder.find(obj, name, module=False, globs=dict(vars(_core)))
    return [t for t in found if t.examples]


def test_core_docstring_examples():
    tests = _core_doctests()
    assert len(tests) >= 6  # Esr, TrapFrame, classify_sync, VCpu, Stage2Tables, ...
    for t in tests:
        runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
        runner.run(t)
        result = runner.summarize(verbose=False)
        assert result.failed == 0, t.name
        assert result.attempted >= 1, f"{t.name}: every example is skipped, so none is checked"


@pytest.mark.parametrize("name", PYTHON_MODULES)
def test_python_docstring_examples(name):
    module: types.ModuleType = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
    assert result.attempted >= 1, f"{name}: every example is skipped, so none is checked"
