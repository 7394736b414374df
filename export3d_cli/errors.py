"""Project exceptions: each carries the exit code and a message a user can act on.

The CLI's single error boundary (``export3d_cli.cli.app.main``) turns these into
one ``Error: ...`` line on stderr and the exit code; anything else is an
internal failure (exit 1). ``EXPORT3D_DEBUG=1`` shows the traceback.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class Export3DError(Exception):
    """Base class of every error the project raises on purpose."""

    exit_code: int = EXIT_FAILURE

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class UsageError(Export3DError):
    """A bad option value or combination (exit 2)."""

    exit_code = EXIT_USAGE


class InputError(Export3DError):
    """A user-supplied file that cannot be used (exit 2)."""

    exit_code = EXIT_USAGE


class WeightsError(InputError):
    """Model weights that are missing, corrupt, mismatched or unreachable (exit 2)."""


class OutputError(Export3DError):
    """An output that cannot be written where the user asked: a full disk, a quota, a read-only file system (exit 2:
    the user has to free space or choose another place; nothing was written)."""

    exit_code = EXIT_USAGE


class Interrupted(Export3DError):
    """Ctrl-C (exit 130); partial outputs are never left under their target names."""

    exit_code = EXIT_INTERRUPTED
