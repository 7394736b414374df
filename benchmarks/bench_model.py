"""CPU/GPU time per frame of each Export3D stage, for every preset, plus the renderer at EG3D's FFHQ setting.

Stages (inference, eval mode, no autograd):
  source   -- conv stem + patch merge, done once per source photo (not per frame)
  G        -- expression encoder + EAdaLN-ViT + upsampling to the tri-plane, per frame
  render   -- EG3D-convention volume rendering at R/4, per frame
  SR       -- super-resolution to R, per frame

Prints medians over --repeats runs (after one warm-up) and each per-frame stage's share of the
per-frame total, measured side by side in one process. Usage:

    python benchmarks/bench_model.py [--presets tiny small-128 paper-256] [--batch 1] [--repeats 5] [--device cpu]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from export3d_cli.config import PRESETS
from export3d_cli.geometry.camera import Camera, split_camera_label
from export3d_cli.models.export3d import Export3D, parameter_count
from export3d_cli.models.rendering import TriplaneDecoder, render_triplanes


def _timed(fn, repeats: int, device: torch.device) -> float:
    """Median seconds of fn() over ``repeats`` runs after one warm-up."""
    fn()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


@torch.no_grad()
def bench_preset(name: str, batch: int, repeats: int, device: torch.device) -> dict[str, float]:
    torch.manual_seed(0)
    config = PRESETS[name]
    model = Export3D(config).eval().to(device)
    r = config.resolution
    source = torch.rand(1, 3, r, r, device=device) * 2 - 1
    expression = torch.rand(batch, config.expression.expression_dim, device=device)
    camera = Camera.look_at(torch.linspace(-0.3, 0.3, batch), torch.zeros(batch)).label().to(device)
    cam2world, intrinsics = split_camera_label(camera)

    features = model.encode_source(source)
    embedding = model.expression_encoder(expression)
    planes = model.generator.generate(features, embedding, expression)
    rendered = model.renderer(planes, cam2world, intrinsics)

    timings = {
        "source": _timed(lambda: model.encode_source(source), repeats, device),
        "G": _timed(
            lambda: model.generator.generate(features, model.expression_encoder(expression), expression),
            repeats,
            device,
        )
        / batch,
        "render": _timed(lambda: model.renderer(planes, cam2world, intrinsics), repeats, device) / batch,
        "SR": _timed(lambda: model.superres(rendered.features), repeats, device) / batch,
    }
    timings["parameters"] = parameter_count(model)
    return timings


@torch.no_grad()
def bench_ffhq_renderer(repeats: int, device: torch.device) -> float:
    """EG3D FFHQ setting: 256² tri-planes, 64² rays, 48 + 48 samples, one image."""
    torch.manual_seed(0)
    planes = torch.randn(1, 3, 32, 256, 256, device=device) * 0.5
    decoder = TriplaneDecoder().to(device)
    camera = Camera.look_at(0.2, -0.1)
    c2w, k = camera.cam2world[None].to(device), camera.intrinsics[None].to(device)
    return _timed(
        lambda: render_triplanes(planes, decoder, c2w, k, resolution=64, samples=48, importance_samples=48),
        repeats,
        device,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", nargs="+", default=list(PRESETS), choices=list(PRESETS))
    parser.add_argument("--batch", type=int, default=1, help="frames rendered per call from one source")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    device = torch.device(args.device)

    print(f"device={device} threads={torch.get_num_threads()} torch={torch.__version__} batch={args.batch}")
    header = f"{'preset':<10} {'params':>12} {'source ms':>10} {'G ms/f':>9} {'render ms/f':>12} {'SR ms/f':>9}"
    print(header + "   per-frame shares G/render/SR")
    for name in args.presets:
        t = bench_preset(name, args.batch, args.repeats, device)
        per_frame = t["G"] + t["render"] + t["SR"]
        shares = "/".join(f"{100 * t[k] / per_frame:.0f}%" for k in ("G", "render", "SR"))
        print(
            f"{name:<10} {int(t['parameters']):>12,} {1e3 * t['source']:>10.1f} {1e3 * t['G']:>9.1f} "
            f"{1e3 * t['render']:>12.1f} {1e3 * t['SR']:>9.1f}   {shares}  ({1 / per_frame:.2f} frames/s)"
        )
    ffhq = bench_ffhq_renderer(args.repeats, device)
    print(f"renderer at EG3D FFHQ setting (256² planes, 64² rays, 48+48 samples): {1e3 * ffhq:.1f} ms/image (median)")


if __name__ == "__main__":
    main()
