"""One way for every ``armvcpu`` command to print ``--json``.

Scripts parse what the commands print, so the output is always the same
shape: two-space indented JSON, keys in the order the data declares them (a
dataclass's field order, a dict's insertion order), never sorted or shuffled
by the printer, and one document per command on stdout.

>>> from dataclasses import dataclass
>>> @dataclass
... class Row:
...     kind: str
...     count: int
>>> print(to_json([Row("Hypercall", 3)]))
[
  {
    "kind": "Hypercall",
    "count": 3
  }
]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any, TextIO


def plain(value: Any) -> Any:
    """``value`` as JSON's types: dataclasses and mappings become objects (in
    field/insertion order), sequences lists, paths strings, numpy scalars
    Python numbers."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        items = sorted(value) if isinstance(value, (set, frozenset)) else value
        return [plain(v) for v in items]
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        return value.item()
    return value


def to_json(value: Any, *, one_line: bool = False) -> str:
    """The text :func:`print_json` prints."""
    return json.dumps(plain(value), indent=None if one_line else 2, ensure_ascii=False)


def print_json(value: Any, file: TextIO | None = None, *, one_line: bool = False) -> None:
    """Print ``value`` as one JSON document (see the module docstring);
    ``one_line`` for a document that follows other output (``run --json``
    after the guest's console), so it is the last line and nothing else."""
    out = file if file is not None else sys.stdout
    print(to_json(value, one_line=one_line), file=out, flush=True)


def add_json_option(parser: argparse.ArgumentParser, what: str) -> None:
    """The ``--json`` option, worded the same on every command."""
    parser.add_argument("--json", action="store_true",
                        help=f"print {what} as JSON on stdout instead of a table")  # fmt: skip
