"""The host's wait for the shared-memory exit record (``_core.mailbox_wait*``):
it sees a word change whether the change comes while it spins or while it
sleeps, gives up at its timeout, and its spin-then-sleep policy is settable
with clear errors for values it cannot use. Nothing here depends on timing:
the store comes from another thread, which the wait must see in any case.
"""

from __future__ import annotations

import threading

import pytest
from armvcpu import _core


@pytest.fixture
def policy():
    """The process's wait policy, restored after the test."""
    saved = _core.mailbox_wait_policy()
    yield
    _core.mailbox_wait_policy(*saved)


def _store_later(
    buf: bytearray, offset: int, value: int, after: threading.Event
) -> threading.Thread:
    def store() -> None:
        after.wait()
        _core.mailbox_store(buf, offset, value)

    thread = threading.Thread(target=store)
    thread.start()
    return thread


@pytest.mark.parametrize("spin_us", [0.0, 1e6], ids=["sleeping", "spinning"])
def test_a_store_from_another_thread_ends_the_wait(spin_us, policy):
    _core.mailbox_wait_policy(spin_us=spin_us, first_sleep_us=10, max_sleep_us=1000)
    buf = bytearray(32)
    go = threading.Event()
    thread = _store_later(buf, 8, 7, go)
    go.set()
    assert _core.mailbox_wait(buf, 8, 0, 60.0) == 7
    thread.join()


def test_wait_any_names_the_word_that_changed(policy):
    _core.mailbox_wait_policy(spin_us=0)
    buf = bytearray(32)
    go = threading.Event()
    thread = _store_later(buf, 16, 5, go)
    go.set()
    assert _core.mailbox_wait_any(buf, [0, 8, 16], [0, 0, 0], 60.0) == (2, 5)
    thread.join()


def test_a_wait_without_a_change_ends_at_its_timeout(policy):
    buf = bytearray(16)
    assert _core.mailbox_wait(buf, 0, 0, 0.01) == 0
    assert _core.mailbox_wait_any(buf, [0, 8], [0, 0], 0.01) is None


def test_the_policy_sets_what_is_given_and_returns_all_three(policy):
    assert _core.mailbox_wait_policy(spin_us=20, first_sleep_us=5, max_sleep_us=500) == (
        20.0, 5.0, 500.0)  # fmt: skip
    assert _core.mailbox_wait_policy(max_sleep_us=2000) == (20.0, 5.0, 2000.0)
    assert _core.mailbox_wait_policy() == (20.0, 5.0, 2000.0)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"spin_us": -1}, "wait policy times are 0 to 1e6 us"),
        ({"max_sleep_us": 2e6}, "wait policy times are 0 to 1e6 us"),
        ({"spin_us": float("nan")}, "wait policy times are 0 to 1e6 us"),
        ({"first_sleep_us": 0}, "the first sleep must be above 0 and at most the cap"),
        ({"first_sleep_us": 50, "max_sleep_us": 10}, "at most the cap"),
    ],
)
def test_a_policy_it_cannot_use_is_refused_and_changes_nothing(kwargs, message, policy):
    before = _core.mailbox_wait_policy()
    with pytest.raises(ValueError, match=message):
        _core.mailbox_wait_policy(**kwargs)
    assert _core.mailbox_wait_policy() == before


def test_with_a_doorbell_the_wait_sleeps_flagged_and_wakes_on_the_ring(policy):
    """While it sleeps on the doorbell the sleeping word is 1 (what the
    firmware reads before it rings); a ring with the store ends the wait, and
    the word is 0 again after it."""
    import socket

    _core.mailbox_wait_policy(spin_us=0)
    buf = bytearray(32)
    ours, theirs = socket.socketpair()
    with ours, theirs:

        def firmware() -> None:
            while _core.mailbox_wait(buf, 16, 0, 0.0) == 0:  # the host says it sleeps
                pass
            _core.mailbox_store(buf, 8, 3)  # publish seq, then ring
            theirs.send(b"!")

        thread = threading.Thread(target=firmware)
        thread.start()
        assert _core.mailbox_wait(buf, 8, 0, 60.0, ours.fileno(), 16) == 3
        thread.join()
        assert int.from_bytes(buf[16:24], "little") == 0
        ours.setblocking(False)
        with pytest.raises(BlockingIOError):
            ours.recv(1)  # the ring was drained


def test_a_closed_doorbell_falls_back_to_timed_sleeps(policy):
    import socket

    _core.mailbox_wait_policy(spin_us=0)
    buf = bytearray(32)
    ours, theirs = socket.socketpair()
    theirs.close()  # QEMU gone: end of file at once
    with ours:
        go = threading.Event()
        thread = _store_later(buf, 8, 9, go)
        go.set()
        assert _core.mailbox_wait_any(buf, [8], [0], 60.0, ours.fileno(), 16) == (0, 9)
        thread.join()


def test_a_doorbell_without_its_sleeping_word_is_refused():
    with pytest.raises(ValueError, match="a doorbell fd needs the offset of the sleeping word"):
        _core.mailbox_wait(bytearray(16), 0, 0, 0.01, 5)
    with pytest.raises(ValueError, match="unaligned or outside the buffer"):
        _core.mailbox_wait(bytearray(16), 0, 0, 0.01, 5, 16)
