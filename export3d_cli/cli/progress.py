"""Progress on stderr: rich, transient, and silent when stderr is not a terminal or with ``--quiet``."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator


class Progress:
    """A single task's progress; ``update(done, total)`` may be called from any loop."""

    def __init__(self, bar, task_id) -> None:
        self._bar = bar
        self._task_id = task_id

    def update(self, done: int, total: int | None = None) -> None:
        if self._bar is not None:
            self._bar.update(self._task_id, completed=done, total=total)

    def describe(self, description: str) -> None:
        if self._bar is not None:
            self._bar.update(self._task_id, description=description)

    def stage(self, description: str, total: int | None = None) -> None:
        """Start the next stage on this bar: progress back to 0 of ``total`` (None: no total yet, a pulse).

        A reset, not just a new total: rich estimates the time left from the recent rate, and a bar that went from
        "analysed 100 of 100" to "rendered 0 of 100" kept an ETA of 0:00:00 for the whole render.
        """
        if self._bar is not None:
            self._bar.reset(self._task_id, total=total, completed=0, description=description)


def progress_enabled(quiet: bool) -> bool:
    return not quiet and sys.stderr.isatty()


@contextlib.contextmanager
def progress(description: str, *, quiet: bool, unit: str = "frames") -> Iterator[Progress]:
    """Yield a Progress; nothing is drawn (and rich is not imported) when it is disabled."""
    if not progress_enabled(quiet):
        yield Progress(None, None)
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, TaskProgressColumn, TextColumn, TimeRemainingColumn
    from rich.progress import Progress as RichProgress

    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn(unit),
        TaskProgressColumn(show_speed=True),
        TimeRemainingColumn(),
    )
    with RichProgress(*columns, console=Console(stderr=True), transient=True) as bar:
        yield Progress(bar, bar.add_task(description, total=None))


def warn(message: str) -> None:
    """A one-line warning on stderr (not an error: the command goes on)."""
    print(f"Warning: {message}", file=sys.stderr)
