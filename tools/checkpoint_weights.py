"""Export one of a training checkpoint's two models as a model folder (``model.safetensors`` + ``config.json``).

``export3d train`` exports the EMA weights (decay 0.999). After a short fine-tune from ``--init`` the EMA is still
mostly the starting weights (0.999^500 ≈ 0.61 of them after 500 steps), so a diagnosis of what the fine-tune
changed must look at the live weights:

    python tools/checkpoint_weights.py RUN OUT [--which model|ema]

RUN is a ``train`` run folder (its ``checkpoint/`` and ``model/config.json`` are read); OUT is created.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from safetensors.torch import load_file

from export3d_cli.models.weights_io import load_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("output", type=Path)
    parser.add_argument("--which", choices=("model", "ema"), default="model")
    args = parser.parse_args()
    model = load_model(args.run / "model")  # the run's config (and EMA weights, replaced below)
    modules = load_file(str(args.run / "checkpoint" / "modules.safetensors"))
    prefix = f"{args.which}."
    state = {name.removeprefix(prefix): value for name, value in modules.items() if name.startswith(prefix)}
    model.load_state_dict(state, strict=True)
    model.save_pretrained(args.output)
    print(args.output)


if __name__ == "__main__":
    main()
