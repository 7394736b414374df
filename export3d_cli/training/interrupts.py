"""Ctrl-C during training: finish the current step, then stop with a checkpoint.

The first SIGINT only sets a flag that the training loop checks between steps,
so the saved checkpoint is exactly the state after a whole step (weights,
optimiser and RNGs agree) and resuming repeats the uninterrupted run. A second
Ctrl-C interrupts at once.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator


class StopRequest:
    def __init__(self) -> None:
        self.requested = False


@contextlib.contextmanager
def deferred_interrupt() -> Iterator[StopRequest]:
    request = StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield request  # signal handlers can only be installed from the main thread
        return
    previous = signal.getsignal(signal.SIGINT)

    def handler(signum, frame) -> None:
        if request.requested:
            raise KeyboardInterrupt
        request.requested = True

    signal.signal(signal.SIGINT, handler)
    try:
        yield request
    finally:
        signal.signal(signal.SIGINT, previous)
