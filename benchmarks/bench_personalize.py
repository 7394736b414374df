"""Time and peak memory of `export3d personalize` for one photo at the bundled preset (DESIGN §10; target ≤ 3 min
on 2 CPU cores).

Each repeat runs the real CLI in a fresh process (``--json``: the tuning time it reports) and measures its wall
time and peak RSS (``os.wait4``); the medians are printed with every run. Phases: everything before tuning (model
load, face analysis, the personal set) is wall time minus the tuning seconds the command reports.

    python benchmarks/bench_personalize.py [PHOTO] [--repeats 3] [--steps N] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_PHOTO = ROOT / "tests" / "data" / "real_faces" / "obama_2010_blue_room.jpg"


def run_once(photo: Path, folder: Path, steps: int | None) -> dict:
    command = [sys.executable, "-m", "export3d_cli", "personalize", str(photo), "-o", str(folder), "--json", "-q"]
    if steps is not None:
        command += ["--steps", str(steps)]
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - start
    out, err = process.stdout.read(), process.stderr.read()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"personalize failed: {err.decode(errors='replace').strip()}")
    summary = json.loads(out)
    return {
        "wall_s": wall,
        "tuning_s": summary["seconds"],
        "peak_rss_mb": usage.ru_maxrss / 1024,
        "steps": summary["steps"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("photo", nargs="?", type=Path, default=DEFAULT_PHOTO)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=None, help="default: the CLI's")
    args = parser.parse_args()
    runs = []
    for repeat in range(args.repeats):
        with tempfile.TemporaryDirectory() as folder:
            run = run_once(args.photo, Path(folder), args.steps)
        runs.append(run)
        print(
            f"run {repeat + 1}: {run['wall_s']:.1f} s wall ({run['tuning_s']:.1f} s tuning, {run['steps']} steps), "
            f"peak RSS {run['peak_rss_mb']:.0f} MB",
            flush=True,
        )
    wall = statistics.median(run["wall_s"] for run in runs)
    tuning = statistics.median(run["tuning_s"] for run in runs)
    rss = statistics.median(run["peak_rss_mb"] for run in runs)
    print(
        f"median of {len(runs)}: {wall:.1f} s wall, of which {tuning:.1f} s tuning and {wall - tuning:.1f} s "
        f"before it (model load, face analysis, personal set); peak RSS {rss:.0f} MB; torch threads "
        f"{os.environ.get('OMP_NUM_THREADS', 'default')}"
    )


if __name__ == "__main__":
    main()
