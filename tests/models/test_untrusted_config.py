"""config.json is untrusted input: bad values are one clear WeightsError, checked before anything is allocated."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from export3d_cli.config import preset
from export3d_cli.errors import WeightsError
from export3d_cli.models.export3d import Export3D
from export3d_cli.models.weights_io import expected_shapes, load_model


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory) -> Path:
    return Export3D(preset("tiny")).save_pretrained(tmp_path_factory.mktemp("tiny") / "model")


def _with_config(tiny_dir: Path, tmp_path: Path, edit) -> Path:
    directory = tmp_path / "model"
    directory.mkdir()
    (directory / "model.safetensors").symlink_to(tiny_dir / "model.safetensors")
    payload = json.loads((tiny_dir / "config.json").read_text())
    edit(payload["config"])
    (directory / "config.json").write_text(json.dumps(payload))
    return directory


@pytest.mark.parametrize(
    ("section", "key", "value", "message"),
    [
        ("generator", "depth", 1e9, "expected an integer from 1 to 4096"),
        ("generator", "width", -64, "expected an integer from 1 to 4096"),
        ("generator", "heads", 0, "expected an integer from 1 to 4096"),
        ("generator", "heads", 2.0, "expected an integer"),
        ("generator", "heads", True, "expected an integer"),
        ("generator", "mlp_ratio", float("nan"), "expected a finite number"),
        ("generator", "ema_momentum", 1.5, "must be in [0, 1)"),
        ("renderer", "box_warp", 0, "must be > 0"),
        ("generator", "stem_channels", [8], "expected a list of 2 integers"),
        ("renderer", "plane_axes", 3, "expected str"),
    ],
)
def test_a_bad_config_value_is_one_clear_error(tiny_dir, tmp_path, section, key, value, message):
    directory = _with_config(tiny_dir, tmp_path, lambda config: config[section].__setitem__(key, value))
    with pytest.raises(WeightsError, match=re.escape(f"config.{section}.{key}: {message}")):
        load_model(directory)


def test_a_consistent_but_enormous_config_is_refused_before_allocation(tiny_dir, tmp_path):
    def enormous(config):
        config["generator"].update(width=4096, heads=16, depth=64)

    with pytest.raises(WeightsError, match=r"describes a model of [\d,]+ M values \(limit 1,000 M\)"):
        load_model(_with_config(tiny_dir, tmp_path, enormous))


def test_a_config_that_does_not_match_the_weights_is_found_from_the_header(tiny_dir, tmp_path):
    directory = _with_config(tiny_dir, tmp_path, lambda config: config["generator"].update(width=512, heads=8))
    with pytest.raises(WeightsError, match=r"does not match config\.json .*wrong shape"):
        load_model(directory)


def test_expected_shapes_match_a_real_model_without_allocating_one():
    config = preset("tiny")
    real = {name: tuple(t.shape) for name, t in Export3D(config).state_dict().items()}
    assert expected_shapes(config) == real


def test_deeply_nested_json_is_one_clear_error(tiny_dir, tmp_path):
    directory = tmp_path / "model"
    directory.mkdir()
    (directory / "model.safetensors").symlink_to(tiny_dir / "model.safetensors")
    (directory / "config.json").write_text('{"config": ' + "[" * 100_000 + "]" * 100_000 + "}")
    with pytest.raises(WeightsError, match="nested too deeply"):
        load_model(directory)
