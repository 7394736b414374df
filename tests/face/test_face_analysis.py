"""Still-image face analysis on the real example photo: shapes, pose, crop framing, metamorphic checks, errors."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from export3d_cli.errors import InputError
from export3d_cli.face.alignment import alignment_template
from export3d_cli.face.analysis import FaceAnalysis, analyze_image
from export3d_cli.face.blendshapes import BLENDSHAPE_INDEX, BLENDSHAPE_NAMES
from export3d_cli.face.head_pose import label_angles
from export3d_cli.face.landmarker import FaceLandmarker
from export3d_cli.face.landmarker_model import face_landmarker_path
from export3d_cli.media.image_io import load_image

SOURCE = Path(__file__).resolve().parents[2] / "examples" / "source.png"
NOSE_TIP, RIGHT_EYE, LEFT_EYE = 4, 33, 263
GREY = 128


@pytest.fixture(scope="module")
def landmarker():
    with FaceLandmarker("image") as instance:
        yield instance


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    return load_image(SOURCE)


@pytest.fixture(scope="module")
def original(photo, landmarker) -> FaceAnalysis:
    return analyze_image(photo, landmarker=landmarker)


def angles(analysis: FaceAnalysis) -> np.ndarray:
    """(yaw, pitch, roll) in degrees."""
    return np.array(label_angles(analysis.camera))


def nose_offset(analysis: FaceAnalysis) -> float:
    """Distance in crop pixels from the nose tip to the crop centre."""
    resolution = analysis.crop.shape[0]
    return float(np.linalg.norm(analysis.crop_landmarks[NOSE_TIP] - resolution / 2))


def mirrored_expression(expression: np.ndarray) -> np.ndarray:
    """β of the mirrored face: every ...Left score swapped with its ...Right partner."""

    def partner(name: str) -> str:
        if name.endswith("Left"):
            return name.removesuffix("Left") + "Right"
        if name.endswith("Right"):
            return name.removesuffix("Right") + "Left"
        return name

    return expression[[BLENDSHAPE_INDEX[partner(name)] for name in BLENDSHAPE_NAMES]]


def resized(image: np.ndarray, size: int) -> np.ndarray:
    interpolation = cv2.INTER_AREA if size < image.shape[0] else cv2.INTER_CUBIC
    return cv2.resize(image, (size, size), interpolation=interpolation)


def paste(canvas_size: tuple[int, int], image: np.ndarray, top_left: tuple[int, int]) -> np.ndarray:
    """``image`` pasted on a grey canvas of (height, width) at (x, y)."""
    canvas = np.full((*canvas_size, 3), GREY, dtype=np.uint8)
    x, y = top_left
    canvas[y : y + image.shape[0], x : x + image.shape[1]] = image
    return canvas


def shifted(image: np.ndarray, dx: float, dy: float) -> np.ndarray:
    matrix = np.array([[1.0, 0.0, dx], [0.0, 1.0, dy]])
    return cv2.warpAffine(image, matrix, image.shape[1::-1], borderMode=cv2.BORDER_REPLICATE)


# --- the example photo ---


def test_source_photo_gives_crop_expression_and_camera(original):
    assert original.crop.shape == (256, 256, 3)
    assert original.crop.dtype == np.uint8
    assert original.expression.shape == (52,)
    assert original.expression.dtype == np.float32
    assert original.expression.min() >= 0.0
    assert original.expression.max() <= 1.0
    assert original.camera.shape == (25,)
    assert original.camera.dtype == np.float32
    assert original.landmarks.shape == (478, 3)
    assert original.faces_found == 1
    assert original.expression[BLENDSHAPE_INDEX["mouthSmileLeft"]] > 0.5, "the astronaut smiles"


def test_source_photo_is_nearly_frontal(original):
    yaw, pitch, roll = angles(original)
    assert abs(yaw) < 15.0
    assert abs(pitch) < 15.0
    assert abs(roll) < 15.0


def test_crop_centres_the_nose_and_keeps_the_face_upright(original):
    assert nose_offset(original) < 12.0
    crop_landmarks = original.crop_landmarks
    assert crop_landmarks[RIGHT_EYE, 0] < 128.0 < crop_landmarks[LEFT_EYE, 0], "not mirrored"
    assert crop_landmarks[[RIGHT_EYE, LEFT_EYE], 1].max() < crop_landmarks[NOSE_TIP, 1], "eyes above the nose"


def test_crop_landmarks_follow_the_camera_template(original):
    template = alignment_template(original.camera, 256)
    error = np.linalg.norm(original.crop_landmarks[:468] - template, axis=1)
    assert error.mean() < 6.0


def test_crop_is_the_face_region_of_the_photo(original, photo):
    # The crop centre maps back near the nose in the photo, and the face fills about half the crop.
    nose_in_photo = original.landmarks[NOSE_TIP, :2]
    centre_in_photo = original.transform.inverse().apply(np.array([[128.0, 128.0]]))[0]
    assert np.linalg.norm(centre_in_photo - nose_in_photo) < 12.0 / original.transform.scale
    face_width = np.ptp(original.crop_landmarks[:468, 0])
    assert 0.35 * 256 < face_width < 0.7 * 256
    assert photo.shape == (512, 512, 3)


def test_path_input_gives_the_same_analysis(original, landmarker):
    from_path = analyze_image(SOURCE, landmarker=landmarker)
    np.testing.assert_array_equal(from_path.camera, original.camera)
    np.testing.assert_array_equal(from_path.crop, original.crop)


def test_lower_resolution_crop(photo, landmarker, original):
    small = analyze_image(photo, resolution=128, landmarker=landmarker)
    assert small.crop.shape == (128, 128, 3)
    assert nose_offset(small) < 6.0
    np.testing.assert_array_equal(small.camera, original.camera)
    assert small.transform.scale == pytest.approx(original.transform.scale / 2, rel=1e-6)


# --- metamorphic checks ---


def test_mirrored_photo_negates_yaw_and_roll(photo, landmarker, original):
    mirrored = analyze_image(np.ascontiguousarray(photo[:, ::-1]), landmarker=landmarker)
    yaw, pitch, roll = angles(original)
    yaw_m, pitch_m, roll_m = angles(mirrored)
    assert yaw_m == pytest.approx(-yaw, abs=3.0)
    assert roll_m == pytest.approx(-roll, abs=2.0)
    assert pitch_m == pytest.approx(pitch, abs=3.0)


def test_mirrored_photo_swaps_left_and_right_blendshapes(photo, landmarker, original):
    mirrored = analyze_image(np.ascontiguousarray(photo[:, ::-1]), landmarker=landmarker)
    swapped = mirrored_expression(mirrored.expression)
    for name in ("eyeBlinkLeft", "eyeBlinkRight", "mouthSmileLeft", "mouthSmileRight"):
        index = BLENDSHAPE_INDEX[name]
        assert swapped[index] == pytest.approx(original.expression[index], abs=0.1), name
    assert np.abs(swapped - original.expression).mean() < 0.05
    # Sanity of the helper: swapping twice is the identity, and it does swap.
    np.testing.assert_array_equal(mirrored_expression(swapped), mirrored.expression)
    assert swapped[BLENDSHAPE_INDEX["eyeBlinkLeft"]] == mirrored.expression[BLENDSHAPE_INDEX["eyeBlinkRight"]]


def test_mirrored_photo_gives_the_mirrored_crop(photo, landmarker, original):
    mirrored = analyze_image(np.ascontiguousarray(photo[:, ::-1]), landmarker=landmarker)
    difference = np.abs(mirrored.crop.astype(np.float64) - original.crop[:, ::-1])
    assert difference.mean() < 25.0
    # The test can tell: the unmirrored crop is much further from the mirrored one than the mirror is.
    assert np.abs(mirrored.crop.astype(np.float64) - original.crop).mean() > difference.mean()


def test_in_plane_rotation_adds_roll_and_keeps_the_crop_on_the_template(photo, landmarker, original):
    matrix = cv2.getRotationMatrix2D((256.0, 256.0), 15.0, 1.0)  # +15°: anticlockwise on screen
    rotated = analyze_image(
        cv2.warpAffine(photo, matrix, (512, 512), borderMode=cv2.BORDER_REPLICATE), landmarker=landmarker
    )
    yaw, pitch, roll = angles(original)
    yaw_r, pitch_r, roll_r = angles(rotated)
    assert roll_r - roll == pytest.approx(15.0, abs=3.0)
    assert yaw_r == pytest.approx(yaw, abs=3.0)
    assert pitch_r == pytest.approx(pitch, abs=3.0)
    # The label carries the roll, so the crop keeps it: the landmarks follow the template seen through that camera.
    template = alignment_template(rotated.camera, 256)
    assert np.linalg.norm(rotated.crop_landmarks[:468] - template, axis=1).mean() < 6.0
    assert nose_offset(rotated) < 12.0
    eye_line = rotated.crop_landmarks[LEFT_EYE] - rotated.crop_landmarks[RIGHT_EYE]
    tilt = np.degrees(np.arctan2(-eye_line[1], eye_line[0]))  # anticlockwise on screen is positive
    original_line = original.crop_landmarks[LEFT_EYE] - original.crop_landmarks[RIGHT_EYE]
    assert tilt - np.degrees(np.arctan2(-original_line[1], original_line[0])) == pytest.approx(15.0, abs=4.0)


def test_pasted_smaller_photo_is_framed_like_the_original(photo, landmarker, original):
    # 0.75× in a 600×500 canvas, left and low. (At 0.5× in 900×700 the 45-pixel face is below
    # the short-range face detector's reach: MediaPipe finds no face there.)
    canvas = paste((500, 600), resized(photo, 384), (0, 116))
    pasted = analyze_image(canvas, landmarker=landmarker)
    assert pasted.faces_found == 1
    assert nose_offset(pasted) < 12.0
    assert pasted.transform.scale == pytest.approx(original.transform.scale / 0.75, rel=0.1)
    assert abs(pasted.transform.params()[1] - original.transform.params()[1]) < np.radians(3.0)


@pytest.mark.parametrize(
    "layout", ["shift-left", "shift-right", "shift-down", "pasted-off-centre"], ids=lambda layout: layout
)
def test_translating_the_face_in_the_frame_keeps_its_pose(photo, landmarker, original, layout):
    image = {
        "shift-left": lambda: shifted(photo, -150, 0),
        "shift-right": lambda: shifted(photo, 150, 0),
        "shift-down": lambda: shifted(photo, 0, 150),
        "pasted-off-centre": lambda: paste((500, 600), resized(photo, 384), (0, 116)),
    }[layout]()
    moved = analyze_image(image, landmarker=landmarker)
    # The pixels around the face are the same (up to scale), so is its appearance, so must be its camera.
    yaw, pitch, _ = angles(original)
    yaw_m, pitch_m, _ = angles(moved)
    assert yaw_m == pytest.approx(yaw, abs=4.0)
    assert pitch_m == pytest.approx(pitch, abs=4.0)


# --- errors and face selection ---


def test_image_without_a_face_is_an_input_error_naming_the_file(tmp_path):
    from PIL import Image

    path = tmp_path / "grey wall.png"
    Image.fromarray(np.full((256, 256, 3), GREY, dtype=np.uint8)).save(path)
    with pytest.raises(InputError, match="no face found") as error:
        analyze_image(path)  # its own landmarker this time
    assert str(path) in str(error.value)


def test_noise_without_a_face_is_an_input_error_naming_the_name(landmarker):
    noise = np.random.default_rng(0).integers(0, 256, size=(320, 320, 3), dtype=np.uint8)
    with pytest.raises(InputError, match=r"frame_0042\.png: no face found"):
        analyze_image(noise, landmarker=landmarker, name="frame_0042.png")
    with pytest.raises(InputError, match=r"^image: no face found"):
        analyze_image(noise, landmarker=landmarker)


def test_face_index_beyond_the_faces_found_is_an_input_error(photo, landmarker):
    with pytest.raises(InputError, match="--face-index 3 but only 1 face found") as error:
        analyze_image(photo, face_index=3, landmarker=landmarker, name="portrait.png")
    assert "portrait.png" in str(error.value)
    with pytest.raises(InputError, match="--face-index must be 0 or more"):
        analyze_image(photo, face_index=-1, landmarker=landmarker)


def test_two_faces_are_ordered_largest_first(photo, landmarker):
    head = photo[0:256, 96:352]  # head and shoulders; the full photo at half size is too small to detect
    two = paste((256, 384), head, (0, 0))
    two[0:128, 256:384] = resized(head, 128)
    large = analyze_image(two, landmarker=landmarker)
    small = analyze_image(two, face_index=1, landmarker=landmarker)
    assert large.faces_found == small.faces_found == 2
    assert large.landmarks[:, 0].max() < 256 < small.landmarks[:, 0].min()
    assert large.transform.scale < small.transform.scale
    assert small.transform.scale == pytest.approx(2 * large.transform.scale, rel=0.15)
    with pytest.raises(InputError, match="only 2 faces found"):
        analyze_image(two, face_index=2, landmarker=landmarker)


def test_tiny_photo_is_enlarged_and_found(photo, landmarker, original):
    tiny = analyze_image(resized(photo, 64), landmarker=landmarker)
    assert tiny.crop.shape == (256, 256, 3)
    assert nose_offset(tiny) < 12.0
    assert tiny.transform.scale == pytest.approx(original.transform.scale * 8, rel=0.1)
    assert tiny.landmarks[:, :2].max() < 64, "landmarks in the input's pixels, not the enlarged copy's"


def test_huge_photo_is_found_with_the_nose_centred(photo, landmarker, original):
    huge = analyze_image(resized(photo, 4000), landmarker=landmarker)
    assert nose_offset(huge) < 12.0
    assert huge.transform.scale == pytest.approx(original.transform.scale * 512 / 4000, rel=0.05)
    np.testing.assert_allclose(huge.landmarks[NOSE_TIP, :2], original.landmarks[NOSE_TIP, :2] * 4000 / 512, atol=25)
    assert np.abs(angles(huge) - angles(original)).max() < 4.0


def test_mediapipe_blendshape_order_is_blendshape_names(photo):
    import mediapipe as mp
    from mediapipe.tasks.python import BaseOptions, vision

    from export3d_cli.face.offline import run_offline

    options = vision.FaceLandmarkerOptions(
        base_options=BaseOptions(model_asset_path=str(face_landmarker_path())), output_face_blendshapes=True
    )
    # Through run_offline, as the package does: MediaPipe's wheel would otherwise look up its metrics host.
    with run_offline(lambda: vision.FaceLandmarker.create_from_options(options)) as raw:
        result = raw.detect(mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(photo)))
    categories = result.face_blendshapes[0]
    assert [category.category_name for category in categories] == list(BLENDSHAPE_NAMES)
    assert [category.index for category in categories] == list(range(52))
