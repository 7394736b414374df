"""Fused GPU renderer (DESIGN §7): tri-plane lookup + decoder in one Triton kernel, compositing in another.

``render_triplanes`` on CUDA without autograd comes here when Triton is installed
(``pip install export3d[gpu]``). Per pass, one kernel takes a block of sample points through
the whole per-point pipeline in registers — project onto the 3 planes, read the 12 bilinear
corners from the channels-last plane table (``triplane_sampler.plane_table``), average, MLP
32 -> 64 (softplus) -> 1 + 32, sigmoid — and writes only σ and the 32 features; the unfused path
materialises the looked-up features, the hidden layer and the decoder's outputs in memory.
After the importance pass, a second kernel marches each ray over its depth-sorted samples
(σ and depths sorted, features read in place through the sort order) and writes the composite
feature, depth and opacity; no [rays, K, C] weighted product is ever formed.

Everything else — rays, stratified and importance depths (and their random draws, in the same
order), the coarse weights that steer the importance draw, the sort and the call-wide depth
clamp — is the unfused path's own code, so the two agree to float32 rounding (the tests run the
kernels in Triton's interpreter, ``TRITON_INTERPRET=1``, on a CPU). Matrix products use IEEE
float32 (``input_precision="ieee"``), not TF32. Tri-planes in bfloat16/float16 (autocast) are
read in that precision and computed on in float32. Inference only: no backward.
"""

from __future__ import annotations

import os

import torch
import triton
import triton.language as tl
from torch import Tensor

from export3d_cli.config import PlaneAxes
from export3d_cli.geometry.rays import pixel_rays
from export3d_cli.models.rendering.decoder import FEATURE_PAD, TriplaneDecoder
from export3d_cli.models.rendering.depth_sampler import importance_depths, importance_uniforms, stratified_depths
from export3d_cli.models.rendering.ray_marcher import interval_weights
from export3d_cli.models.rendering.triplane_sampler import plane_coordinate_index, plane_table

POINTS_PER_PROGRAM = 64
RAYS_PER_PROGRAM = 32
DISABLE_ENV = "EXPORT3D_FUSED_RENDERER"  # "0": always the unfused path


@triton.jit
def _softplus(x):
    # torch's softplus (beta 1, threshold 20).
    return tl.where(x > 20.0, x, tl.log(1.0 + tl.exp(x)))


@triton.jit
def _plane_corners(g, size):
    """Framed corner indices and weights along one axis, as ``triplane_sampler._corners``."""
    texel = (g + 1.0) * (size * 0.5) - 0.5
    below = tl.floor(texel)
    above = below + 1.0
    near = tl.minimum(tl.maximum(above, 0.0), size + 1.0).to(tl.int64)
    far = tl.minimum(tl.maximum(above + 1.0, 0.0), size + 1.0).to(tl.int64)
    return near, far, above - texel, texel - below


@triton.jit
def _decode_kernel(
    table_ptr,  # [N*3*(H+2)*(W+2), C], channels last, zero frame
    points_ptr,  # [N*M*S, 3]
    axes_ptr,  # [6] int: coordinate index of (gx, gy) for planes 0, 1, 2
    w0_ptr,  # [HIDDEN, C]
    b0_ptr,  # [HIDDEN]
    w1_ptr,  # [1 + C, HIDDEN]
    b1_ptr,  # [1 + C]
    sigma_ptr,  # [N*M, K] out
    features_ptr,  # [N*M, K, C] out
    total_points,
    samples,  # S: points per ray in this pass
    k_total,  # K: samples per ray over both passes
    k_offset,  # where this pass's samples go among the K
    points_per_image,
    height,
    width,
    scale,  # 2 / box_warp
    width_c: tl.constexpr,  # C, the feature channels
    width_h: tl.constexpr,  # HIDDEN, the decoder's hidden width
    block: tl.constexpr,
):
    offsets = tl.program_id(0) * block + tl.arange(0, block)
    valid = offsets < total_points
    image = offsets // points_per_image
    channels = tl.arange(0, width_c)
    framed_width = width + 2
    plane_rows = (height + 2) * framed_width

    looked_up = tl.zeros((block, width_c), dtype=tl.float32)
    for plane in tl.static_range(3):
        ax = tl.load(axes_ptr + 2 * plane)
        ay = tl.load(axes_ptr + 2 * plane + 1)
        gx = tl.load(points_ptr + offsets * 3 + ax, mask=valid, other=0.0).to(tl.float32) * scale
        gy = tl.load(points_ptr + offsets * 3 + ay, mask=valid, other=0.0).to(tl.float32) * scale
        x_near, x_far, wx_near, wx_far = _plane_corners(gx, width)
        y_near, y_far, wy_near, wy_far = _plane_corners(gy, height)
        start = (image.to(tl.int64) * 3 + plane) * plane_rows
        for corner in tl.static_range(4):
            row_y = y_near if corner < 2 else y_far
            weight_y = wy_near if corner < 2 else wy_far
            col_x = x_near if corner % 2 == 0 else x_far
            weight_x = wx_near if corner % 2 == 0 else wx_far
            row = start + row_y * framed_width + col_x
            texel = tl.load(table_ptr + row[:, None] * width_c + channels[None, :], mask=valid[:, None], other=0.0)
            looked_up += (weight_y * weight_x)[:, None] * texel.to(tl.float32)
    looked_up = looked_up * (1.0 / 3.0)

    hidden = tl.arange(0, width_h)
    w0 = tl.load(w0_ptr + hidden[None, :] * width_c + channels[:, None])  # W0^T [C, HIDDEN]
    h = tl.dot(looked_up, w0, input_precision="ieee") + tl.load(b0_ptr + hidden)[None, :]
    h = _softplus(h)
    sigma = tl.sum(h * tl.load(w1_ptr + hidden)[None, :], axis=1) + tl.load(b1_ptr)
    w_features = tl.load(w1_ptr + (1 + channels[None, :]) * width_h + hidden[:, None])  # [HIDDEN, C]
    out = tl.dot(h, w_features, input_precision="ieee") + tl.load(b1_ptr + 1 + channels)[None, :]
    out = tl.sigmoid(out) * (1.0 + 2.0 * FEATURE_PAD) - FEATURE_PAD

    ray = offsets // samples
    slot = ray.to(tl.int64) * k_total + k_offset + offsets % samples
    tl.store(sigma_ptr + slot, sigma, mask=valid)
    tl.store(features_ptr + slot[:, None] * width_c + channels[None, :], out, mask=valid[:, None])


@triton.jit
def _composite_kernel(
    depths_ptr,  # [R, K] sorted ascending
    sigma_ptr,  # [R, K] in depth order
    order_ptr,  # [R, K] int64: sample index of each sorted position
    features_ptr,  # [R, K, C] in sample order
    out_features_ptr,  # [R, C]
    out_depth_ptr,  # [R]
    out_opacity_ptr,  # [R]
    rays,
    k_total,
    width_c: tl.constexpr,  # C, the feature channels
    block: tl.constexpr,
):
    ray = tl.program_id(0) * block + tl.arange(0, block)
    valid = ray < rays
    channels = tl.arange(0, width_c)
    base = ray.to(tl.int64) * k_total

    depth_prev = tl.load(depths_ptr + base, mask=valid, other=0.0)
    sigma_prev = tl.load(sigma_ptr + base, mask=valid, other=0.0)
    index = tl.load(order_ptr + base, mask=valid, other=0)
    feature_prev = tl.load(features_ptr + (base + index)[:, None] * width_c + channels[None, :], mask=valid[:, None])
    transmittance = tl.full((block,), 1.0, tl.float32)
    composite = tl.zeros((block, width_c), dtype=tl.float32)
    depth_sum = tl.zeros((block,), dtype=tl.float32)
    opacity = tl.zeros((block,), dtype=tl.float32)
    for k in range(1, k_total):
        depth = tl.load(depths_ptr + base + k, mask=valid, other=0.0)
        sigma = tl.load(sigma_ptr + base + k, mask=valid, other=0.0)
        index = tl.load(order_ptr + base + k, mask=valid, other=0)
        feature = tl.load(features_ptr + (base + index)[:, None] * width_c + channels[None, :], mask=valid[:, None])
        density = _softplus((sigma_prev + sigma) * 0.5 - 1.0)
        alpha = 1.0 - tl.exp(-density * (depth - depth_prev))
        weight = alpha * transmittance
        transmittance = transmittance * (1.0 - alpha + 1e-10)
        composite += weight[:, None] * ((feature_prev + feature) * 0.5)
        depth_sum += weight * ((depth_prev + depth) * 0.5)
        opacity += weight
        depth_prev, sigma_prev, feature_prev = depth, sigma, feature
    depth_out = depth_sum / opacity
    depth_out = tl.where(depth_out != depth_out, float("inf"), depth_out)  # NaN (0 / 0) -> inf, as torch's path
    tl.store(out_features_ptr + ray[:, None] * width_c + channels[None, :], composite * 2.0 - 1.0, mask=valid[:, None])
    tl.store(out_depth_ptr + ray, depth_out, mask=valid)
    tl.store(out_opacity_ptr + ray, opacity, mask=valid)


def _is_power_of_two_at_least_16(value: int) -> bool:
    return value >= 16 and value & (value - 1) == 0


def fused_renderer_applies(planes: Tensor, decoder: TriplaneDecoder) -> bool:
    """True where ``render_triplanes`` should take this path: CUDA, no autograd, a decoder the kernel fits."""
    if os.environ.get(DISABLE_ENV) == "0" or not planes.is_cuda:
        return False
    if torch.is_grad_enabled() and (planes.requires_grad or any(p.requires_grad for p in decoder.parameters())):
        return False
    channels, hidden = decoder.fc0.in_features, decoder.fc0.out_features
    return _is_power_of_two_at_least_16(channels) and _is_power_of_two_at_least_16(hidden)


def _decode(table, points, axes, weights, sigma, features, samples, k_offset, plane_size, box_warp) -> None:
    """The decode kernel on points [N, M, S, 3], into slots ``k_offset``.. of sigma [N*M, K], features [N*M, K, C]."""
    rays = points.shape[1]
    total = points.numel() // 3
    height, width = plane_size
    grid = (triton.cdiv(total, POINTS_PER_PROGRAM),)
    _decode_kernel[grid](
        table,
        points.reshape(-1, 3).contiguous(),
        axes,
        *weights,
        sigma,
        features,
        total,
        samples,
        sigma.shape[1],
        k_offset,
        rays * samples,
        height,
        width,
        2.0 / box_warp,
        width_c=weights[0].shape[1],
        width_h=weights[0].shape[0],
        block=POINTS_PER_PROGRAM,
    )


def render_triplanes_fused(
    planes: Tensor,
    decoder: TriplaneDecoder,
    cam2world: Tensor,
    intrinsics: Tensor,
    resolution: int = 64,
    samples: int = 48,
    importance_samples: int = 48,
    ray_start: float = 2.25,
    ray_end: float = 3.3,
    box_warp: float = 1.0,
    plane_axes: PlaneAxes = "orthogonal",
    stochastic: bool = False,
    generator: torch.Generator | None = None,
):
    """``render_triplanes``'s contract through the two kernels (no autograd). Returns its ``RenderOutput``."""
    from export3d_cli.models.rendering.renderer import RenderOutput

    n, _, channels, height, width = planes.shape
    device = planes.device
    compute = torch.float32
    cam2world, intrinsics = cam2world.to(compute), intrinsics.to(compute)
    origins, directions = pixel_rays(cam2world, intrinsics, resolution)  # [N, M, 3]
    rays = origins.shape[1]
    depths = stratified_depths(n, rays, samples, ray_start, ray_end, stochastic, device, generator)
    uniforms = None
    if importance_samples > 0:
        uniforms = importance_uniforms(n * rays, importance_samples, stochastic, device, generator)
        uniforms = uniforms.reshape(n, rays, importance_samples)

    index = plane_coordinate_index(plane_axes, device)  # [6]: (gx, gy) coordinate of each plane
    axes = index.to(device=device, dtype=torch.int32).contiguous()
    table = plane_table(planes.detach()).contiguous()
    k_total = samples + importance_samples
    sigma = torch.empty(n * rays, k_total, device=device, dtype=compute)
    features = torch.empty(n * rays, k_total, channels, device=device, dtype=compute)

    # fc0.weight [HIDDEN, C], fc0.bias, fc1.weight [1 + C, HIDDEN], fc1.bias: float32, once for both passes.
    weights = [p.detach().float().contiguous() for p in (decoder.fc0.weight, decoder.fc0.bias, decoder.fc1.weight,
                                                          decoder.fc1.bias)]  # fmt: skip

    def points(at: Tensor) -> Tensor:  # [N, M, K, 1] -> [N, M, K, 3]
        return origins.unsqueeze(-2) + at * directions.unsqueeze(-2)

    with torch.no_grad():
        _decode(table, points(depths), axes, weights, sigma, features, samples, 0, (height, width), box_warp)
        all_depths = depths
        if uniforms is not None:
            coarse_sigma = sigma[:, :samples].reshape(n, rays, samples, 1)
            fine = importance_depths(depths, interval_weights(coarse_sigma, depths), uniforms)
            _decode(table, points(fine), axes, weights, sigma, features, importance_samples, samples,
                    (height, width), box_warp)  # fmt: skip
            all_depths = torch.cat([depths, fine], dim=-2)
        flat_depths = all_depths.reshape(n * rays, k_total)
        sorted_depths, order = torch.sort(flat_depths, dim=-1)
        sorted_sigma = torch.gather(sigma, -1, order)
        out_features = torch.empty(n * rays, channels, device=device, dtype=compute)
        out_depth = torch.empty(n * rays, device=device, dtype=compute)
        out_opacity = torch.empty(n * rays, device=device, dtype=compute)
        _composite_kernel[(triton.cdiv(n * rays, RAYS_PER_PROGRAM),)](
            sorted_depths.contiguous(),
            sorted_sigma.contiguous(),
            order.contiguous(),
            features,
            out_features,
            out_depth,
            out_opacity,
            n * rays,
            k_total,
            width_c=channels,
            block=RAYS_PER_PROGRAM,
        )
        out_depth = torch.clamp(out_depth, flat_depths.min(), flat_depths.max())

    def image(x: Tensor) -> Tensor:  # [N*M, C] -> [N, C, R, R]
        return x.reshape(n, rays, -1).permute(0, 2, 1).reshape(n, -1, resolution, resolution)

    return RenderOutput(features=image(out_features), depth=image(out_depth), opacity=image(out_opacity))
