"""Peak memory of the driving-video analysis against video length: ``export3d extract`` on 600 vs N frames.

The driver is ``examples/driving.mp4`` (100 frames of a talking head) looped with ffmpeg's
``-stream_loop`` and re-encoded to H.264, so every frame is really decoded and analysed by the
face landmarker. Each length runs the real CLI in a fresh process (``run_measured`` from
tests/test_resource_limits.py: peak RSS of the CLI and the ffmpeg it waited for). Flat memory means
the analysis keeps only a few values per frame (β, pose, valid flag): the per-frame slope printed
at the end is (peak_long - peak_short) / (frames_long - frames_short). Linux only.

    python benchmarks/bench_extract_memory.py [--frames 600 6000]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from test_resource_limits import run_measured  # noqa: E402  (tests/ is not a package)

EXAMPLE_DRIVER = ROOT / "examples" / "driving.mp4"
EXAMPLE_FRAMES = 100


def looped_driver(folder: Path, frames: int) -> Path:
    """``examples/driving.mp4`` repeated to ``frames`` frames (H.264, audio dropped)."""
    import imageio_ffmpeg

    path = folder / f"driver-{frames}.mp4"
    loops = -(-frames // EXAMPLE_FRAMES) - 1
    subprocess.run(
        [imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-y", "-stream_loop", str(loops), "-i", str(EXAMPLE_DRIVER),
         "-frames:v", str(frames), "-an", "-c:v", "libx264", "-preset", "ultrafast", str(path)],
        check=True,
    )  # fmt: skip
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", nargs=2, type=int, default=[600, 6000], metavar=("SHORT", "LONG"))
    args = parser.parse_args()
    peaks = {}
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        for frames in args.frames:
            driver = looped_driver(folder, frames)
            start = time.perf_counter()
            run = run_measured("extract", driver, "-o", folder / f"motion-{frames}.npz", "-q", timeout=3600)
            seconds = time.perf_counter() - start
            if run.code != 0:
                raise SystemExit(f"extract of {frames} frames exited {run.code}: {run.stderr.strip()[-300:]}")
            peaks[frames] = run.peak_rss_mb
            print(f"extract, {frames:>6} frames: peak RSS {run.peak_rss_mb:7.1f} MiB, {seconds:6.1f} s")
    short, long = args.frames
    slope_kib = (peaks[long] - peaks[short]) * 1024 / (long - short)
    print(f"growth: {peaks[long] - peaks[short]:+.1f} MiB over {long - short} frames = {slope_kib:.2f} KiB per frame")


if __name__ == "__main__":
    main()
