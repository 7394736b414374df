"""The Typer app and its single error boundary.

Exit codes: 0 success, 1 runtime failure, 2 bad usage or bad input, 128 + the
signal number when interrupted (130 Ctrl-C, 143 SIGTERM, 129 SIGHUP; see
``export3d_cli.signals``). A known error prints one ``Error: ...`` line on
stderr; ``EXPORT3D_DEBUG=1`` shows the traceback too. A failed command removes
the output folders it created that are still empty. Commands import torch and
friends inside their bodies so that ``export3d --help`` stays instant.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
import traceback
import warnings
from collections.abc import Callable
from typing import Annotated

import typer

from export3d_cli import __version__, signals
from export3d_cli.allocator import keep_freed_memory
from export3d_cli.atomic import CreatedFolders
from export3d_cli.errors import EXIT_FAILURE, EXIT_INTERRUPTED, EXIT_OK, Export3DError, Interrupted

app = typer.Typer(
    name="export3d",
    help="Animate a single portrait photo in 3D (Export3D).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # Plain click errors: a usage error ends in one "Error: ..." line, like every other error.
    rich_markup_mode=None,
)


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"export3d {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version_callback, is_eager=True, help="Show the version and exit."),
    ] = False,
) -> None:
    """Animate a single portrait photo in 3D (Export3D)."""


def command(application: typer.Typer, name: str) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Register a command whose Ctrl-C (or SIGTERM, SIGHUP) becomes exit 128 + signal (click would make it 1)."""

    def decorate(function: Callable[..., None]) -> Callable[..., None]:
        @functools.wraps(function)
        def wrapper(*args: object, **kwargs: object) -> None:
            try:
                function(*args, **kwargs)
            except KeyboardInterrupt:
                raise Interrupted("interrupted") from None

        application.command(name=name)(wrapper)
        return function

    return decorate


def _register_commands() -> None:
    from export3d_cli.cli import (
        animate,
        evaluate,
        extract,
        info,
        novel_view,
        personalize,
        preprocess,
        score,
        sweep_basis,
        synth,
        train,
        train_clebs,
    )

    command(app, "animate")(animate.animate)
    command(app, "novel-view")(novel_view.novel_view)
    command(app, "sweep-basis")(sweep_basis.sweep_basis)
    command(app, "personalize")(personalize.personalize)
    command(app, "info")(info.info)
    command(app, "extract")(extract.extract)
    command(app, "preprocess")(preprocess.preprocess)
    command(app, "synth")(synth.synth)
    command(app, "train-clebs")(train_clebs.train_clebs)
    command(app, "train")(train.train)
    command(app, "evaluate")(evaluate.evaluate)
    command(app, "score")(score.score)


_register_commands()


def _debug() -> bool:
    return os.environ.get("EXPORT3D_DEBUG", "") not in ("", "0")


def _fail(message: str, code: int) -> int:
    # After SIGHUP the terminal may be gone; the exit code (and the cleanup after this) must not depend on stderr.
    with contextlib.suppress(OSError):
        if _debug():
            traceback.print_exc()
        print(f"Error: {message}", file=sys.stderr)
    return code


def _report(error: BaseException) -> int:
    """The ``Error:`` line and exit code for what ended a command."""
    terminated = signals.terminated_by()
    if terminated is not None:
        # Whatever the signal cut short ends as the interruption it is: an ffmpeg killed by the same signal (sent
        # to the whole process group) must not be reported as a failed encode.
        message = error.message if isinstance(error, Interrupted) else "interrupted"
        detail = message.removeprefix("interrupted") if message.startswith("interrupted") else f": {message}"
        return _fail(f"interrupted by {terminated.name}{detail}", 128 + terminated)
    if isinstance(error, Export3DError):
        return _fail(error.message, error.exit_code)
    if isinstance(error, KeyboardInterrupt):
        return _fail("interrupted", EXIT_INTERRUPTED)
    first = str(error).strip().splitlines()[0] if str(error).strip() else ""
    hint = "" if _debug() else " (set EXPORT3D_DEBUG=1 for the traceback)"
    return _fail(f"internal error: {type(error).__name__}: {first}{hint}", EXIT_FAILURE)


def run(argv: list[str] | None = None, application: typer.Typer | None = None) -> int:
    """Run the CLI (``application`` defaults to ``app``) and return the exit code; never raises.

    Typer itself reports usage errors (exit 2) and help/version (exit 0) through SystemExit.
    """
    with CreatedFolders() as created:
        code = _run(argv, application or app)
        if code != EXIT_OK:
            created.remove_empty()
    return code


def _run(argv: list[str] | None, application: typer.Typer) -> int:
    try:
        with signals.termination_raises(), warnings.catch_warnings():
            # Library warnings (numpy's RuntimeWarning, Pillow's metadata notes, ...) are not for the user: the
            # CLI says what matters in its own "Warning:" lines. EXPORT3D_DEBUG=1 shows them.
            if not _debug():
                warnings.simplefilter("ignore")
            application(args=argv, prog_name="export3d")
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (EXIT_OK if exc.code is None else EXIT_FAILURE)
        terminated = signals.terminated_by()
        # A signal outside a command's body (click reported "Aborted!"): the exit code still says which.
        return 128 + terminated if terminated is not None and code != EXIT_OK else code
    except (Exception, KeyboardInterrupt) as exc:
        return _report(exc)
    return EXIT_OK


def main() -> None:
    keep_freed_memory()  # the command-line program only: a library user's process keeps its own allocator settings
    sys.exit(run())
