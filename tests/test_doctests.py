"""Every example in the docstrings runs and prints what it claims."""

from __future__ import annotations

import doctest
import importlib
import types

import armvcpu
import pytest
from armvcpu import _core

PYTHON_MODULES = [
    "armvcpu.policy.devices",
    "armvcpu.policy.traps",
    "armvcpu.tools.jsonout",
    "armvcpu.exits",
    "armvcpu.guests.guest",
    "armvcpu.session.gdbstub",
    "armvcpu.session.firmware",
    "armvcpu.guests.devicetree",
    "armvcpu.tools.fuzz.generator",
    "armvcpu.assets",
]


def _core_doctests() -> list[doctest.DocTest]:
    finder = doctest.DocTestFinder(exclude_empty=True)
    found = []
    for owner in (_core,):
        for name in dir(owner):
            obj = getattr(owner, name)
            if ">>>" in (getattr(obj, "__doc__", None) or ""):
                found += finder.find(obj, name, module=False, globs=dict(vars(_core)))
    return found


def test_core_docstring_examples():
    tests = _core_doctests()
    assert len(tests) >= 6  # Esr, TrapFrame, classify_sync, VCpu, Stage2Tables, ...
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    for t in tests:
        runner.run(t)
    result = runner.summarize(verbose=False)
    assert result.failed == 0


@pytest.mark.parametrize("name", PYTHON_MODULES)
def test_python_docstring_examples(name):
    module: types.ModuleType = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
    assert armvcpu.__version__
