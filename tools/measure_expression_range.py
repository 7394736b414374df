"""Record the training frames' expression range in existing weights (``models/expression_range.py``).

    python tools/measure_expression_range.py WEIGHTS DATASET [--tail 0.005]

``export3d train`` records the range itself; this is for weights trained before it did. The range is measured
over the training split of DATASET (the one the weights were trained on) and written into WEIGHTS/config.json
beside ``"config"`` (atomically; every other key is kept), so model.safetensors and the weights' identity that
personalised files are keyed by do not change.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from export3d_cli.atomic import atomic_write_text
from export3d_cli.models.expression_range import TAIL, measure_expression_range, with_expression_range
from export3d_cli.models.weights_io import CONFIG_FILE, load_model
from export3d_cli.training.dataset import ClipDataset


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("weights", type=Path)
    parser.add_argument("dataset", type=Path)
    parser.add_argument("--tail", type=float, default=TAIL, help="share of frames left out on each side")
    args = parser.parse_args()
    model = load_model(args.weights)
    data = ClipDataset(args.dataset, resolution=model.config.resolution)
    frames = torch.from_numpy(data.measured_expressions(data.clips("train"))).float()
    expression_range = measure_expression_range(model.expression_encoder, frames, args.tail)
    path = args.weights / CONFIG_FILE
    payload = with_expression_range(json.loads(path.read_text(encoding="utf-8")), expression_range)
    atomic_write_text(path, json.dumps(payload, indent=2) + "\n")
    print(f"{path}: expression range over {expression_range.frames} training frames")
    for i, (low, high) in enumerate(zip(expression_range.low, expression_range.high, strict=True)):
        print(f"  lambda_{i}: [{low:+.4f}, {high:+.4f}]")


if __name__ == "__main__":
    main()
