"""The on-disk dataset layout (version 1), shared by real and synthetic data (DESIGN §5).

``export3d preprocess`` (real videos) and ``export3d synth`` (synthetic heads) both
write this layout, and training and evaluation only read it, so one reader serves
every source of data and a synthetic set can stand in for a real one in any test::

    DATASET/
      manifest.json                          # resolution, fps, expression kind, clips (id, identity, split)
      clips/<clip_id>/frames/000000.png ...  # aligned RGB crops, R x R, uint8
      clips/<clip_id>/params.npz             # per-frame arrays (ClipParams)
      clips/<clip_id>/.complete              # frame count; written last, marks the clip as finished

Frames are PNG so that evaluation (PSNR against the ground-truth crop) sees exactly
the pixels that were written. ``params.npz`` holds ``expression`` float32 [T, E],
``camera`` float32 [T, 25] (EG3D label), ``landmarks`` float32 [T, 478, 2] (crop
pixels) and ``valid`` bool [T]; rows where ``valid`` is False carry no meaning.
Any further arrays (synthetic ground truth such as ``true_expression``) are kept
as they are: readers never reject unknown keys, and never unpickle.

A clip is written into a hidden sibling folder and renamed into place once its
params and completion marker exist, so an interrupted writer never leaves a
half-written ``clips/<clip_id>``; resuming skips clips where
:func:`is_clip_complete` holds. Writes are byte-deterministic: the same frames,
arrays and manifest give the same bytes, so ``export3d synth`` with one seed
reproduces its output exactly.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import math
import os
import re
import secrets
import shutil
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from export3d_cli.atomic import atomic_write_text
from export3d_cli.errors import InputError
from export3d_cli.input_files import check_npz_sizes

MANIFEST_NAME = "manifest.json"
FORMAT_NAME = "export3d-dataset"
FORMAT_VERSION = 1
SPLITS = ("train", "test")

CLIPS_DIR = "clips"
FRAMES_DIR = "frames"
PARAMS_NAME = "params.npz"
COMPLETE_MARKER = ".complete"
CAMERA_DIM = 25
NUM_LANDMARKS = 478
REQUIRED_PARAMS = ("expression", "camera", "landmarks", "valid")
# One clip is one video resampled to the dataset's rate: 100,000 frames is over an hour at 25 fps, far beyond a
# talking-head clip, and training keeps every clip's params in memory.
MAX_CLIP_FRAMES = 100_000
# The most bytes the arrays of one params.npz may declare, alone or together: 8 KiB a frame at MAX_CLIP_FRAMES
# (819 MB). The required arrays take 4.1 KB a frame (landmarks 478 x 2 float32 are most of it); the rest is room
# for extras such as synthetic ground truth.
_MAX_PARAMS_BYTES = MAX_CLIP_FRAMES * 8 * 1024

# Clip ids become folder names: no separators, and a leading letter or digit (hidden work folders start with a dot).
_CLIP_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
# Extra array names become zip member names; identifier-like keeps them portable.
_EXTRA_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# A fixed zip timestamp (the earliest zip can store) keeps params.npz byte-deterministic.
_ZIP_DATE_TIME = (1980, 1, 1, 0, 0, 0)
_PNG_COMPRESS_LEVEL = 1  # lossless at any level; 1 is the fastest


def is_valid_clip_id(clip_id: str) -> bool:
    """Whether ``clip_id`` can name a clip: 1-128 of ``A-Z a-z 0-9 . _ -``, not starting with ``.``, ``_`` or ``-``."""
    return isinstance(clip_id, str) and _CLIP_ID.fullmatch(clip_id) is not None


def _check_clip_id(clip_id: str) -> None:
    if not is_valid_clip_id(clip_id):
        raise ValueError(
            f"invalid clip id {clip_id!r}: use 1-128 characters from A-Z a-z 0-9 . _ -, starting with a letter or digit"
        )


@dataclass(frozen=True)
class ClipRecord:
    """One clip's entry in the manifest. ``extra`` is free JSON (e.g. the synthetic generator's settings)."""

    id: str
    identity: str
    split: str
    frames: int
    valid_frames: int
    source: str = ""
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check_clip_id(self.id)
        if not self.identity:
            raise ValueError(f"clip {self.id!r}: identity must not be empty")
        if self.split not in SPLITS:
            raise ValueError(f"clip {self.id!r}: split must be one of {', '.join(SPLITS)}, got {self.split!r}")
        if self.frames < 1:
            raise ValueError(f"clip {self.id!r}: frames must be at least 1, got {self.frames}")
        if not 0 <= self.valid_frames <= self.frames:
            raise ValueError(f"clip {self.id!r}: valid_frames must be in [0, {self.frames}], got {self.valid_frames}")
        if not isinstance(self.extra, dict):
            raise ValueError(f"clip {self.id!r}: extra must be a dict")


@dataclass(frozen=True, eq=False)
class ClipParams:
    """Per-frame arrays of one clip (T frames, E expression coefficients).

    Shapes:
        expression: float32 [T, E]    β (E = 52 MediaPipe blendshapes for real data)
        camera:     float32 [T, 25]   EG3D label: flattened 4x4 cam2world, then flattened 3x3 intrinsics
        landmarks:  float32 [T, 478, 2]  x, y in crop pixels
        valid:      bool [T]          False where no face was found (the other rows are then meaningless)
        extra:      name -> array of any shape and non-object dtype, e.g. synthetic ``true_expression``
    """

    expression: np.ndarray
    camera: np.ndarray
    landmarks: np.ndarray
    valid: np.ndarray
    extra: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check_array("expression", self.expression, np.float32, 2)
        num_frames, expression_dim = self.expression.shape
        if num_frames < 1 or expression_dim < 1:
            raise ValueError(f"expression must be [T, E] with T, E >= 1, got shape {self.expression.shape}")
        _check_array("camera", self.camera, np.float32, 2, (num_frames, CAMERA_DIM))
        _check_array("landmarks", self.landmarks, np.float32, 3, (num_frames, NUM_LANDMARKS, 2))
        _check_array("valid", self.valid, np.bool_, 1, (num_frames,))
        if not isinstance(self.extra, dict):
            raise ValueError("extra must be a dict of name -> numpy array")
        for name, value in self.extra.items():
            if not isinstance(name, str) or _EXTRA_KEY.fullmatch(name) is None or name in REQUIRED_PARAMS:
                raise ValueError(f"extra array name {name!r} must be an identifier other than {REQUIRED_PARAMS}")
            if not isinstance(value, np.ndarray) or value.dtype.hasobject:
                raise ValueError(f"extra[{name!r}] must be a numpy array of a non-object dtype")
        # A private copy, so later edits to the caller's dict cannot change a frozen record.
        object.__setattr__(self, "extra", dict(self.extra))

    @property
    def num_frames(self) -> int:
        return int(self.expression.shape[0])

    def arrays(self) -> dict[str, np.ndarray]:
        """All arrays by their ``params.npz`` name, required ones and extras."""
        required = {"expression": self.expression, "camera": self.camera, "landmarks": self.landmarks}
        return {**required, "valid": self.valid, **self.extra}


def _check_array(name: str, value: object, dtype: type, ndim: int, shape: tuple[int, ...] | None = None) -> None:
    if not isinstance(value, np.ndarray):
        raise ValueError(f"{name} must be a numpy array, got {type(value).__name__}")
    if value.dtype != dtype:
        raise ValueError(f"{name} must be {np.dtype(dtype).name}, got {value.dtype}")
    if value.ndim != ndim or (shape is not None and value.shape != shape):
        expected = list(shape) if shape is not None else f"{ndim} dimensions"
        raise ValueError(f"{name} must have shape {expected}, got {list(value.shape)}")


@dataclass(frozen=True)
class Manifest:
    """The dataset's ``manifest.json``. Clips are kept sorted by id, so equal datasets compare and serialise equal."""

    resolution: int
    fps: float
    expression_kind: str
    expression_dim: int
    clips: tuple[ClipRecord, ...]
    generator: str = ""

    def __post_init__(self) -> None:
        if self.resolution < 1:
            raise ValueError(f"resolution must be positive, got {self.resolution}")
        if not (math.isfinite(self.fps) and self.fps > 0):
            raise ValueError(f"fps must be a positive number, got {self.fps}")
        if not self.expression_kind:
            raise ValueError("expression kind must not be empty")
        if self.expression_dim < 1:
            raise ValueError(f"expression dim must be positive, got {self.expression_dim}")
        clips = tuple(sorted(self.clips, key=lambda clip: clip.id))
        for previous, clip in itertools.pairwise(clips):
            if previous.id == clip.id:
                raise ValueError(f"clip id {clip.id!r} appears twice")
        object.__setattr__(self, "fps", float(self.fps))
        object.__setattr__(self, "clips", clips)

    def split(self, name: str) -> tuple[ClipRecord, ...]:
        """The clips of one split (``"train"`` or ``"test"``), sorted by id."""
        if name not in SPLITS:
            raise ValueError(f"unknown split {name!r}: expected one of {', '.join(SPLITS)}")
        return tuple(clip for clip in self.clips if clip.split == name)

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT_NAME,
            "version": FORMAT_VERSION,
            "resolution": self.resolution,
            "fps": self.fps,
            "expression": {"kind": self.expression_kind, "dim": self.expression_dim},
            "generator": self.generator,
            "clips": [
                {
                    "id": clip.id,
                    "identity": clip.identity,
                    "split": clip.split,
                    "frames": clip.frames,
                    "valid_frames": clip.valid_frames,
                    "source": clip.source,
                    "extra": _sorted_keys(clip.extra),
                }
                for clip in self.clips
            ],
        }

    @classmethod
    def from_json(cls, data: object, *, path: str | os.PathLike[str]) -> Manifest:
        """Parse and validate decoded ``manifest.json`` content; any problem is one InputError line naming ``path``."""
        top = _Fields(data, f"{path}")
        kind = top.get("format", str)
        if kind != FORMAT_NAME:
            raise InputError(f"{path}: not an export3d dataset manifest (format {kind!r}, expected {FORMAT_NAME!r})")
        version = top.get("version", int)
        if version != FORMAT_VERSION:
            raise InputError(f"{path}: unsupported version {version} (this export3d reads version {FORMAT_VERSION})")
        expression = _Fields(top.get("expression", dict), f"{path}: expression")
        clips_data = top.get("clips", list)
        try:
            clips = []
            for index, entry in enumerate(clips_data):
                fields = _Fields(entry, f"{path}: clips[{index}]")
                clips.append(
                    ClipRecord(
                        id=fields.get("id", str),
                        identity=fields.get("identity", str),
                        split=fields.get("split", str),
                        frames=fields.get("frames", int),
                        valid_frames=fields.get("valid_frames", int),
                        source=fields.get("source", str, default=""),
                        extra=fields.get("extra", dict, default={}),
                    )
                )
            return cls(
                resolution=top.get("resolution", int),
                fps=top.get("fps", float),
                expression_kind=expression.get("kind", str),
                expression_dim=expression.get("dim", int),
                clips=tuple(clips),
                generator=top.get("generator", str, default=""),
            )
        except ValueError as error:
            raise InputError(f"{path}: {error}") from None


class _Fields:
    """Typed access to one JSON object, raising InputError lines prefixed with where the object sits."""

    def __init__(self, data: object, where: str) -> None:
        if not isinstance(data, dict):
            raise InputError(f"{where}: expected {_JSON_TYPE_NAMES[dict]}, got {_json_type(data)}")
        self._data = data
        self._where = where

    def get(self, key: str, kind: type, *, default: Any = None) -> Any:
        if key not in self._data:
            if default is not None:
                return default
            raise InputError(f"{self._where}: missing field {key!r}")
        value = self._data[key]
        # bool is an int subclass in Python but not a number in a manifest; JSON integers are valid floats.
        accepted = (int, float) if kind is float else (kind,)
        if isinstance(value, bool) or not isinstance(value, accepted):
            raise InputError(f"{self._where}: {key!r} must be {_JSON_TYPE_NAMES[kind]}, got {_json_type(value)}")
        return value


_JSON_TYPE_NAMES = {
    bool: "a boolean",
    str: "a string",
    int: "an integer",
    float: "a number",
    dict: "a JSON object",
    list: "a list",
}


def _json_type(value: object) -> str:
    return "null" if value is None else _JSON_TYPE_NAMES.get(type(value), type(value).__name__)


def _sorted_keys(value: Any) -> Any:
    """``value`` with every nested dict's keys sorted, so ``extra`` serialises the same whatever its insertion order."""
    if isinstance(value, dict):
        return {key: _sorted_keys(value[key]) for key in sorted(value)}
    if isinstance(value, (list, tuple)):
        return [_sorted_keys(item) for item in value]
    return value


def split_for_identity(identity: str, test_fraction: float, seed: int = 0) -> str:
    """``"test"`` for about ``test_fraction`` of identities, else ``"train"``.

    A function of (seed, identity) alone, through sha256 rather than Python's salted ``hash()``:
    every clip of one person lands in the same split, in every run and on every machine, so
    test identities stay unseen in training however the dataset is rebuilt or extended.
    """
    if not 0.0 <= test_fraction <= 1.0:
        raise ValueError(f"test_fraction must be in [0, 1], got {test_fraction}")
    digest = hashlib.sha256(f"{seed}:{identity}".encode()).digest()
    uniform = int.from_bytes(digest[:8], "big") / 2**64  # in [0, 1)
    return "test" if uniform < test_fraction else "train"


def clip_dir(root: str | os.PathLike[str], clip_id: str) -> Path:
    """``root/clips/<clip_id>``; an id that is not a plain folder name raises ValueError."""
    _check_clip_id(clip_id)
    return Path(root) / CLIPS_DIR / clip_id


def frame_path(root: str | os.PathLike[str], clip_id: str, index: int) -> Path:
    """``root/clips/<clip_id>/frames/{index:06d}.png``."""
    if index < 0:
        raise ValueError(f"frame index must be non-negative, got {index}")
    return clip_dir(root, clip_id) / FRAMES_DIR / f"{index:06d}.png"


def is_clip_complete(root: str | os.PathLike[str], clip_id: str) -> bool:
    """Whether the clip was fully written: marker present (it is written last), params present, every frame present."""
    directory = clip_dir(root, clip_id)
    try:
        expected = int((directory / COMPLETE_MARKER).read_text(encoding="ascii"))
        names = {entry.name for entry in (directory / FRAMES_DIR).iterdir()}
    except (OSError, ValueError):
        return False
    return (directory / PARAMS_NAME).is_file() and names == {f"{index:06d}.png" for index in range(expected)}


class ClipWriter:
    """Writes one clip; use as a context manager and call :meth:`commit` at the end of the block.

    Frames go to a hidden sibling folder ``clips/.<clip_id>.partial-XXXXXXXX``, which ``commit``
    renames to ``clips/<clip_id>``. Leaving the block without ``commit`` (an exception, Ctrl-C, or
    a caller that decides to skip the clip) deletes the folder, so ``clips/<clip_id>`` only ever
    holds a finished clip. An existing incomplete ``clips/<clip_id>`` (an older, killed writer)
    is replaced; a complete one only with ``overwrite=True``. One writer per clip id at a time:
    a new writer removes the work folders that a killed writer of the same clip left behind.
    """

    def __init__(self, root: str | os.PathLike[str], clip_id: str, resolution: int, *, overwrite: bool = False) -> None:
        self._target = clip_dir(root, clip_id)
        if resolution < 1:
            raise ValueError(f"resolution must be positive, got {resolution}")
        if not overwrite and is_clip_complete(root, clip_id):
            raise FileExistsError(f"{self._target}: clip already complete (pass overwrite=True to replace it)")
        self.clip_id = clip_id
        self.resolution = resolution
        self.num_frames = 0
        self._target.parent.mkdir(parents=True, exist_ok=True)
        _remove_stale_work_dirs(self._target)
        self._partial: Path | None = _make_work_dir(self._target, "partial")
        (self._partial / FRAMES_DIR).mkdir()

    def __enter__(self) -> ClipWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.discard()

    def add_frame(self, image: np.ndarray) -> None:
        """Append one aligned crop, uint8 [R, R, 3] RGB, as frame ``num_frames``."""
        partial = self._open_dir()
        expected = (self.resolution, self.resolution, 3)
        if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.shape != expected:
            got = f"{image.dtype} {list(image.shape)}" if isinstance(image, np.ndarray) else type(image).__name__
            raise ValueError(f"frame must be uint8 {list(expected)} RGB, got {got}")
        path = partial / FRAMES_DIR / f"{self.num_frames:06d}.png"
        # Pillow writes no timestamp chunks, so equal pixels give equal bytes.
        Image.fromarray(np.ascontiguousarray(image)).save(path, format="PNG", compress_level=_PNG_COMPRESS_LEVEL)
        self.num_frames += 1

    def commit(self, params: ClipParams) -> int:
        """Write ``params.npz`` and the completion marker, move the clip into place; returns the frame count."""
        partial = self._open_dir()
        if params.num_frames != self.num_frames:
            raise ValueError(f"clip {self.clip_id!r}: params have {params.num_frames} frames, wrote {self.num_frames}")
        _write_npz(partial / PARAMS_NAME, params.arrays())
        (partial / COMPLETE_MARKER).write_text(f"{self.num_frames}\n", encoding="ascii")
        previous = None
        if self._target.exists() or self._target.is_symlink():
            previous = _make_work_dir(self._target, "old")
            os.replace(self._target, previous / "clip")
        os.replace(partial, self._target)
        self._partial = None
        if previous is not None:
            shutil.rmtree(previous, ignore_errors=True)  # a leftover is removed by the next writer of this clip
        return self.num_frames

    def discard(self) -> None:
        """Delete the unfinished clip (nothing happens after ``commit``); ``with`` does this on exit."""
        if self._partial is not None:
            shutil.rmtree(self._partial, ignore_errors=True)
            self._partial = None

    def _open_dir(self) -> Path:
        if self._partial is None:
            raise RuntimeError(f"clip {self.clip_id!r}: writer already committed or discarded")
        return self._partial


def _make_work_dir(target: Path, kind: str) -> Path:
    # Not tempfile.mkdtemp: its mode 0700 would follow the clip into place and hide it from other users.
    while True:
        path = target.with_name(f".{target.name}.{kind}-{secrets.token_hex(4)}")
        with contextlib.suppress(FileExistsError):
            path.mkdir()
            return path


def _remove_stale_work_dirs(target: Path) -> None:
    """Remove work folders of this clip left by a writer that was killed (SIGKILL, power loss)."""
    stale = re.compile(rf"\.{re.escape(target.name)}\.(partial|old)-[0-9a-f]{{8}}")
    for entry in target.parent.iterdir():
        if stale.fullmatch(entry.name):
            shutil.rmtree(entry, ignore_errors=True)


def _write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """An uncompressed ``.npz`` that ``np.load`` reads, with sorted members and a fixed timestamp (deterministic)."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as archive:
        for name in sorted(arrays):
            array = arrays[name]
            if not array.flags.c_contiguous:
                array = np.ascontiguousarray(array)  # one memory order, so equal arrays give equal bytes
            # force_zip64 as np.savez does: the member size is unknown while streaming and may pass 4 GiB.
            with archive.open(zipfile.ZipInfo(f"{name}.npy", _ZIP_DATE_TIME), "w", force_zip64=True) as member:
                np.lib.format.write_array(member, array, allow_pickle=False)


def write_manifest(root: str | os.PathLike[str], manifest: Manifest) -> Path:
    """Write ``root/manifest.json`` atomically (clips sorted by id, stable JSON); returns its path."""
    path = Path(root) / MANIFEST_NAME
    atomic_write_text(path, json.dumps(manifest.to_json(), indent=2, ensure_ascii=False, allow_nan=False) + "\n")
    return path


def read_manifest(root: str | os.PathLike[str]) -> Manifest:
    """Read and validate ``root/manifest.json``; every problem is one InputError line naming the file."""
    path = Path(root) / MANIFEST_NAME
    if not path.is_file():
        raise InputError(f"{root}: not an export3d dataset (no {MANIFEST_NAME})")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise InputError(f"{path}: malformed JSON at line {error.lineno} column {error.colno}: {error.msg}") from None
    except UnicodeDecodeError:
        raise InputError(f"{path}: not UTF-8 text") from None
    except OSError as error:
        raise InputError(f"{path}: cannot read ({error.strerror})") from None
    except RecursionError:
        raise InputError(f"{path}: JSON nested too deeply to be a manifest") from None
    return Manifest.from_json(data, path=path)


def read_clip_params(root: str | os.PathLike[str], clip_id: str) -> ClipParams:
    """Load ``clips/<clip_id>/params.npz`` (never unpickling); a missing or invalid file is one InputError line."""
    path = clip_dir(root, clip_id) / PARAMS_NAME
    if not path.is_file():
        raise InputError(f"{path}: no such file (clip {clip_id!r} is missing or was not finished)")
    try:
        with path.open("rb") as handle:
            # np.load would read a lone .npy whole, trusting its header; only an archive's headers are checked.
            if handle.read(len(np.lib.format.MAGIC_PREFIX)) == np.lib.format.MAGIC_PREFIX:
                raise InputError(f"{path}: not an .npz archive (holds a single array)")
        check_npz_sizes(
            path,
            {},
            others=_MAX_PARAMS_BYTES,
            total=_MAX_PARAMS_BYTES,
            why=f"a clip holds at most {MAX_CLIP_FRAMES:,} frames",
        )
        with np.load(path, allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as error:
        reason = " ".join(str(error).split())  # numpy's messages can span lines
        raise InputError(f"{path}: corrupt params file ({reason})") from None
    missing = [name for name in REQUIRED_PARAMS if name not in arrays]
    if missing:
        raise InputError(f"{path}: missing array(s) {', '.join(missing)}")
    required = {name: arrays.pop(name) for name in REQUIRED_PARAMS}
    try:
        return ClipParams(**required, extra=arrays)
    except ValueError as error:
        raise InputError(f"{path}: {error}") from None


# Datasets are made at the model's resolution (128-1024); a bigger frame is a damaged or hostile file, and
# decoding it could take gigabytes.
MAX_FRAME_SIDE = 4096


def read_frame(root: str | os.PathLike[str], clip_id: str, index: int) -> np.ndarray:
    """Frame ``index`` of a clip as uint8 [R, R, 3] RGB."""
    path = frame_path(root, clip_id, index)
    try:
        with Image.open(path) as image:
            if max(image.size) > MAX_FRAME_SIDE:  # from the header, before any pixel is decoded
                raise InputError(
                    f"{path}: {image.size[0]}x{image.size[1]} frame; dataset frames are at most "
                    f"{MAX_FRAME_SIDE}x{MAX_FRAME_SIDE}"
                )
            image.load()
            mode, pixels = image.mode, np.asarray(image)
    except FileNotFoundError:
        raise InputError(f"{path}: no such frame") from None
    except (OSError, UnidentifiedImageError, Image.DecompressionBombError) as error:
        raise InputError(f"{path}: cannot read PNG ({error})") from None
    if mode != "RGB" or pixels.shape[0] != pixels.shape[1]:
        raise InputError(f"{path}: expected a square RGB image, got {mode} {pixels.shape[1]}x{pixels.shape[0]}")
    return pixels
