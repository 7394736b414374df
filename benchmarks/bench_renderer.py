"""CPU time of the volume renderer against the reference renderer it replaced, side by side.

For each setting, one image (``--batch``) is rendered deterministically by
``render_triplanes`` (row-table tri-plane lookup, sort-free compositing, chunked
rays) and by ``render_triplanes_reference`` (``grid_sample``, features sorted with
their depths, all rays at once), forward only (no autograd) and forward + backward
(gradients for the tri-planes and the decoder, as in training). Repeats are
interleaved (old, new, old, new, ...) so that load on the machine hits both alike;
the medians of wall-clock and process CPU time are printed with their ratio, and
the largest absolute differences of outputs and gradients between the two.

With ``--eg3d DIR`` (the ``eg3d/`` folder of a checkout of NVlabs/eg3d; nothing of
EG3D ships with export3d), EG3D's own ``ImportanceRenderer`` + ``RaySampler`` are
timed as a third renderer, fed the same tri-planes, decoder weights and cameras
(EG3D's ``OSGDecoder`` is the same MLP; ours is wrapped in its call convention).
EG3D always jitters its depth samples, so every renderer here runs in its
stochastic (training) mode from the same seed; both draw the same random numbers
in the same order, which makes the outputs comparable to float rounding.

Settings (``export3d_cli.config.PRESETS`` for the presets):
  eg3d-ffhq  -- EG3D's FFHQ renderer: 256² tri-planes, 64² rays, 48 + 48 samples, "eg3d" planes
  eg3d-128   -- the same with 128² tri-planes
  paper-256  -- 128² tri-planes, 64² rays, 48 + 48 samples
  small-128  --  64² tri-planes, 32² rays, 24 + 24 samples

On a machine whose cores are busy with other work, libgomp's spinning worker
threads compete with that work after every parallel op; ``OMP_WAIT_POLICY=PASSIVE``
(or ``--threads 1``) gives steadier numbers there. Allocator: the renderer keeps its
intermediates small by chunking; glibc's defaults still return freed memory early,
``MALLOC_MMAP_THRESHOLD_`` / ``MALLOC_TRIM_THRESHOLD_`` (or jemalloc / tcmalloc) keep it.
Usage:

    python benchmarks/bench_renderer.py [--settings eg3d-ffhq paper-256 small-128] [--repeats 7]
                                        [--threads N] [--batch 1] [--modes forward backward]
                                        [--eg3d PATH/TO/eg3d/eg3d]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from export3d_cli.config import PRESETS, PlaneAxes
from export3d_cli.geometry.camera import Camera
from export3d_cli.models.rendering import RenderOutput, TriplaneDecoder, render_triplanes
from export3d_cli.models.rendering.reference import render_triplanes_reference


@dataclass(frozen=True)
class Setting:
    plane_size: int
    channels: int
    hidden: int
    resolution: int
    samples: int
    importance_samples: int
    plane_axes: PlaneAxes
    box_warp: float


def _preset_setting(name: str) -> Setting:
    config = PRESETS[name]
    r = config.renderer
    return Setting(
        plane_size=config.triplane_resolution,
        channels=config.generator.triplane_channels,
        hidden=r.decoder_hidden,
        resolution=config.render_resolution,
        samples=r.samples,
        importance_samples=r.importance_samples,
        plane_axes=r.plane_axes,
        box_warp=r.box_warp,
    )


SETTINGS: dict[str, Callable[[], Setting]] = {
    "eg3d-ffhq": lambda: Setting(256, 32, 64, 64, 48, 48, "eg3d", 1.0),
    "eg3d-128": lambda: Setting(128, 32, 64, 64, 48, 48, "eg3d", 1.0),
    "paper-256": lambda: _preset_setting("paper-256"),
    "small-128": lambda: _preset_setting("small-128"),
}
RENDERERS: dict[str, Callable[..., RenderOutput]] = {"old": render_triplanes_reference, "new": render_triplanes}


def eg3d_renderer(eg3d_dir: str) -> Callable[..., RenderOutput]:
    """EG3D's renderer from a local checkout, with ``render_triplanes``'s call signature."""
    sys.path.insert(0, eg3d_dir)
    from training.volumetric_rendering.ray_sampler import RaySampler  # from the user's checkout
    from training.volumetric_rendering.renderer import ImportanceRenderer

    ray_sampler, renderer = RaySampler(), ImportanceRenderer()

    def render(planes, decoder, cam2world, intrinsics, *, resolution, samples, importance_samples, box_warp, **_):
        def osg_decoder(sampled_features, _directions):  # [N, 3, M, C] -> EG3D's dict
            decoded = decoder(sampled_features.mean(1))
            return {"rgb": decoded.features, "sigma": decoded.sigma}

        origins, directions = ray_sampler(cam2world, intrinsics, resolution)
        options = {
            "ray_start": 2.25,
            "ray_end": 3.3,
            "box_warp": box_warp,
            "depth_resolution": samples,
            "depth_resolution_importance": importance_samples,
            "disparity_space_sampling": False,
            "clamp_mode": "softplus",
        }
        rgb, depth, opacity = renderer(planes, osg_decoder, origins, directions, options)  # [N, M, C|1]
        n = planes.shape[0]

        def image(x):
            return x.permute(0, 2, 1).reshape(n, -1, resolution, resolution)

        return RenderOutput(features=image(rgb), depth=image(depth), opacity=image(opacity))

    return render


def _scene(setting: Setting, batch: int) -> tuple[torch.Tensor, TriplaneDecoder, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    planes = torch.randn(batch, 3, setting.channels, setting.plane_size, setting.plane_size) * 0.5
    decoder = TriplaneDecoder(setting.channels, setting.hidden)
    camera = Camera.look_at(torch.linspace(0.2, -0.2, batch), torch.full((batch,), -0.1))
    return planes, decoder, camera.cam2world, camera.intrinsics


def _render(render, setting: Setting, planes, decoder, cam2world, intrinsics, backward: bool):
    """One render; with ``backward``, also the gradients of a loss on every output."""
    planes = planes.detach().requires_grad_(backward)
    decoder.zero_grad(set_to_none=True)
    torch.manual_seed(1)  # the same depth jitter and importance draws for every renderer
    with torch.set_grad_enabled(backward):
        out: RenderOutput = render(
            planes,
            decoder,
            cam2world,
            intrinsics,
            resolution=setting.resolution,
            samples=setting.samples,
            importance_samples=setting.importance_samples,
            box_warp=setting.box_warp,
            plane_axes=setting.plane_axes,
            stochastic=True,
        )
        if not backward:
            return out, {}
        (out.features.square().mean() + out.depth.mean() + out.opacity.mean()).backward()
    grads = {"planes": planes.grad, **{name: p.grad for name, p in decoder.named_parameters()}}
    return out, grads


def _max_differences(a, b) -> dict[str, float]:
    (out_a, grads_a), (out_b, grads_b) = a, b
    diffs = {
        name: (getattr(out_a, name) - getattr(out_b, name)).abs().max().item()
        for name in ("features", "depth", "opacity")
    }
    for name, grad in grads_a.items():
        diffs[f"d/d {name}"] = (grad - grads_b[name]).abs().max().item() / max(grad.abs().max().item(), 1e-30)
    return diffs


def bench(name: str, setting: Setting, batch: int, repeats: int, backward: bool) -> None:
    scene = _scene(setting, batch)
    results = {key: _render(fn, setting, *scene, backward) for key, fn in RENDERERS.items()}  # also warm-up
    wall: dict[str, list[float]] = {key: [] for key in RENDERERS}
    cpu: dict[str, list[float]] = {key: [] for key in RENDERERS}
    for _ in range(repeats):
        for key, fn in RENDERERS.items():
            start_wall, start_cpu = time.perf_counter(), time.process_time()
            _render(fn, setting, *scene, backward)
            wall[key].append(time.perf_counter() - start_wall)
            cpu[key].append(time.process_time() - start_cpu)
    w = {key: 1e3 * statistics.median(v) for key, v in wall.items()}
    c = {key: 1e3 * statistics.median(v) for key, v in cpu.items()}
    mode = "fwd+bwd" if backward else "forward"
    print(f"{name:<10} {mode:<8} " + "  ".join(f"{key} {w[key]:8.1f} ms (cpu {c[key]:8.1f})" for key in RENDERERS))
    for key in RENDERERS:
        if key == "new":
            continue
        print(
            " " * 20 + f"new / {key}: wall x{w['new'] / w[key]:.3f} (new {w[key] / w['new']:.2f}x faster), "
            f"cpu x{c['new'] / c[key]:.3f}"
        )
        diffs = _max_differences(results["new"], results[key])
        print(" " * 20 + f"max |new - {key}|: " + ", ".join(f"{k} {v:.1e}" for k, v in diffs.items()))
    if backward:
        print(" " * 20 + "(gradient differences relative to the largest gradient of the other renderer)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    parser.add_argument("--modes", nargs="+", default=["forward", "backward"], choices=["forward", "backward"])
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--eg3d", metavar="DIR", help="also time EG3D's renderer from this eg3d/ folder of a checkout")
    args = parser.parse_args()
    if args.eg3d:
        RENDERERS["eg3d"] = eg3d_renderer(args.eg3d)
    if args.threads:
        torch.set_num_threads(args.threads)

    env = {
        k: os.environ[k]
        for k in ("OMP_WAIT_POLICY", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")
        if k in os.environ
    }
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"torch={torch.__version__} threads={torch.get_num_threads()} cpus={os.cpu_count()} load={load:.1f} "
        f"batch={args.batch} repeats={args.repeats} {env or ''}"
    )
    print("medians of interleaved repeats, every renderer in its stochastic mode from the same seed")
    for name in args.settings:
        for mode in args.modes:
            bench(name, SETTINGS[name](), args.batch, args.repeats, backward=mode == "backward")


if __name__ == "__main__":
    main()
