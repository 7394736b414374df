"""Captions on rendered tiles, and sweep-basis's re-measurement of what a direction moves (on real photos)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from export3d_cli.cli.sweep_basis import TOP_MOVES, measure_sweep, moves_table
from export3d_cli.pipeline.tile_labels import caption_frame

FACES = Path(__file__).resolve().parents[1] / "data" / "real_faces"


def photo(name: str, size: int = 256) -> np.ndarray:
    with Image.open(FACES / name) as image:
        return np.asarray(image.convert("RGB").resize((size, size)))


def test_a_caption_darkens_a_band_at_the_bottom_and_writes_the_text_in_white():
    frame = np.full((128, 128, 3), 200, np.uint8)
    captioned = caption_frame(frame, "lam3 +0.125")
    assert captioned.shape == frame.shape and captioned.dtype == np.uint8
    assert np.array_equal(captioned[:100], frame[:100]), "only the bottom band changes"
    band = captioned[110:]
    assert (band < 100).mean() > 0.5, "the band is darkened"
    assert (band > 240).any(), "white text on it"
    assert np.array_equal(frame, np.full((128, 128, 3), 200, np.uint8)), "the input is not modified"
    assert not np.array_equal(captioned, caption_frame(frame, "lam3 -0.125"))


def test_sweep_measure_of_one_photo_twice_moves_nothing():
    face = photo("obama_2012_portrait.jpg")
    summary = measure_sweep([face, face])
    assert summary["face_found"] == [True, True]
    assert len(summary["moves"]) == TOP_MOVES
    assert all(abs(delta) < 1e-6 for _, delta in summary["moves"])


def test_sweep_measure_lists_the_largest_changes_first_and_skips_tiles_without_a_face():
    grey = np.full((256, 256, 3), 128, np.uint8)
    summary = measure_sweep([grey, photo("obama_2012_portrait.jpg"), photo("biden_2010_blue_room.jpg")])
    assert summary["face_found"] == [False, True, True]
    deltas = [abs(delta) for _, delta in summary["moves"]]
    assert deltas == sorted(deltas, reverse=True) and deltas[0] > 0.02
    table = moves_table({"values": [0.0, 0.5, 1.0], **summary})
    assert "face found in 2 of 3 tiles" in table and summary["moves"][0][0] in table


def test_sweep_measure_with_fewer_than_two_faces_says_there_is_nothing_to_compare():
    grey = np.full((128, 128, 3), 90, np.uint8)
    summary = measure_sweep([grey, grey])
    assert summary == {"face_found": [False, False], "moves": []}
    assert "nothing to compare" in moves_table({"values": [0.0, 1.0], **summary})


@pytest.mark.parametrize("size", [64, 512])
def test_captions_fit_small_and_large_tiles(size):
    captioned = caption_frame(np.zeros((size, size, 3), np.uint8), "lam9 -0.726")
    assert (captioned[: size // 2] == 0).all() and (captioned > 200).any()
