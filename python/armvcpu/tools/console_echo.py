"""The guest's passed-through console, echoed to stdout as QEMU writes it."""

from __future__ import annotations

import sys
from typing import Any


class ConsoleEcho:
    """Called as a session watcher (``hv.watchers.append(echo)``) and once more
    at the end: writes what the console gained since the last call."""

    def __init__(self, hv: Any) -> None:
        self._hv = hv
        self._shown = 0

    def __call__(self) -> None:
        text = self._hv.console
        if len(text) > self._shown:
            sys.stdout.write(text[self._shown :])
            sys.stdout.flush()
            self._shown = len(text)
