"""config.json is untrusted input: bad values are one clear WeightsError, checked before anything is allocated."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

from export3d_cli.config import preset
from export3d_cli.errors import WeightsError
from export3d_cli.models.allocation_budget import allocation_budget, requested_values
from export3d_cli.models.export3d import Export3D
from export3d_cli.models.weights_io import build_model, load_model


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

    with pytest.raises(
        WeightsError, match=r"config\.json: describes a model of over 1\.3 M values, more than its weights can fill"
    ):
        load_model(_with_config(tiny_dir, tmp_path, enormous))


def test_a_config_that_does_not_match_the_weights_is_found_from_the_header(tiny_dir, tmp_path):
    # Smaller than the weights (a larger model is refused while it is built, above).
    directory = _with_config(tiny_dir, tmp_path, lambda config: config["generator"].update(width=32, heads=2))
    with pytest.raises(WeightsError, match=r"does not match config\.json .*wrong shape"):
        load_model(directory)


def test_the_budgeted_build_is_the_plain_model():
    config = preset("tiny")
    torch.manual_seed(3)
    plain = Export3D(config).state_dict()
    torch.manual_seed(3)
    budgeted = build_model(config).state_dict()
    assert plain.keys() == budgeted.keys()
    assert all(torch.equal(plain[name], budgeted[name]) for name in plain)


@pytest.mark.parametrize(
    ("make", "values"),
    [
        (lambda: torch.empty(3, 4), 12),
        (lambda: torch.zeros((5, 2)), 10),
        (lambda: torch.randn(2, 3, generator=torch.Generator().manual_seed(0)), 6),
        (lambda: torch.full((4,), 1.5), 4),
        (lambda: torch.randint(0, 9, (7, 2)), 14),
        (lambda: torch.arange(2, 11, 3), 3),
        (lambda: torch.linspace(0, 1, 9), 9),
        (lambda: torch.eye(3, 5), 15),
        (lambda: torch.zeros_like(torch.tensor([1.0, 2.0])), 2),
    ],
)
def test_requested_values_is_the_size_each_constructor_allocates(make, values):
    seen = []

    class Record(torch.overrides.TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            seen.append(requested_values(func, args, kwargs or {}))
            return func(*args, **(kwargs or {}))

    with Record():
        result = make()
    assert seen[-1] == values == result.numel()


def test_the_budget_refuses_a_constructor_before_it_allocates():
    # 10^13 float32 values (40 TB) would fail to allocate with a RuntimeError, or not return at all.
    refused = pytest.raises(WeightsError, match=r"x\.json: describes a model of over 0\.0 M values")
    with refused, allocation_budget(1_000, "x.json"):
        torch.zeros(10, 10)  # 100 values: within the budget
        torch.empty(10**13)
    torch.empty(10**6)  # the budget ends with the block


def test_deeply_nested_json_is_one_clear_error(tiny_dir, tmp_path):
    directory = tmp_path / "model"
    directory.mkdir()
    (directory / "model.safetensors").symlink_to(tiny_dir / "model.safetensors")
    (directory / "config.json").write_text('{"config": ' + "[" * 100_000 + "]" * 100_000 + "}")
    with pytest.raises(WeightsError, match="nested too deeply"):
        load_model(directory)
