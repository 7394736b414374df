"""What each CLeBS basis direction does (paper Fig. 9), as a table: ``sweep-basis --measure`` over many sources.

    python tools/basis_sweep_table.py WEIGHTS DATASET [--sources 8] [--steps 7] [--json OUT]

For each basis index i, ``export3d sweep-basis`` (default ``--range auto``, ``--no-personalize``) runs on the first
frame of the first ``--sources`` test clips of DATASET (one per identity) with every blendshape's first → last
change kept; printed per i: the swept λ range, the share of tiles with a face, and the 4 largest mean changes (a
source whose tiles did not move a blendshape counts 0 there) with on how many sources the change has that sign.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import tempfile
from pathlib import Path

import numpy as np

import export3d_cli.cli.sweep_basis as sweep_basis
from export3d_cli.cli.app import run
from export3d_cli.data.dataset_layout import read_manifest
from export3d_cli.models.weights_io import read_config, resolve_weights


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("weights")
    parser.add_argument("dataset", type=Path)
    parser.add_argument("--sources", type=int, default=8)
    parser.add_argument("--steps", type=int, default=7)
    parser.add_argument("--json", type=Path, help="also write every sweep's summary here")
    args = parser.parse_args()
    sweep_basis.TOP_MOVES = 52  # keep every blendshape's change, not just the largest few
    clips, seen = [], set()
    for clip in read_manifest(args.dataset).clips:
        if clip.split == "test" and clip.identity not in seen:
            seen.add(clip.identity)
            clips.append(clip)
    sources = [args.dataset / "clips" / clip.id / "frames" / "000000.png" for clip in clips[: args.sources]]
    basis_size = read_config(resolve_weights(args.weights)).expression.basis_size
    summaries = {}
    with Path("/dev/null").open("w") as sink, tempfile.TemporaryDirectory() as scratch:
        for index in range(basis_size):
            per_source = []
            for number, source in enumerate(sources):
                text = io.StringIO()
                output = Path(scratch) / f"sweep_{index}_{number}.png"
                with contextlib.redirect_stdout(text), contextlib.redirect_stderr(sink):
                    code = run(["sweep-basis", str(source), "--index", str(index), "--steps", str(args.steps),
                                "--measure", "--json", "-q", "--no-personalize", "--weights", args.weights,
                                "-o", str(output)])  # fmt: skip
                output.unlink(missing_ok=True)
                if code == 0:
                    per_source.append(json.loads(text.getvalue()))
            summaries[index] = per_source
            print(_row(index, per_source), flush=True)
    if args.json:
        args.json.write_text(json.dumps(summaries, indent=1))


def _row(index: int, per_source: list[dict]) -> str:
    if not per_source:
        return f"| {index} | – | – | no sweep ran |"
    changes: dict[str, list[float]] = {}
    for summary in per_source:
        for name, delta in summary["moves"]:
            changes.setdefault(name, []).append(delta)
    count = len(per_source)
    mean = {name: sum(values) / count for name, values in changes.items()}
    largest = sorted(mean, key=lambda name: -abs(mean[name]))[:4]
    agree = {name: sum(np.sign(value) == np.sign(mean[name]) for value in changes[name]) for name in largest}
    values = per_source[0]["values"]
    faces = np.mean([np.mean(summary["face_found"]) for summary in per_source])
    moves = ", ".join(f"{name} {mean[name]:+.2f} ({agree[name]}/{count})" for name in largest)
    return f"| {index} | {values[0]:+.3f} … {values[-1]:+.3f} | {faces:.2f} | {moves} |"


if __name__ == "__main__":
    main()
