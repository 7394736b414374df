"""Similarity alignment: Umeyama fit, coordinate conventions of the warp, anti-aliasing, paste-back, template."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from export3d_cli.face.alignment import (
    SimilarityTransform,
    alignment_template,
    estimate_similarity,
    feather_mask,
    paste_back,
    warp_to_crop,
)
from export3d_cli.face.head_pose import HeadPose, look_at_pose
from export3d_cli.media.image_io import load_image

SOURCE = "examples/source.png"
NOSE_TIP, RIGHT_EYE, LEFT_EYE, UPPER_LIP, LOWER_LIP = 4, 33, 263, 13, 14


def random_similarity(rng: np.random.Generator) -> SimilarityTransform:
    return SimilarityTransform.from_params(
        np.array([rng.uniform(-1.0, 1.0), rng.uniform(-math.pi, math.pi), *rng.uniform(-100.0, 100.0, size=2)])
    )


def weighted_error(transform: SimilarityTransform, source, target, weights) -> float:
    residual = transform.apply(source) - target
    return float(weights @ (residual**2).sum(axis=1))


def gaussian_blob(height: int, width: int, centre_xy: tuple[float, float], sigma: float) -> np.ndarray:
    """uint8 [H, W, 3] blob centred on continuous coordinates (pixel (i, j) has centre (j + 0.5, i + 0.5))."""
    ys, xs = np.mgrid[0:height, 0:width] + 0.5
    blob = np.exp(-((xs - centre_xy[0]) ** 2 + (ys - centre_xy[1]) ** 2) / (2 * sigma**2))
    return np.repeat(np.rint(255 * blob).astype(np.uint8)[..., None], 3, axis=2)


def centroid(image: np.ndarray) -> np.ndarray:
    """Intensity centroid in continuous coordinates (x, y)."""
    weights = image[..., 0].astype(np.float64)
    ys, xs = np.mgrid[0 : image.shape[0], 0 : image.shape[1]] + 0.5
    return np.array([(weights * xs).sum(), (weights * ys).sum()]) / weights.sum()


def source_photo() -> np.ndarray:
    return load_image(SOURCE)


# --- estimate_similarity ---


def test_estimate_similarity_recovers_a_known_transform_exactly():
    rng = np.random.default_rng(0)
    for _ in range(10):
        truth = random_similarity(rng)
        source = rng.uniform(0.0, 500.0, size=(30, 2))
        target = truth.apply(source)
        for weights in (None, rng.uniform(0.1, 5.0, size=30)):
            fitted = estimate_similarity(source, target, weights)
            np.testing.assert_allclose(fitted.matrix, truth.matrix, atol=1e-8)


def test_estimate_similarity_from_two_points_is_exact():
    source = np.array([[0.0, 0.0], [1.0, 0.0]])
    target = np.array([[10.0, 10.0], [10.0, 12.0]])  # scale 2, +90°
    fitted = estimate_similarity(source, target)
    np.testing.assert_allclose(fitted.matrix, [[0.0, -2.0, 10.0], [2.0, 0.0, 10.0]], atol=1e-12)


def test_estimate_similarity_is_the_weighted_least_squares_optimum():
    rng = np.random.default_rng(1)
    truth = random_similarity(rng)
    source = rng.uniform(0.0, 300.0, size=(40, 2))
    target = truth.apply(source) + rng.normal(scale=3.0, size=(40, 2))
    weights = rng.uniform(0.05, 3.0, size=40)
    fitted = estimate_similarity(source, target, weights)
    best = weighted_error(fitted, source, target, weights)
    params = fitted.params()
    for index, step in [(0, 1e-3), (1, 1e-3), (2, 0.05), (3, 0.05)]:
        for sign in (-1.0, 1.0):
            perturbed = params.copy()
            perturbed[index] += sign * step
            assert weighted_error(SimilarityTransform.from_params(perturbed), source, target, weights) > best
    unweighted = estimate_similarity(source, target)
    assert weighted_error(unweighted, source, target, weights) > best, "the weights must change the fit"


def test_estimate_similarity_weights_are_relative():
    rng = np.random.default_rng(2)
    source = rng.uniform(0.0, 100.0, size=(12, 2))
    target = rng.uniform(0.0, 100.0, size=(12, 2))
    weights = rng.uniform(0.5, 2.0, size=12)
    np.testing.assert_allclose(
        estimate_similarity(source, target, weights).matrix,
        estimate_similarity(source, target, 7.0 * weights).matrix,
        atol=1e-10,
    )


def test_estimate_similarity_never_reflects():
    rng = np.random.default_rng(3)
    source = rng.uniform(-50.0, 50.0, size=(20, 2))
    mirrored = source * np.array([-1.0, 1.0]) + 30.0
    fitted = estimate_similarity(source, mirrored)
    assert np.linalg.det(fitted.matrix[:, :2]) > 0
    linear = fitted.matrix[:, :2] / fitted.scale
    np.testing.assert_allclose(linear.T @ linear, np.eye(2), atol=1e-12)


def test_estimate_similarity_rejects_coincident_points():
    with pytest.raises(ValueError, match="coincident"):
        estimate_similarity(np.ones((5, 2)), np.zeros((5, 2)))


# --- SimilarityTransform ---


def test_params_round_trip():
    rng = np.random.default_rng(4)
    for _ in range(20):
        params = np.array([rng.uniform(-2, 2), rng.uniform(-3.1, 3.1), *rng.uniform(-500, 500, size=2)])
        transform = SimilarityTransform.from_params(params)
        np.testing.assert_allclose(transform.params(), params, atol=1e-12)
        assert transform.scale == pytest.approx(math.exp(params[0]))
        np.testing.assert_allclose(SimilarityTransform.from_params(transform.params()).matrix, transform.matrix)


def test_from_params_rotates_anticlockwise_in_math_axes():
    transform = SimilarityTransform.from_params(np.array([math.log(2.0), math.pi / 2, 1.0, 2.0]))
    np.testing.assert_allclose(transform.apply(np.array([[1.0, 0.0]])), [[1.0, 4.0]], atol=1e-12)


def test_inverse_composes_to_identity():
    rng = np.random.default_rng(5)
    points = rng.uniform(-100, 100, size=(10, 2))
    for _ in range(10):
        transform = random_similarity(rng)
        np.testing.assert_allclose(transform.inverse().apply(transform.apply(points)), points, atol=1e-9)
        np.testing.assert_allclose(transform.apply(transform.inverse().apply(points)), points, atol=1e-9)
        assert transform.inverse().scale == pytest.approx(1.0 / transform.scale)


def test_opencv_matrix_shifts_by_half_a_pixel():
    transform = SimilarityTransform.from_params(np.array([math.log(2.0), 0.0, 0.0, 0.0]))
    # Continuous x = 0.5 (centre of pixel 0) maps to 1.0, i.e. pixel index 0.5 in OpenCV's convention.
    np.testing.assert_allclose(transform.opencv_matrix(), [[2.0, 0.0, 0.5], [0.0, 2.0, 0.5]], atol=1e-12)


def test_warp_puts_a_single_pixel_where_apply_predicts():
    image = np.zeros((64, 48, 3), dtype=np.uint8)
    row, col = 20, 11
    image[row, col] = 255
    # A 90° rotation with an integer translation maps pixel centres onto pixel centres: no interpolation blur.
    transform = SimilarityTransform(np.array([[0.0, -1.0, 70.0], [1.0, 0.0, 3.0]]))
    crop = warp_to_crop(image, transform, 80)
    x, y = transform.apply(np.array([[col + 0.5, row + 0.5]]))[0]
    assert crop[math.floor(y), math.floor(x)].tolist() == [255, 255, 255]
    assert int(crop.sum()) == 3 * 255, "exactly one bright pixel"


@pytest.mark.parametrize("log_scale", [math.log(1.7), math.log(0.6), math.log(0.2)])
def test_warp_moves_a_blob_centroid_where_apply_predicts(log_scale):
    centre = (157.3, 121.8)
    image = gaussian_blob(300, 340, centre, sigma=12.0)
    rotation_and_scale = SimilarityTransform.from_params(np.array([log_scale, 0.4, 0.0, 0.0]))
    # Put the blob near (not at) the middle of a 128 crop, at a fractional position.
    target = np.array([67.2, 58.9])
    offset = target - rotation_and_scale.apply(np.array([centre]))[0]
    transform = SimilarityTransform.from_params(np.array([log_scale, 0.4, *offset]))
    crop = warp_to_crop(image, transform, 128)
    np.testing.assert_allclose(centroid(crop), target, atol=0.15)


def test_large_reductions_are_area_averaged_not_aliased():
    size = 512
    checkerboard = ((np.add.outer(np.arange(size), np.arange(size)) % 2) * 255).astype(np.uint8)
    image = np.repeat(checkerboard[..., None], 3, axis=2)
    transform = SimilarityTransform.from_params(np.array([math.log(1 / 8), 0.3, 20.0, -10.0]))
    crop = warp_to_crop(image, transform, 48)
    assert abs(float(crop.mean()) - 127.5) < 3.0
    assert float(crop.std()) < 4.0
    # The test would catch aliasing: point sampling the same map gives a far-from-grey crop.
    naive = cv2.warpAffine(image, transform.opencv_matrix(), (48, 48), flags=cv2.INTER_NEAREST)
    assert float(naive.std()) > 50.0


# --- paste_back and feather_mask ---


def face_transform(resolution: int = 256) -> SimilarityTransform:
    """A crop of the source photo's face region (face roughly at (225, 125), 90 px wide) at ~1.3× scale."""
    scale, angle = resolution / 190.0, math.radians(6.0)
    base = SimilarityTransform.from_params(np.array([math.log(scale), angle, 0.0, 0.0]))
    centre = base.apply(np.array([[225.0, 130.0]]))[0]
    params = base.params()
    params[2:] = resolution / 2 - centre
    return SimilarityTransform.from_params(params)


def test_paste_back_of_an_unmodified_crop_reproduces_the_image():
    image = source_photo()
    transform = face_transform()
    crop = warp_to_crop(image, transform, 256)
    pasted = paste_back(crop, image, transform)
    assert pasted.shape == image.shape
    assert pasted.dtype == np.uint8
    # Where the (back-warped) mask is 1, the pasted pixels are the crop's: close to the original.
    weight = cv2.warpAffine(feather_mask(256), transform.inverse().opencv_matrix(), image.shape[1::-1])
    interior = weight > 0.999
    assert interior.sum() > 100 * 100
    error = np.abs(pasted.astype(np.int32) - image.astype(np.int32))[interior]
    assert error.mean() < 3.0
    # Far outside the crop region nothing changes, exactly.
    corners = transform.inverse().apply(np.array([[0, 0], [256, 0], [0, 256], [256, 256]]))
    x0, y0 = corners.min(axis=0)
    x1, y1 = corners.max(axis=0)
    outside = np.ones(image.shape[:2], dtype=bool)
    outside[max(0, int(y0) - 2) : int(y1) + 3, max(0, int(x0) - 2) : int(x1) + 3] = False
    assert outside.sum() > 100_000
    np.testing.assert_array_equal(pasted[outside], image[outside])


def test_paste_back_of_a_modified_crop_changes_only_the_face_region():
    image = source_photo()
    transform = face_transform()
    white = np.full((256, 256, 3), 255, dtype=np.uint8)
    pasted = paste_back(white, image, transform)
    nose = transform.inverse().apply(np.array([[128.0, 128.0]]))[0]
    assert pasted[int(nose[1]), int(nose[0])].tolist() == [255, 255, 255]
    np.testing.assert_array_equal(pasted[-50:], image[-50:])  # the bottom of the photo is far from the face


def test_paste_back_with_an_explicit_zero_mask_is_a_no_op():
    image = source_photo()
    white = np.full((256, 256, 3), 255, dtype=np.uint8)
    np.testing.assert_array_equal(paste_back(white, image, face_transform(), np.zeros((256, 256))), image)


@pytest.mark.parametrize("resolution", [64, 256])
def test_feather_mask_is_one_inside_and_falls_to_zero_at_the_edges(resolution):
    mask = feather_mask(resolution)
    assert mask.shape == (resolution, resolution)
    assert mask.dtype == np.float32
    assert mask.min() >= 0.0
    assert mask.max() <= 1.0
    middle = resolution // 2
    assert mask[middle, middle] == 1.0
    assert mask[middle - resolution // 4 : middle + resolution // 4, middle].min() == 1.0
    # The ramp is 0 on the crop's outer edge: the border pixel's centre, half a pixel in, is on its first step.
    step = 0.5 / (0.08 * resolution)
    assert mask[middle, 0] == pytest.approx(step * step * (3 - 2 * step), rel=1e-4)
    assert mask[middle, 0] < 0.03
    assert mask[0, 0] < 1e-3
    row = mask[middle, : middle + 1]
    assert (np.diff(row) >= 0).all(), "monotone from the edge to the middle"
    np.testing.assert_allclose(mask, mask[::-1, :], atol=1e-7)
    np.testing.assert_allclose(mask, mask.T, atol=1e-7)


# --- alignment_template ---


def test_frontal_template_centres_the_nose_and_orients_the_face_upright():
    resolution = 256
    template = alignment_template(HeadPose(np.eye(3)).label(), resolution)
    assert template.shape == (468, 2)
    np.testing.assert_allclose(template[NOSE_TIP], [128.0, 128.0], atol=1e-4)
    right_eye, left_eye = template[RIGHT_EYE], template[LEFT_EYE]
    assert right_eye[0] < 128.0 < left_eye[0], "subject's right eye on the viewer's left"
    assert right_eye[0] + left_eye[0] == pytest.approx(resolution, abs=1e-3)
    assert right_eye[1] == pytest.approx(left_eye[1], abs=1e-3)
    assert right_eye[1] < 128.0, "eyes above the centre"
    assert template[UPPER_LIP, 1] > 128.0
    assert template[LOWER_LIP, 1] > template[UPPER_LIP, 1]
    assert template[UPPER_LIP, 0] == pytest.approx(128.0, abs=1e-3)
    width = np.ptp(template[:, 0])
    assert 0.35 * resolution < width < 0.65 * resolution, "the face spans about half the crop"


@pytest.mark.parametrize(("yaw", "pitch"), [(25.0, 0.0), (-15.0, 10.0)])
def test_template_keeps_the_nose_centred_for_turned_heads(yaw, pitch):
    template = alignment_template(look_at_pose(yaw, pitch).label(), 128)
    np.testing.assert_allclose(template[NOSE_TIP], [64.0, 64.0], atol=1e-3)


def test_template_scales_with_the_resolution():
    label = look_at_pose(10.0, -5.0).label()
    np.testing.assert_allclose(alignment_template(label, 512), 2.0 * alignment_template(label, 256), atol=1e-6)
