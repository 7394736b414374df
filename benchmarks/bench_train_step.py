"""Training step time, this checkout against another one, side by side.

Runs ``export3d train`` at a preset (default ``small-128``, batch 8) for ``--steps`` steps in each
checkout on the same dataset, alternating checkouts (baseline, this, baseline, this, ...) so that
load on the machine hits both alike. Each run logs ``steps_per_s`` every 10 steps; the first 10
steps (warm-up: allocator, caches, the expression statistics pass) are left out and the rest of
the intervals give the run's seconds per step. Medians over runs are printed with their ratio.
Validation and checkpoints are off, so only optimisation steps are timed. β reaches G through the
``direct`` expression encoder (an MLP), so no CLeBS run is needed: the baseline may predate
``--init`` and read CLeBS runs of another format; the encoder is a negligible part of a step.

Personalisation (``export3d personalize``) runs the same forward + backward through G's tri-plane
head, the renderer and SR, so its step time moves with this one.

    python benchmarks/bench_train_step.py --baseline ../export3d-old [--data DIR] [--repeats 3] [--steps 40]

Without ``--data``, a small dataset is made first with this checkout's ``export3d synth``
(4 identities, 2 clips of 24 frames, at the preset's resolution).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]
RESOLUTION = {"tiny": 64, "small-128": 128, "paper-256": 256}


def _run(tree: Path, *args: str) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    environment["PYTHONPATH"] = str(tree)
    return subprocess.run(
        [sys.executable, "-m", "export3d_cli", *args],
        cwd=tree,
        env=environment,
        capture_output=True,
        text=True,
        check=True,
    )


def seconds_per_step(run_dir: Path) -> float:
    """Median seconds per step over the logged intervals after the first 10 steps."""
    records = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines() if line.strip()]
    rates = [r["steps_per_s"] for r in records if "steps_per_s" in r and r.get("step", 0) > 10]
    if not rates:
        raise SystemExit(f"{run_dir}: no step rates logged after step 10 (use --steps 30 or more)")
    return statistics.median(1.0 / rate for rate in rates)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline", type=Path, required=True, help="another export3d checkout")
    parser.add_argument("--data", type=Path, help="a dataset folder (default: a small synthetic one)")
    parser.add_argument("--preset", default="small-128", choices=list(RESOLUTION))
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    trees = {"baseline": args.baseline.resolve(), "this": HERE}
    times: dict[str, list[float]] = {name: [] for name in trees}
    with tempfile.TemporaryDirectory() as scratch:
        data = args.data
        if data is None:  # made by this checkout; a baseline must read the same dataset format
            data = Path(scratch) / "data"
            _run(HERE, "synth", "-o", str(data), "--identities", "4", "--clips-per-identity", "2", "--frames", "24",
                 "--resolution", str(RESOLUTION[args.preset]), "-q")  # fmt: skip
        for repeat in range(args.repeats):
            for name, tree in trees.items():
                run_dir = Path(scratch) / f"{name}-{repeat}"
                _run(tree, "train", str(data.resolve()), "-o", str(run_dir), "--preset", args.preset,
                     "--steps", str(args.steps), "--batch-size", str(args.batch_size),
                     "--eval-every", "0", "--checkpoint-every", "0", "--expression-encoder", "direct",
                     "-q")  # fmt: skip
                times[name].append(seconds_per_step(run_dir))

    print(
        f"export3d train --preset {args.preset} --batch-size {args.batch_size}, {args.steps} steps, "
        f"{args.repeats} alternating runs, load {os.getloadavg()[0]:.1f}"
    )
    for name, tree in trees.items():
        runs = ", ".join(f"{t:.3f}" for t in times[name])
        print(f"{name:<9} {tree}: {statistics.median(times[name]):.3f} s/step (runs: {runs})")
    ratio = statistics.median(times["baseline"]) / statistics.median(times["this"])
    print(f"this is {ratio:.2f}x as fast as the baseline per training step")


if __name__ == "__main__":
    main()
