"""Memory of `export3d animate` against driving-video length: RSS after 100 frames vs after 2,000 frames.

The whole animate path runs (source analysis, Animator, streamed render → H.264 encode) on a 2,000-frame
motion (a synthetic driver, so no video has to be analysed first) at R = 256: a model with the `tiny`
sections at resolution 256. Memory must stay flat: frames are rendered in batches and piped to ffmpeg.

    python benchmarks/bench_animate_memory.py [--frames 2000] [--resolution 256]
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from pathlib import Path

import numpy as np


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=2000)
    parser.add_argument("--resolution", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=8)
    args = parser.parse_args()

    import torch

    from export3d_cli.config import preset
    from export3d_cli.face.analysis import analyze_image
    from export3d_cli.face.head_pose import look_at_pose
    from export3d_cli.face.motion_file import Motion
    from export3d_cli.media.image_io import load_image
    from export3d_cli.models import Export3D
    from export3d_cli.pipeline.animate_job import AnimateOptions, animate_source
    from export3d_cli.pipeline.animator import Animator
    from export3d_cli.pipeline.driving import Driving
    from export3d_cli.synth.trajectories import camera_trajectory, expression_trajectory

    torch.manual_seed(0)
    config = dataclasses.replace(preset("tiny"), resolution=args.resolution)
    animator = Animator(Export3D(config), device="cpu", batch_size=args.batch_size)
    rng = np.random.default_rng(0)
    controls = expression_trajectory(rng, args.frames, 25.0)
    expression = np.zeros((args.frames, 52), np.float32)
    expression[:, 25] = controls[:, 0]  # jawOpen
    expression[:, 9:11] = controls[:, 3:5]  # blinks
    angles = camera_trajectory(rng, args.frames, 25.0)
    camera = np.stack([look_at_pose(float(y), float(p)).label() for y, p in angles])
    motion = Motion(expression, camera, np.ones(args.frames, bool), 25.0, "")
    driving = Driving(motion=motion, path=Path("synthetic-motion"), video=None)
    image = load_image("examples/source.png")
    analysis = analyze_image(image, name="examples/source.png")

    samples: dict[int, float] = {}
    started = time.perf_counter()

    def on_frame(done: int, total: int) -> None:
        if done in (100, total) or done % 500 == 0:
            samples[done] = rss_mb()

    with tempfile.TemporaryDirectory() as work:
        output = Path(work) / "out.mp4"
        animate_source(
            animator, Path("examples/source.png"), image, analysis, driving, output, AnimateOptions(), on_frame
        )
        size_mb = output.stat().st_size / 1e6
    elapsed = time.perf_counter() - started
    print(f"resolution {args.resolution}, {args.frames} frames in {elapsed:.1f} s ({args.frames / elapsed:.1f} fps)")
    print(f"output {size_mb:.1f} MB")
    for done, rss in sorted(samples.items()):
        print(f"RSS after {done:5d} frames: {rss:7.1f} MB")
    growth = samples[max(samples)] - samples[100]
    print(f"growth from 100 to {max(samples)} frames: {growth:+.1f} MB (limit +200 MB)")


if __name__ == "__main__":
    main()
