"""Atomic output files: names at the file-system limit, and the output guard's notion of "the same file"."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import numpy as np
import pytest

from export3d_cli.atomic import atomic_path, atomic_write_text, same_file


def test_a_target_name_at_the_255_byte_limit_can_be_written(tmp_path):
    target = tmp_path / ("a" * 250 + ".json")  # 255 bytes: the longest legal name
    atomic_write_text(target, "{}")
    assert target.read_text() == "{}"
    assert [path.name for path in tmp_path.iterdir()] == [target.name]  # no temporary file left


def test_a_failed_write_leaves_neither_target_nor_temporary(tmp_path):
    target = tmp_path / "out.txt"
    try:
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("disk on fire")
    except RuntimeError:
        pass
    assert list(tmp_path.iterdir()) == []


def test_same_file_sees_symlinks_and_hard_links_but_not_missing_files(tmp_path):
    original = tmp_path / "a.png"
    original.write_bytes(b"x")
    os.symlink(original, tmp_path / "link.png")
    os.link(original, tmp_path / "hard.png")
    (tmp_path / "copy.png").write_bytes(b"x")
    assert same_file(original, tmp_path / "link.png") and same_file(original, tmp_path / "hard.png")
    assert not same_file(original, tmp_path / "copy.png")
    assert not same_file(original, tmp_path / "missing.png")


@pytest.mark.parametrize(
    ("number", "words"),
    [(errno.ENOSPC, "no space left on the device"), (errno.EDQUOT, "disk quota"), (errno.EROFS, "read-only")],
)
def test_a_full_disk_while_writing_is_one_output_error_and_leaves_the_target_and_no_temp(tmp_path, number, words):
    from export3d_cli.errors import EXIT_USAGE, OutputError

    target = tmp_path / "out.txt"
    target.write_text("before")
    expected = pytest.raises(OutputError, match=rf"out\.txt: cannot write it \({words}")
    with expected as caught, atomic_path(target) as tmp:
        tmp.write_text("partial")
        raise OSError(number, os.strerror(number))
    assert caught.value.exit_code == EXIT_USAGE
    assert target.read_text() == "before"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["out.txt"]


def test_other_os_errors_while_writing_are_not_disguised_as_a_full_disk(tmp_path):
    with pytest.raises(PermissionError), atomic_path(tmp_path / "out.txt"):
        raise PermissionError(errno.EACCES, "denied")


def test_extract_onto_a_full_disk_is_one_error_line_and_exit_2(tmp_path, monkeypatch):
    """What `extract` did on a full disk: "internal error: OSError", exit 1."""
    from export3d_cli.cli.app import run

    real_savez = np.savez

    def full_disk(handle, **arrays):
        real_savez(handle, **arrays)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(np, "savez", full_disk)
    driver = Path(__file__).resolve().parents[1] / "examples" / "driving.mp4"
    code = run(["extract", str(driver), "-o", str(tmp_path / "m.npz"), "--max-frames", "2", "-q"])
    assert code == 2
    assert list(tmp_path.iterdir()) == []
