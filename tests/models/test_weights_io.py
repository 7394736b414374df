"""Weights round trip (exact) and every error case: one WeightsError line naming the file."""

import json
import struct

import pytest
import torch

from export3d_cli.config import preset
from export3d_cli.errors import EXIT_USAGE, WeightsError
from export3d_cli.geometry.camera import Camera
from export3d_cli.models.export3d import Export3D
from export3d_cli.models.weights_io import CONFIG_FILE, WEIGHTS_FILE, default_weights, load_model


@pytest.fixture()
def saved(tmp_path):
    torch.manual_seed(0)
    model = Export3D(preset("tiny"))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)  # not the init values, so a silent re-init would show
        model.generator.triplane_ema.normal_()
    directory = tmp_path / "model"
    model.save_pretrained(directory)
    return model, directory


def test_round_trip_is_exact(saved):
    model, directory = saved
    assert sorted(p.name for p in directory.iterdir()) == [CONFIG_FILE, WEIGHTS_FILE]  # no temp files left
    loaded = Export3D.from_pretrained(directory)
    assert loaded.config == model.config and not loaded.training
    original, restored = model.state_dict(), loaded.state_dict()
    assert original.keys() == restored.keys()
    for name in original:
        assert torch.equal(original[name], restored[name]), name
    source = torch.rand(1, 3, 64, 64) * 2 - 1
    expression = torch.rand(1, 52)
    camera = Camera.look_at(0.1, 0.0).label()[None]
    with torch.no_grad():
        a = model.eval()(source, expression, camera)
        b = loaded(source, expression, camera)
    assert torch.equal(a.image, b.image) and torch.equal(a.depth, b.depth)


def test_files_are_safetensors_and_json(saved):
    _, directory = saved
    raw = (directory / WEIGHTS_FILE).read_bytes()
    header_len = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8 : 8 + header_len])
    assert "generator.triplane_ema" in header
    assert json.loads((directory / CONFIG_FILE).read_text())["config"]["resolution"] == 64


def _error(reference):
    with pytest.raises(WeightsError) as info:
        load_model(reference)
    message = str(info.value)
    assert "\n" not in message and info.value.exit_code == EXIT_USAGE
    return message


def test_missing_directory(tmp_path):
    assert "not found" in _error(tmp_path / "nope")


def test_path_is_a_file(tmp_path):
    f = tmp_path / "weights.bin"
    f.write_bytes(b"x")
    assert "must be a directory" in _error(f)


def test_missing_weights_file(saved):
    _, directory = saved
    (directory / WEIGHTS_FILE).unlink()
    message = _error(directory)
    assert WEIGHTS_FILE in message and "missing" in message


def test_missing_config_file(saved):
    _, directory = saved
    (directory / CONFIG_FILE).unlink()
    assert CONFIG_FILE in _error(directory)


def test_truncated_weights(saved):
    _, directory = saved
    path = directory / WEIGHTS_FILE
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    message = _error(directory)
    assert WEIGHTS_FILE in message and "corrupt or truncated" in message


def test_garbage_weights(saved):
    _, directory = saved
    (directory / WEIGHTS_FILE).write_bytes(b"\x80\x04definitely not safetensors" * 10)
    assert "corrupt or truncated" in _error(directory)


def test_corrupt_config(saved):
    _, directory = saved
    (directory / CONFIG_FILE).write_text("{not json")
    assert "not valid JSON" in _error(directory)


def test_config_with_unknown_key(saved):
    _, directory = saved
    payload = json.loads((directory / CONFIG_FILE).read_text())
    payload["config"]["renderer"]["magic"] = 3
    (directory / CONFIG_FILE).write_text(json.dumps(payload))
    assert "magic" in _error(directory)


def test_wrong_shapes(saved):
    _, directory = saved
    payload = json.loads((directory / CONFIG_FILE).read_text())
    payload["config"]["generator"]["width"] = 128  # the weights were saved with width 64
    (directory / CONFIG_FILE).write_text(json.dumps(payload))
    message = _error(directory)
    assert "does not match" in message and "wrong shape" in message


def test_missing_and_extra_tensors(saved):
    from safetensors.torch import load_file, save_file

    _, directory = saved
    state = load_file(str(directory / WEIGHTS_FILE))
    state.pop("superres.to_rgb.weight")
    state["extra.tensor"] = torch.zeros(1)
    save_file(state, str(directory / WEIGHTS_FILE))
    message = _error(directory)
    assert "missing: superres.to_rgb.weight" in message and "unexpected: extra.tensor" in message


def test_hub_id_without_network(monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    message = _error("export3d-tests/not-a-real-repo")
    assert "not-a-real-repo" in message and "hf download" in message and "--weights DIR" in message


def test_default_weights_respect_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("EXPORT3D_WEIGHTS", str(tmp_path))
    assert default_weights() == str(tmp_path)
