"""Real talking-head videos → the dataset layout (paper §4.1, DESIGN §5).

Each video becomes one clip: frames resampled to a fixed rate, aligned R×R crops
(nose centred, template from the camera model), and per-frame β, camera p,
crop-space landmarks and a valid mask. Two passes over the video keep memory
flat: the first analyses faces (small per-frame arrays), the crop transforms
are then smoothed over the whole clip, and the second decodes again and writes
the crops. A clip is written to a temporary folder and renamed when complete,
so an interrupted run resumes by skipping finished clips.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from export3d_cli.data.dataset_layout import (
    ClipParams,
    ClipRecord,
    ClipWriter,
    Manifest,
    is_clip_complete,
    read_clip_params,
    read_manifest,
    split_for_identity,
    write_manifest,
)
from export3d_cli.errors import InputError
from export3d_cli.face.alignment import warp_to_crop
from export3d_cli.face.blendshapes import EXPRESSION_DIM, EXPRESSION_KIND
from export3d_cli.face.video_analysis import Smoothing, analyze_video, sampled_frames

VIDEO_SUFFIXES = frozenset({".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v", ".mpg", ".mpeg", ".flv", ".wmv"})
IdentityFrom = Literal["stem", "parent"]


@dataclass(frozen=True)
class PreprocessConfig:
    resolution: int = 256
    fps: float = 25.0
    smoothing: float = 1.0
    test_fraction: float = 0.1
    identity_from: IdentityFrom = "stem"
    max_frames: int | None = None
    seed: int = 0


def find_videos(inputs: Iterable[Path]) -> list[Path]:
    """Videos named directly, plus videos found recursively in named folders (sorted, no duplicates)."""
    found: list[Path] = []
    for item in inputs:
        if item.is_dir():
            found.extend(sorted(p for p in item.rglob("*") if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES))
        else:
            found.append(item)  # reported as an error later if it is not a readable video
    unique: dict[Path, Path] = {}
    for path in found:
        unique.setdefault(path.resolve(), path)  # the same file named twice (relative, absolute) counts once
    return list(unique.values())


def clip_id_for(path: Path) -> str:
    """A stable, filesystem-safe clip id: the cleaned file stem plus a short hash of the full path."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", path.stem).strip("-._") or "clip"
    digest = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:8]
    return f"{stem[:100]}-{digest}"


def identity_for(path: Path, identity_from: IdentityFrom) -> str:
    # The folder as named, not resolved: people/carol/c.mp4 -> raw/x.mp4 is carol's clip.
    return (path.absolute().parent.name if identity_from == "parent" else path.stem) or "unknown"


def preprocess_video(root: Path, video: Path, config: PreprocessConfig, progress: Callable | None = None) -> ClipRecord:
    """Write one clip for ``video`` (two passes; see the module docstring) and return its record."""
    from export3d_cli.media.video_reader import VideoReader

    clip_id = clip_id_for(video)
    motion = analyze_video(
        video,
        resolution=config.resolution,
        smoothing=Smoothing(config.smoothing),
        fps=config.fps,
        max_frames=config.max_frames,
        progress=progress,
    )
    frames = motion.frames
    crop_landmarks = np.stack([motion.transform(t).apply(motion.landmarks[t]) for t in range(frames)])  # [T, 478, 2]
    with ClipWriter(root, clip_id, config.resolution, overwrite=True) as writer, VideoReader(video) as reader:
        sampled = sampled_frames(iter(reader), reader.info.fps, config.fps, reader.info.frame_times)
        for output_index, (_, frame) in enumerate(sampled):
            if output_index >= frames:
                break
            writer.add_frame(warp_to_crop(frame, motion.transform(output_index), config.resolution))
        if writer.num_frames != frames:
            raise InputError(f"{video}: decoded {writer.num_frames} frames on the second pass, {frames} on the first")
        writer.commit(
            ClipParams(
                expression=motion.expression,
                camera=motion.camera,
                landmarks=crop_landmarks.astype(np.float32),
                valid=motion.valid,
            )
        )
    return _record(video, clip_id, frames, int(motion.valid.sum()), config)


def _record(video: Path, clip_id: str, frames: int, valid_frames: int, config: PreprocessConfig) -> ClipRecord:
    identity = identity_for(video, config.identity_from)
    return ClipRecord(
        id=clip_id,
        identity=identity,
        split=split_for_identity(identity, config.test_fraction, config.seed),
        frames=frames,
        valid_frames=valid_frames,
        source=str(video),
    )


def existing_record(root: Path, video: Path, config: PreprocessConfig) -> ClipRecord | None:
    """The record of an already complete clip for ``video`` (resuming), else None."""
    clip_id = clip_id_for(video)
    if not is_clip_complete(root, clip_id):
        return None
    params = read_clip_params(root, clip_id)
    return _record(video, clip_id, params.num_frames, int(params.valid.sum()), config)


def write_dataset_manifest(root: Path, records: list[ClipRecord], config: PreprocessConfig, generator: str) -> Path:
    """Write the manifest atomically, keeping complete clips recorded by earlier runs into the same folder."""
    merged = {record.id: record for record in _previous_records(root, config)}
    merged.update({record.id: record for record in records})
    manifest = Manifest(
        resolution=config.resolution,
        fps=config.fps,
        expression_kind=EXPRESSION_KIND,
        expression_dim=EXPRESSION_DIM,
        clips=tuple(merged.values()),
        generator=generator,
    )
    return write_manifest(root, manifest)


def _previous_records(root: Path, config: PreprocessConfig) -> list[ClipRecord]:
    if not (root / "manifest.json").is_file():
        return []
    previous = read_manifest(root)
    if previous.resolution != config.resolution or previous.fps != config.fps:
        raise InputError(
            f"{root}: the dataset holds {previous.resolution}px clips at {previous.fps:g} fps; "
            f"use the same --resolution and --fps or a new output folder"
        )
    return [record for record in previous.clips if is_clip_complete(root, record.id)]


def check_compatible(root: Path, config: PreprocessConfig) -> None:
    """Fail before any work when ``root`` already holds a dataset made with other settings."""
    _previous_records(root, config)
