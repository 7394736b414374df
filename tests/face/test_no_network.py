"""The face pipeline sends nothing off the machine: no connection, no DNS query (issue "Reliability").

MediaPipe's wheel uploads usage metrics to play.googleapis.com from its native library (see
export3d_cli/face/offline.py). The pipeline runs in a subprocess under ``strace -f``; any connect()/send to an
internet address, to port 53, or to a local resolver's Unix socket (which would query DNS for us) fails the test.
"""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from export3d_cli.face.offline import _install_socket_filter, run_offline

PHOTO = Path(__file__).resolve().parents[1] / "data" / "real_faces" / "obama_2012_portrait.jpg"
TRACED_CALLS = "connect,sendto,sendmsg,sendmmsg"
# An internet address (AF_INET/AF_INET6 covers DNS to any server, port 53 included) or a resolver daemon's socket.
LEAK = re.compile(r"sa_family=AF_INET6?\b|htons\(53\)|sun_path=\"[^\"]*(nscd|resolve|avahi)")

PIPELINE = """
import sys
from export3d_cli.face.landmarker import FaceLandmarker
from export3d_cli.media.image_io import load_image
if sys.argv[2] == "fallback":  # as on a system without seccomp: only the libcurl proxy fallback is left
    import export3d_cli.face.offline as offline
    def refuse() -> None:
        raise OSError(38, "seccomp unavailable (test)")
    offline._install_socket_filter = refuse
with FaceLandmarker("image") as landmarker:
    faces = landmarker.detect(load_image(sys.argv[1]))
print("faces", len(faces))
"""


def _require_strace() -> str:
    strace = shutil.which("strace")
    if strace is None:
        pytest.skip("strace is not installed")
    probe = subprocess.run([strace, "-f", "-o", "/dev/null", "true"], capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip(f"strace cannot trace here (ptrace not permitted?): {probe.stderr.strip()[:200]}")
    return strace


def _traced_pipeline(tmp_path: Path, mode: str) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    """Run the landmarker on PHOTO under strace; return the run and the traced network calls."""
    trace = tmp_path / "trace.txt"
    command = [_require_strace(), "-f", "-qq", "-e", f"trace={TRACED_CALLS}", "-o", str(trace)]
    command += [sys.executable, "-c", PIPELINE, str(PHOTO), mode]
    run = subprocess.run(command, capture_output=True, text=True, timeout=300)
    return run, trace.read_text().splitlines()


def _seccomp_available() -> bool:
    outcome: list[bool] = []

    def probe() -> None:
        try:
            _install_socket_filter()
            outcome.append(True)
        except OSError:
            outcome.append(False)

    thread = threading.Thread(target=probe)
    thread.start()
    thread.join()
    return outcome[0]


@pytest.mark.parametrize("mode", ["seccomp", "fallback"])
def test_face_pipeline_sends_nothing(tmp_path: Path, mode: str) -> None:
    run, calls = _traced_pipeline(tmp_path, mode)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "faces 1" in run.stdout  # MediaPipe still ran and found the face
    leaks = [call for call in calls if LEAK.search(call)]
    assert not leaks, "network or DNS attempted:\n" + "\n".join(leak[:300] for leak in leaks)


def test_run_offline_denies_sockets_to_its_threads_only() -> None:
    if not _seccomp_available():
        pytest.skip("seccomp filters cannot be installed here")
    with pytest.raises(PermissionError):
        run_offline(_open_socket)
    assert run_offline(_errors_on_child_thread) == [PermissionError]
    _open_socket()  # the calling thread keeps its network


def test_run_offline_returns_the_value_or_raises_the_error() -> None:
    assert run_offline(lambda: 42) == 42
    with pytest.raises(ZeroDivisionError):
        run_offline(lambda: 1 / 0)


def _open_socket() -> None:
    socket.socket(socket.AF_INET, socket.SOCK_DGRAM).close()


def _errors_on_child_thread() -> list[type[BaseException]]:
    """Error types raised by _open_socket on a thread started from the calling one."""
    errors: list[type[BaseException]] = []

    def attempt() -> None:
        try:
            _open_socket()
        except OSError as error:
            errors.append(type(error))

    child = threading.Thread(target=attempt)
    child.start()
    child.join()
    return errors
