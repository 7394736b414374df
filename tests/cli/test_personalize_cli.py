"""``export3d personalize`` and ``animate --personalized``: outputs, refusals (exit 2, one line), reuse."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from cli_support import assert_one_clean_error, invoke
from model_support import saved_tiny_weights
from PIL import Image

from export3d_cli.personalization.tuning_config import PERSONALIZATION_VERSION

REAL_FACES = Path(__file__).parents[1] / "data" / "real_faces"
PHOTO = REAL_FACES / "obama_2010_blue_room.jpg"
OTHER = REAL_FACES / "biden_2010_blue_room.jpg"
DRIVER = Path(__file__).parents[2] / "examples" / "driving.mp4"
QUICK = ("--steps", "3", "--set-size", "4", "-q")


def animate_briefly(photo: Path, output: Path, weights: Path, *options: object):
    """Two frames of the example driver: enough to load, personalise and render."""
    return invoke("animate", photo, DRIVER, "-o", output, "--weights", weights, "--max-frames", "2", "-q", *options)


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    return saved_tiny_weights(tmp_path_factory.mktemp("weights-tiny"))


@pytest.fixture(scope="module")
def other_weights(tmp_path_factory) -> Path:
    return saved_tiny_weights(tmp_path_factory.mktemp("weights-other"), seed=1)


@pytest.fixture(scope="module")
def personalized(weights, tmp_path_factory):
    folder = tmp_path_factory.mktemp("personal")
    result = invoke("personalize", PHOTO, OTHER, "-o", folder, "--weights", weights, "--json", *QUICK)
    return result, folder


def test_personalize_writes_one_file_pair_per_photo(personalized):
    result, folder = personalized
    assert result.code == 0, result.err
    summaries = json.loads(result.out)
    assert [Path(s["output"]).name for s in summaries] == [
        "obama_2010_blue_room.safetensors",
        "biden_2010_blue_room.safetensors",
    ]
    for summary in summaries:
        metadata = json.loads(Path(summary["output"]).with_suffix(".json").read_text())
        assert metadata["format"] == "export3d-personalized/1"
        assert metadata["steps"] == 3 and metadata["personal_set"]["images"] >= 4
        assert len(metadata["photo_sha256"]) == 64 and len(metadata["base_weights_sha256"]) == 64
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        [
            "obama_2010_blue_room.safetensors",
            "obama_2010_blue_room.json",
            "biden_2010_blue_room.safetensors",
            "biden_2010_blue_room.json",
        ]
    )


def test_personalize_is_deterministic(personalized, weights, tmp_path):
    _, folder = personalized
    again = invoke("personalize", PHOTO, "-o", tmp_path, "--weights", weights, *QUICK)
    assert again.code == 0, again.err
    name = "obama_2010_blue_room.safetensors"
    assert (tmp_path / name).read_bytes() == (folder / name).read_bytes()


def test_animate_with_the_personalized_folder_differs_from_the_base(personalized, weights, tmp_path):
    _, folder = personalized
    base = tmp_path / "base.mp4"
    personal = tmp_path / "personal.mp4"
    common = ("--weights", weights, "--max-frames", "3", "-q")
    assert invoke("animate", PHOTO, DRIVER, "-o", base, *common).code == 0
    result = invoke("animate", PHOTO, DRIVER, "-o", personal, "--personalized", folder, *common)
    assert result.code == 0, result.err
    assert personal.read_bytes() != base.read_bytes()


def test_a_file_made_for_other_weights_is_refused(personalized, other_weights, tmp_path):
    _, folder = personalized
    result = animate_briefly(PHOTO, tmp_path / "x.mp4", other_weights, "--personalized", folder)
    assert_one_clean_error(result, names="made for other base weights")
    assert not (tmp_path / "x.mp4").exists()


def test_a_file_made_for_another_photo_is_refused(personalized, weights, tmp_path):
    _, folder = personalized
    result = animate_briefly(
        PHOTO, tmp_path / "x.mp4", weights, "--personalized", folder / "biden_2010_blue_room.safetensors"
    )
    assert_one_clean_error(result, names="made for another photo")


def test_the_same_photo_under_another_name_is_accepted(personalized, weights, tmp_path):
    _, folder = personalized
    renamed = tmp_path / "someone.jpg"
    renamed.write_bytes(PHOTO.read_bytes())
    result = animate_briefly(
        renamed, tmp_path / "x.mp4", weights, "--personalized", folder / "obama_2010_blue_room.safetensors"
    )
    assert result.code == 0, result.err


def test_a_photo_without_a_face_is_refused_before_any_tuning(weights, tmp_path):
    grey = tmp_path / "grey.png"
    Image.fromarray(np.full((200, 200, 3), 128, np.uint8)).save(grey)
    result = invoke("personalize", PHOTO, grey, "-o", tmp_path / "out", "--weights", weights, *QUICK)
    assert_one_clean_error(result, names="grey.png: no face found")
    assert not list((tmp_path / "out").glob("*.safetensors"))


def test_unknown_coordinates_are_refused(weights, tmp_path):
    result = invoke("personalize", PHOTO, "-o", tmp_path / "out", "--weights", weights, "--coordinates", "pixels")
    assert_one_clean_error(result, names="--coordinates must be clebs or blendshapes")


def test_two_photos_with_one_name_are_refused(weights, tmp_path):
    twin = tmp_path / "twin"
    twin.mkdir()
    copy = twin / PHOTO.name
    copy.write_bytes(OTHER.read_bytes())
    result = invoke("personalize", PHOTO, copy, "-o", tmp_path / "out", "--weights", weights, *QUICK)
    assert_one_clean_error(result, names="their results would collide")


def test_output_that_is_a_file_is_refused(weights, tmp_path):
    target = tmp_path / "file.txt"
    target.write_text("x")
    result = invoke("personalize", PHOTO, "-o", target, "--weights", weights, *QUICK)
    assert_one_clean_error(result, names="-o must be a folder")
    assert target.read_text() == "x"


def test_a_missing_personalized_file_is_refused(weights, tmp_path):
    result = animate_briefly(PHOTO, tmp_path / "x.mp4", weights, "--personalized", tmp_path / "none.safetensors")
    assert_one_clean_error(result, names="no such personalised file")


@pytest.mark.parametrize("command", ["novel-view", "sweep-basis"])
def test_novel_view_and_sweep_basis_take_the_personalized_file(command, personalized, weights, tmp_path):
    _, folder = personalized
    base, personal = tmp_path / "base.png", tmp_path / "personal.png"
    extra = ("--index", "0") if command == "sweep-basis" else ()
    assert invoke(command, PHOTO, "-o", base, "--weights", weights, "-q", *extra).code == 0
    result = invoke(command, PHOTO, "-o", personal, "--weights", weights, "--personalized", folder, "-q", *extra)
    assert result.code == 0, result.err
    assert np.abs(np.asarray(Image.open(personal), float) - np.asarray(Image.open(base), float)).mean() > 1.0


# ------------------------------------------------------------------------ personalising by default, cached


@pytest.fixture(scope="module")
def needy_weights(tmp_path_factory) -> Path:
    """Tiny weights whose config.json asks for personalisation (3 steps, to keep the tests short)."""
    folder = saved_tiny_weights(tmp_path_factory.mktemp("weights-needy"))
    config = json.loads((folder / "config.json").read_text())
    config["personalization"] = {"needed": True, "steps": 3}
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def cached_files(cache: Path) -> list[Path]:
    return sorted(cache.glob("personalized/*/*.safetensors"))


def test_default_run_personalises_once_per_photo_content_and_weights(needy_weights, weights, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("EXPORT3D_CACHE", str(cache))
    common = ("--max-frames", "2", "-q")
    first = invoke("animate", PHOTO, DRIVER, "-o", tmp_path / "a.mp4", "--weights", needy_weights, *common)
    assert first.code == 0, first.err
    (made,) = cached_files(cache)
    photo_hash = hashlib.sha256(PHOTO.read_bytes()).hexdigest()
    assert made.name == f"{photo_hash}-face0-steps3-v{PERSONALIZATION_VERSION}.safetensors"
    assert json.loads(made.with_suffix(".json").read_text())["version"] == PERSONALIZATION_VERSION
    stamp = made.stat().st_mtime_ns
    renamed = tmp_path / "renamed.jpg"
    renamed.write_bytes(PHOTO.read_bytes())
    again = invoke("animate", renamed, DRIVER, "-o", tmp_path / "b.mp4", "--weights", needy_weights, *common)
    assert again.code == 0, again.err
    assert cached_files(cache) == [made] and made.stat().st_mtime_ns == stamp  # reused, not redone
    assert (tmp_path / "a.mp4").read_bytes() == (tmp_path / "b.mp4").read_bytes()
    # Weights that do not ask for it are used as they are, and add nothing to the cache.
    plain = invoke("animate", PHOTO, DRIVER, "-o", tmp_path / "c.mp4", "--weights", weights, *common)
    assert plain.code == 0 and cached_files(cache) == [made]


def test_the_cache_keeps_apart_faces_step_counts_and_personalisation_versions(tmp_path, monkeypatch):
    from export3d_cli.personalization import cache

    monkeypatch.setenv("EXPORT3D_CACHE", str(tmp_path))
    base, photo = "ab" * 32, "cd" * 32
    reference = cache.cached_file(base, photo, face_index=0, steps=300)
    assert reference == cache.cached_file(base, photo, face_index=0, steps=300)
    assert reference.parent == tmp_path / "personalized" / base[:16]
    others = {
        cache.cached_file(base, photo, face_index=1, steps=300),
        cache.cached_file(base, photo, face_index=0, steps=100),
        cache.cached_file("ef" * 32, photo, face_index=0, steps=300),
        cache.cached_file(base, "01" * 32, face_index=0, steps=300),
    }
    monkeypatch.setattr(cache, "PERSONALIZATION_VERSION", PERSONALIZATION_VERSION + 1)
    others.add(cache.cached_file(base, photo, face_index=0, steps=300))
    assert len(others) == 5 and reference not in others


def test_no_personalize_uses_the_base_model(needy_weights, weights, tmp_path, monkeypatch):
    monkeypatch.setenv("EXPORT3D_CACHE", str(tmp_path / "cache"))
    common = ("--max-frames", "2", "-q")
    skipped = invoke(
        "animate", PHOTO, DRIVER, "-o", tmp_path / "a.mp4", "--weights", needy_weights, "--no-personalize", *common
    )
    assert skipped.code == 0, skipped.err
    assert not cached_files(tmp_path / "cache")
    base = invoke("animate", PHOTO, DRIVER, "-o", tmp_path / "b.mp4", "--weights", weights, *common)
    assert base.code == 0
    assert (tmp_path / "a.mp4").read_bytes() == (tmp_path / "b.mp4").read_bytes()  # same tensors, same model


def test_personalized_and_no_personalize_together_are_refused(needy_weights, tmp_path):
    result = invoke(
        "novel-view",
        PHOTO,
        "-o",
        tmp_path / "x.png",
        "--weights",
        needy_weights,
        "--no-personalize",
        "--personalized",
        tmp_path,
    )
    assert_one_clean_error(result, names="contradict each other")
