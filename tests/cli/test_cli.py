"""CLI skeleton: help/version/info, exit codes, the single error boundary."""

import json
import os
import subprocess
import sys
import time

import typer

from export3d_cli import __version__
from export3d_cli.cli.app import command, run
from export3d_cli.errors import InputError

ENV = {**os.environ, "EXPORT3D_DEBUG": ""}


def _cli(*args, env=ENV):
    return subprocess.run(
        [sys.executable, "-m", "export3d_cli", *args], capture_output=True, text=True, env=env, timeout=120
    )


def test_help_is_fast_and_imports_no_torch():
    start = time.perf_counter()
    result = _cli("--help")
    assert result.returncode == 0 and "info" in result.stdout
    probe = subprocess.run(
        [sys.executable, "-c", "import sys; from export3d_cli.cli.app import app; print('torch' in sys.modules)"],
        capture_output=True,
        text=True,
    )
    assert probe.stdout.strip() == "False", "heavy imports belong inside commands"
    assert time.perf_counter() - start < 20


def test_version():
    result = _cli("--version")
    assert result.returncode == 0 and result.stdout.strip() == f"export3d {__version__}"


def test_info_json_lists_presets_with_parameter_counts():
    result = _cli("info", "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert set(data["presets"]) == {"paper-256", "small-128", "tiny"}
    paper = data["presets"]["paper-256"]
    parts = ("expression_encoder", "generator", "renderer", "superres")
    assert paper["parameters"] == sum(paper[k] for k in parts)
    assert paper["parameters"] > data["presets"]["small-128"]["parameters"] > data["presets"]["tiny"]["parameters"]
    assert data["device"]["kind"] in ("cpu", "cuda")
    assert data["weights_search_path"][-1]["origin"] == "bundled"


def test_info_text():
    result = _cli("info")
    assert result.returncode == 0 and "paper-256" in result.stdout and "default weights" in result.stdout


def test_unknown_command_and_option_exit_2():
    assert _cli("frobnicate").returncode == 2
    result = _cli("info", "--bogus")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == "Error: No such option: --bogus"
    assert "Traceback" not in result.stderr


def _failing_app(exc):
    test_app = typer.Typer()

    def boom() -> None:
        raise exc

    def ok() -> None:
        pass

    command(test_app, "boom")(boom)
    command(test_app, "ok")(ok)
    return test_app


def test_project_error_is_one_line_with_its_exit_code(capsys, monkeypatch):
    monkeypatch.delenv("EXPORT3D_DEBUG", raising=False)
    code = run(["boom"], _failing_app(InputError("photo.jpg: not an image")))
    err = capsys.readouterr().err
    assert code == 2 and err == "Error: photo.jpg: not an image\n"


def test_internal_error_exit_1_and_debug_traceback(capsys, monkeypatch):
    monkeypatch.delenv("EXPORT3D_DEBUG", raising=False)
    assert run(["boom"], _failing_app(RuntimeError("kaput"))) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and "kaput" in err and err.count("\n") == 1
    monkeypatch.setenv("EXPORT3D_DEBUG", "1")
    assert run(["boom"], _failing_app(RuntimeError("kaput"))) == 1
    assert "Traceback" in capsys.readouterr().err


def test_keyboard_interrupt_is_130(capsys):
    assert run(["boom"], _failing_app(KeyboardInterrupt())) == 130
    assert "interrupted" in capsys.readouterr().err
