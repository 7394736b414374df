"""Writing a sequence of rendered views: an .mp4 (streamed, atomic) or one image / a grid of images."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

IMAGE_OUTPUTS = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
VIDEO_OUTPUTS = (".mp4",)


def grid_image(frames: list[np.ndarray]) -> np.ndarray:
    """Views laid out row by row in a near-square grid [rows·R, cols·R, 3] (blank cells at the end)."""
    count = len(frames)
    columns = int(np.ceil(np.sqrt(count)))
    rows = int(np.ceil(count / columns))
    cells = frames + [np.zeros_like(frames[0])] * (rows * columns - count)
    return np.concatenate([np.concatenate(cells[r * columns : (r + 1) * columns], axis=1) for r in range(rows)], axis=0)


def write_views(
    output: Path,
    frames: Iterable[np.ndarray],
    *,
    count: int,
    size: int,
    fps: float,
    on_frame: Callable[[int, int], None] | None = None,
) -> Path:
    """Frames [size, size, 3] → ``output``: a video for .mp4, else one image (count 1) or a grid."""
    from export3d_cli.media.image_io import save_image

    if output.suffix.lower() in VIDEO_OUTPUTS:
        from export3d_cli.media.video_writer import VideoWriter

        with VideoWriter(output, fps=fps, width=size, height=size) as writer:
            for index, frame in enumerate(frames):
                writer.write(frame)
                if on_frame is not None:
                    on_frame(index + 1, count)
        return output
    collected = []
    for index, frame in enumerate(frames):
        collected.append(frame)
        if on_frame is not None:
            on_frame(index + 1, count)
    return save_image(output, collected[0] if count == 1 else grid_image(collected))
