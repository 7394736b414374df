"""Helpers shared by the CLI tests (on sys.path through pytest's ``pythonpath``; not a test module)."""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass

import pytest

from export3d_cli.cli.app import run


@dataclass(frozen=True)
class CliResult:
    code: int
    out: str
    err: str

    @property
    def error_lines(self) -> list[str]:
        return [line for line in self.err.splitlines() if line.startswith("Error:")]


def invoke(*args: object) -> CliResult:
    """Run the CLI in-process with ``args`` and capture what it prints."""
    out, err = io.StringIO(), io.StringIO()
    with pytest.MonkeyPatch.context() as patch, contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        patch.delenv("EXPORT3D_DEBUG", raising=False)
        code = run([str(arg) for arg in args])
    return CliResult(code, out.getvalue(), err.getvalue())


def assert_one_clean_error(result: CliResult, *, names: str) -> None:
    """Exit 2, exactly one ``Error:`` line, naming ``names``, and no traceback."""
    assert result.code == 2, result
    assert len(result.error_lines) == 1, result.err
    assert names in result.error_lines[0], result.err
    assert "Traceback" not in result.err
    assert "internal error" not in result.err
