"""GPU frames/s of the whole model (G + renderer + SR) and of the renderer alone, fused kernels against PyTorch.

For ``small-128`` and ``paper-256`` (random weights, one source), at batch 1 and batched, in
float32 and under bfloat16 autocast, with the fused Triton renderer (``fused_renderer``) and
without it (``EXPORT3D_FUSED_RENDERER=0``), measured side by side in one process (interleaved
repeats, ``torch.cuda.synchronize`` around each). Also printed:
  - the fused renderer's largest difference from the PyTorch renderer (float32, same inputs);
  - the bfloat16 error: largest and mean |image_bf16 - image_fp32| of the whole model.

    python benchmarks/bench_gpu.py [--presets small-128 paper-256] [--batches 1 8] [--repeats 10]

Without a CUDA device it says so and exits 0 (the kernels themselves are tested on the CPU in
Triton's interpreter: tests/models/test_fused_renderer.py).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import time

import torch

from export3d_cli.config import PRESETS
from export3d_cli.geometry.camera import Camera, split_camera_label
from export3d_cli.models.export3d import Export3D
from export3d_cli.models.rendering.fused_renderer import DISABLE_ENV


@contextlib.contextmanager
def _fused(enabled: bool):
    previous = os.environ.get(DISABLE_ENV)
    os.environ[DISABLE_ENV] = "1" if enabled else "0"
    try:
        yield
    finally:
        if previous is None:
            del os.environ[DISABLE_ENV]
        else:
            os.environ[DISABLE_ENV] = previous


def _autocast(dtype: torch.dtype):
    return torch.autocast("cuda", dtype=dtype) if dtype != torch.float32 else contextlib.nullcontext()


def _timed(fn):
    """(seconds, result) of fn(), the GPU's queue drained before and after."""
    torch.cuda.synchronize()
    start = time.perf_counter()
    result = fn()
    torch.cuda.synchronize()
    return time.perf_counter() - start, result


@torch.no_grad()
def bench(name: str, batch: int, repeats: int) -> None:
    torch.manual_seed(0)
    config = PRESETS[name]
    model = Export3D(config).eval().cuda()
    r = config.resolution
    source = model.encode_source(torch.rand(1, 3, r, r, device="cuda") * 2 - 1)
    expression = torch.rand(batch, config.expression.expression_dim, device="cuda") * 0.5
    camera = Camera.look_at(torch.linspace(-0.3, 0.3, batch), torch.zeros(batch)).label().cuda()
    cam2world, intrinsics = split_camera_label(camera)
    planes = model.generator.generate(source, model.expression_encoder(expression), expression)

    variants = [(fused, dtype) for dtype in (torch.float32, torch.bfloat16) for fused in (True, False)]
    model_times: dict = {v: [] for v in variants}
    render_times: dict = {v: [] for v in variants}
    images = {}
    for repeat in range(repeats + 1):  # the first round warms up (Triton compiles, cuDNN picks algorithms)
        for fused, dtype in variants:
            with _fused(fused), _autocast(dtype):
                whole, images[(fused, dtype)] = _timed(lambda: model.render(source, expression, camera))
                alone, _ = _timed(lambda: model.renderer(planes, cam2world, intrinsics))
            if repeat:
                model_times[(fused, dtype)].append(whole / batch)
                render_times[(fused, dtype)].append(alone / batch)

    with _fused(True):
        fused_out = model.renderer(planes, cam2world, intrinsics)
    with _fused(False):
        torch_out = model.renderer(planes, cam2world, intrinsics)
    difference = (fused_out.features - torch_out.features).abs().max().item()
    for fused in (True, False):
        error = (images[(fused, torch.bfloat16)].image.float() - images[(fused, torch.float32)].image).abs()
        label = "fused  " if fused else "pytorch"
        for dtype in (torch.float32, torch.bfloat16):
            m = statistics.median(model_times[(fused, dtype)])
            q = statistics.median(render_times[(fused, dtype)])
            print(
                f"{name:<10} batch {batch:<3} {label} {str(dtype).removeprefix('torch.'):<9} "
                f"model {1 / m:8.1f} frames/s   renderer {1 / q:8.1f} frames/s"
            )
        print(f"{'':<10} {'':<9} {label} bf16 error vs fp32: max {error.max().item():.4f}, mean {error.mean():.5f}")
    print(f"{'':<10} fused vs pytorch renderer (fp32): max |difference| of features {difference:.2e}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", nargs="+", default=["small-128", "paper-256"], choices=list(PRESETS))
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 8])
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("no CUDA device: nothing to measure (the fused kernels are tested on CPU in Triton's interpreter)")
        return
    print(f"{torch.cuda.get_device_name(0)}, torch {torch.__version__}; medians of {args.repeats} interleaved repeats")
    for name in args.presets:
        for batch in args.batches:
            bench(name, batch, args.repeats)


if __name__ == "__main__":
    main()
