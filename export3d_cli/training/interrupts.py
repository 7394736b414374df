"""Ctrl-C, SIGTERM or SIGHUP during training: finish the current step, then stop with a checkpoint.

The first signal only sets a flag that the training loop checks between steps, so the saved checkpoint is
exactly the state after a whole step (weights, optimiser and RNGs agree) and resuming repeats the uninterrupted
run; ``docker stop`` or systemd (SIGTERM) and a closed terminal (SIGHUP) get the same checkpoint as Ctrl-C. A
second signal interrupts at once (the loop then rewinds to the step's start and saves).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from types import FrameType

from export3d_cli import signals


class StopRequest:
    def __init__(self) -> None:
        self.requested = False


@contextlib.contextmanager
def deferred_interrupt() -> Iterator[StopRequest]:
    request = StopRequest()

    def handler(signum: int, frame: FrameType | None) -> None:
        signals.note(signum)  # the CLI's exit code and message say which signal stopped the run
        if request.requested:
            raise signals.interruption(signum)
        request.requested = True

    with signals.handled(signals.INTERRUPTION_SIGNALS, handler):
        yield request
