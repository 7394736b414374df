"""`export3d animate` end to end, this checkout against another one, side by side.

Times the whole command as a user runs it — interpreter start, imports, model and face-landmarker
loading, source analysis, rendering, H.264 encoding — on the example photo driven by a motion file
(100 frames of ``examples/driving.mp4``, so no driving video is analysed inside the timing), with
the bundled weights and personalisation off. Each checkout makes its own motion file with its own
``extract`` first (untimed). Runs alternate (baseline, this, baseline, this, ...) so that load on
the machine hits both alike; medians of wall-clock time and of peak RSS (``wait4``'s ``ru_maxrss``)
are printed with their ratios.

    python benchmarks/bench_animate.py --baseline ../export3d-old [--repeats 5] [-- extra animate options]

The baseline is any checkout of export3d (e.g. ``git worktree add ../export3d-old <commit>``);
each runs with its own source tree first on ``PYTHONPATH`` and this interpreter. A baseline that
predates ``--no-personalize`` never personalises, so it is run without that option.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]


def _environment(tree: Path) -> dict[str, str]:
    # Bytecode is cached as in a user's installation (the warm-up run writes it).
    environment = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    return {**environment, "PYTHONPATH": str(tree), "EXPORT3D_CACHE": tempfile.gettempdir() + "/bench-animate-cache"}


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "export3d_cli", *args]


def _knows(tree: Path, option: str) -> bool:
    help_text = subprocess.run(
        _cli("animate", "--help"), cwd=tree, env=_environment(tree), capture_output=True, text=True, check=True
    ).stdout
    return option in help_text


def _timed_run(tree: Path, command: list[str]) -> tuple[float, float]:
    """(wall seconds, peak RSS in MiB) of one run of ``command`` in ``tree``."""
    start = time.perf_counter()
    process = subprocess.Popen(command, cwd=tree, env=_environment(tree), stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - start
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise SystemExit(f"{tree}: {' '.join(command[2:])} exited {process.returncode}")
    return wall, usage.ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline", type=Path, required=True, help="another export3d checkout")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("extra", nargs="*", help="more animate options for both (after --)")
    args = parser.parse_args()

    trees = {"baseline": args.baseline.resolve(), "this": HERE}
    with tempfile.TemporaryDirectory() as scratch:
        commands = {}
        for name, tree in trees.items():
            motion = Path(scratch) / f"{name}.npz"
            subprocess.run(
                _cli("extract", "examples/driving.mp4", "-o", str(motion), "-q"),
                cwd=tree,
                env=_environment(tree),
                stdout=subprocess.DEVNULL,
                check=True,
            )
            options = ["--no-personalize"] if _knows(tree, "--no-personalize") else []
            output = str(Path(scratch) / f"{name}.mp4")
            commands[name] = _cli("animate", "examples/source.png", str(motion), "-o", output, "-q", *options)
            commands[name] += args.extra
        for name in trees:  # warm-up: page cache, __pycache__
            _timed_run(trees[name], commands[name])
        wall: dict[str, list[float]] = {name: [] for name in trees}
        rss: dict[str, list[float]] = {name: [] for name in trees}
        for _ in range(args.repeats):
            for name, tree in trees.items():
                seconds, megabytes = _timed_run(tree, commands[name])
                wall[name].append(seconds)
                rss[name].append(megabytes)

    load = os.getloadavg()[0]
    print(f"animate examples/source.png <100-frame motion file>, {args.repeats} alternating runs, load {load:.1f}")
    for name, tree in trees.items():
        times = ", ".join(f"{t:.2f}" for t in wall[name])
        print(
            f"{name:<9} {tree}: wall median {statistics.median(wall[name]):6.2f} s ({times}); "
            f"peak RSS median {statistics.median(rss[name]):6.0f} MiB"
        )
    speedup = statistics.median(wall["baseline"]) / statistics.median(wall["this"])
    memory = statistics.median(rss["this"]) / statistics.median(rss["baseline"])
    print(f"this is {speedup:.2f}x as fast as the baseline; peak RSS x{memory:.2f}")


if __name__ == "__main__":
    main()
