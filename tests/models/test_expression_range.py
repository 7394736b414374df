"""The training frames' coefficient range: clamping, its JSON, its round trip through a weights folder, and the
inference path that applies it (models/expression_range.py)."""

from __future__ import annotations

import json
import math
import re

import pytest
import torch
from model_support import sensitive_tiny_model

from export3d_cli.errors import WeightsError
from export3d_cli.models.expression_range import (
    RANGE_KEY,
    ExpressionRange,
    measure_expression_range,
    with_expression_range,
)
from export3d_cli.models.weights_io import CONFIG_FILE, load_model
from export3d_cli.personalization.personalized_file import weights_sha256

RANGE = ExpressionRange(low=(-1.0, 0.0, 2.0), high=(1.0, 0.5, 2.0), frames=10)


def test_clamp_keeps_values_inside_and_moves_the_rest_to_the_nearest_bound():
    coefficients = torch.tensor([[0.5, 0.25, 2.0], [-3.0, 7.0, 1.0], [4.0, -1.0, 5.0]])
    clamped = RANGE.clamp(coefficients)
    assert torch.equal(clamped, torch.tensor([[0.5, 0.25, 2.0], [-1.0, 0.5, 2.0], [1.0, 0.0, 2.0]]))


def test_clamp_widens_the_range_to_include_the_kept_coefficients_only_where_they_lie_outside():
    keep = torch.tensor([[-2.0, 0.25, 3.0]])
    clamped = RANGE.clamp(torch.tensor([[-5.0, 9.0, 9.0], [5.0, -9.0, -9.0]]), keep)
    assert torch.equal(clamped, torch.tensor([[-2.0, 0.5, 3.0], [1.0, 0.0, 2.0]]))
    assert torch.equal(RANGE.clamp(keep, keep), keep), "the kept coefficients themselves pass unchanged"


def test_measured_range_is_the_quantiles_of_the_training_coefficients():
    model = sensitive_tiny_model()
    frames = torch.rand(401, model.config.expression.expression_dim)
    measured = measure_expression_range(model.expression_encoder, frames, tail=0.01)
    with torch.no_grad():
        coefficients = model.expression_encoder.coefficients_of(frames).double()
    # With 401 frames the 1% / 99% quantiles are the 5th smallest and 5th largest values exactly.
    ordered = coefficients.sort(dim=0).values
    assert measured.low == pytest.approx(ordered[4].tolist(), abs=1e-6)
    assert measured.high == pytest.approx(ordered[-5].tolist(), abs=1e-6)
    assert measured.frames == 401 and measured.tail == 0.01
    inside = (coefficients >= torch.tensor(measured.low) - 1e-6) & (coefficients <= torch.tensor(measured.high) + 1e-6)
    assert inside.all(dim=1).float().mean() < 1.0 and inside.float().mean() > 0.97


def test_json_round_trip_and_every_malformed_entry_is_one_weights_error():
    assert ExpressionRange.from_json(RANGE.to_json(), 3, "c.json") == RANGE
    bad = [
        [],
        {"low": [0, 0], "high": [1, 1, 1]},
        {"low": [0, 0, math.inf], "high": [1, 1, 1]},
        {"low": [0, 0, "0"], "high": [1, 1, 1]},
        {"low": [0, 0, True], "high": [1, 1, 1]},
        {"low": [0, 2, 0], "high": [1, 1, 1]},
        {"low": [0, 0, 0], "high": [1, 1, 1], "frames": -1},
        {"low": [0, 0, 0], "high": [1, 1, 1], "tail": 0.5},
    ]
    for entry in bad:
        with pytest.raises(WeightsError, match=r"c\.json"):
            ExpressionRange.from_json(entry, 3, "c.json")


def test_the_range_round_trips_through_a_weights_folder_without_changing_the_weights_identity(tmp_path):
    model = sensitive_tiny_model()
    model.save_pretrained(tmp_path / "plain")
    assert RANGE_KEY not in json.loads((tmp_path / "plain" / CONFIG_FILE).read_text())
    assert load_model(tmp_path / "plain").expression_range is None
    n = model.config.expression.basis_size
    model.expression_range = ExpressionRange(tuple(-0.1 * (i + 1) for i in range(n)), (0.3,) * n, frames=7)
    model.save_pretrained(tmp_path / "ranged")
    assert load_model(tmp_path / "ranged").expression_range == model.expression_range
    # Beside "config", not in it: adding it to a folder's config.json keeps the weights' identity, so personalised
    # files made for the weights stay valid. (Two saves of one model may differ in the safetensors header's order.)
    before = weights_sha256(tmp_path / "plain")
    config_path = tmp_path / "plain" / CONFIG_FILE
    ranged = with_expression_range(json.loads(config_path.read_text()), model.expression_range)
    config_path.write_text(json.dumps(ranged))
    assert load_model(tmp_path / "plain").expression_range == model.expression_range
    assert weights_sha256(tmp_path / "plain") == before


def test_a_malformed_range_in_config_json_refuses_the_weights(tmp_path):
    model = sensitive_tiny_model()
    model.save_pretrained(tmp_path)
    payload = json.loads((tmp_path / CONFIG_FILE).read_text())
    (tmp_path / CONFIG_FILE).write_text(json.dumps({**payload, RANGE_KEY: {"low": [0.0], "high": [1.0]}}))
    with pytest.raises(WeightsError, match=re.escape(f"{RANGE_KEY}.low must be a list of")):
        load_model(tmp_path)


def test_with_expression_range_sets_replaces_and_removes_the_entry():
    payload = {"config": {}, "personalization": {"needed": True}}
    ranged = with_expression_range(payload, RANGE)
    assert ranged[RANGE_KEY] == RANGE.to_json() and ranged["personalization"] == {"needed": True}
    assert with_expression_range(ranged, None) == payload


def test_driving_embedding_clamps_the_coefficients_and_keeps_the_sources_own():
    model = sensitive_tiny_model()
    encoder = model.expression_encoder
    torch.manual_seed(1)
    source, driving = torch.rand(1, 52), torch.rand(6, 52)
    with torch.no_grad():
        assert torch.equal(model.driving_embedding(driving, source), encoder(driving)), "no range: f_e(β)"
        source_coefficients = encoder.coefficients_of(source)[0]
        # A range collapsed onto a point the source lies outside of on every coefficient.
        point = tuple((source_coefficients + 1.0).tolist())
        model.expression_range = ExpressionRange(point, point, frames=2)
        embedded = model.driving_embedding(driving, source)
        expected = encoder.from_coefficients(
            model.expression_range.clamp(encoder.coefficients_of(driving), source_coefficients)
        )
        assert torch.allclose(embedded, expected)
        assert torch.allclose(model.driving_embedding(source, source), encoder(source), atol=1e-6)
        assert not torch.allclose(embedded, encoder(driving), atol=1e-3)
    with pytest.raises(ValueError, match="52 values"):
        model.driving_embedding(torch.zeros(1, 3))
