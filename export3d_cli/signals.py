"""SIGTERM and SIGHUP end a command the way Ctrl-C does.

Ctrl-C raises ``KeyboardInterrupt``, and every cleanup path handles it: ``finally`` blocks and context managers
remove temporary files (:mod:`export3d_cli.atomic`), the video writer kills ffmpeg, training saves a checkpoint.
``timeout``, ``docker stop`` and systemd send SIGTERM and a closed terminal sends SIGHUP; by default those kill
the process on the spot and leave the temporary files behind. Inside :func:`termination_raises` they raise
:class:`Terminated`, a ``KeyboardInterrupt``, so they take the same path; the CLI then exits with 128 + the signal
number (143, 129), as a shell reports a process killed by it (Ctrl-C: 130).

Only the first termination signal raises. A repeat (a closed terminal can deliver SIGHUP twice: from the kernel
and from the shell) is ignored so that it cannot cut the cleanup short; SIGKILL still stops at once. A signal
that is ignored when the block starts (``nohup``, a background job) stays ignored.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator
from types import FrameType

__all__ = [
    "INTERRUPTION_SIGNALS",
    "TERMINATION_SIGNALS",
    "Terminated",
    "handled",
    "interruption",
    "interruptions_held",
    "note",
    "terminated_by",
    "termination_raises",
]

TERMINATION_SIGNALS = (signal.SIGTERM, signal.SIGHUP)
INTERRUPTION_SIGNALS = (signal.SIGINT, *TERMINATION_SIGNALS)

Handler = Callable[[int, FrameType | None], None]

_terminated_by: signal.Signals | None = None


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP, raised like Ctrl-C's ``KeyboardInterrupt``; ``signum`` says which."""

    def __init__(self, signum: int) -> None:
        self.signum = signal.Signals(signum)
        super().__init__(f"interrupted by {self.signum.name}")


def interruption(signum: int) -> KeyboardInterrupt:
    """The exception an interruption signal raises: ``KeyboardInterrupt`` for SIGINT, else :class:`Terminated`."""
    return KeyboardInterrupt() if signum == signal.SIGINT else Terminated(signum)


def terminated_by() -> signal.Signals | None:
    """The first SIGTERM or SIGHUP since the last :func:`termination_raises` began (None if none came)."""
    return _terminated_by


def note(signum: int) -> bool:
    """Remember a signal for :func:`terminated_by`; True if it is the first termination signal."""
    global _terminated_by
    if signum not in TERMINATION_SIGNALS or _terminated_by is not None:
        return False
    _terminated_by = signal.Signals(signum)
    return True


@contextlib.contextmanager
def handled(signums: tuple[signal.Signals, ...], handler: Handler) -> Iterator[None]:
    """Route ``signums`` to ``handler`` inside the block, then restore the handlers that were there before.

    A no-op outside the main thread (only it may install handlers, and only it runs them); signals that are
    ignored, or whose handler Python did not install, are left alone.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {signum: signal.getsignal(signum) for signum in signums}
    taken = {signum: old for signum, old in previous.items() if old is not None and old != signal.SIG_IGN}
    for signum in taken:
        signal.signal(signum, handler)
    try:
        yield
    finally:
        for signum, old in taken.items():
            signal.signal(signum, old)


@contextlib.contextmanager
def termination_raises() -> Iterator[None]:
    """SIGTERM and SIGHUP raise :class:`Terminated` inside the block (the first one only; see the module docstring)."""
    global _terminated_by
    _terminated_by = None

    def raise_first(signum: int, frame: FrameType | None) -> None:
        if note(signum):
            raise Terminated(signum)

    with handled(TERMINATION_SIGNALS, raise_first):
        yield


@contextlib.contextmanager
def interruptions_held() -> Iterator[None]:
    """Hold SIGINT, SIGTERM and SIGHUP until the block is done, so that a cleanup is never cut in half; the first
    one that came is then sent again, to the handler that was there before (which raises, or ends the process)."""
    pending: list[int] = []

    def hold(signum: int, frame: FrameType | None) -> None:
        pending.append(signum)

    try:
        with handled(INTERRUPTION_SIGNALS, hold):
            yield
    finally:
        if pending:
            signal.raise_signal(pending[0])
