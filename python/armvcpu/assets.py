"""What the installed package carries: the EL2 firmware image and the example guests.

>>> firmware_path().name
'armvcpu-firmware.elf'
>>> example_guest_path("hypercalls").suffix
'.elf'
"""

from __future__ import annotations

import os
from pathlib import Path

from .errors import FirmwareError

DATA = Path(__file__).resolve().parent / "data"


def firmware_path() -> Path:
    """The firmware ELF this installation carries (``$ARMVCPU_FIRMWARE`` overrides)."""
    override = os.environ.get("ARMVCPU_FIRMWARE")
    path = Path(override) if override else DATA / "armvcpu-firmware.elf"
    if not path.is_file():
        raise FirmwareError(
            f"firmware image not found at {path}; reinstall armvcpu (pip install .) "
            "or point ARMVCPU_FIRMWARE at an armvcpu-firmware.elf"
        )
    return path


def example_guest_path(name: str) -> Path:
    """A prebuilt example guest shipped in the package, e.g. ``"hypercalls"``."""
    path = DATA / "guests" / f"{name}.elf"
    if not path.is_file():
        available = sorted(p.stem for p in (DATA / "guests").glob("*.elf"))
        raise FileNotFoundError(f"no example guest {name!r}; available: {available}")
    return path
