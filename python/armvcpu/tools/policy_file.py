"""Policy files for ``armvcpu run --policy FILE[:NAME]``: a Python file that
defines ``policy`` (a Policy or a callable taking an exit), or one Policy
subclass, or names one with ``:NAME``."""

from __future__ import annotations

import runpy
from pathlib import Path
from typing import Any


class UsageError(Exception):
    """A bad argument or file, already worded for the user (one line naming
    the command): printed as it is, exit status 2 (EXIT_USAGE)."""


def load_policy(spec: str) -> Any:
    """The policy a ``--policy`` file defines: ``FILE:NAME`` names it (a
    Policy class, instance or callable); otherwise the file's ``policy``
    (a Policy or any callable taking an exit), else its one Policy subclass."""
    from ..policy.policy import Policy

    path, name = spec, None
    head, sep, tail = spec.rpartition(":")
    if sep and tail.isidentifier() and not Path(spec).exists():
        path, name = head, tail
    if not Path(path).is_file():
        raise UsageError(f"armvcpu run: policy file {path} not found")
    try:
        namespace = runpy.run_path(path, run_name="__armvcpu_policy__")
    except Exception as exc:
        raise UsageError(f"armvcpu run: policy file {path} failed to load: {exc!r}") from exc
    if name is not None:
        if name not in namespace:
            raise UsageError(f"armvcpu run: {path} defines no {name!r}")
        policy = namespace[name]
    else:
        policy = namespace.get("policy")
    if policy is None:
        # Only classes defined in the file itself: one it imports is not its choice.
        classes = [
            v for v in namespace.values()
            if isinstance(v, type) and issubclass(v, Policy) and v is not Policy
            and v.__module__ == "__armvcpu_policy__"
        ]  # fmt: skip
        if len(classes) > 1:
            names = ", ".join(c.__name__ for c in classes)
            raise UsageError(
                f"armvcpu run: {path} defines {len(classes)} Policy classes ({names}): choose "
                f"one with --policy {path}:{classes[0].__name__}, or set `policy = ...` in it"
            )
        if classes:
            policy = classes[0]
    if isinstance(policy, type) and issubclass(policy, Policy):
        policy = policy()
    if name is not None and not callable(policy):
        raise UsageError(
            f"armvcpu run: {path}'s {name} is not a Policy or a callable taking an exit"
        )
    if policy is None or not callable(policy):
        raise UsageError(
            f"armvcpu run: {path} defines no `policy` (a Policy or a callable taking an exit)"
        )
    return policy


def apply_policy(policy: Any, exit: Any) -> None:
    """Show ``exit`` to a user's policy (a Policy or any callable) and answer
    it with what the policy returned, unless the policy answered it itself."""
    from ..policy.policy import Policy

    value = policy(exit)
    if value is not None and not exit.resolved:
        Policy.answer(exit, value)
