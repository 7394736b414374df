"""Atomic output files: names at the file-system limit, and the output guard's notion of "the same file"."""

from __future__ import annotations

import os

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
