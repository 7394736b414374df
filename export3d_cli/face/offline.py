"""Run MediaPipe with no way to reach the network.

Why: the PyPI wheel of MediaPipe Tasks (checked: mediapipe 1.2.3, ``mediapipe/tasks/c/libmediapipe.so``)
uploads usage metrics. Every task's ``TaskRunner::Create`` calls ``logging::CreateTasksLogger``, which
in this build unconditionally makes a ``google_internal::TasksStatsProtoLogger`` over
``HttpLoggingClient`` → ``HttpAsyncClient`` → ``CurlClient`` (libcurl is linked into the .so), posting
to ``https://play.googleapis.com/log``. strace shows its worker thread look that host up (the nscd
socket, then a UDP query to port 53) for every landmarker created. Nothing turns it off: no field in
``BaseOptions``/``MpBaseOptions``, no environment variable, no exported C function. The open-source
``logging_factory.cc`` returns a do-nothing ``TasksDummyLogger``; the wheel is built with Google's
internal logger instead (upstream google-ai-edge/mediapipe#6291, "Mediapipe now includes undocumented
telemetry": the same uploads since about 0.10.35, no opt-out given).

So MediaPipe runs behind a seccomp filter: ``run_offline`` calls a function on a fresh thread on which
``socket()`` fails with EACCES. A seccomp filter holds for its thread and the threads that thread
starts. MediaPipe's Python API makes every C call of a task (create, detect, close) on one dispatcher
thread (``mediapipe/tasks/python/core/serial_dispatcher.py``) that it starts on the first call, so
creating the task inside ``run_offline`` covers that thread and every native thread started from it
(graph executors, the metrics uploader), and nothing else: the rest of the process keeps its network
(an explicit ``--weights`` hub download, say). Every socket family is refused, not just AF_INET/6,
because nscd, systemd-resolved and avahi answer on Unix sockets and would query DNS on MediaPipe's
behalf. CPU inference opens no socket; ``CurlClient`` takes the refusal as a failed upload and stops
posting.

Where seccomp is unavailable (not Linux, another CPU, a kernel or sandbox that refuses filters),
libcurl is handed an unusable proxy instead (``_give_curl_unusable_proxy``), which fails the upload
before any name is looked up.
"""

from __future__ import annotations

import ctypes
import errno
import functools
import os
import platform
import struct
import threading
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

# <linux/prctl.h>, <linux/seccomp.h>, <linux/filter.h>, <linux/audit.h>
_PR_SET_SECCOMP = 22
_PR_SET_NO_NEW_PRIVS = 38
_SECCOMP_MODE_FILTER = 2
_SECCOMP_RET_ALLOW = 0x7FFF0000
_SECCOMP_RET_ERRNO = 0x00050000
_BPF_LD_W_ABS = 0x20
_BPF_JMP_JEQ_K = 0x15
_BPF_JMP_JGE_K = 0x35
_BPF_RET_K = 0x06
_SECCOMP_DATA_NR = 0  # offsetof(struct seccomp_data, nr)
_SECCOMP_DATA_ARCH = 4  # offsetof(struct seccomp_data, arch)
_X32_SYSCALL_BIT = 0x40000000

# machine → (AUDIT_ARCH_*, __NR_socket, __NR_io_uring_setup); io_uring can open sockets without socket().
_SYSCALLS: dict[str, tuple[int, int, int]] = {
    "x86_64": (0xC000003E, 41, 425),
    "aarch64": (0xC00000B7, 198, 425),
}

# Any scheme libcurl does not know fails the request while parsing the proxy, before name resolution.
_UNUSABLE_PROXY = "offline-no-proxy://"


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def _socket_filter(machine: str) -> bytes:
    """Classic-BPF seccomp program: deny socket() and io_uring_setup(), and any foreign-ABI syscall."""
    audit_arch, nr_socket, nr_io_uring_setup = _SYSCALLS[machine]
    deny = _SECCOMP_RET_ERRNO | errno.EACCES
    # (code, jump-if-true, jump-if-false, k); jumps skip that many instructions; index 7 is "deny".
    program = [
        (_BPF_LD_W_ABS, 0, 0, _SECCOMP_DATA_ARCH),
        (_BPF_JMP_JEQ_K, 0, 5, audit_arch),  # i386 (int 0x80) or other ABIs
        (_BPF_LD_W_ABS, 0, 0, _SECCOMP_DATA_NR),
        (_BPF_JMP_JGE_K, 3, 0, _X32_SYSCALL_BIT),  # x86_64's x32 ABI numbers
        (_BPF_JMP_JEQ_K, 2, 0, nr_socket),
        (_BPF_JMP_JEQ_K, 1, 0, nr_io_uring_setup),
        (_BPF_RET_K, 0, 0, _SECCOMP_RET_ALLOW),
        (_BPF_RET_K, 0, 0, deny),
    ]
    return b"".join(struct.pack("=HBBI", *instruction) for instruction in program)


def _install_socket_filter() -> None:
    """Forbid opening sockets on the calling thread and the threads it starts; OSError if impossible."""
    machine = platform.machine()
    if platform.system() != "Linux" or machine not in _SYSCALLS:
        raise OSError(errno.ENOSYS, f"no seccomp filter for {platform.system()} {machine}")
    libc = ctypes.CDLL(None, use_errno=True)
    instructions = _socket_filter(machine)
    code = ctypes.create_string_buffer(instructions)
    program = _SockFprog(len(instructions) // 8, ctypes.addressof(code))  # 8 bytes per sock_filter
    # no_new_privs lets an unprivileged thread install a filter; it only affects set-uid programs it would exec.
    _prctl(libc, _PR_SET_NO_NEW_PRIVS, ctypes.c_ulong(1), ctypes.c_ulong(0))
    _prctl(libc, _PR_SET_SECCOMP, ctypes.c_ulong(_SECCOMP_MODE_FILTER), ctypes.byref(program))


def _prctl(libc: ctypes.CDLL, option: int, *arguments: object) -> None:
    zeros = (ctypes.c_ulong(0),) * (4 - len(arguments))
    if libc.prctl(ctypes.c_int(option), *arguments, *zeros) != 0:
        number = ctypes.get_errno()
        raise OSError(number, f"prctl({option}): {os.strerror(number)}")


@functools.cache  # once per process: putenv races with getenv on MediaPipe threads that may be running
def _give_curl_unusable_proxy() -> None:
    """Fallback: point libcurl's https proxy at a scheme it rejects, so the upload fails locally.

    ``os.putenv`` changes only the C environment that libcurl reads, not ``os.environ``, so Python's
    own HTTP clients keep the user's proxy settings. Both spellings are set (libcurl reads the
    lower-case one first), and ``no_proxy`` is emptied since a matching entry would bypass the proxy.
    """
    for name in ("https_proxy", "HTTPS_PROXY"):
        os.putenv(name, _UNUSABLE_PROXY)
    for name in ("no_proxy", "NO_PROXY"):
        os.putenv(name, "")


def run_offline(function: Callable[[], T]) -> T:
    """Return ``function()``, run on a fresh thread where it, and every thread it starts, can open no socket.

    Without seccomp, the thread runs unfiltered and only libcurl's requests are cut off (see above).
    """
    values: list[T] = []
    errors: list[BaseException] = []

    def target() -> None:
        try:
            _install_socket_filter()
        except OSError:
            _give_curl_unusable_proxy()
        try:
            values.append(function())
        except BaseException as error:  # re-raised on the caller's thread
            errors.append(error)

    worker = threading.Thread(target=target, name="mediapipe-offline")
    worker.start()
    worker.join()
    if errors:
        raise errors[0]
    return values[0]
