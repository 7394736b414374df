"""Reading and writing still images: real-world photos in, one canonical array out.

Everything downstream (face detection, cropping, the image encoder) sees a single
convention: ``uint8`` RGB, shape ``[H, W, 3]``, C-contiguous, upright. This module
is the one place that turns whatever users pass into that, and the one place that
turns a bad file into one ``InputError`` line naming it (never a Pillow traceback).

Conventions for ``load_image``:

- The format is detected from the content (JPEG, PNG, WebP, BMP, TIFF); the
  suffix is ignored, so a PNG named ``.jpg`` loads. Multi-frame files give
  their first frame.
- EXIF orientation is applied, so a phone photo stored rotated comes out upright.
- Transparency (alpha channel, transparent palette entry or colour key) is
  composited over white: transparent pixels often hold garbage RGB.
- 16-bit data (``I;16*`` and ``I`` grayscale, 16-bit-per-channel PNGs) is
  rescaled so 65535 maps to 255; ``I`` values outside 0..65535 are clipped.
- 32-bit float ``F`` data is taken as 0..1 when its maximum is at most 1, else
  as 0..255; NaN becomes 0 and values are clipped to the range.
- Embedded ICC profiles are not applied: pixel values are taken as sRGB
  (CMYK is converted with Pillow's plain formula).
- Images above ``MAX_PIXELS`` are refused from the header, before any pixel is decoded.

Importing this module sets Pillow's process-wide decompression-bomb limit
(``PIL.Image.MAX_IMAGE_PIXELS``) to ``MAX_PIXELS``, so every Pillow read in the
process agrees with it: Pillow warns above the limit and refuses to open images
above twice it (``DecompressionBombError``); here both become the same one-line
``InputError``.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from export3d_cli.atomic import atomic_path
from export3d_cli.errors import Export3DError, InputError, UsageError
from export3d_cli.input_files import require_regular_file

# 8192 x 8192 (67.1 MP): above every phone camera (50 MP modes are 8160 x 6144) and most full-frame ones (61 MP
# is 9504 x 6336). load_image at the limit peaks at 0.8 GB opaque and 1.2 GB with an alpha channel (Pillow's image,
# the RGBA conversion, the composite, the RGB copy); a 35 KB PNG declaring 17000 x 17000 took 3.4 GB to 4.5 GB.
MAX_PIXELS = 8192 * 8192
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff"})

Image.MAX_IMAGE_PIXELS = MAX_PIXELS

# Pillow plugin names; JPEG also covers MPO, the multi-picture JPEG many cameras write.
_READ_FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "TIFF")
_WRITE_FORMATS: dict[str, tuple[str, dict[str, int]]] = {
    ".png": ("PNG", {}),
    ".jpg": ("JPEG", {"quality": 95}),
    ".jpeg": ("JPEG", {"quality": 95}),
    ".webp": ("WEBP", {"quality": 95}),
    ".bmp": ("BMP", {}),
}


def load_image(path: str | Path) -> np.ndarray:
    """Read a photo as upright ``uint8`` RGB, shape ``[H, W, 3]``, C-contiguous.

    Raises ``InputError`` (one line starting with the path) for any file that
    cannot be used: missing, unreadable, empty, not an image, corrupt or
    truncated, too large, or in a colour mode that cannot be converted.
    """
    with _checked_header(path) as (image, path):
        _decode(image, path)
        rgb = _to_rgb(image, path)
    return np.ascontiguousarray(rgb)


def check_image(path: str | Path) -> None:
    """Fail fast (InputError) when ``path`` cannot be a usable photo: reads the header only, decodes nothing."""
    with _checked_header(path):
        pass


@contextlib.contextmanager
def _checked_header(path: str | Path) -> Iterator[tuple[Image.Image, Path]]:
    """The opened (not yet decoded) image of a regular file whose format and size are acceptable, and its path."""
    path = require_regular_file(path)
    # Pillow warns about damaged metadata (EXIF, ICC, MPO index) and carries on; damaged pixel data raises.
    # Between MAX_PIXELS and twice it Pillow also warns, and _check_size refuses with a clearer message.
    # So a warning adds nothing the user can act on, only noise around the one-line error.
    with _open_file(path) as file, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with _open(file, path) as image:
            _check_size(image, path)
            yield image, path


def save_image(path: str | Path, image: np.ndarray) -> Path:
    """Write ``uint8`` RGB ``[H, W, 3]`` (or grayscale ``[H, W]``) atomically; the suffix picks the format.

    ``.png`` and ``.bmp`` are lossless, ``.jpg``/``.jpeg`` and ``.webp`` use quality 95.
    Returns the path. An unknown suffix is a ``UsageError``; a failed write
    leaves no file under ``path``.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in _WRITE_FORMATS:
        raise UsageError(
            f"{path}: cannot write images with the suffix {suffix or '(none)'!r} (use .png, .jpg, .jpeg, .webp or .bmp)"
        )
    if image.dtype != np.uint8 or not (image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 3)):
        raise ValueError(f"save_image expects uint8 [H, W, 3] or [H, W], got {image.dtype} {list(image.shape)}")
    image_format, options = _WRITE_FORMATS[suffix]
    picture = Image.fromarray(np.ascontiguousarray(image))
    try:
        with atomic_path(path) as tmp:
            # The temporary name ends in .tmp, so Pillow cannot infer the format from it.
            picture.save(tmp, format=image_format, **options)
    except OSError as exc:
        raise Export3DError(f"{path}: cannot write ({_reason(exc)})") from exc
    return path


def _open_file(path: Path) -> BinaryIO:
    try:
        return open(path, "rb")
    except IsADirectoryError as exc:
        raise InputError(f"{path}: is a directory") from exc
    except FileNotFoundError as exc:
        raise InputError(f"{path}: no such file") from exc
    except PermissionError as exc:
        # Windows reports opening a directory as a permission error.
        problem = "is a directory" if path.is_dir() else "cannot read (permission denied)"
        raise InputError(f"{path}: {problem}") from exc
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({_reason(exc)})") from exc


def _open(file: BinaryIO, path: Path) -> Image.Image:
    """Identify the format from the content and read the header only."""
    try:
        return Image.open(file, formats=_READ_FORMATS)
    except UnidentifiedImageError as exc:
        raise InputError(f"{path}: not an image (or an unsupported format; use JPEG, PNG, WebP, BMP or TIFF)") from exc
    except Image.DecompressionBombError as exc:
        # Only above twice Pillow's own limit (set to MAX_PIXELS at import), so the size is not known here.
        pillow_limit = 2 * (Image.MAX_IMAGE_PIXELS or 0)
        raise InputError(f"{path}: image is too large (over {_megapixels(pillow_limit)}; {_limit()})") from exc
    except Exception as exc:
        # Malformed headers surface as OSError, SyntaxError, struct.error, ValueError... depending on the plugin.
        raise InputError(f"{path}: image data is corrupt or truncated ({_reason(exc)})") from exc


def _check_size(image: Image.Image, path: Path) -> None:
    width, height = image.size
    if width * height > MAX_PIXELS:
        raise InputError(f"{path}: image is too large ({width}x{height} = {_megapixels(width * height)}; {_limit()})")


def _decode(image: Image.Image, path: Path) -> None:
    """Decode every pixel now, so truncation is caught here, then apply the EXIF orientation."""
    try:
        image.load()
        ImageOps.exif_transpose(image, in_place=True)
    except MemoryError as exc:
        width, height = image.size
        raise InputError(f"{path}: not enough memory to decode a {width}x{height} image") from exc
    except Exception as exc:
        # Pillow's decoders raise many exception types on bad data; all mean the same thing to the user.
        raise InputError(f"{path}: image data is corrupt or truncated ({_reason(exc)})") from exc


def _to_rgb(image: Image.Image, path: Path) -> np.ndarray:
    """Any decoded Pillow image -> ``uint8 [H, W, 3]``."""
    mode = image.mode
    if mode == "F":
        return _gray_to_rgb(_float_to_uint8(np.asarray(image)))
    if mode == "I" or mode.startswith("I;16"):
        return _gray_to_rgb(_16bit_to_uint8(np.asarray(image)))
    try:
        if image.has_transparency_data:
            white = Image.new("RGBA", image.size, (255, 255, 255, 255))
            return np.array(Image.alpha_composite(white, image.convert("RGBA")).convert("RGB"))
        return np.array(image.convert("RGB"))
    except ValueError as exc:
        raise InputError(f"{path}: unsupported colour mode {mode} ({_reason(exc)})") from exc


def _16bit_to_uint8(values: np.ndarray) -> np.ndarray:
    """``[H, W]`` 16-bit (or wider int) -> ``uint8``, rounding so 65535 -> 255 and 32768 -> 128."""
    wide = np.clip(values, 0, 65535).astype(np.uint32)
    return ((wide * 255 + 32767) // 65535).astype(np.uint8)


def _float_to_uint8(values: np.ndarray) -> np.ndarray:
    """``[H, W]`` float -> ``uint8``: 0..1 data if its maximum is at most 1, else 0..255 data."""
    values = np.nan_to_num(values.astype(np.float32), nan=0.0)
    if values.max() <= 1.0:
        values = values * 255.0
    return np.rint(np.clip(values, 0.0, 255.0)).astype(np.uint8)


def _gray_to_rgb(gray: np.ndarray) -> np.ndarray:
    return np.repeat(gray[:, :, None], 3, axis=2)  # [H, W] -> [H, W, 3]


def _reason(exc: BaseException) -> str:
    """A short one-line description of ``exc`` for an error message."""
    text = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    lines = text.strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def _megapixels(pixels: int) -> str:
    return f"{pixels / 1e6:.1f} megapixels"


def _limit() -> str:
    return f"the limit is {_megapixels(MAX_PIXELS)}"
