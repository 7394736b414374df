"""Hostile and careless inputs (issue: reliability). Each case ends in exit 2 with one clear line, or works; no input
is ever modified."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import pytest
from cli_support import assert_one_clean_error, invoke
from conftest import EXAMPLE_PHOTO


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def photo(tmp_path) -> Path:
    return Path(shutil.copy(EXAMPLE_PHOTO, tmp_path / "p.png"))


@pytest.fixture
def driver(tmp_path, driving_video) -> Path:
    return Path(shutil.copy(driving_video.path, tmp_path / "drv.mp4"))


def test_animate_refuses_to_write_over_its_driving_video(photo, driver):
    before = _digest(driver)
    result = invoke("animate", photo, driver, "-o", driver)
    assert_one_clean_error(result, names="is also an input")
    assert _digest(driver) == before


def test_novel_view_refuses_to_write_over_its_source_photo(photo):
    before = _digest(photo)
    result = invoke("novel-view", photo, "--yaw", 20, "-o", photo)
    assert_one_clean_error(result, names="is also an input")
    assert _digest(photo) == before


@pytest.mark.parametrize("link", ["symlink", "hardlink"])
def test_an_output_that_is_an_input_under_another_name_is_refused(photo, tmp_path, link):
    other_name = tmp_path / "other.png"
    (os.symlink if link == "symlink" else os.link)(photo, other_name)
    before = _digest(photo)
    result = invoke("novel-view", photo, "--yaw", 20, "-o", other_name)
    assert_one_clean_error(result, names="is also an input")
    assert _digest(photo) == before


def test_sweep_basis_and_extract_refuse_their_inputs_as_output(photo, driver, tmp_path):
    before = _digest(photo)
    assert_one_clean_error(invoke("sweep-basis", photo, "--index", 0, "-o", photo), names="is also an input")
    assert _digest(photo) == before
    motion = tmp_path / "motion.npz"
    motion.write_bytes(b"not really a motion file")
    assert_one_clean_error(invoke("extract", motion, "-o", motion), names="is also an input")
    assert motion.read_bytes() == b"not really a motion file"
