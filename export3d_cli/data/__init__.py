"""Datasets on disk (DESIGN §5): one layout written by ``export3d preprocess`` and ``export3d synth``, read by training
and evaluation. See :mod:`export3d_cli.data.dataset_layout` for the layout itself.
"""

from export3d_cli.data.dataset_layout import (
    FORMAT_NAME,
    FORMAT_VERSION,
    MANIFEST_NAME,
    SPLITS,
    ClipParams,
    ClipRecord,
    ClipWriter,
    Manifest,
    clip_dir,
    frame_path,
    is_clip_complete,
    is_valid_clip_id,
    read_clip_params,
    read_frame,
    read_manifest,
    split_for_identity,
    write_manifest,
)

__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "MANIFEST_NAME",
    "SPLITS",
    "ClipParams",
    "ClipRecord",
    "ClipWriter",
    "Manifest",
    "clip_dir",
    "frame_path",
    "is_clip_complete",
    "is_valid_clip_id",
    "read_clip_params",
    "read_frame",
    "read_manifest",
    "split_for_identity",
    "write_manifest",
]
