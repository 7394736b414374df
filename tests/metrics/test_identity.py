"""CSIM (dlib ResNet) and AKD keypoints on real photos: same person vs different people, metamorphic checks.

Photos: tests/data/real_faces (public-domain White House and NASA photos; see its README).
None of them is in the population behind identity_reference.json.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

from export3d_cli.media.image_io import load_image
from export3d_cli.metrics.face_measurement import FaceMeter
from export3d_cli.metrics.identity import EMBEDDING_DIM, identity_similarity, population_mean

PHOTOS = Path(__file__).resolve().parents[1] / "data" / "real_faces"
OBAMA = ("obama_2012_portrait.jpg", "obama_2009_congress.jpg", "obama_2010_blue_room.jpg")
OTHERS = ("biden_2010_blue_room.jpg", "collins_astronaut.jpg")


@pytest.fixture(scope="module")
def meter():
    with FaceMeter() as face_meter:
        yield face_meter


@pytest.fixture(scope="module")
def faces(meter):
    return {name: meter.measure(load_image(PHOTOS / name), identity=True, keypoints=True) for name in OBAMA + OTHERS}


def test_every_photo_has_one_measured_face(faces):
    for name, face in faces.items():
        assert face is not None, name
        assert face.embedding.shape == (EMBEDDING_DIM,) and face.keypoints.shape == (68, 2)


def test_two_photos_of_one_person_score_higher_than_two_people(faces):
    same = [identity_similarity(faces[a].embedding, faces[b].embedding) for a, b in itertools.combinations(OBAMA, 2)]
    different = [
        identity_similarity(faces[a].embedding, faces[b].embedding)
        for a, b in itertools.product(OBAMA + OTHERS, OTHERS)
        if a != b
    ]
    assert min(same) > max(different)
    # The scale is wide enough to see a stranger: every same-person pair beats every stranger pair by >= 0.3.
    assert min(same) - max(different) >= 0.3


def test_a_mirrored_or_smaller_photo_keeps_its_identity(meter, faces):
    photo = load_image(PHOTOS / OBAMA[0])
    mirrored = meter.measure(np.ascontiguousarray(photo[:, ::-1]), identity=True)
    small = meter.measure(np.ascontiguousarray(photo[::2, ::2]), identity=True)
    reference = faces[OBAMA[0]].embedding
    assert identity_similarity(mirrored.embedding, reference) > 0.8
    assert identity_similarity(small.embedding, reference) > 0.9


def test_csim_is_symmetric_and_one_for_the_same_embedding(faces):
    a, b = faces[OBAMA[0]].embedding, faces[OTHERS[0]].embedding
    assert identity_similarity(a, a) == pytest.approx(1.0)
    assert identity_similarity(a, b) == pytest.approx(identity_similarity(b, a))


def test_the_population_mean_is_not_any_test_face(faces):
    mean = population_mean()
    assert mean.shape == (EMBEDDING_DIM,)
    # Centring on one of the judged faces would make that face's similarities meaningless.
    assert min(np.linalg.norm(face.embedding - mean) for face in faces.values()) > 0.3


def test_keypoints_follow_a_shifted_photo(meter, faces):
    """Translating the photo by (dx, dy) moves dlib's 68 keypoints by (dx, dy) (to within half a pixel)."""
    photo = load_image(PHOTOS / OBAMA[0])
    shifted = np.zeros_like(photo)
    shifted[20:, 12:] = photo[:-20, :-12]
    moved = meter.measure(shifted, keypoints=True)
    offset = moved.keypoints - faces[OBAMA[0]].keypoints
    inner = slice(17, 68)  # brows, eyes, nose, mouth: away from the shifted-in black border
    assert np.abs(np.median(offset[inner], axis=0) - [12, 20]).max() <= 0.5
