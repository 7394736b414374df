"""Reliability of the real ``export3d`` process: SIGTERM and SIGHUP end a command the way Ctrl-C does (temporary
files removed, ffmpeg killed, training checkpointed, one ``Error:`` line, exit 128 + the signal number); a failed
command removes the output folders it created; an output that is not a regular file path is refused up front;
a face landmarker never prints a traceback at interpreter exit.

The signal tests start ``python -m export3d_cli`` and signal it once its hidden temporary file exists (rendering
or training is then under way): a tiny random model renders the example driver's 100 frames, which takes seconds.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from cli_support import assert_one_clean_error, invoke
from model_support import saved_tiny_weights

from export3d_cli.atomic import CreatedFolders, make_folders, prepare_output_file
from export3d_cli.errors import UsageError
from export3d_cli.face.landmarker import FaceLandmarker

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
SOURCE = EXAMPLES / "source.png"
DRIVER = EXAMPLES / "driving.mp4"
ENV = {**os.environ, "EXPORT3D_DEBUG": "", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
STARTUP_TIMEOUT = 240.0  # until the temporary file appears: torch import, driver analysis (on a busy machine)
EXIT_TIMEOUT = 60.0  # from the signal to the process's exit


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    return saved_tiny_weights(tmp_path_factory.mktemp("weights-tiny"))


def start(*args: object) -> subprocess.Popen[str]:
    command = [sys.executable, "-m", "export3d_cli", *(str(arg) for arg in args)]
    return subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV, preexec_fn=default_signals
    )


def default_signals() -> None:
    """The child starts with the default signal dispositions, as from a terminal: a test run started in the
    background (SIGINT ignored) or under nohup (SIGHUP ignored) would otherwise pass that on, and the CLI keeps
    ignoring a signal that was ignored when it started, as it should."""
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, signal.SIG_DFL)


def wait_for(process: subprocess.Popen[str], found: Callable[[], bool]) -> None:
    """Poll until ``found()`` is true; fail (with the process's output) if it exits or takes too long first."""
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while not found():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            out, err = process.communicate()
            pytest.fail(f"never got there (exit {process.returncode}):\n{out}\n{err}")
        time.sleep(0.02)


def finish(process: subprocess.Popen[str]) -> tuple[int, str]:
    try:
        _, err = process.communicate(timeout=EXIT_TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        _, err = process.communicate()
        pytest.fail(f"still running {EXIT_TIMEOUT} s after the signal:\n{err}")
    return process.returncode, err


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("Error:")]


def hidden(folder: Path) -> list[Path]:
    return [path for path in folder.iterdir() if path.name.startswith(".")] if folder.is_dir() else []


def processes_naming(text: str) -> list[str]:
    """Command lines of live processes that mention ``text`` (an ffmpeg still writing a temporary file)."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            line = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in line:
            found.append(line)
    return found


# ------------------------------------------------------------------------------------------------------ signals


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_a_signal_mid_render_leaves_nothing_and_says_so_once(signum, weights, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    process = start("animate", SOURCE, DRIVER, "--weights", weights, "--device", "cpu", "-o", out / "result.mp4", "-q")
    wait_for(process, lambda: any(path.name.endswith(".video.tmp") for path in hidden(out)))
    [temporary] = [path.name for path in hidden(out) if path.name.endswith(".video.tmp")]
    process.send_signal(signum)
    code, err = finish(process)

    assert code == 128 + signum, err
    assert error_lines(err) == [f"Error: interrupted by {signum.name}"], err
    assert "Traceback" not in err and "Aborted" not in err
    assert sorted(path.name for path in out.iterdir()) == []  # neither a temporary file nor an output
    assert processes_naming(temporary) == []  # the ffmpeg that wrote it is gone too


@pytest.fixture(scope="module")
def synth_dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("synth") / "data"
    done = subprocess.run(
        [sys.executable, "-m", "export3d_cli", "synth", "-o", str(root), "--identities", "3",
         "--clips-per-identity", "1", "--frames", "4", "--resolution", "128", "--test-fraction", "0.5", "-q"],
        capture_output=True, text=True, env=ENV, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return root


@pytest.mark.slow
def test_sigterm_during_training_finishes_the_step_and_saves_a_checkpoint(synth_dataset, tmp_path):
    run_dir = tmp_path / "run"
    process = start("train-clebs", synth_dataset, "-o", run_dir, "--preset", "tiny", "--steps", 1_000_000, "-q")
    wait_for(process, lambda: (run_dir / "log.jsonl").is_file())  # a logged step: the loop is running
    process.send_signal(signal.SIGTERM)
    code, err = finish(process)

    assert code == 143, err
    [line] = error_lines(err)
    assert line.startswith("Error: interrupted by SIGTERM at step ") and line.endswith(f"checkpoint saved in {run_dir}")
    step = int(line.removeprefix("Error: interrupted by SIGTERM at step ").split(";")[0])
    state = json.loads((run_dir / "checkpoint" / "state.json").read_text())
    assert state["step"] == step >= 10
    assert hidden(run_dir) == []  # no half-written checkpoint


# ------------------------------------------------------------------------------------- output folders on failure


def copies(folder: Path, *names: str) -> list[Path]:
    folder.mkdir(exist_ok=True)
    return [Path(shutil.copy(SOURCE, folder / name)) for name in names]


def test_a_failed_batch_removes_the_output_folder_it_created(tmp_path):
    sources = copies(tmp_path / "in", "a.png", "b.png")
    result = invoke("animate", *sources, DRIVER, "--weights", tmp_path / "no-weights", "-o", tmp_path / "newdir")
    assert_one_clean_error(result, names="no-weights")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["in"]


def test_a_failed_run_removes_every_output_folder_level_it_created(tmp_path):
    result = invoke("animate", SOURCE, DRIVER, "--weights", tmp_path / "no-weights", "-o", tmp_path / "new/sub/o.mp4")
    assert_one_clean_error(result, names="no-weights")
    assert list(tmp_path.iterdir()) == []


def test_a_failed_run_keeps_an_output_folder_that_existed_before(tmp_path):
    (tmp_path / "old").mkdir()
    result = invoke("animate", SOURCE, DRIVER, "--weights", tmp_path / "no-weights", "-o", tmp_path / "old/new/o.mp4")
    assert_one_clean_error(result, names="no-weights")
    assert [path.name for path in tmp_path.iterdir()] == ["old"] and list((tmp_path / "old").iterdir()) == []


def test_only_created_folders_that_are_still_empty_are_removed(tmp_path):
    (tmp_path / "old").mkdir()
    with CreatedFolders() as created:
        make_folders(tmp_path / "old/kept/empty")
        make_folders(tmp_path / "old/kept/full")
        (tmp_path / "old/kept/full/result.mp4").write_bytes(b"x")
        created.remove_empty()
    assert sorted(str(path.relative_to(tmp_path)) for path in tmp_path.rglob("*")) == [
        "old",
        "old/kept",
        "old/kept/full",
        "old/kept/full/result.mp4",
    ]


def test_folders_made_outside_a_scope_are_not_recorded(tmp_path):
    with CreatedFolders() as created:
        pass
    make_folders(tmp_path / "later")
    created.remove_empty()
    assert (tmp_path / "later").is_dir()


# ------------------------------------------------------------------------------------ outputs that are not files


def test_one_source_with_a_device_as_output_is_refused_clearly():
    result = invoke("animate", SOURCE, DRIVER, "-o", "/dev/full")
    assert_one_clean_error(result, names="/dev/full")
    assert "several sources" not in result.err
    assert "not a regular file" in result.err


def test_a_device_is_not_an_output_file_path():
    with pytest.raises(UsageError, match="/dev/full: is not a regular file"):
        prepare_output_file("/dev/full")


def test_a_named_pipe_as_output_is_refused_before_any_work(tmp_path):
    pipe = tmp_path / "out.mp4"
    os.mkfifo(pipe)
    result = invoke("animate", SOURCE, DRIVER, "--weights", tmp_path / "no-weights", "-o", pipe)
    assert_one_clean_error(result, names=str(pipe))
    assert "not a regular file" in result.err
    assert pipe.is_fifo()


# ---------------------------------------------------------------------------------------------- face landmarker


def test_an_unclosed_landmarker_prints_nothing_at_interpreter_exit():
    script = "from export3d_cli.face.landmarker import FaceLandmarker\nkeep = FaceLandmarker('image')\n"
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=ENV, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "Exception ignored" not in done.stderr and "Traceback" not in done.stderr, done.stderr


@pytest.fixture
def python_ctrl_c():
    """Python's own Ctrl-C handler, whatever the test run inherited (a background job starts with SIGINT ignored)."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def test_ctrl_c_during_close_waits_until_the_landmarker_is_closed(python_ctrl_c):
    landmarker = FaceLandmarker("image")
    inner = landmarker._landmarker
    close = inner.close

    def interrupted_close() -> None:
        os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C while MediaPipe waits for its worker thread
        close()

    inner.close = interrupted_close
    try:
        with pytest.raises(KeyboardInterrupt):
            landmarker.close()
        assert inner._handle is None  # closed for good: MediaPipe's __del__ has nothing left to do at exit
    finally:
        close()
