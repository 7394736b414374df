"""The Typer app and its single error boundary.

Exit codes: 0 success, 1 runtime failure, 2 bad usage or bad input. A known
error prints one ``Error: ...`` line on stderr; ``EXPORT3D_DEBUG=1`` shows the
traceback too. Commands import torch and friends inside their bodies so that
``export3d --help`` stays instant.
"""

from __future__ import annotations

import os
import sys
import traceback
from typing import Annotated

import click
import typer

from export3d_cli import __version__
from export3d_cli.errors import EXIT_FAILURE, EXIT_USAGE, Export3DError

app = typer.Typer(
    name="export3d",
    help="Animate a single portrait photo in 3D (Export3D).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
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


def _register_commands() -> None:
    from export3d_cli.cli import info

    app.command(name="info")(info.info)


_register_commands()


def _debug() -> bool:
    return os.environ.get("EXPORT3D_DEBUG", "") not in ("", "0")


def _fail(message: str, code: int) -> int:
    if _debug():
        traceback.print_exc()
    print(f"Error: {message}", file=sys.stderr)
    return code


def run(argv: list[str] | None = None) -> int:
    """Run the CLI and return the exit code (never raises)."""
    command = typer.main.get_command(app)
    try:
        result = command.main(args=argv, prog_name="export3d", standalone_mode=False)
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.exceptions.Abort:
        return _fail("interrupted", 130)
    except click.ClickException as exc:
        if _debug():
            traceback.print_exc()
        exc.show()
        return exc.exit_code if exc.exit_code else EXIT_USAGE
    except Export3DError as exc:
        return _fail(exc.message, exc.exit_code)
    except KeyboardInterrupt:
        return _fail("interrupted", 130)
    except BrokenPipeError:
        return EXIT_FAILURE
    except Exception as exc:  # noqa: BLE001 - the one place that turns surprises into exit 1
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        hint = "" if _debug() else " (set EXPORT3D_DEBUG=1 for the traceback)"
        return _fail(f"internal error: {type(exc).__name__}: {first}{hint}", EXIT_FAILURE)
    return result if isinstance(result, int) else 0


def main() -> None:
    sys.exit(run())
