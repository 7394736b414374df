"""tools/measure_expression_range.py: records the training frames' range in a weights folder, changing nothing else."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import torch
from model_support import saved_tiny_weights

from export3d_cli.models.expression_range import RANGE_KEY, measure_expression_range
from export3d_cli.models.weights_io import CONFIG_FILE, WEIGHTS_FILE, load_model
from export3d_cli.training.dataset import ClipDataset

TOOL = Path(__file__).resolve().parents[2] / "tools" / "measure_expression_range.py"


def test_the_tool_writes_the_training_splits_range_beside_config_and_keeps_the_rest(mini_dataset, tmp_path):
    weights = saved_tiny_weights(tmp_path / "weights")
    config_path = weights / CONFIG_FILE
    payload = json.loads(config_path.read_text())
    config_path.write_text(json.dumps({**payload, "personalization": {"needed": True}}))
    weights_bytes = (weights / WEIGHTS_FILE).read_bytes()
    subprocess.run([sys.executable, str(TOOL), str(weights), str(mini_dataset.root)], check=True, capture_output=True)
    written = json.loads(config_path.read_text())
    assert written["config"] == payload["config"] and written["personalization"] == {"needed": True}
    assert (weights / WEIGHTS_FILE).read_bytes() == weights_bytes
    model = load_model(weights)
    data = ClipDataset(mini_dataset.root, resolution=model.config.resolution)
    frames = torch.from_numpy(data.measured_expressions(data.clips("train"))).float()
    assert model.expression_range == measure_expression_range(model.expression_encoder, frames)
    assert written[RANGE_KEY]["frames"] == len(frames)
