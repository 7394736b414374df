"""The Typer app and its single error boundary.

Exit codes: 0 success, 1 runtime failure, 2 bad usage or bad input. A known
error prints one ``Error: ...`` line on stderr; ``EXPORT3D_DEBUG=1`` shows the
traceback too. Commands import torch and friends inside their bodies so that
``export3d --help`` stays instant.
"""

from __future__ import annotations

import functools
import os
import sys
import traceback
import warnings
from collections.abc import Callable
from typing import Annotated

import typer

from export3d_cli import __version__
from export3d_cli.errors import EXIT_FAILURE, EXIT_INTERRUPTED, Export3DError, Interrupted

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
    """Register a command whose Ctrl-C becomes exit 130 (click would turn it into exit 1)."""

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
    if _debug():
        traceback.print_exc()
    print(f"Error: {message}", file=sys.stderr)
    return code


def run(argv: list[str] | None = None, application: typer.Typer | None = None) -> int:
    """Run the CLI (``application`` defaults to ``app``) and return the exit code; never raises.

    Typer itself reports usage errors (exit 2) and help/version (exit 0) through SystemExit.
    """
    try:
        with warnings.catch_warnings():
            # Library warnings (numpy's RuntimeWarning, Pillow's metadata notes, ...) are not for the user: the
            # CLI says what matters in its own "Warning:" lines. EXPORT3D_DEBUG=1 shows them.
            if not _debug():
                warnings.simplefilter("ignore")
            (application or app)(args=argv, prog_name="export3d")
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else EXIT_FAILURE)
    except Export3DError as exc:
        return _fail(exc.message, exc.exit_code)
    except KeyboardInterrupt:
        return _fail("interrupted", EXIT_INTERRUPTED)
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        hint = "" if _debug() else " (set EXPORT3D_DEBUG=1 for the traceback)"
        return _fail(f"internal error: {type(exc).__name__}: {first}{hint}", EXIT_FAILURE)
    return 0


def main() -> None:
    sys.exit(run())
