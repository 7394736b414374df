"""Personal set, tuning and the personalised file on a real photo with the tiny preset."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from export3d_cli.config import preset
from export3d_cli.errors import InputError
from export3d_cli.face.analysis import analyze_image
from export3d_cli.media.image_io import load_image
from export3d_cli.metrics.expression import expression_signal
from export3d_cli.models import Export3D
from export3d_cli.personalization.personal_set import build_personal_set
from export3d_cli.personalization.personalized_file import (
    apply_personalized,
    file_sha256,
    load_personalized_model,
    save_personalized,
)
from export3d_cli.personalization.tuning import TuningConfig, crops_to_tensor, tune

PHOTO = Path(__file__).parents[1] / "data" / "real_faces" / "obama_2010_blue_room.jpg"
RESOLUTION = 64  # the tiny preset


@pytest.fixture(scope="module")
def personal_set():
    photo = load_image(PHOTO)
    return build_personal_set(photo, analyze_image(photo, resolution=RESOLUTION), RESOLUTION, count=12, seed=0)


def plain_tiny_model(seed: int = 0) -> Export3D:
    """Freshly initialised: adaLN-Zero makes G ignore β, so any expression response comes from personalisation."""
    torch.manual_seed(seed)
    return Export3D(preset("tiny")).eval()


@pytest.fixture(scope="module")
def tuned(personal_set):
    base = plain_tiny_model()
    model = copy.deepcopy(base)
    result = tune(model, personal_set, TuningConfig(steps=60, batch=4, set_size=12, seed=0))
    return base, model, result


def render(model, personal_set, expression: np.ndarray) -> torch.Tensor:
    with torch.no_grad():
        features = model.encode_source(crops_to_tensor(personal_set.crops[:1]))
        camera = torch.from_numpy(personal_set.camera[:1]).expand(len(expression), -1)
        return model.render(features, torch.from_numpy(expression).float(), camera).image


def test_personal_set_spans_expressions_as_measured(personal_set):
    assert len(personal_set) + personal_set.dropped == 13
    assert personal_set.dropped <= 2
    photo_beta = analyze_image(load_image(PHOTO), resolution=RESOLUTION).expression
    np.testing.assert_allclose(personal_set.expression[0], photo_beta, atol=1e-6)
    low, high = personal_set.signal_range["jaw"]
    assert high - low > 0.2, personal_set.signal_range  # the warps really open the mouth, as MediaPipe sees it
    assert personal_set.crops.shape[1:] == (RESOLUTION, RESOLUTION, 3)


def test_personal_set_is_deterministic(personal_set):
    photo = load_image(PHOTO)
    again = build_personal_set(photo, analyze_image(photo, resolution=RESOLUTION), RESOLUTION, count=12, seed=0)
    np.testing.assert_array_equal(again.crops, personal_set.crops)


def test_tuning_lowers_the_photo_reconstruction_error(tuned, personal_set):
    base, model, result = tuned
    target = crops_to_tensor(personal_set.crops[:1])
    before = (render(base, personal_set, personal_set.expression[:1]) - target).abs().mean()
    after = (render(model, personal_set, personal_set.expression[:1]) - target).abs().mean()
    assert after < 0.6 * before, (float(before), float(after))
    assert np.mean(result.losses[-10:]) < np.mean(result.losses[:10])


def test_tuned_model_moves_the_mouth_with_the_jaw(tuned, personal_set):
    """Driven by the set's most open jaw, the output's mouth region matches that target better than the output for
    the photo's own expression does: the expression moves the face toward what the warp showed."""
    base, model, _ = tuned
    jaw = expression_signal(personal_set.expression, "jaw")
    only_jaw = np.flatnonzero((personal_set.controls[:, 1:] == 0).all(axis=1) & (personal_set.controls[:, 0] > 0))
    opened = int(only_jaw[np.argmax(jaw[only_jaw])])
    assert jaw[opened] > jaw[0] + 0.2
    expressions = np.stack([personal_set.expression[0], personal_set.expression[opened]])
    target = crops_to_tensor(personal_set.crops[[opened]])
    mouth = (slice(None), slice(None), slice(int(0.6 * RESOLUTION), int(0.8 * RESOLUTION)), slice(22, 42))
    base_images = render(base, personal_set, expressions)
    assert torch.equal(base_images[0], base_images[1])  # the base ignores β: all of what follows is personal
    images = render(model, personal_set, expressions)
    assert (images[1:][mouth] - target[mouth]).abs().mean() < 0.8 * (images[:1][mouth] - target[mouth]).abs().mean()


def test_personalized_file_round_trip(tuned, personal_set, tmp_path):
    base, model, _ = tuned
    path = save_personalized(tmp_path / "person.safetensors", model, base, {"base_weights_sha256": "a" * 64})
    assert json.loads(path.with_suffix(".json").read_text())["format"] == "export3d-personalized/1"
    restored = copy.deepcopy(base)
    apply_personalized(path, restored, "a" * 64)
    expected = render(model, personal_set, personal_set.expression[:4])
    np.testing.assert_allclose(render(restored, personal_set, personal_set.expression[:4]), expected, atol=2e-2)
    float32_copy = 4 * (sum(p.numel() for p in base.parameters()) + model.personal.directions.numel())
    assert path.stat().st_size < 0.6 * float32_copy  # differences and planes in float16, frozen G not stored
    assert model.personal.reads == restored.personal.reads == "clebs"  # the default: V is the model's CLeBS basis


@pytest.fixture(scope="module")
def tuned_on_blendshapes(personal_set):
    base = plain_tiny_model()
    model = copy.deepcopy(base)
    tune(model, personal_set, TuningConfig(steps=8, batch=4, set_size=12, seed=0, coordinates="blendshapes"))
    return base, model


def test_personalized_file_on_blendshape_coordinates_carries_its_basis(tuned_on_blendshapes, personal_set, tmp_path):
    """Directions on the principal components of the set's β: the basis (orthonormal, [E, n]) travels with the file,
    which round-trips; the photo's own β gives u = 0 (T_person alone)."""
    from safetensors.torch import load_file

    base, model = tuned_on_blendshapes
    personal = model.personal
    assert personal.reads == "blendshapes" and personal.basis.shape == (52, personal.directions.shape[0])
    n = personal.directions.shape[0]
    torch.testing.assert_close(personal.basis.T @ personal.basis, torch.eye(n), atol=1e-5, rtol=0)
    photo_beta = torch.from_numpy(personal_set.expression[:1]).float()
    assert personal.coordinates(photo_beta).abs().max() < 1e-5
    path = save_personalized(tmp_path / "new.safetensors", model, base, {"base_weights_sha256": "a" * 64})
    torch.testing.assert_close(load_file(str(path))["personal.basis"], personal.basis, rtol=0, atol=0)
    restored = copy.deepcopy(base)
    apply_personalized(path, restored, "a" * 64)
    assert restored.personal.reads == "blendshapes"
    expected = render(model, personal_set, personal_set.expression[:3])
    np.testing.assert_allclose(render(restored, personal_set, personal_set.expression[:3]), expected, atol=2e-2)


def test_personal_basis_of_the_wrong_shape_is_refused(tuned_on_blendshapes, tmp_path):
    from safetensors.torch import load_file, save_file

    base, model = tuned_on_blendshapes
    path = save_personalized(tmp_path / "person.safetensors", model, base, {"base_weights_sha256": "a" * 64})
    tensors = load_file(str(path))
    tensors["personal.basis"] = tensors["personal.basis"][:, :-1].contiguous()
    save_file(tensors, str(path), metadata={"format": "export3d-personalized/1"})
    victim = copy.deepcopy(base)
    with pytest.raises(InputError, match="personal basis has shape"):
        apply_personalized(path, victim, "a" * 64)
    assert victim.personal is None


def test_wrong_base_weights_are_refused_and_the_model_left_alone(tuned, tmp_path):
    base, model, _ = tuned
    path = save_personalized(tmp_path / "person.safetensors", model, base, {"base_weights_sha256": "a" * 64})
    victim = copy.deepcopy(base)
    with pytest.raises(InputError, match="made for other base weights"):
        apply_personalized(path, victim, "b" * 64)
    assert victim.personal is None
    for (name, value), original in zip(victim.state_dict().items(), base.state_dict().values(), strict=True):
        assert torch.equal(value, original), name


def test_file_for_another_photo_is_refused(tuned, tmp_path):
    base, model, _ = tuned
    path = save_personalized(
        tmp_path / "person.safetensors", model, base, {"base_weights_sha256": "a" * 64, "photo_sha256": "0" * 64}
    )
    with pytest.raises(InputError, match="made for another photo"):
        load_personalized_model(base, "a" * 64, path, PHOTO)
    # The same bytes under another name are the same photo: content, not the file name, identifies it.
    renamed = tmp_path / "renamed.jpg"
    renamed.write_bytes(PHOTO.read_bytes())
    save_personalized(path, model, base, {"base_weights_sha256": "a" * 64, "photo_sha256": file_sha256(PHOTO)})
    assert load_personalized_model(base, "a" * 64, path, renamed).personal is not None


def test_damaged_file_is_refused_without_touching_the_model(tuned, tmp_path):
    base, model, _ = tuned
    path = save_personalized(tmp_path / "person.safetensors", model, base, {"base_weights_sha256": "a" * 64})
    path.write_bytes(path.read_bytes()[:1000])
    victim = copy.deepcopy(base)
    with pytest.raises(InputError, match="not a readable safetensors file"):
        apply_personalized(path, victim, "a" * 64)
    assert victim.personal is None
