"""The whole network on every preset: shapes, gradients, source caching, T_EMA, conditioning."""

import pytest
import torch

from export3d_cli.config import PRESETS, preset
from export3d_cli.errors import UsageError
from export3d_cli.geometry.camera import Camera
from export3d_cli.models.export3d import Export3D


def _inputs(config, batch=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    r = config.resolution
    source = torch.rand(batch, 3, r, r, generator=g) * 2 - 1
    expression = torch.rand(batch, config.expression.expression_dim, generator=g)
    yaw = torch.linspace(-0.3, 0.3, batch)
    camera = Camera.look_at(yaw, torch.zeros(batch)).label()
    return source, expression, camera


def _all_params_have_gradients(model, require_nonzero):
    for name, p in model.named_parameters():
        assert p.grad is not None, f"{name} received no gradient"
        assert torch.isfinite(p.grad).all(), f"{name} has a non-finite gradient"
        if require_nonzero:
            assert p.grad.abs().sum() > 0, f"{name} has an all-zero gradient"


@pytest.mark.parametrize("name", list(PRESETS))
def test_forward_backward_every_preset(name):
    torch.manual_seed(0)
    config = PRESETS[name]
    model = Export3D(config).train()
    source, expression, camera = _inputs(config, batch=1 if name == "paper-256" else 2)

    out = model(source, expression, camera)
    r = config.resolution
    b = source.shape[0]
    assert out.image.shape == (b, 3, r, r)
    assert out.image_raw.shape == (b, 3, r // 4, r // 4)
    assert out.depth.shape == out.opacity.shape == (b, 1, r // 4, r // 4)
    assert out.triplane.shape == (b, 3, 32, r // 2, r // 2)
    for t in (out.image, out.image_raw, out.depth, out.opacity):
        assert torch.isfinite(t).all()
    assert ((out.depth >= config.renderer.ray_start) & (out.depth <= config.renderer.ray_end + 0.1)).all()

    loss = out.image.square().mean() + out.image_raw.square().mean() + out.depth.mean()
    loss.backward()
    _all_params_have_gradients(model, require_nonzero=False)

    # The zero-initialised parts (adaLN-Zero gates, SR output) block some gradients at init;
    # after one step every parameter must receive a non-zero gradient.
    torch.optim.SGD(model.parameters(), lr=1e-3).step()
    model.zero_grad()
    out = model(source, expression, camera)
    (out.image.square().mean() + out.image_raw.square().mean() + out.depth.mean()).backward()
    _all_params_have_gradients(model, require_nonzero=True)


def test_encode_once_render_many_equals_forward():
    torch.manual_seed(0)
    config = preset("tiny")
    model = Export3D(config).eval()
    source, expression, camera = _inputs(config, batch=3)
    single = source[:1]
    with torch.no_grad():
        cached = model.render(model.encode_source(single), expression, camera)
        direct = model(single.expand(3, -1, -1, -1), expression, camera)
    torch.testing.assert_close(cached.image, direct.image, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(cached.depth, direct.depth, atol=1e-5, rtol=1e-5)


def test_triplane_ema_updates_in_training_only_and_is_added():
    torch.manual_seed(0)
    config = preset("tiny")
    model = Export3D(config)
    source, expression, camera = _inputs(config)
    ema = model.generator.triplane_ema
    model.eval()
    with torch.no_grad():
        base = model(source, expression, camera).triplane
    assert torch.count_nonzero(ema) == 0
    with torch.no_grad():
        ema.fill_(0.25)
        shifted = model(source, expression, camera).triplane
    torch.testing.assert_close(shifted, base + 0.25)

    with torch.no_grad():
        ema.zero_()
    model.train()
    with torch.no_grad():
        trained = model(source, expression, camera).triplane
    m = config.generator.ema_momentum
    expected = (1 - m) * (trained - ema).mean(dim=0, keepdim=True)
    torch.testing.assert_close(ema, expected, atol=1e-6, rtol=1e-5)


def test_expression_and_camera_change_the_render():
    torch.manual_seed(0)
    config = preset("tiny")
    model = Export3D(config).eval()
    for module in model.modules():  # leave the identity-at-init state, as training would
        if hasattr(module, "modulation"):
            torch.nn.init.normal_(module.modulation.proj[1].weight, std=1.0)
    source, expression, camera = _inputs(config, batch=2)
    with torch.no_grad():
        a = model(source[:1], expression[:1], camera[:1])
        b = model(source[:1], expression[1:], camera[:1])
        c = model(source[:1], expression[:1], camera[1:])
    assert (a.triplane - b.triplane).abs().max() > 1e-5
    assert (a.image_raw - c.image_raw).abs().max() > 1e-4
    torch.testing.assert_close(a.triplane, c.triplane)  # the camera does not enter G


def test_rejects_wrong_shapes():
    config = preset("tiny")
    model = Export3D(config).eval()
    source, expression, camera = _inputs(config, batch=1)
    with pytest.raises(ValueError, match="64x64"):
        model(torch.zeros(1, 3, 32, 32), expression, camera)
    with pytest.raises(ValueError, match="52"):
        model(source, expression[:, :10], camera)
    with pytest.raises(ValueError, match="25"):
        model(source, expression, camera[:, :16])


def test_config_round_trip_and_validation():
    for config in PRESETS.values():
        assert type(config).from_dict(config.to_dict()) == config
    with pytest.raises(UsageError, match="unknown preset"):
        preset("huge")
    data = preset("tiny").to_dict()
    data["generator"]["bogus"] = 1
    with pytest.raises(UsageError, match="bogus"):
        type(preset("tiny")).from_dict(data)
    data = preset("tiny").to_dict()
    data["resolution"] = 100
    with pytest.raises(UsageError, match="multiple of 16"):
        type(preset("tiny")).from_dict(data)
