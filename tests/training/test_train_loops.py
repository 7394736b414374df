"""The training loops on the mini dataset: CLeBS pre-training (Eq. 1) and generator training, their saved
outputs, resuming (bit-for-bit), Ctrl-C and refusing to resume with other settings.

Eq. (1) itself is checked on a hand-computed example in test_contrastive_loss.py.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from model_support import unstandardized_tiny_model_with_planes
from safetensors.torch import load_file

import export3d_cli.training.generator_trainer as generator_trainer
from export3d_cli.config import preset
from export3d_cli.data.dataset_layout import NUM_LANDMARKS, ClipParams, ClipRecord, ClipWriter
from export3d_cli.errors import EXIT_INTERRUPTED, InputError, Interrupted, UsageError
from export3d_cli.models.expression_encoder import build_expression_encoder
from export3d_cli.models.expression_range import measure_expression_range
from export3d_cli.models.weights_io import load_model
from export3d_cli.training.checkpoint import CHECKPOINT_DIR
from export3d_cli.training.clebs_trainer import CLEBS_DIR, ClebsTrainer, clebs_validation, load_expression_encoder
from export3d_cli.training.dataset import ClipDataset
from export3d_cli.training.distributed import ProcessGroup
from export3d_cli.training.generator_trainer import GeneratorTrainer
from export3d_cli.training.train_config import CLEBS_PRESETS, GENERATOR_PRESETS, with_overrides

CPU = ProcessGroup(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"))
MODEL_RESOLUTION = preset("tiny").resolution
CLEBS_STEPS = 40
GENERATOR_STEPS = 40


def _generator_config(**overrides):
    """The ``tiny`` preset without periodic validation (training ends with one validation anyway)."""
    return with_overrides(GENERATOR_PRESETS["tiny"], eval_every=0, **overrides)


def _snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {key: value.detach().clone() for key, value in module.state_dict().items()}


def _changed(before: dict[str, torch.Tensor], module: torch.nn.Module) -> set[str]:
    return {key for key, value in module.state_dict().items() if not torch.equal(before[key], value)}


@pytest.fixture(scope="module")
def dataset(mini_dataset) -> ClipDataset:
    return ClipDataset(mini_dataset.root, resolution=MODEL_RESOLUTION)


@dataclass
class ClebsRun:
    run_dir: Path
    trainer: ClebsTrainer
    losses: list[float]
    metrics: dict[str, float]


@pytest.fixture(scope="module")
def clebs_run(dataset, tmp_path_factory) -> ClebsRun:
    run_dir = tmp_path_factory.mktemp("clebs") / "run"
    config = with_overrides(CLEBS_PRESETS["tiny"], steps=CLEBS_STEPS)
    trainer = ClebsTrainer(dataset, run_dir, config, torch.device("cpu"))
    losses: list[float] = []
    metrics = trainer.train(lambda step, total, terms: losses.append(terms["loss"]))
    return ClebsRun(run_dir, trainer, losses, metrics)


def test_clebs_training_lowers_the_contrastive_loss(clebs_run):
    losses = clebs_run.losses
    assert len(losses) == CLEBS_STEPS
    # Eq. (1) starts near log(K - 1) ≈ 1.6 for K = 6 frames; β[0] is visible in the frames, so it can be learnt.
    assert np.mean(losses[-5:]) < np.mean(losses[:5]) - 0.5, losses


def test_clebs_training_reports_held_out_metrics_and_logs(clebs_run, mini_dataset):
    assert [clip.id for clip in clebs_run.trainer.train_clips] == list(mini_dataset.train_clips)
    assert [clip.id for clip in clebs_run.trainer.val_clips] == list(mini_dataset.test_clips)
    metrics = clebs_run.metrics
    assert set(metrics) == {"val_loss", "val_retrieval", "val_chance"}
    assert 0.0 <= metrics["val_retrieval"] <= 1.0 and np.isfinite(metrics["val_loss"])
    assert metrics["val_chance"] == pytest.approx(1 / 6)
    records = [json.loads(line) for line in (clebs_run.run_dir / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "loss" in r] == list(range(10, CLEBS_STEPS + 1, 10))
    assert records[-1] == {"step": CLEBS_STEPS, "validation": metrics}


def test_clebs_run_saves_the_expression_encoder_and_its_config(clebs_run):
    directory = clebs_run.run_dir / CLEBS_DIR
    assert sorted(p.name for p in directory.iterdir()) == ["config.json", "expression_encoder.safetensors"]
    config = json.loads((directory / "config.json").read_text())
    assert config == dataclasses.asdict(preset("tiny").expression)
    saved = load_file(str(directory / "expression_encoder.safetensors"))
    trained = clebs_run.trainer.expression_encoder.state_dict()
    assert saved.keys() == trained.keys()
    assert all(torch.equal(saved[key], trained[key]) for key in saved)


def test_loaded_clebs_encoder_reproduces_the_trained_one(clebs_run):
    torch.manual_seed(123)  # another initialisation than the trainer's
    fresh = build_expression_encoder(preset("tiny").expression).eval()
    trained = clebs_run.trainer.expression_encoder.eval()
    beta = torch.rand(5, 52)
    with torch.no_grad():
        assert not torch.allclose(fresh(beta), trained(beta))
        load_expression_encoder(fresh, clebs_run.run_dir)
        torch.testing.assert_close(fresh(beta), trained(beta), rtol=0, atol=0)


@pytest.mark.parametrize("change", [{"embed_dim": 16}, {"basis_size": 5}, {"kind": "direct"}])
def test_loading_clebs_into_a_mismatched_encoder_is_an_input_error(clebs_run, change):
    other = build_expression_encoder(dataclasses.replace(preset("tiny").expression, **change))
    with pytest.raises(InputError, match="does not match"):
        load_expression_encoder(other, clebs_run.run_dir)


def test_loading_clebs_from_a_folder_without_a_clebs_run_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="not a train-clebs run"):
        load_expression_encoder(build_expression_encoder(preset("tiny").expression), tmp_path)


def test_clebs_resume_restores_the_state_and_refuses_other_settings(clebs_run, dataset, tmp_path):
    run_dir = tmp_path / "copy"
    shutil.copytree(clebs_run.run_dir, run_dir)
    longer = ClebsTrainer(dataset, run_dir, with_overrides(clebs_run.trainer.config, steps=60), torch.device("cpu"))
    assert longer.resume_if_possible() and longer.step == CLEBS_STEPS
    trained = clebs_run.trainer.expression_encoder.state_dict()
    assert all(torch.equal(v, trained[k]) for k, v in longer.expression_encoder.state_dict().items())
    other = ClebsTrainer(dataset, run_dir, with_overrides(clebs_run.trainer.config, lr=5e-4), torch.device("cpu"))
    with pytest.raises(UsageError, match=r"other settings \(lr\)"):
        other.resume_if_possible()


@dataclass
class GeneratorRun:
    encoder: str
    run_dir: Path
    trainer: GeneratorTrainer
    before: dict[str, torch.Tensor]
    l1: list[float]
    metrics: dict


@pytest.fixture(scope="module", params=["clebs", "direct"])
def generator_run(request, dataset, clebs_run, tmp_path_factory) -> GeneratorRun:
    encoder = request.param
    run_dir = tmp_path_factory.mktemp(f"generator-{encoder}") / "run"
    config = _generator_config(steps=GENERATOR_STEPS, expression_encoder=encoder)
    assert config.lr == 1e-3 and config.stochastic_render
    trainer = GeneratorTrainer(dataset, run_dir, config, CPU, clebs_run=clebs_run.run_dir)
    before = _snapshot(trainer.state.model)
    l1: list[float] = []
    metrics = trainer.train(lambda step, total, terms: l1.append(terms["l1"]))
    return GeneratorRun(encoder, run_dir, trainer, before, l1, metrics)


def test_generator_training_lowers_the_l1_loss(generator_run):
    l1 = generator_run.l1
    assert len(l1) == GENERATOR_STEPS
    assert np.mean(l1[-5:]) <= 0.75 * np.mean(l1[:5]), np.round(l1, 3)


def test_generator_training_updates_the_generator_and_freezes_only_clebs(generator_run, clebs_run):
    model = generator_run.trainer.state.model
    changed = _changed(generator_run.before, model)
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    for part in ("generator.", "renderer.decoder.", "superres."):
        names = {name for name in trainable if name.startswith(part)}
        assert names and names <= changed, f"{part} parameters did not all change: {sorted(names - changed)[:5]}"
    encoder_keys = {key for key in generator_run.before if key.startswith("expression_encoder.")}
    if generator_run.encoder == "clebs":
        assert not encoder_keys & changed, "CLeBS must stay frozen"
        assert not any(p.requires_grad for p in model.expression_encoder.parameters())
        saved = load_file(str(clebs_run.run_dir / CLEBS_DIR / "expression_encoder.safetensors"))
        state = model.expression_encoder.state_dict()
        learned = [key for key in saved if not key.startswith("coefficient_")]
        assert learned and all(torch.equal(saved[key], state[key]) for key in learned)
        # The coefficient statistics are measured on the training frames when stage 2 starts.
        assert int(state["coefficient_frames"]) > 0 and not model.expression_encoder.needs_statistics
        optimised = {id(p) for group in generator_run.trainer.state.optimizer.param_groups for p in group["params"]}
        assert not any(id(p) in optimised for p in model.expression_encoder.parameters())
    else:
        assert encoder_keys and encoder_keys <= changed, "the direct ablation trains its MLP jointly"


def test_generator_ema_differs_from_the_live_model_and_is_what_run_model_holds(generator_run):
    state = generator_run.trainer.state
    live, ema = state.model.state_dict(), state.ema.state_dict()
    differing = [key for key in live if not torch.equal(live[key], ema[key])]
    assert any(key.startswith("generator.") for key in differing)
    loaded = load_model(generator_run.run_dir / "model")
    assert loaded.config == state.model.config
    saved = loaded.state_dict()
    assert saved.keys() == ema.keys()
    assert all(torch.equal(saved[key], ema[key]) for key in saved)


def test_generator_run_saves_the_training_frames_expression_range(generator_run, dataset):
    loaded = load_model(generator_run.run_dir / "model")
    if generator_run.encoder != "clebs":
        assert loaded.expression_range is None, "the direct ablation has no coefficients to keep in range"
        return
    trainer = generator_run.trainer
    frames = torch.from_numpy(dataset.measured_expressions(trainer.train_clips)).float()
    assert loaded.expression_range == measure_expression_range(loaded.expression_encoder, frames)
    assert loaded.expression_range.frames == len(frames) > 2


def test_generator_triplane_ema_buffer_is_updated_in_training(generator_run):
    state = generator_run.trainer.state
    t_ema = state.model.generator.triplane_ema
    assert torch.count_nonzero(generator_run.before["generator.triplane_ema"]) == 0
    assert t_ema.abs().sum() > 0 and torch.isfinite(t_ema).all()
    assert torch.equal(state.ema.generator.triplane_ema, t_ema), "the EMA model copies buffers"


def test_generator_run_folder_holds_checkpoint_log_and_samples(generator_run, mini_dataset):
    assert [clip.id for clip in generator_run.trainer.train_clips] == list(mini_dataset.train_clips)
    run_dir = generator_run.run_dir
    state = json.loads((run_dir / CHECKPOINT_DIR / "state.json").read_text())
    assert state["step"] == GENERATOR_STEPS and state["kind"] == "generator"
    assert state["config"]["expression_encoder"] == generator_run.encoder
    assert (run_dir / "samples" / f"step{GENERATOR_STEPS:07d}.png").is_file()
    records = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
    assert records[-1]["validation"] == generator_run.metrics
    assert {"psnr_same", "ssim_same", "psnr_cross", "frames"} <= set(generator_run.metrics)
    # Validation sees the expression error too (face pipeline only; the identity judges stay out of training).
    assert {"aed_same", "expression_r_same", "face_found_same", "aed_cross"} <= set(generator_run.metrics)
    assert set(generator_run.metrics["expression_r_same"]) == {"jaw", "smile", "blink", "brow"}
    assert generator_run.metrics["csim_same"] is None and generator_run.metrics["akd_same"] is None
    assert 0.0 <= generator_run.metrics["face_found_same"] <= 1.0


def test_generator_needs_a_clebs_run_unless_direct(dataset, tmp_path):
    with pytest.raises(UsageError, match="--clebs"):
        GeneratorTrainer(dataset, tmp_path / "run", _generator_config(expression_encoder="clebs"), CPU)


# Resuming: the losses after a resume are those of the uninterrupted run (stochastic rendering and the
# density term's random points included: the checkpoint restores torch's RNG).

RESUME_STEPS = 6


def _record_terms(records: dict[int, dict[str, float]]):
    def on_step(step: int, total: int, terms: dict[str, float]) -> None:
        records[step] = {name: value for name, value in terms.items() if name != "steps_per_s"}

    return on_step


def _resume_config(**overrides):
    return _generator_config(
        **{"expression_encoder": "direct", "steps": RESUME_STEPS, "checkpoint_every": 3, **overrides}
    )


@dataclass
class UninterruptedRun:
    run_dir: Path
    records: dict[int, dict[str, float]]
    final: dict[str, torch.Tensor]


@pytest.fixture(scope="module")
def uninterrupted(dataset, tmp_path_factory) -> UninterruptedRun:
    run_dir = tmp_path_factory.mktemp("uninterrupted") / "run"
    config = _resume_config()
    assert config.stochastic_render and config.density_weight > 0
    trainer = GeneratorTrainer(dataset, run_dir, config, CPU)
    records: dict[int, dict[str, float]] = {}
    trainer.train(_record_terms(records))
    assert sorted(records) == list(range(1, RESUME_STEPS + 1))
    return UninterruptedRun(run_dir, records, _snapshot(trainer.state.model))


def _assert_same_losses(got: dict[int, dict[str, float]], expected: dict[int, dict[str, float]]) -> None:
    assert sorted(got) == [4, 5, 6]
    for step, terms in got.items():
        assert terms.keys() == expected[step].keys()
        for name, value in terms.items():
            assert value == pytest.approx(expected[step][name], abs=1e-6, rel=0), f"step {step} {name}"


def test_resumed_training_repeats_the_uninterrupted_losses(uninterrupted, dataset, tmp_path):
    run_dir = tmp_path / "run"
    first = GeneratorTrainer(dataset, run_dir, _resume_config(steps=3), CPU)
    early: dict[int, dict[str, float]] = {}
    first.train(_record_terms(early))
    assert early == {step: uninterrupted.records[step] for step in (1, 2, 3)}
    second = GeneratorTrainer(dataset, run_dir, _resume_config(), CPU)
    assert second.resume_if_possible() and second.state.step == 3
    late: dict[int, dict[str, float]] = {}
    second.train(_record_terms(late))
    _assert_same_losses(late, uninterrupted.records)
    final = second.state.model.state_dict()
    for key, value in uninterrupted.final.items():
        torch.testing.assert_close(final[key], value, rtol=0, atol=1e-6, msg=key)


def test_annealing_starts_at_the_end_and_a_constant_run_can_be_resumed_into_it(uninterrupted, dataset, tmp_path):
    annealed_dir = tmp_path / "annealed"
    annealed: dict[int, dict[str, float]] = {}
    GeneratorTrainer(dataset, annealed_dir, _resume_config(lr_decay_steps=2), CPU).train(_record_terms(annealed))
    base = _resume_config().lr
    assert [annealed[step]["lr"] for step in range(1, 7)] == pytest.approx(
        [base] * 4 + [base * (0.02 + 0.98 * 0.5), base * 0.02]
    )
    # Steps before the annealing window are those of the constant-rate run; the annealed steps differ.
    before_window = (1, 2, 3, 4)
    assert {s: annealed[s] for s in before_window} == {s: uninterrupted.records[s] for s in before_window}
    assert annealed[6]["loss"] != uninterrupted.records[6]["loss"]

    # Train 3 steps at a constant rate, then extend the run to 6 steps annealed over the last 2: the resumed
    # steps are those of the run annealed from the start (the schedule may change on resume, the lr may not).
    run_dir = tmp_path / "extended"
    GeneratorTrainer(dataset, run_dir, _resume_config(steps=3), CPU).train()
    extended = GeneratorTrainer(dataset, run_dir, _resume_config(lr_decay_steps=2), CPU)
    assert extended.resume_if_possible() and extended.state.step == 3
    late: dict[int, dict[str, float]] = {}
    extended.train(_record_terms(late))
    _assert_same_losses(late, annealed)
    assert extended.state.optimizer.param_groups[0]["lr"] == pytest.approx(base * 0.02)
    other_lr = GeneratorTrainer(dataset, run_dir, _resume_config(lr=base / 2), CPU)
    with pytest.raises(UsageError, match=r"other settings \(lr\)"):
        other_lr.resume_if_possible()


def _interrupt_before_step(monkeypatch, step: int) -> None:
    """Ctrl-C inside ``train_step`` once ``step`` steps are done (the batch for the next one is already drawn)."""
    real = generator_trainer.train_step

    def interrupted(state, *args, **kwargs):
        if state.step == step:
            raise KeyboardInterrupt
        return real(state, *args, **kwargs)

    monkeypatch.setattr(generator_trainer, "train_step", interrupted)


def test_ctrl_c_saves_a_checkpoint_and_raises_interrupted(dataset, tmp_path, monkeypatch):
    run_dir = tmp_path / "run"
    config = _resume_config(checkpoint_every=0)  # no periodic checkpoints: the one found comes from Ctrl-C
    trainer = GeneratorTrainer(dataset, run_dir, config, CPU)
    _interrupt_before_step(monkeypatch, 3)
    with pytest.raises(Interrupted, match="interrupted at step 3") as caught:
        trainer.train()
    assert caught.value.exit_code == EXIT_INTERRUPTED == 130
    assert json.loads((run_dir / CHECKPOINT_DIR / "state.json").read_text())["step"] == 3
    assert (run_dir / "model" / "model.safetensors").is_file()
    monkeypatch.undo()
    resumed = GeneratorTrainer(dataset, run_dir, config, CPU)
    assert resumed.resume_if_possible() and resumed.state.step == 3
    live = trainer.state.model.state_dict()
    assert all(torch.equal(value, live[key]) for key, value in resumed.state.model.state_dict().items())


def test_resuming_after_ctrl_c_repeats_the_uninterrupted_losses(uninterrupted, dataset, tmp_path, monkeypatch):
    run_dir = tmp_path / "run"
    config = _resume_config(checkpoint_every=0)
    _interrupt_before_step(monkeypatch, 3)
    with pytest.raises(Interrupted):
        GeneratorTrainer(dataset, run_dir, config, CPU).train()
    monkeypatch.undo()
    resumed = GeneratorTrainer(dataset, run_dir, config, CPU)
    assert resumed.resume_if_possible()
    late: dict[int, dict[str, float]] = {}
    resumed.train(_record_terms(late))
    _assert_same_losses(late, uninterrupted.records)


@pytest.mark.parametrize("change", [{"lr": 5e-4}, {"batch_size": 2}, {"seed": 1}, {"ssim_weight": 0.0}])
def test_resuming_with_other_settings_is_a_usage_error(uninterrupted, dataset, change):
    trainer = GeneratorTrainer(dataset, uninterrupted.run_dir, _resume_config(**change), CPU)
    with pytest.raises(UsageError, match="other settings"):
        trainer.resume_if_possible()


def test_resuming_with_more_steps_is_allowed(uninterrupted, dataset):
    trainer = GeneratorTrainer(dataset, uninterrupted.run_dir, _resume_config(steps=10), CPU)
    assert trainer.resume_if_possible() and trainer.state.step == RESUME_STEPS


def test_resuming_with_another_expression_encoder_is_refused_with_exit_code_2(uninterrupted, dataset, clebs_run):
    # The checkpoint's tensors are loaded before the settings are compared, so an architecture change is reported
    # as a checkpoint that does not match the model (InputError) rather than as other settings (UsageError).
    config = _resume_config(expression_encoder="clebs")
    trainer = GeneratorTrainer(dataset, uninterrupted.run_dir, config, CPU, clebs_run=clebs_run.run_dir)
    with pytest.raises((UsageError, InputError)) as caught:
        trainer.resume_if_possible()
    assert caught.value.exit_code == 2
    assert str(uninterrupted.run_dir) in str(caught.value)


def test_clebs_validation_tolerates_a_held_out_clip_without_faces(clebs_run, mini_dataset, tmp_path):
    root = shutil.copytree(mini_dataset.root, tmp_path / "data")
    with ClipWriter(root, "nofaces", mini_dataset.resolution) as writer:
        for _ in range(3):
            writer.add_frame(np.full((mini_dataset.resolution,) * 2 + (3,), 128, dtype=np.uint8))
        writer.commit(
            ClipParams(
                expression=np.zeros((3, mini_dataset.expression_dim), dtype=np.float32),
                camera=np.zeros((3, 25), dtype=np.float32),
                landmarks=np.zeros((3, NUM_LANDMARKS, 2), dtype=np.float32),
                valid=np.zeros(3, dtype=bool),
            )
        )
    data = ClipDataset(root, resolution=MODEL_RESOLUTION)
    clips = [data.clip("id2-c0"), ClipRecord(id="nofaces", identity="id9", split="test", frames=3, valid_frames=0)]
    trainer = clebs_run.trainer
    metrics = clebs_validation(trainer.image_encoder, trainer.expression_encoder, 0.1, data, clips, 8)
    assert np.isfinite(metrics["val_loss"]) and metrics["val_chance"] == pytest.approx(1 / 6)


def test_folding_unstandardized_modulations_keeps_their_mean_output_and_zeroes_the_expression_weights():
    """After the fold, each EAdaLN modulation outputs what the old one output on average over the frames."""
    import dataclasses

    from export3d_cli.config import preset
    from export3d_cli.layers.eadaln import ExpressionModulation
    from export3d_cli.models.export3d import Export3D
    from export3d_cli.training.generator_trainer import fold_expression_modulation

    torch.manual_seed(0)
    config = preset("tiny")
    model = Export3D(dataclasses.replace(config, expression=dataclasses.replace(config.expression, standardize=True)))
    modulations = [m for m in model.generator.modules() if isinstance(m, ExpressionModulation)]
    with torch.no_grad():
        for module in modulations:
            module.proj[1].weight.normal_(0, 0.1)
            module.proj[1].bias.normal_(0, 0.1)
    frames = torch.rand(40, 52)
    with torch.no_grad():
        old_embedding = model.expression_encoder.coefficients_of(frames) @ model.expression_encoder.basis().T
        old_means = [module.proj(old_embedding).mean(dim=0) for module in modulations]
    fold_expression_modulation(model, old_embedding)
    model.expression_encoder.set_statistics(frames)
    _assert_folded(model, frames, old_means)


def _assert_folded(model, frames: torch.Tensor, old_means: list[torch.Tensor]) -> None:
    """Every EAdaLN modulation of ``model``: expression weights zero, and on ``frames`` β [N, E] the old mean output."""
    from export3d_cli.layers.eadaln import ExpressionModulation

    modulations = [m for m in model.modules() if isinstance(m, ExpressionModulation)]
    assert len(modulations) == len(old_means) > 0
    with torch.no_grad():
        embedding = model.expression_encoder(frames)
        for module, mean in zip(modulations, old_means, strict=True):
            assert not module.proj[1].weight.any()
            new = module.proj(embedding)
            torch.testing.assert_close(new, mean.expand_as(new), atol=1e-5, rtol=1e-5)


class _Offset(torch.nn.Module):
    """An expression encoder plus one constant vector: what a clip-wide bias in f_e (appearance) would add."""

    def __init__(self, encoder: torch.nn.Module, offset: torch.Tensor) -> None:
        super().__init__()
        self.encoder, self.offset = encoder, offset

    def forward(self, beta: torch.Tensor) -> torch.Tensor:
        return self.encoder(beta) + self.offset


def test_centring_both_embeddings_makes_the_objective_blind_to_a_constant_in_f_e(clebs_run, dataset):
    """With ``centre="both"`` Eq. (1) compares only what changes within a clip: a vector added to every f_e output
    changes neither loss nor retrieval; with f_I centred alone (``"images"``) it does."""
    trainer = clebs_run.trainer
    encoder = trainer.expression_encoder.eval()
    offset = 3.0 * torch.randn(encoder.config.embed_dim, generator=torch.Generator().manual_seed(1))
    shifted = _Offset(encoder, offset)
    clips = dataset.clips("test") + dataset.clips("train")
    for centre, blind in (("both", True), ("images", False)):
        plain = clebs_validation(trainer.image_encoder, encoder, 0.1, dataset, clips, 6, centre)
        moved = clebs_validation(trainer.image_encoder, shifted, 0.1, dataset, clips, 6, centre)
        if blind:
            assert moved["val_loss"] == pytest.approx(plain["val_loss"], abs=1e-5)
            assert moved["val_retrieval"] == plain["val_retrieval"]
        else:
            assert abs(moved["val_loss"] - plain["val_loss"]) > 1e-3, (plain, moved)


def test_clebs_run_from_before_the_centre_setting_resumes_as_images_only(clebs_run, dataset, tmp_path):
    run_dir = tmp_path / "old"
    shutil.copytree(clebs_run.run_dir, run_dir)
    state_file = run_dir / CHECKPOINT_DIR / "state.json"
    state = json.loads(state_file.read_text())
    del state["config"]["centre"]  # as written before the setting existed
    state_file.write_text(json.dumps(state))
    config = with_overrides(clebs_run.trainer.config, steps=CLEBS_STEPS + 5)
    assert config.centre == "images"
    assert ClebsTrainer(dataset, run_dir, config, torch.device("cpu")).resume_if_possible()
    both = ClebsTrainer(dataset, run_dir, with_overrides(config, centre="both"), torch.device("cpu"))
    with pytest.raises(UsageError, match=r"other settings \(centre\)"):
        both.resume_if_possible()


def test_clebs_training_with_both_centred_lowers_its_loss(dataset, tmp_path):
    config = with_overrides(CLEBS_PRESETS["tiny"], steps=CLEBS_STEPS, centre="both", eval_every=0)
    trainer = ClebsTrainer(dataset, tmp_path / "run", config, torch.device("cpu"))
    losses: list[float] = []
    metrics = trainer.train(lambda step, total, terms: losses.append(terms["loss"]))
    assert np.mean(losses[-5:]) < np.mean(losses[:5]) - 0.5, losses
    assert 0.0 <= metrics["val_retrieval"] <= 1.0


def test_a_replaced_clebs_is_folded_for_also_without_statistics_and_restarts_clebs_planes(dataset):
    """``--init W --clebs RUN`` under an encoder that does not standardise (no statistics to measure): the
    modulations are still folded for the new β′, and CLeBS-coordinate planes restart from zero with fresh
    coordinates (their old z meant the replaced encoder's coefficients)."""
    import copy

    from export3d_cli.layers.eadaln import ExpressionModulation
    from export3d_cli.training.generator_trainer import TrainingState, measure_expression_statistics

    model = unstandardized_tiny_model_with_planes()
    frames = torch.from_numpy(dataset.measured_expressions(dataset.clips("train"))).float()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, ExpressionModulation):
                module.proj[1].weight.normal_(0, 0.1)
        basis = model.expression_encoder.basis()
        model.generator.expression_planes.set_coordinates(basis, model.expression_encoder(frames) @ basis)
        model.generator.expression_planes.directions.normal_()
    replaced = copy.deepcopy(model.expression_encoder).requires_grad_(False)
    with torch.no_grad():
        old_means = [
            m.proj(replaced(frames)).mean(dim=0) for m in model.modules() if isinstance(m, ExpressionModulation)
        ]
        for parameter in model.expression_encoder.parameters():
            parameter.normal_()  # the new CLeBS
    assert not getattr(model.expression_encoder, "needs_statistics", False)
    state = TrainingState(
        model, copy.deepcopy(model), torch.optim.SGD(model.parameters(), lr=0.0), None, None,
        np.random.default_rng(0), replaced_encoder=replaced,
    )  # fmt: skip
    assert measure_expression_statistics(state, dataset, dataset.clips("train")) == len(frames)
    assert state.replaced_encoder is None
    for folded in (state.model, state.ema):
        _assert_folded(folded, frames, old_means)
        planes = folded.generator.expression_planes
        assert not planes.directions.any()
        z = planes.coordinates(folded.expression_encoder(frames))
        torch.testing.assert_close(z.mean(dim=0), torch.zeros(z.shape[1]), atol=1e-4, rtol=0)
