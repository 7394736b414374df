"""``export3d train-clebs``, ``export3d train`` and ``export3d evaluate`` on a small ``export3d synth`` dataset:
exit codes, JSON summaries, resuming, and the evaluation baseline against an independent computation."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from model_support import unstandardized_tiny_model_with_planes
from PIL import Image

from export3d_cli.cli.app import run
from export3d_cli.config import preset

MODEL_RESOLUTION = preset("tiny").resolution
SYNTH_RESOLUTION = 2 * MODEL_RESOLUTION  # evaluation then resizes by area averaging over 2x2 blocks
ENV = {**os.environ, "EXPORT3D_DEBUG": "", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


@dataclass(frozen=True)
class Result:
    code: int
    stdout: str
    stderr: str


def export3d(*args: object) -> Result:
    """Run the CLI in this process (no second torch import), capturing what it prints."""
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = run([str(arg) for arg in args])
    return Result(code, out.getvalue(), err.getvalue())


def export3d_process(*args: object) -> Result:
    """Run the real ``export3d`` entry point in a child process."""
    result = subprocess.run(
        [sys.executable, "-m", "export3d_cli", *(str(arg) for arg in args)],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=300,
    )
    return Result(result.returncode, result.stdout, result.stderr)


def _assert_one_error_line(result: Result) -> None:
    assert result.code == 2, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    assert "Traceback" not in result.stderr


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def synth_dataset(tmp_path_factory) -> Path:
    """3 synthetic identities x 1 clip x 4 frames at 128 px: 1 training clip, 2 test clips, 2 cross clips."""
    root = tmp_path_factory.mktemp("synth") / "data"
    result = export3d_process(
        "synth", "-o", root, "--identities", 3, "--clips-per-identity", 1, "--frames", 4,
        "--resolution", SYNTH_RESOLUTION, "--test-fraction", 0.5, "--json", "-q",
    )  # fmt: skip
    assert result.code == 0, result.stderr
    clips = json.loads((root / "manifest.json").read_text())["clips"]
    splits = [(c["split"], bool(c["extra"].get("cross_identity"))) for c in clips]
    assert ("train", False) in splits and ("test", False) in splits and ("test", True) in splits, splits
    return root


@pytest.fixture(scope="module")
def clebs_run(synth_dataset, tmp_path_factory) -> tuple[Path, Result]:
    run_dir = tmp_path_factory.mktemp("clebs") / "run"
    return run_dir, export3d(
        "train-clebs", synth_dataset, "-o", run_dir, "--preset", "tiny", "--steps", 3, "--json", "-q"
    )


@pytest.fixture(scope="module")
def generator_run(synth_dataset, tmp_path_factory) -> tuple[Path, Result]:
    run_dir = tmp_path_factory.mktemp("generator") / "run"
    result = export3d(
        "train", synth_dataset, "-o", run_dir, "--preset", "tiny", "--steps", 3,
        "--expression-encoder", "direct", "--json", "-q",
    )  # fmt: skip
    return run_dir, result


def test_train_clebs_prints_a_json_summary(clebs_run):
    run_dir, result = clebs_run
    assert result.code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert {"output", "steps", "resumed", "val_loss", "val_retrieval"} <= set(summary)
    assert summary["output"] == str(run_dir) and summary["steps"] == 3 and summary["resumed"] is False
    assert 0.0 <= summary["val_retrieval"] <= 1.0
    assert (run_dir / "clebs" / "expression_encoder.safetensors").is_file()


def test_train_clebs_rerun_with_more_steps_resumes(clebs_run, synth_dataset, tmp_path):
    run_dir, first = clebs_run
    assert first.code == 0, first.stderr
    # A copy, so the module's run stays at 3 steps for the other tests.
    copy = shutil.copytree(run_dir, tmp_path / "run")
    result = export3d("train-clebs", synth_dataset, "-o", copy, "--preset", "tiny", "--steps", 5, "--json", "-q")
    assert result.code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["resumed"] is True and summary["steps"] == 5
    logged = [json.loads(line) for line in (copy / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in logged if "loss" in r] == [3, 5], "steps 4-5 continue the first run's log"


def test_train_clebs_with_other_settings_refuses_the_run_folder(clebs_run, synth_dataset):
    run_dir, _ = clebs_run
    result = export3d("train-clebs", synth_dataset, "-o", run_dir, "--preset", "tiny", "--lr", "0.5", "-q")
    _assert_one_error_line(result)
    assert "other settings" in result.stderr


def test_train_direct_ablation_prints_a_json_summary_and_saves_the_model(generator_run):
    run_dir, result = generator_run
    assert result.code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["output"] == str(run_dir) and summary["steps"] == 3 and summary["resumed"] is False
    assert {"psnr_same", "ssim_same", "psnr_cross", "frames"} <= set(summary)
    assert (run_dir / "model" / "model.safetensors").is_file() and (run_dir / "model" / "config.json").is_file()


def test_train_with_a_clebs_run_uses_it(clebs_run, synth_dataset, tmp_path):
    clebs_dir, clebs_result = clebs_run
    assert clebs_result.code == 0, clebs_result.stderr
    result = export3d(
        "train", synth_dataset, "-o", tmp_path / "run", "--clebs", clebs_dir, "--preset", "tiny", "--steps", 1,
        "--json", "-q",
    )  # fmt: skip
    assert result.code == 0, result.stderr
    assert json.loads(result.stdout)["steps"] == 1


def test_train_without_clebs_run_is_a_usage_error(synth_dataset, tmp_path):
    result = export3d("train", synth_dataset, "-o", tmp_path / "run", "--preset", "tiny", "--steps", 1, "-q")
    _assert_one_error_line(result)
    assert "--clebs" in result.stderr


@pytest.mark.parametrize("command", ["train", "train-clebs"])
def test_unknown_training_preset_is_a_usage_error(command, synth_dataset, tmp_path):
    result = export3d(command, synth_dataset, "-o", tmp_path / "run", "--preset", "huge", "--steps", 1, "-q")
    _assert_one_error_line(result)
    assert "huge" in result.stderr and "tiny" in result.stderr


def _frames01(root: Path, clip_id: str) -> np.ndarray:
    """All frames of a clip on the [0, 1] scale at the model's resolution (2x2 block means), [T, R, R, 3]."""
    directory = root / "clips" / clip_id / "frames"
    frames = []
    for path in sorted(directory.glob("*.png")):
        with Image.open(path) as image:
            pixels = np.asarray(image.convert("RGB"), dtype=np.float64) / 255.0
        size = pixels.shape[0] // 2
        frames.append(pixels.reshape(size, 2, size, 2, 3).mean(axis=(1, 3)))
    return np.stack(frames)


def _first_valid(root: Path, clip_id: str) -> int:
    with np.load(root / "clips" / clip_id / "params.npz") as params:
        valid = np.flatnonzero(params["valid"])
    return int(valid[0]) if len(valid) else 0


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    return -10.0 * np.log10(np.mean((a - b) ** 2))


def _baselines(root: Path) -> tuple[float, float, int]:
    """Copy-the-source PSNR, same identity and cross identity, and the number of frames scored."""
    clips = json.loads((root / "manifest.json").read_text())["clips"]
    same, cross = [], []
    for clip in clips:
        if clip["split"] != "test":
            continue
        frames = _frames01(root, clip["id"])
        if clip["extra"].get("cross_identity"):
            appearance = clip["extra"]["appearance_clip"]
            source = _frames01(root, appearance)[_first_valid(root, appearance)]
            cross += [_psnr(source, target) for target in frames]
        else:
            first = _first_valid(root, clip["id"])
            same += [_psnr(frames[first], target) for t, target in enumerate(frames) if t != first]
    return float(np.mean(same)), float(np.mean(cross)), len(same) + len(cross)


def test_evaluate_prints_one_json_object_with_an_independently_checked_baseline(generator_run, synth_dataset):
    run_dir, trained = generator_run
    assert trained.code == 0, trained.stderr
    result = export3d_process("evaluate", run_dir / "model", synth_dataset, "--json", "-q")
    assert result.code == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1, result.stdout
    metrics = json.loads(lines[0])
    keys = {"psnr_same", "ssim_same", "psnr_cross", "ssim_cross", "psnr_same_baseline", "psnr_cross_baseline"}
    assert keys | {"frames"} <= set(metrics)
    assert all(isinstance(metrics[key], float) and np.isfinite(metrics[key]) for key in keys)
    same, cross, frames = _baselines(synth_dataset)
    assert metrics["psnr_same_baseline"] == pytest.approx(same, rel=1e-4)
    assert metrics["psnr_cross_baseline"] == pytest.approx(cross, rel=1e-4)
    assert metrics["frames"] == frames
    for condition in ("same", "cross"):
        for suffix in ("", "_baseline"):
            assert {f"{m}_{condition}{suffix}" for m in ("csim", "aed", "apd", "face_found", "expression_r")} <= set(
                metrics
            )
    assert {"akd_same", "akd_same_baseline", "face_pairs_same", "face_pairs_cross"} <= set(metrics)
    # The baseline's output is the source frame itself: the face is always found and it is the same person.
    assert metrics["face_found_same_baseline"] == 1.0 and metrics["csim_same_baseline"] == pytest.approx(1.0)


def test_evaluate_text_output_lists_the_metrics(generator_run, synth_dataset):
    run_dir, _ = generator_run
    result = export3d("evaluate", run_dir / "model", synth_dataset, "--max-clips", 1, "--max-frames", 2, "-q")
    assert result.code == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    # The paper's Table 1 layout: a block per condition (1 same + 1 cross clip, 2 frames each), model and baseline.
    assert lines[0].startswith("Same identity (self-reenactment): 2 frames")
    assert lines[4].startswith("Cross identity: 2 frames")
    assert lines[1].split()[:6] == ["PSNR↑", "SSIM↑", "AKD↓", "CSIM↑", "AED↓", "APD↓"]
    assert lines[5].split()[:5] == ["PSNR↑", "SSIM↑", "CSIM↑", "AED↓", "APD↓"]
    assert [line.split("  ")[0] for line in (lines[2], lines[3], lines[6], lines[7])] == ["export3d", "copy source"] * 2
    assert lines[3].split()[5] == "1.000"  # the copied source is the source: CSIM 1 by construction
    assert "dlib ResNet" in lines[-1]


def test_evaluate_missing_weights_folder_is_a_usage_error(synth_dataset, tmp_path):
    _assert_one_error_line(export3d("evaluate", tmp_path / "no-such-model", synth_dataset, "--json", "-q"))


def test_evaluate_unknown_split_is_a_usage_error(generator_run, synth_dataset):
    run_dir, _ = generator_run
    _assert_one_error_line(export3d("evaluate", run_dir / "model", synth_dataset, "--split", "val", "-q"))


def test_evaluate_on_a_dataset_without_cross_clips_drives_each_source_by_another_identity(
    generator_run, synth_dataset, tmp_path
):
    """A real dataset (export3d preprocess) has no cross-identity ground truth: cross pairs come from the test split."""
    real = tmp_path / "real"
    shutil.copytree(synth_dataset, real)
    manifest = json.loads((real / "manifest.json").read_text())
    manifest["clips"] = [clip for clip in manifest["clips"] if not clip["extra"].get("cross_identity")]
    (real / "manifest.json").write_text(json.dumps(manifest))
    test_clips = [clip for clip in manifest["clips"] if clip["split"] == "test"]
    assert len({clip["identity"] for clip in test_clips}) == 2
    run_dir, _ = generator_run
    result = export3d_process("evaluate", run_dir / "model", real, "--json", "-q")
    assert result.code == 0, result.stderr
    metrics = json.loads(result.stdout)
    assert metrics["cross_ground_truth"] is False
    # Every valid frame of each test clip drives the other identity's source; no ground truth, so no PSNR/SSIM.
    assert metrics["frames_cross"] == sum(clip["valid_frames"] for clip in test_clips)
    assert metrics["psnr_cross"] is None and metrics["ssim_cross"] is None
    assert metrics["aed_cross_baseline"] is not None and metrics["csim_cross_baseline"] == pytest.approx(1.0)


def test_evaluate_without_face_metrics_keeps_psnr_and_ssim_only(generator_run, synth_dataset):
    run_dir, _ = generator_run
    result = export3d("evaluate", run_dir / "model", synth_dataset, "--no-face-metrics", "--max-clips", 1, "-q")
    assert result.code == 0, result.stderr
    assert "faces not measured" in result.stdout.splitlines()[0]
    as_json = export3d("evaluate", run_dir / "model", synth_dataset, "--no-face-metrics", "--json", "-q")
    metrics = json.loads(as_json.stdout)
    assert isinstance(metrics["psnr_same"], float)
    assert metrics["aed_same"] is None and metrics["csim_same"] is None and metrics["expression_r_same"] is None


def test_train_init_starts_from_the_given_weights(generator_run, synth_dataset, tmp_path):
    from safetensors.numpy import load_file

    run_dir, trained = generator_run
    assert trained.code == 0, trained.stderr
    init = run_dir / "model"
    result = export3d(
        "train", synth_dataset, "-o", tmp_path / "run", "--preset", "tiny", "--expression-encoder", "direct",
        "--init", init, "--steps", 0, "--eval-every", 0, "--json", "-q",
    )  # fmt: skip
    assert result.code == 0, result.stderr
    start, exported = (
        load_file(str(init / "model.safetensors")),
        load_file(str(tmp_path / "run" / "model" / "model.safetensors")),
    )
    assert start.keys() == exported.keys()
    assert all(np.array_equal(start[name], exported[name]) for name in start)


def test_train_init_with_another_preset_is_a_usage_error(generator_run, synth_dataset, tmp_path):
    run_dir, _ = generator_run
    other = export3d("train", synth_dataset, "-o", tmp_path / "a", "--preset", "small-128", "--init", run_dir / "model")
    _assert_one_error_line(other)
    assert "--init" in other.stderr and "config differs" in other.stderr


def test_train_init_with_clebs_keeps_the_generator_and_takes_the_new_clebs(clebs_run, synth_dataset, tmp_path):
    """--init W --clebs RUN: G, renderer and SR from W, the expression encoder from RUN (a re-trained CLeBS)."""
    from safetensors.numpy import load_file

    from export3d_cli.models.weights_io import load_model
    from export3d_cli.training.dataset import ClipDataset

    first = tmp_path / "first"
    trained = export3d(
        "train", synth_dataset, "-o", first, "--preset", "tiny", "--clebs", clebs_run[0], "--steps", 2,
        "--eval-every", 0, "--json", "-q",
    )  # fmt: skip
    assert trained.code == 0, trained.stderr
    other_clebs = tmp_path / "clebs-b"
    made = export3d(
        "train-clebs", synth_dataset, "-o", other_clebs, "--preset", "tiny", "--steps", 3, "--seed", 7, "-q"
    )
    assert made.code == 0, made.stderr
    result = export3d(
        "train", synth_dataset, "-o", tmp_path / "second", "--preset", "tiny", "--init", first / "model",
        "--clebs", other_clebs, "--steps", 0, "--eval-every", 0, "--json", "-q",
    )  # fmt: skip
    assert result.code == 0, result.stderr
    start = load_file(str(first / "model" / "model.safetensors"))
    exported = load_file(str(tmp_path / "second" / "model" / "model.safetensors"))
    clebs = load_file(str(other_clebs / "clebs" / "expression_encoder.safetensors"))
    modulations = _modulation_linears(tmp_path / "second" / "model")
    assert modulations
    folded = {f"{name}.{kind}" for name in modulations for kind in ("weight", "bias")}
    for name, value in exported.items():
        if name.startswith("expression_encoder.coefficient_") or name in folded:
            continue  # the statistics of the new CLeBS, and the folded modulations (both checked below)
        if name.startswith("expression_encoder."):
            assert np.array_equal(value, clebs[name.removeprefix("expression_encoder.")]), name
        else:
            assert np.array_equal(value, start[name]), name
    # The generator's modulations were fitted to the old CLeBS's β': folded for the new one, they give on the
    # training frames what they gave on average before, and the expression path restarts from zero.
    old_model, new_model = load_model(first / "model").eval(), load_model(tmp_path / "second" / "model").eval()
    data = ClipDataset(synth_dataset)
    frames = torch.from_numpy(data.measured_expressions(data.clips("train"))).float()
    with torch.no_grad():
        old_embedding, new_embedding = old_model.expression_encoder(frames), new_model.expression_encoder(frames)
        old_linears, new_linears = _modulation_linears(old_model), _modulation_linears(new_model)
        for name, linear in new_linears.items():
            assert not linear.weight.any(), name
            old_mean = old_linears[name](torch.nn.functional.silu(old_embedding)).mean(dim=0)
            new_output = linear(torch.nn.functional.silu(new_embedding))
            torch.testing.assert_close(new_output, old_mean.expand_as(new_output), atol=1e-5, rtol=1e-5)
    assert int(exported["expression_encoder.coefficient_frames"]) > 0
    assert not np.array_equal(
        exported["expression_encoder.coefficient_mean"], start["expression_encoder.coefficient_mean"]
    )
    assert any(not np.array_equal(exported[n], start[n]) for n in exported if n.startswith("expression_encoder."))


def _modulation_linears(model) -> dict:
    """The linear layer of every EAdaLN modulation, by parameter-name prefix; ``model`` an Export3D or its folder."""
    from export3d_cli.layers.eadaln import ExpressionModulation
    from export3d_cli.models.weights_io import load_model

    if not isinstance(model, torch.nn.Module):
        model = load_model(model)
    return {
        f"{name}.proj.1": module.proj[1]
        for name, module in model.named_modules()
        if isinstance(module, ExpressionModulation)
    }


def test_train_unknown_pair_sampling_is_a_usage_error(synth_dataset, tmp_path):
    result = export3d("train", synth_dataset, "-o", tmp_path / "run", "--pair-sampling", "random")
    _assert_one_error_line(result)
    assert "--pair-sampling" in result.stderr


def test_train_region_weight_adds_the_expression_region_term(synth_dataset, tmp_path):
    run = tmp_path / "run"
    result = export3d(
        "train", synth_dataset, "-o", run, "--preset", "tiny", "--expression-encoder", "direct", "--steps", 2,
        "--region-weight", 2.0, "--eval-every", 0, "--json", "-q",
    )  # fmt: skip
    assert result.code == 0, result.stderr
    records = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    losses = [record for record in records if "loss" in record]
    assert losses and all(0 < record["region_l1"] < 2 for record in losses)
    # The total counts the new term with its weight.
    record = losses[-1]
    other = sum(record[name] * w for name, w in (("l1", 1.0), ("raw_l1", 1.0), ("ssim", 0.5), ("density", 0.2)))
    assert losses[-1]["loss"] == pytest.approx(other + 2.0 * losses[-1]["region_l1"], rel=1e-4)


def test_train_measures_the_clebs_coefficient_statistics_on_the_training_frames(clebs_run, synth_dataset, tmp_path):
    from export3d_cli.models.weights_io import load_model
    from export3d_cli.training.dataset import ClipDataset

    run = tmp_path / "run"
    result = export3d(
        "train", synth_dataset, "-o", run, "--preset", "tiny", "--clebs", clebs_run[0], "--steps", 1,
        "--eval-every", 0, "--json", "-q",
    )  # fmt: skip
    assert result.code == 0, result.stderr
    encoder = load_model(run / "model").expression_encoder
    data = ClipDataset(synth_dataset)
    frames = sum(len(data.valid_indices(clip.id)) for clip in data.clips("train"))
    assert encoder.config.standardize and not encoder.needs_statistics
    assert int(encoder.coefficient_frames) == frames
    assert bool((encoder.coefficient_std > 0).all())


def train_zero_steps_from(init: Path, dataset: Path, run: Path):
    """``export3d train --init INIT`` for zero steps: what the run makes of the initial weights."""
    return export3d(
        "train", dataset, "-o", run, "--preset", "tiny", "--init", init, "--steps", 0, "--eval-every", 0,
        "--json", "-q",
    )  # fmt: skip


def test_train_init_from_unstandardized_weights_keeps_them_and_zeroes_only_the_expression_weights(
    clebs_run, synth_dataset, tmp_path
):
    """Weights from before standardisation (the first bundled model): loaded, modulation weights zeroed."""
    import dataclasses

    from safetensors.numpy import load_file

    from export3d_cli.config import preset
    from export3d_cli.models.export3d import Export3D

    config = preset("tiny")
    old = Export3D(dataclasses.replace(config, expression=dataclasses.replace(config.expression, standardize=False)))
    old.save_pretrained(tmp_path / "old")
    result = train_zero_steps_from(tmp_path / "old", synth_dataset, tmp_path / "run")
    assert result.code == 0, result.stderr
    before = load_file(str(tmp_path / "old" / "model.safetensors"))
    after = load_file(str(tmp_path / "run" / "model" / "model.safetensors"))
    assert set(after) - set(before) == {
        f"expression_encoder.{name}" for name in ("coefficient_mean", "coefficient_std", "coefficient_frames")
    }
    assert int(after["expression_encoder.coefficient_frames"]) > 0
    zeroed = [name for name in before if name.endswith("modulation.proj.1.weight")]
    assert zeroed
    for name, value in before.items():
        if name in zeroed:
            assert not after[name].any(), name
        else:
            assert np.array_equal(after[name], value), name


def test_train_init_from_weights_with_expression_planes_keeps_them_and_their_coordinates(
    clebs_run, synth_dataset, tmp_path
):
    """Weights with expression tri-planes (tools/fit_expression_planes.py on the first bundled model, which predates
    standardisation): the run gets the planes too, and after standardising β′ every training frame still has the
    same plane coordinates z, so the planes mean what they meant."""

    import torch

    from export3d_cli.models.weights_io import load_model
    from export3d_cli.training.dataset import ClipDataset

    old = unstandardized_tiny_model_with_planes()
    data = ClipDataset(synth_dataset)
    frames = torch.from_numpy(data.measured_expressions(data.clips("train"))).float()
    with torch.no_grad():
        old.expression_encoder.coefficients[-1].weight.mul_(30.0)  # coefficients that vary between frames
        basis = old.expression_encoder.basis()
        old.generator.expression_planes.set_coordinates(basis, old.expression_encoder(frames) @ basis)
        old.generator.expression_planes.directions.normal_()
    old.save_pretrained(tmp_path / "old")
    result = train_zero_steps_from(tmp_path / "old", synth_dataset, tmp_path / "run")
    assert result.code == 0, result.stderr
    new = load_model(tmp_path / "run" / "model")
    assert new.config.generator.expression_planes and new.config.expression.standardize
    with torch.no_grad():
        z_old = old.generator.expression_planes.coordinates(old.expression_encoder(frames))
        z_new = new.generator.expression_planes.coordinates(new.expression_encoder(frames))
    assert z_old.std() > 0.5  # a live comparison: the coordinates vary across frames
    torch.testing.assert_close(z_new, z_old, atol=1e-3, rtol=1e-3)
    torch.testing.assert_close(new.generator.expression_planes.directions, old.generator.expression_planes.directions)


def test_train_init_keeps_blendshape_planes_also_under_a_new_clebs(clebs_run, synth_dataset, tmp_path):
    """Planes on β's principal components do not depend on the encoder: ``--init`` keeps their kind and values,
    and so does ``--clebs`` replacing the encoder (CLeBS-coordinate planes would restart from zero)."""
    import dataclasses

    import torch
    from safetensors.numpy import load_file

    from export3d_cli.config import preset
    from export3d_cli.models.export3d import Export3D

    config = preset("tiny")
    generator = dataclasses.replace(
        config.generator, expression_planes=True, expression_planes_coordinates="blendshapes"
    )
    torch.manual_seed(0)
    model = Export3D(dataclasses.replace(config, generator=generator))
    with torch.no_grad():
        n = model.generator.expression_planes.basis.shape[1]
        model.generator.expression_planes.set_coordinates(torch.linalg.qr(torch.randn(52, n)).Q, torch.randn(30, n))
        model.generator.expression_planes.directions.normal_()
    model.save_pretrained(tmp_path / "w")
    start = load_file(str(tmp_path / "w" / "model.safetensors"))
    for name, extra in (("plain", ()), ("new-clebs", ("--clebs", clebs_run[0]))):
        result = export3d(
            "train", synth_dataset, "-o", tmp_path / name, "--preset", "tiny", "--init", tmp_path / "w",
            *extra, "--steps", 0, "--eval-every", 0, "--json", "-q",
        )  # fmt: skip
        assert result.code == 0, result.stderr
        saved = json.loads((tmp_path / name / "model" / "config.json").read_text())["config"]
        assert saved["generator"]["expression_planes_coordinates"] == "blendshapes"
        exported = load_file(str(tmp_path / name / "model" / "model.safetensors"))
        for key in [k for k in start if k.startswith("generator.expression_planes.")]:
            assert np.array_equal(exported[key], start[key]), (name, key)


def test_expression_planes_train_in_their_own_group_at_a_scaled_rate(clebs_run, synth_dataset, tmp_path):
    """Per-texel directions need a tri-plane's learning rate: their Adam group runs at EXPRESSION_PLANES_LR_FACTOR
    times the run's rate (kept in the checkpoint), and one step moves them."""
    import dataclasses

    from safetensors.numpy import load_file

    from export3d_cli.config import preset
    from export3d_cli.models.export3d import Export3D
    from export3d_cli.training.generator_trainer import EXPRESSION_PLANES_LR_FACTOR

    config = preset("tiny")
    with_planes = dataclasses.replace(config, generator=dataclasses.replace(config.generator, expression_planes=True))
    Export3D(with_planes).save_pretrained(tmp_path / "old")
    run = tmp_path / "run"
    result = export3d(
        "train", synth_dataset, "-o", run, "--preset", "tiny", "--init", tmp_path / "old", "--steps", 1,
        "--lr", "1e-4", "--eval-every", 0, "--json", "-q",
    )  # fmt: skip
    assert result.code == 0, result.stderr
    state = json.loads((run / "checkpoint" / "state.json").read_text())
    groups = state["optimizers"]["generator"]["param_groups"]
    assert [group["lr_factor"] for group in groups] == [1.0, EXPRESSION_PLANES_LR_FACTOR]
    assert groups[1]["lr"] == pytest.approx(groups[0]["lr"] * EXPRESSION_PLANES_LR_FACTOR)
    assert groups[0]["lr"] > 0
    before = load_file(str(tmp_path / "old" / "model.safetensors"))["generator.expression_planes.directions"]
    live = load_file(str(run / "checkpoint" / "modules.safetensors"))["model.generator.expression_planes.directions"]
    assert np.isfinite(live).all() and not np.array_equal(before, live)
    basis = load_file(str(run / "checkpoint" / "modules.safetensors"))["model.generator.expression_planes.basis"]
    assert basis.any()  # never-fitted planes got coordinates when the run measured the coefficients


def test_train_clebs_on_landmarks_with_both_centred_learns_the_clip(synth_dataset, tmp_path):
    """f_I on the face pipeline's landmarks: on one training clip of 4 frames it learns to tell them apart (Eq. (1)
    falls from ~log 3), and the run records both settings."""
    run = tmp_path / "run"
    result = export3d(
        "train-clebs", synth_dataset, "-o", run, "--preset", "tiny", "--steps", 60, "--clip-batch", 4,
        "--image-input", "landmarks", "--centre", "both", "--json", "-q",
    )  # fmt: skip
    assert result.code == 0, result.stderr
    losses = [r["loss"] for r in map(json.loads, (run / "log.jsonl").read_text().splitlines()) if "loss" in r]
    assert np.mean(losses[-2:]) < np.mean(losses[:2]) - 0.3, losses
    state = json.loads((run / "checkpoint" / "state.json").read_text())
    assert state["config"]["image_input"] == "landmarks" and state["config"]["centre"] == "both"
    assert 0.0 <= json.loads(result.stdout)["val_retrieval"] <= 1.0


@pytest.mark.parametrize(("option", "value"), [("--image-input", "depth"), ("--centre", "none")])
def test_train_clebs_unknown_stage_1_settings_are_usage_errors(synth_dataset, tmp_path, option, value):
    result = export3d("train-clebs", synth_dataset, "-o", tmp_path / "run", option, value)
    _assert_one_error_line(result)
    assert option in result.stderr
