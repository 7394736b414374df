"""``export3d synth``: a dataset of synthetic talking heads with exact ground truth.

Writes the same layout as ``export3d preprocess`` (DESIGN §5). Per clip:

- frames: renders through the exact EG3D camera (the aligned crop by construction);
- ``expression`` [T, 52]: β *measured* by the real face pipeline on the renders
  (MediaPipe video mode, gaps filled, default smoothing), so training sees the
  extractor's noise and identity leakage, as on real video;
- ``camera`` [T, 25]: the exact label the frame was rendered with;
- ``landmarks`` [T, 478, 2]: the posed mesh projected (MediaPipe topology);
- ``valid`` [T]: MediaPipe found the face;
- extra ground truth: ``controls`` [T, 8] (the true expression, CONTROL_NAMES),
  ``measured_camera`` [T, 25] (the pipeline's camera), ``angles`` [T, 2] (yaw, pitch °).

Test identities also get cross-identity clips: identity A rendered with the
controls and cameras of identity B's clip (and A's own lighting and background),
whose ``expression`` is β measured on B's frames — the ground truth for driving A
with B, which no real dataset has. Their manifest entries say so in ``extra``.

Every identity and clip draws from its own seeded generator, so the output is
byte-identical for the same arguments and a run can resume clip by clip.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from export3d_cli.camera_conventions import LABEL_DIM
from export3d_cli.data.dataset_layout import (
    MANIFEST_NAME,
    ClipParams,
    ClipRecord,
    ClipWriter,
    Manifest,
    is_clip_complete,
    read_clip_params,
    write_manifest,
)
from export3d_cli.errors import Export3DError, UsageError
from export3d_cli.face.blendshapes import EXPRESSION_DIM, EXPRESSION_KIND
from export3d_cli.face.head_pose import look_at_pose
from export3d_cli.face.video_analysis import Smoothing, analyze_frames
from export3d_cli.synth.head_renderer import Lighting, SyntheticHead, random_lighting
from export3d_cli.synth.identity import random_identity
from export3d_cli.synth.textures import background
from export3d_cli.synth.trajectories import EXPRESSION_RANGES, camera_trajectory, expression_trajectory

SYNTH_CONFIG_NAME = "synth.json"
SYNTH_FPS = 25.0
FrameProgress = Callable[[int], None]


@dataclass(frozen=True)
class SynthConfig:
    identities: int
    clips_per_identity: int
    frames: int
    resolution: int = 256
    seed: int = 0
    test_fraction: float = 0.1
    cross_clips: int = 1  # cross-identity clips per test identity
    expressions: str = "full"  # EXPRESSION_RANGES: "speech" (talking only, datasets before 0.2) or "full"

    def __post_init__(self) -> None:
        if self.expressions not in EXPRESSION_RANGES:
            raise UsageError(f"--expressions must be one of {', '.join(EXPRESSION_RANGES)}, got {self.expressions!r}")
        if min(self.identities, self.clips_per_identity, self.frames) < 1:
            raise UsageError("--identities, --clips-per-identity and --frames must be at least 1")
        if not 32 <= self.resolution <= 1024:
            raise UsageError(f"--resolution must be between 32 and 1024, got {self.resolution}")
        if not 0.0 <= self.test_fraction < 1.0:
            raise UsageError(f"--test-fraction must be in [0, 1), got {self.test_fraction}")


@dataclass(frozen=True)
class ClipPlan:
    """Everything a clip's renders depend on, drawn from the clip's own generator."""

    controls: np.ndarray  # [T, 8]
    angles: np.ndarray  # [T, 2] yaw, pitch in degrees
    lighting: Lighting
    backdrop: np.ndarray  # [R, R, 3] float32


def clip_plan(config: SynthConfig, identity: int, clip: int) -> ClipPlan:
    rng = np.random.default_rng([config.seed, identity, clip, 2])
    controls = expression_trajectory(rng, config.frames, SYNTH_FPS, config.expressions)
    angles = camera_trajectory(rng, config.frames, SYNTH_FPS)
    lighting = random_lighting(rng)
    backdrop = background(rng, config.resolution, config.resolution)
    return ClipPlan(controls, angles, lighting, backdrop)


def test_identities(config: SynthConfig) -> list[int]:
    """Held-out identities: a seeded choice of round(N · fraction), at least one when there are two or more."""
    if config.identities < 2 or config.test_fraction == 0:
        return []
    count = min(config.identities - 1, max(1, round(config.identities * config.test_fraction)))
    rng = np.random.default_rng([config.seed, 3])
    return sorted(int(i) for i in rng.choice(config.identities, size=count, replace=False))


def identity_name(index: int) -> str:
    return f"synth{index:05d}"


def clip_name(identity: int, clip: int) -> str:
    return f"{identity_name(identity)}-clip{clip:02d}"


def cross_clip_name(identity: int, driver: int, clip: int) -> str:
    return f"{identity_name(identity)}-cross-{identity_name(driver)}-clip{clip:02d}"


def cross_pairs(config: SynthConfig) -> list[tuple[int, int, int]]:
    """(appearance identity A, driving identity B, B's clip) for every cross-identity clip."""
    tests = test_identities(config)
    pool = tests if len(tests) >= 2 else list(range(config.identities))
    pairs = []
    for a in tests:
        others = [b for b in pool if b != a]
        rng = np.random.default_rng([config.seed, a, 4])
        drivers = rng.choice(others, size=min(config.cross_clips, len(others)), replace=False)  # distinct clip ids
        for k, driver in enumerate(drivers):
            pairs.append((a, int(driver), k % config.clips_per_identity))
    return pairs


def _labels(angles: np.ndarray) -> np.ndarray:
    return np.stack([look_at_pose(float(yaw), float(pitch)).label() for yaw, pitch in angles])  # [T, 25]


def _measure(frames: list[np.ndarray], resolution: int, name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """β, camera and valid mask measured by the real face pipeline (zeros and all-invalid if it finds nothing)."""
    try:
        motion = analyze_frames(frames, SYNTH_FPS, resolution=resolution, smoothing=Smoothing(), name=name)
    except Export3DError:
        count = len(frames)
        return (
            np.zeros((count, EXPRESSION_DIM), np.float32),
            np.zeros((count, LABEL_DIM), np.float32),
            np.zeros(count, bool),
        )
    return motion.expression, motion.camera, motion.valid


def _render_clip(head: SyntheticHead, plan: ClipPlan, labels: np.ndarray, resolution: int, tick: FrameProgress):
    frames, landmarks = [], []
    for controls, label in zip(plan.controls, labels, strict=True):
        frames.append(head.render(controls, label, resolution, plan.lighting, plan.backdrop))
        landmarks.append(head.landmarks(controls, label, resolution))
        tick(1)
    return frames, np.stack(landmarks)


def generate_clip(root: Path, config: SynthConfig, head: SyntheticHead, clip: int, split: str, tick: FrameProgress):
    identity = head.identity.index
    name = clip_name(identity, clip)
    plan = clip_plan(config, identity, clip)
    labels = _labels(plan.angles)
    frames, landmarks = _render_clip(head, plan, labels, config.resolution, tick)
    expression, measured_camera, valid = _measure(frames, config.resolution, name)
    with ClipWriter(root, name, config.resolution, overwrite=True) as writer:
        for frame in frames:
            writer.add_frame(frame)
        writer.commit(
            ClipParams(
                expression=expression,
                camera=labels.astype(np.float32),
                landmarks=landmarks,
                valid=valid,
                extra={
                    "controls": plan.controls.astype(np.float32),
                    "measured_camera": measured_camera.astype(np.float32),
                    "angles": plan.angles.astype(np.float32),
                },
            )
        )
    return _record(name, identity, split, valid, {"synthetic": True, "clip": clip})


def generate_cross_clip(root: Path, config: SynthConfig, head: SyntheticHead, driver: int, clip: int, tick):
    """Identity A (``head``) with B's controls and cameras, A's lighting and background; β measured on B."""
    identity = head.identity.index
    name = cross_clip_name(identity, driver, clip)
    driving = clip_plan(config, driver, clip)
    own = clip_plan(config, identity, 0)
    plan = ClipPlan(driving.controls, driving.angles, own.lighting, own.backdrop)
    labels = _labels(plan.angles)
    frames, landmarks = _render_clip(head, plan, labels, config.resolution, tick)
    driver_params = read_clip_params(root, clip_name(driver, clip))
    with ClipWriter(root, name, config.resolution, overwrite=True) as writer:
        for frame in frames:
            writer.add_frame(frame)
        writer.commit(
            ClipParams(
                expression=driver_params.expression,
                camera=labels.astype(np.float32),
                landmarks=landmarks,
                valid=driver_params.valid,
                extra={"controls": plan.controls.astype(np.float32), "angles": plan.angles.astype(np.float32)},
            )
        )
    return _record(name, identity, "test", driver_params.valid, _cross_extra(identity, driver, clip))


def _cross_extra(identity: int, driver: int, clip: int) -> dict:
    return {
        "synthetic": True,
        "cross_identity": True,
        "appearance_clip": clip_name(identity, 0),
        "driving_clip": clip_name(driver, clip),
        "driving_identity": identity_name(driver),
    }


def _record(name: str, identity: int, split: str, valid: np.ndarray, extra: dict) -> ClipRecord:
    return ClipRecord(
        id=name,
        identity=identity_name(identity),
        split=split,
        frames=int(valid.shape[0]),
        valid_frames=int(valid.sum()),
        source="synthetic",
        extra=extra,
    )


def _existing_record(root: Path, name: str, identity: int, split: str, extra: dict) -> ClipRecord | None:
    if not is_clip_complete(root, name):
        return None
    return _record(name, identity, split, read_clip_params(root, name).valid, extra)


def check_config(root: Path, config: SynthConfig) -> None:
    """Refuse to resume into a folder generated with other arguments (its clips would not match)."""
    path = root / SYNTH_CONFIG_NAME
    if path.is_file():
        try:
            previous = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            raise UsageError(f"{path}: unreadable ({error}); use a new output folder") from error
        if isinstance(previous, dict):
            previous.setdefault("expressions", "speech")  # written before the option existed: talking clips only
        if previous != asdict(config):
            raise UsageError(f"{root}: holds a synthetic dataset made with other arguments; use a new output folder")
    elif (root / MANIFEST_NAME).exists():
        raise UsageError(f"{root}: holds a dataset that export3d synth did not write; use a new output folder")


def total_frames(config: SynthConfig) -> int:
    regular = config.identities * config.clips_per_identity
    return (regular + len(cross_pairs(config))) * config.frames


def generate_dataset(root: Path, config: SynthConfig, tick: FrameProgress, generator: str) -> Manifest:
    """Write (or finish) the whole dataset; returns its manifest."""
    from export3d_cli.atomic import atomic_write_text

    check_config(root, config)
    root.mkdir(parents=True, exist_ok=True)
    atomic_write_text(root / SYNTH_CONFIG_NAME, json.dumps(asdict(config), indent=2) + "\n")
    tests = set(test_identities(config))
    records: list[ClipRecord] = []
    try:
        for identity in range(config.identities):
            split = "test" if identity in tests else "train"
            head: SyntheticHead | None = None
            for clip in range(config.clips_per_identity):
                extra = {"synthetic": True, "clip": clip}
                record = _existing_record(root, clip_name(identity, clip), identity, split, extra)
                if record is None:
                    head = head or SyntheticHead(random_identity(identity, config.seed))
                    record = generate_clip(root, config, head, clip, split, tick)
                else:
                    tick(config.frames)
                records.append(record)
        for identity, driver, clip in cross_pairs(config):
            name = cross_clip_name(identity, driver, clip)
            record = _existing_record(root, name, identity, "test", _cross_extra(identity, driver, clip))
            if record is None:
                head = SyntheticHead(random_identity(identity, config.seed))
                record = generate_cross_clip(root, config, head, driver, clip, tick)
            else:
                tick(config.frames)
            records.append(record)
    finally:
        # Also when interrupted: the manifest lists the clips finished so far.
        manifest = Manifest(
            resolution=config.resolution,
            fps=SYNTH_FPS,
            expression_kind=EXPRESSION_KIND,
            expression_dim=EXPRESSION_DIM,
            clips=tuple(records),
            generator=generator,
        )
        if records:
            write_manifest(root, manifest)
    return manifest
