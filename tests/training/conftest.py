"""Shared fixtures for the training tests: a mini dataset written with ClipWriter (no rendering).

Layout of the mini dataset (64 px, 52 expression values, 6 frames per clip):

- identities ``id0`` and ``id1`` are training identities, ``id2`` and ``id3`` test identities, two clips each;
- every clip has its own flat colour; in frame t a central square is that colour scaled by ``0.3 + 0.7·β_t[0]``,
  and every pixel gets a little per-frame noise: frames are all distinct, the clip is recognisable, β[0] is
  visible in the picture (CLeBS has something to learn), and most of a target is the source's colour (the
  generator learns it within a few dozen steps);
- frames 1 and 4 of ``id1-c1`` have ``valid=False`` (no face found): they are grey (with noise);
- ``id2-x-id3`` is a cross-identity ground-truth clip: id2's appearance (``id2-c0``'s colour) driven by ``id3-c1``'s
  expressions and cameras.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
import torch

from export3d_cli.data.dataset_layout import NUM_LANDMARKS, ClipParams, ClipRecord, ClipWriter, Manifest, write_manifest
from export3d_cli.face.head_pose import look_at_pose

MINI_RESOLUTION = 64
MINI_FRAMES = 6
EXPRESSION_DIM = 52
TRAIN_IDENTITIES = ("id0", "id1")
TEST_IDENTITIES = ("id2", "id3")
CLIPS_PER_IDENTITY = 2
INVALID_CLIP = "id1-c1"
INVALID_FRAMES = (1, 4)
CROSS_CLIP = "id2-x-id3"
CROSS_APPEARANCE = "id2-c0"
CROSS_DRIVING = "id3-c1"
GREY = 128
SQUARE = slice(16, 48)  # the central square that shows β[0]


@dataclass(frozen=True)
class MiniDataset:
    """The dataset folder and what is known about its content (test modules cannot import conftest)."""

    root: Path
    colours: dict[str, np.ndarray]  # clip id -> base RGB colour, float [3] in [0, 255]
    train_clips: tuple[str, ...]
    test_clips: tuple[str, ...]  # regular test clips (the cross clip is not among them)
    resolution: ClassVar[int] = MINI_RESOLUTION
    frames: ClassVar[int] = MINI_FRAMES
    expression_dim: ClassVar[int] = EXPRESSION_DIM
    invalid_clip: ClassVar[str] = INVALID_CLIP
    invalid_frames: ClassVar[tuple[int, ...]] = INVALID_FRAMES
    cross_clip: ClassVar[str] = CROSS_CLIP
    cross_appearance: ClassVar[str] = CROSS_APPEARANCE
    cross_driving: ClassVar[str] = CROSS_DRIVING


def _brightness(expression: np.ndarray) -> np.ndarray:
    return 0.3 + 0.7 * expression[:, 0]


def _frames(colour: np.ndarray, expression: np.ndarray, valid: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """uint8 [T, R, R, 3]: colour, a central square at colour · brightness(β_t), noise; grey where not valid."""
    count = len(expression)
    image = np.broadcast_to(colour, (count, MINI_RESOLUTION, MINI_RESOLUTION, 3)).copy()
    image[:, SQUARE, SQUARE] = colour * _brightness(expression)[:, None, None, None]
    image[~valid] = GREY
    noise = rng.integers(-4, 5, size=image.shape)
    return np.clip(np.round(image) + noise, 0, 255).astype(np.uint8)


def _cameras(rng: np.random.Generator, count: int) -> np.ndarray:
    angles = rng.uniform(-15.0, 15.0, size=(count, 2))
    return np.stack([look_at_pose(float(yaw), float(pitch)).label() for yaw, pitch in angles]).astype(np.float32)


def _write_clip(root: Path, clip_id: str, frames: np.ndarray, expression, camera, valid) -> None:
    with ClipWriter(root, clip_id, MINI_RESOLUTION) as writer:
        for frame in frames:
            writer.add_frame(frame)
        writer.commit(
            ClipParams(
                expression=expression.astype(np.float32),
                camera=camera.astype(np.float32),
                landmarks=np.zeros((len(frames), NUM_LANDMARKS, 2), dtype=np.float32),
                valid=valid,
            )
        )


def build_mini_dataset(root: Path, seed: int = 0) -> MiniDataset:
    rng = np.random.default_rng(seed)
    records: list[ClipRecord] = []
    colours: dict[str, np.ndarray] = {}
    params: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
    identities = [(name, "train") for name in TRAIN_IDENTITIES] + [(name, "test") for name in TEST_IDENTITIES]
    clip_count = len(identities) * CLIPS_PER_IDENTITY
    # Hues spread around the colour wheel, all bright enough that brightness changes are visible.
    hues = np.linspace(0.0, 1.0, clip_count, endpoint=False)
    for number, (identity, split) in enumerate(
        (identity, split) for identity, split in identities for _ in range(CLIPS_PER_IDENTITY)
    ):
        clip_id = f"{identity}-c{number % CLIPS_PER_IDENTITY}"
        hue = hues[number] * 2 * np.pi
        colour = 140 + 100 * np.array([np.cos(hue), np.cos(hue - 2.1), np.cos(hue + 2.1)])
        expression = rng.uniform(0.0, 1.0, size=(MINI_FRAMES, EXPRESSION_DIM)).astype(np.float32)
        camera = _cameras(rng, MINI_FRAMES)
        valid = np.ones(MINI_FRAMES, dtype=bool)
        if clip_id == INVALID_CLIP:
            valid[list(INVALID_FRAMES)] = False
        _write_clip(root, clip_id, _frames(colour, expression, valid, rng), expression, camera, valid)
        colours[clip_id] = colour
        params[clip_id] = (expression, camera, valid)
        records.append(
            ClipRecord(
                id=clip_id,
                identity=identity,
                split=split,
                frames=MINI_FRAMES,
                valid_frames=int(valid.sum()),
                extra={"clip": number % CLIPS_PER_IDENTITY},
            )
        )
    # Cross identity: A's appearance, B's expressions and cameras (β measured on B).
    expression, camera, valid = params[CROSS_DRIVING]
    colour = colours[CROSS_APPEARANCE]
    _write_clip(root, CROSS_CLIP, _frames(colour, expression, valid, rng), expression, camera, valid)
    colours[CROSS_CLIP] = colour
    records.append(
        ClipRecord(
            id=CROSS_CLIP,
            identity="id2",
            split="test",
            frames=MINI_FRAMES,
            valid_frames=int(valid.sum()),
            extra={"cross_identity": True, "appearance_clip": CROSS_APPEARANCE, "driving_clip": CROSS_DRIVING},
        )
    )
    write_manifest(
        root,
        Manifest(
            resolution=MINI_RESOLUTION,
            fps=25.0,
            expression_kind="mediapipe-blendshapes",
            expression_dim=EXPRESSION_DIM,
            clips=tuple(records),
            generator="tests",
        ),
    )
    train = tuple(r.id for r in records if r.split == "train")
    test = tuple(r.id for r in records if r.split == "test" and not r.extra.get("cross_identity"))
    return MiniDataset(root=root, colours=colours, train_clips=train, test_clips=test)


@pytest.fixture(scope="session", autouse=True)
def _one_torch_thread():
    """Training tests share the machine with long background jobs: one intra-op thread keeps them polite."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def mini_dataset(tmp_path_factory: pytest.TempPathFactory) -> MiniDataset:
    return build_mini_dataset(tmp_path_factory.mktemp("mini-dataset"))
