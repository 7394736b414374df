"""Peak memory of the CLI on resource bombs: small files whose headers declare huge images, frames or arrays.

Each case writes its hostile file (with the writers in ``tests/test_resource_limits.py``), runs the real CLI on
it in a fresh process, and prints the exit code, the peak RSS of that process and of the ffmpeg it waited for
(``os.wait4``), the time, and the first ``Error:`` line. The baseline is the CLI refusing a missing driver after
importing the model code: the floor every case pays. Linux only.

    python benchmarks/bench_hostile_memory.py [--cases grey-png npz-declared ...]

To measure another checkout (e.g. before a fix), run this script from that checkout's root with it on the path
(``cd OLD && PYTHONPATH=. python /path/to/bench_hostile_memory.py``): ``python -m export3d_cli`` imports the
package from the current folder.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from test_resource_limits import (  # noqa: E402  (tests/ is not a package)
    run_measured,
    write_mkv_bomb,
    write_npz_declaring,
    write_npz_inflating,
    write_png_bomb,
)

EXAMPLE_PHOTO = ROOT / "examples" / "source.png"

# name -> (what the hostile user reported, writer of the file into a folder, CLI arguments for file, folder, weights)
Case = tuple[str, Callable[[Path], Path], Callable[[Path, Path, Path], list[object]]]


def _novel_view(bomb: Path, work: Path, weights: Path) -> list[object]:
    return ["novel-view", bomb, "--yaw", 10, "-o", work / "out.png", "--weights", weights]


def _animate(bomb: Path, work: Path, weights: Path) -> list[object]:
    return ["animate", EXAMPLE_PHOTO, bomb, "-o", work / "out.mp4", "--weights", weights]


CASES: dict[str, Case] = {
    "baseline": ("the CLI refusing a missing driver", lambda work: work / "missing.mp4", _animate),
    "grey-png": (
        "17000² PNG as source photo (3.4 GB reported)",
        lambda work: write_png_bomb(work / "grey.png", 17000, 17000),
        _novel_view,
    ),
    "transparent-png": (
        "17000² transparent PNG as source photo (5.4 GB reported)",
        lambda work: write_png_bomb(work / "transparent.png", 17000, 17000, transparent=True),
        _novel_view,
    ),
    "mkv-frames": (
        "16000² MKV as driving video (3.7 GB reported)",
        lambda work: write_mkv_bomb(work / "frames.mkv", 16000, 16000),
        _animate,
    ),
    "npz-inflating": (
        "compressed motion .npz inflating by 600 MB",
        lambda work: write_npz_inflating(work / "inflating.npz", 2_900_000),
        _animate,
    ),
    "npz-declared": (
        "motion .npz declaring a 194 GiB array (MemoryError reported)",
        lambda work: write_npz_declaring(work / "declared.npz", (1_000_000_000, 52)),
        _animate,
    ),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="+", choices=sorted(CASES), default=list(CASES))
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per case")
    args = parser.parse_args()

    from export3d_cli.config import preset
    from export3d_cli.models.export3d import Export3D

    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        weights = Export3D(preset("tiny")).save_pretrained(work / "tiny")
        print(f"{'case':16} {'file':>9} {'exit':>4} {'peak RSS':>9} {'time':>6}  error")
        for name in args.cases:
            reported, write, command = CASES[name]
            bomb = write(work)
            size = f"{bomb.stat().st_size / 1e3:.0f} KB" if bomb.exists() else "-"
            started = time.perf_counter()
            run = run_measured(*command(bomb, work, weights), timeout=args.timeout)
            seconds = time.perf_counter() - started
            error = next((line for line in run.stderr.splitlines() if line.startswith("Error:")), "-")
            print(f"{name:16} {size:>9} {run.code:>4} {run.peak_rss_mb:>6.0f} MB {seconds:>5.1f}s  {error[:110]}")
            print(f"{'':16} {reported}")
            if bomb.exists():
                bomb.unlink()


if __name__ == "__main__":
    main()
