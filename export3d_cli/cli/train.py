"""``export3d train DATASET --clebs RUN -o RUN``: train the tri-plane generator (one process or many via torchrun)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from export3d_cli.cli.options import JsonOption, QuietOption
from export3d_cli.cli.progress import progress
from export3d_cli.cli.training_options import (
    DatasetArgument,
    DeviceOption,
    PresetOption,
    RunOption,
    SeedOption,
    StepsOption,
)


def train(
    dataset: DatasetArgument,
    output: RunOption,
    clebs: Annotated[Path | None, typer.Option("--clebs", help="A train-clebs run folder (frozen CLeBS).")] = None,
    preset_name: PresetOption = "small-128",
    expression_encoder: Annotated[
        str, typer.Option("--expression-encoder", help="clebs (paper) or direct (ablation: β through a plain MLP).")
    ] = "clebs",
    steps: StepsOption = None,
    batch_size: Annotated[int | None, typer.Option("--batch-size", min=1, help="Global batch size.")] = None,
    lr: Annotated[float | None, typer.Option("--lr", min=0.0, help="Learning rate.")] = None,
    lr_decay_steps: Annotated[
        int | None,
        typer.Option(
            "--lr-decay-steps",
            min=0,
            help="Anneal the learning rate (half cosine) over the last N steps; 0 = constant; may change on resume.",
        ),
    ] = None,
    adversarial_weight: Annotated[
        float | None, typer.Option("--adversarial-weight", min=0.0, help="Weight of the optional GAN loss (0 = off).")
    ] = None,
    region_weight: Annotated[
        float | None,
        typer.Option("--region-weight", min=0.0, help="Extra L1 on mouth, eyes and brows (0 = off, the paper)."),
    ] = None,
    perceptual_weights: Annotated[
        Path | None,
        typer.Option("--perceptual-weights", help="VGG-16 features as safetensors, for the perceptual loss (local)."),
    ] = None,
    eval_every: Annotated[int | None, typer.Option("--eval-every", min=0, help="Validate every N steps.")] = None,
    checkpoint_every: Annotated[
        int | None, typer.Option("--checkpoint-every", min=0, help="Save every N steps.")
    ] = None,
    deterministic_render: Annotated[
        bool, typer.Option("--deterministic-render", help="Render without EG3D's sample jitter in training.")
    ] = False,
    init: Annotated[
        str | None,
        typer.Option(
            "--init",
            help="Start from trained weights (a model folder, e.g. a run's model/); brings CLeBS unless --clebs.",
        ),
    ] = None,
    pair_sampling: Annotated[
        str | None,
        typer.Option("--pair-sampling", help="uniform (paper) or expression: favour pairs whose expressions differ."),
    ] = None,
    seed: SeedOption = None,
    device: DeviceOption = "auto",
    quiet: QuietOption = False,
    as_json: JsonOption = False,
) -> None:
    """Train G, the renderer's decoder and SR to reconstruct a driving frame from a source frame of the same clip."""
    from export3d_cli.config import preset
    from export3d_cli.training.dataset import ClipDataset
    from export3d_cli.training.distributed import setup_process_group, teardown_process_group
    from export3d_cli.training.generator_trainer import GeneratorTrainer
    from export3d_cli.training.train_config import generator_preset, with_overrides

    config = with_overrides(
        generator_preset(preset_name),
        expression_encoder=expression_encoder,
        steps=steps,
        batch_size=batch_size,
        lr=lr,
        lr_decay_steps=lr_decay_steps,
        adversarial_weight=adversarial_weight,
        region_weight=region_weight,
        eval_every=eval_every,
        checkpoint_every=checkpoint_every,
        seed=seed,
        stochastic_render=False if deterministic_render else None,
        init_weights=init,
        pair_sampling=pair_sampling,
    )
    group = setup_process_group(device)
    try:
        data = ClipDataset(dataset, resolution=preset(config.preset).resolution)
        trainer = GeneratorTrainer(data, output, config, group, clebs_run=clebs, perceptual_weights=perceptual_weights)
        resumed = trainer.resume_if_possible()
        with progress("Training", quiet=quiet or not group.is_main, unit="steps") as bar:

            def on_step(step: int, total: int, terms: dict[str, float]) -> None:
                bar.describe(f"Training loss {terms['loss']:.4f}")
                bar.update(step, total)

            metrics = trainer.train(on_step)
    finally:
        teardown_process_group()
    if group.is_main:
        summary = {"output": str(output), "steps": trainer.state.step, "resumed": resumed, **metrics}
        typer.echo(json.dumps(summary) if as_json else str(output))
