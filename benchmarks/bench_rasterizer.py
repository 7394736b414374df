"""Time of ``export3d_cli.synth.rasterizer.rasterize`` on a head-sized sphere plus a few large triangles.

The scene mimics a synthetic head: a UV sphere of ~14.5k triangles (about half facing the camera,
~6k of them covering a pixel centre at 512²) filling ~80% of the image height at EG3D's FFHQ focal
length, plus four large triangles of about a quarter of the image each, two behind the sphere and
two partly in front of it. Prints the median
over --repeats runs (after one warm-up) per resolution, with and without back-face culling.
Usage:

    python benchmarks/bench_rasterizer.py [--resolutions 256 512] [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import time
from functools import partial

import numpy as np

from export3d_cli.synth.rasterizer import interpolate, project, rasterize

FFHQ_FOCAL = 4.2647


def uv_sphere(rings: int, segments: int, radius: float, centre: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Vertices [V, 3] and triangles [F, 3] (counter-clockwise seen from outside) of a UV sphere."""
    theta = np.linspace(0.0, np.pi, rings + 1)[:, None]  # polar angle from -y (the top, y is down)
    phi = np.linspace(0.0, 2.0 * np.pi, segments, endpoint=False)[None, :]
    ring = np.stack(
        [np.sin(theta) * np.cos(phi), -np.cos(theta) * np.ones_like(phi), np.sin(theta) * np.sin(phi)], axis=-1
    )
    vertices = ring.reshape(-1, 3) * radius + centre
    i, j = np.meshgrid(np.arange(rings), np.arange(segments), indexing="ij")
    a = i * segments + j
    b = i * segments + (j + 1) % segments
    c = a + segments
    d = b + segments
    quads = np.stack([a, b, c, d], axis=-1).reshape(-1, 4)
    triangles = np.concatenate([quads[:, [0, 2, 1]], quads[:, [1, 2, 3]]])
    # Drop the zero-area triangles at the poles, as a real mesh would not have them.
    return vertices, triangles[(triangles[:, 1] // segments != 0) | (triangles[:, 0] // segments != 0)]


def scene() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Camera-space points [V, 3], triangles [F, 3], intrinsics [3, 3] (normalised)."""
    vertices, triangles = uv_sphere(66, 110, 0.2, np.array([0.0, 0.0, 2.7]))
    large = np.array(
        [
            [[-0.4, -0.4, 3.5], [0.05, -0.4, 3.5], [-0.4, 0.05, 3.5]],  # behind, top-left
            [[0.4, 0.4, 3.4], [-0.05, 0.4, 3.4], [0.4, -0.05, 3.4]],  # behind, bottom-right
            [[-0.25, 0.0, 2.3], [0.0, 0.28, 2.3], [-0.28, 0.28, 2.6]],  # in front, bottom-left
            [[0.0, -0.28, 2.4], [0.28, -0.28, 2.5], [0.28, 0.0, 2.4]],  # in front, top-right
        ]
    )
    points = np.concatenate([vertices, large.reshape(-1, 3)])
    extra = len(vertices) + np.arange(len(large) * 3).reshape(-1, 3)
    intrinsics = np.array([[FFHQ_FOCAL, 0.0, 0.5], [0.0, FFHQ_FOCAL, 0.5], [0.0, 0.0, 1.0]])
    return points, np.concatenate([triangles, extra[:, [0, 2, 1]]]), intrinsics


def timed(fn, repeats: int) -> float:
    """Median seconds of fn() over ``repeats`` runs after one warm-up."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resolutions", type=int, nargs="+", default=[256, 512])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    points, triangles, intrinsics = scene()
    print(f"mesh: {len(points)} vertices, {len(triangles)} triangles")
    for size in args.resolutions:
        screen, depth = project(points, intrinsics, size, size)
        for cull in (False, True):
            fragments = rasterize(screen, depth, triangles, size, size, cull_backfaces=cull)
            visible = len(np.unique(fragments.triangle[fragments.mask]))
            seconds = timed(partial(rasterize, screen, depth, triangles, size, size, cull_backfaces=cull), args.repeats)
            print(
                f"{size}x{size} cull_backfaces={cull!s:5}: rasterize {seconds * 1e3:7.2f} ms median "
                f"({visible} visible triangles, {fragments.mask.mean():.0%} of pixels covered)"
            )
        normals = np.zeros((len(points), 3))
        shade = timed(partial(interpolate, fragments, triangles, normals), args.repeats)
        print(f"{size}x{size} interpolate 3 channels: {shade * 1e3:7.2f} ms median")


if __name__ == "__main__":
    main()
