"""load_image on real-world inputs (orientation, colour modes, bit depths, formats) and every bad-input case.

Inputs are generated in tmp_path with Pillow (or as raw PNG bytes where Pillow cannot write them);
each test checks pixel values that a wrong conversion would change.
"""

import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from export3d_cli.errors import EXIT_USAGE, Export3DError, InputError, UsageError
from export3d_cli.media import IMAGE_SUFFIXES, image_io, load_image, save_image

SOURCE_PHOTO = Path(__file__).resolve().parents[2] / "examples" / "source.png"
RED = (255, 0, 0)
BLUE = (0, 0, 255)


def _png16(path: Path, values: np.ndarray, color_type: int) -> Path:
    """A 16-bit-per-channel PNG (colour type 0 gray, 2 RGB, 6 RGBA), which Pillow cannot write."""
    height, width = values.shape[:2]
    rows = b"".join(b"\x00" + values[y].astype(">u2").tobytes() for y in range(height))  # filter byte 0 per row

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 16, color_type, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")
    )
    return path


def _noise(height: int, width: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def test_real_photo_loads():
    image = load_image(SOURCE_PHOTO)
    assert image.shape == (512, 512, 3) and image.dtype == np.uint8
    assert image.flags.c_contiguous and image.flags.writeable
    assert image.std() > 10  # a photo, not a blank decode


# Stored 64 wide x 32 high with a red 16x16 block in the stored top-left corner.
# (orientation, shape once upright, the corner where the red block must land)
ORIENTATIONS = [
    (1, (32, 64), "top-left"),
    (3, (32, 64), "bottom-right"),  # rotate 180
    (6, (64, 32), "top-right"),  # rotate 90 clockwise (phone held upright)
    (8, (64, 32), "bottom-left"),  # rotate 90 counter-clockwise
]


@pytest.mark.parametrize(("orientation", "shape", "corner"), ORIENTATIONS)
def test_exif_orientation_gives_upright_pixels(tmp_path, orientation, shape, corner):
    stored = np.zeros((32, 64, 3), np.uint8)
    stored[:16, :16] = RED
    exif = Image.Exif()
    exif[0x0112] = orientation  # Orientation tag
    path = tmp_path / "phone.jpg"
    Image.fromarray(stored).save(path, quality=95, exif=exif.tobytes())

    image = load_image(path)

    assert image.shape[:2] == shape
    height, width = shape
    centres = {"top-left": (8, 8), "top-right": (8, width - 8), "bottom-left": (height - 8, 8)}
    centres["bottom-right"] = (height - 8, width - 8)
    for name, (y, x) in centres.items():
        expected = RED if name == corner else (0, 0, 0)
        np.testing.assert_allclose(image[y, x], expected, atol=40, err_msg=name)


def test_grayscale_gives_equal_channels(tmp_path):
    gray = np.arange(256, dtype=np.uint8).reshape(16, 16)
    Image.fromarray(gray).save(tmp_path / "gray.png")
    image = load_image(tmp_path / "gray.png")
    assert image.shape == (16, 16, 3)
    for channel in range(3):
        np.testing.assert_array_equal(image[:, :, channel], gray)


def test_one_bit_image(tmp_path):
    Image.fromarray(np.array([[0, 255]], np.uint8)).convert("1").save(tmp_path / "bw.bmp")
    np.testing.assert_array_equal(load_image(tmp_path / "bw.bmp"), [[[0, 0, 0], [255, 255, 255]]])


def test_rgba_composites_over_white(tmp_path):
    rgba = np.zeros((4, 6, 4), np.uint8)
    rgba[:, :2] = (0, 255, 0, 0)  # transparent, with garbage colour underneath
    rgba[:, 2:4] = (0, 0, 0, 128)  # half-transparent black
    rgba[:, 4:] = (200, 10, 30, 255)  # opaque
    Image.fromarray(rgba).save(tmp_path / "cutout.png")

    image = load_image(tmp_path / "cutout.png")

    assert image.shape == (4, 6, 3)
    assert (image[:, :2] == 255).all()
    np.testing.assert_allclose(image[:, 2:4], 127, atol=1)
    assert (image[:, 4:] == (200, 10, 30)).all()


def test_gray_alpha_composites_over_white(tmp_path):
    la = np.array([[[50, 0], [50, 255]]], np.uint8)
    Image.fromarray(la, mode="LA").save(tmp_path / "la.png")
    np.testing.assert_array_equal(load_image(tmp_path / "la.png"), [[[255, 255, 255], [50, 50, 50]]])


def test_palette_with_transparency(tmp_path):
    picture = Image.new("P", (4, 2))
    picture.putpalette([0, 255, 0, *BLUE])  # index 0 is green but transparent
    picture.putdata([0, 0, 1, 1] * 2)
    picture.save(tmp_path / "palette.png", transparency=0)

    image = load_image(tmp_path / "palette.png")

    assert (image[:, :2] == 255).all()
    assert (image[:, 2:] == BLUE).all()


def test_palette_without_transparency(tmp_path):
    picture = Image.new("P", (2, 1))
    picture.putpalette([*RED, *BLUE])
    picture.putdata([0, 1])
    picture.save(tmp_path / "palette.bmp")
    np.testing.assert_array_equal(load_image(tmp_path / "palette.bmp"), [[RED, BLUE]])


def test_cmyk_jpeg(tmp_path):
    cmyk = np.zeros((16, 32, 4), np.uint8)  # left half: no ink -> white
    cmyk[:, 16:] = (0, 255, 255, 0)  # right half: magenta + yellow -> red
    Image.fromarray(cmyk, mode="CMYK").save(tmp_path / "print.jpg", quality=95)

    image = load_image(tmp_path / "print.jpg")

    assert image.shape == (16, 32, 3)
    np.testing.assert_allclose(image[8, 4], (255, 255, 255), atol=8)
    np.testing.assert_allclose(image[8, 28], RED, atol=8)


def test_16bit_grayscale_png_is_rescaled_not_clipped(tmp_path):
    values = np.array([[0, 32768, 65535]], np.uint16)
    Image.fromarray(values).save(tmp_path / "depth16.png")
    assert Image.open(tmp_path / "depth16.png").mode == "I;16"

    image = load_image(tmp_path / "depth16.png")

    assert image.dtype == np.uint8 and image.shape == (1, 3, 3)
    assert image[0, 0].tolist() == [0, 0, 0]
    assert abs(int(image[0, 1, 0]) - 128) <= 1
    assert image[0, 2].tolist() == [255, 255, 255]


def test_16bit_big_endian_tiff(tmp_path):
    Image.new("I;16B", (2, 1), 65535).save(tmp_path / "scan.tif")
    assert Image.open(tmp_path / "scan.tif").mode == "I;16B"
    assert (load_image(tmp_path / "scan.tif") == 255).all()


def test_32bit_integer_tiff_uses_the_16bit_range(tmp_path):
    Image.fromarray(np.array([[-5, 32768, 65535, 100_000]], np.int32)).save(tmp_path / "int.tif")
    image = load_image(tmp_path / "int.tif")
    assert image[0, :, 0].tolist() == [0, 128, 255, 255]


def test_16bit_rgb_png(tmp_path):
    values = np.array([[[65535, 32768, 0], [0, 65535, 32768]]], np.uint16)
    image = load_image(_png16(tmp_path / "rgb48.png", values, color_type=2))
    assert image.shape == (1, 2, 3)
    np.testing.assert_allclose(image.astype(int), [[[255, 128, 0], [0, 255, 128]]], atol=1)


def test_16bit_rgba_png_composites_over_white(tmp_path):
    values = np.array([[[65535, 0, 0, 65535], [0, 65535, 0, 0]]], np.uint16)
    image = load_image(_png16(tmp_path / "rgba64.png", values, color_type=6))
    np.testing.assert_array_equal(image, [[RED, (255, 255, 255)]])


# 0..1 data (maximum <= 1), 0..255 data (clipped above), and NaN / negative values on 0..1 data.
FLOAT_CASES = [
    ([0.0, 0.5, 1.0], [0, 128, 255]),
    ([0.0, 100.0, 300.0], [0, 100, 255]),
    ([-1.0, np.nan, 0.25], [0, 0, 64]),
]


@pytest.mark.parametrize(("values", "expected"), FLOAT_CASES)
def test_float_tiff(tmp_path, values, expected):
    Image.fromarray(np.array([values], np.float32)).save(tmp_path / "float.tif")
    assert Image.open(tmp_path / "float.tif").mode == "F"
    image = load_image(tmp_path / "float.tif")
    assert image[0, :, 0].tolist() == expected
    assert (image[..., 0] == image[..., 2]).all()


@pytest.mark.parametrize("suffix", [".webp", ".bmp", ".png", ".tif"])
def test_lossless_formats_round_trip(tmp_path, suffix):
    pixels = _noise(12, 20)
    options = {"lossless": True} if suffix == ".webp" else {}
    Image.fromarray(pixels).save(tmp_path / f"photo{suffix}", **options)
    np.testing.assert_array_equal(load_image(tmp_path / f"photo{suffix}"), pixels)


def test_format_comes_from_content_not_suffix(tmp_path):
    pixels = _noise(8, 8)
    Image.fromarray(pixels).save(tmp_path / "really_a_png.jpg", format="PNG")
    np.testing.assert_array_equal(load_image(tmp_path / "really_a_png.jpg"), pixels)


def test_multi_picture_jpeg_gives_the_first_frame(tmp_path):
    first, second = Image.new("RGB", (16, 16), RED), Image.new("RGB", (16, 16), BLUE)
    first.save(tmp_path / "camera.mpo", format="MPO", save_all=True, append_images=[second])
    assert Image.open(tmp_path / "camera.mpo").format == "MPO"
    np.testing.assert_allclose(load_image(tmp_path / "camera.mpo")[8, 8], RED, atol=8)


def test_tiny_image(tmp_path):
    pixels = _noise(8, 8)
    Image.fromarray(pixels).save(tmp_path / "tiny.png")
    np.testing.assert_array_equal(load_image(tmp_path / "tiny.png"), pixels)


def test_large_image(tmp_path):
    Image.new("RGB", (8000, 6000), (10, 120, 240)).save(tmp_path / "large.jpg", quality=90)
    image = load_image(tmp_path / "large.jpg")
    assert image.shape == (6000, 8000, 3) and image.dtype == np.uint8
    np.testing.assert_allclose(image[3000, 4000], (10, 120, 240), atol=3)


def test_over_the_pixel_limit_is_refused_before_decoding(tmp_path, monkeypatch):
    Image.new("RGB", (30, 20)).save(tmp_path / "big.png")
    monkeypatch.setattr(image_io, "MAX_PIXELS", 500)
    with pytest.raises(InputError) as caught:
        load_image(tmp_path / "big.png")
    message = str(caught.value)
    assert message.startswith(f"{tmp_path / 'big.png'}: image is too large")
    assert "30x20" in message and "limit" in message


def test_image_above_pillows_own_limit_is_an_input_error(tmp_path, monkeypatch):
    """Pillow refuses (DecompressionBombError) beyond twice its limit, before we see the size."""
    Image.new("RGB", (30, 20)).save(tmp_path / "bomb.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    with pytest.raises(InputError, match=r"bomb\.png: image is too large \(over .*; the limit is"):
        load_image(tmp_path / "bomb.png")


def test_corrupt_exif_loads_without_warnings(tmp_path, recwarn):
    """Pillow warns about the broken EXIF block; the pixels are fine and the user sees nothing."""
    Image.new("RGB", (8, 8), RED).save(tmp_path / "odd.jpg", exif=b"Exif\x00\x00II*\x00\x08\x00\x00\x00\x05\x00")
    image = load_image(tmp_path / "odd.jpg")
    np.testing.assert_allclose(image[4, 4], RED, atol=8)
    assert not recwarn.list


def _truncated(path: Path, make: str) -> Path:
    """A real JPEG or PNG cut in the middle of its pixel data."""
    Image.fromarray(_noise(64, 64)).save(path, format=make)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def _empty(folder: Path) -> Path:
    (folder / "empty.png").write_bytes(b"")
    return folder / "empty.png"


def _text(folder: Path) -> Path:
    (folder / "notes.jpg").write_text("not a photo\n")
    return folder / "notes.jpg"


def _gif(folder: Path) -> Path:
    Image.new("RGB", (4, 4)).save(folder / "anim.gif")
    return folder / "anim.gif"


# case -> (make the file in a folder, the problem the message must state)
BAD_INPUTS = {
    "missing": (lambda folder: folder / "nowhere.jpg", "no such file"),
    "directory": (lambda folder: folder, "is a directory"),
    "empty": (_empty, "empty file"),
    "text": (_text, "not an image"),
    "gif": (_gif, "unsupported format"),
    "truncated jpeg": (lambda folder: _truncated(folder / "cut.jpg", "JPEG"), "corrupt or truncated"),
    "truncated png": (lambda folder: _truncated(folder / "cut.png", "PNG"), "corrupt or truncated"),
}


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_bad_input_is_one_line_naming_the_file(tmp_path, case):
    make, problem = BAD_INPUTS[case]
    path = make(tmp_path)
    with pytest.raises(InputError) as caught:
        load_image(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: ")
    assert problem in message
    assert "\n" not in message
    assert caught.value.exit_code == EXIT_USAGE


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root (or a non-POSIX system) can read anything")
def test_unreadable_file(tmp_path):
    path = tmp_path / "secret.png"
    Image.new("RGB", (4, 4)).save(path)
    path.chmod(0)
    try:
        with pytest.raises(InputError, match=r"cannot read \(permission denied\)$"):
            load_image(path)
    finally:
        path.chmod(0o600)


def test_permission_error_message(tmp_path, monkeypatch):
    """The same mapping as above, also when the tests run as root."""
    path = tmp_path / "secret.png"
    Image.new("RGB", (4, 4)).save(path)

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(image_io, "open", refuse, raising=False)
    with pytest.raises(InputError) as caught:
        load_image(path)
    assert str(caught.value) == f"{path}: cannot read (permission denied)"


def test_suffixes_are_lowercase_and_readable():
    assert {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff"} == IMAGE_SUFFIXES
    assert all(suffix == suffix.lower() for suffix in IMAGE_SUFFIXES)


def test_save_png_round_trip_is_exact_and_leaves_no_temp_files(tmp_path):
    pixels = _noise(10, 14)
    target = tmp_path / "out.png"
    assert save_image(target, pixels) == target
    np.testing.assert_array_equal(load_image(target), pixels)
    assert os.listdir(tmp_path) == ["out.png"]


def test_save_overwrites_and_accepts_grayscale(tmp_path):
    target = tmp_path / "out.PNG"
    save_image(target, _noise(4, 4))
    gray = np.arange(12, dtype=np.uint8).reshape(3, 4)
    save_image(target, gray)
    np.testing.assert_array_equal(load_image(target), np.repeat(gray[:, :, None], 3, axis=2))
    assert os.listdir(tmp_path) == ["out.PNG"]


@pytest.mark.parametrize(("suffix", "image_format"), [(".jpg", "JPEG"), (".jpeg", "JPEG"), (".webp", "WEBP")])
def test_save_lossy_formats_are_close(tmp_path, suffix, image_format):
    y, x = np.mgrid[0:32, 0:48]
    smooth = np.stack([y * 8, x * 5, (x + y) * 3], axis=-1).astype(np.uint8)
    target = tmp_path / f"out{suffix}"
    save_image(target, smooth)
    assert Image.open(target).format == image_format
    assert np.abs(load_image(target).astype(int) - smooth).mean() < 3
    assert os.listdir(tmp_path) == [target.name]


def test_save_bmp_is_exact(tmp_path):
    pixels = _noise(5, 7)
    save_image(tmp_path / "out.bmp", pixels)
    assert Image.open(tmp_path / "out.bmp").format == "BMP"
    np.testing.assert_array_equal(load_image(tmp_path / "out.bmp"), pixels)


@pytest.mark.parametrize("name", ["out.gif", "out.tiff", "out"])
def test_save_unknown_suffix_is_a_usage_error(tmp_path, name):
    with pytest.raises(UsageError, match=r"^.*: cannot write images with the suffix"):
        save_image(tmp_path / name, _noise(4, 4))
    assert os.listdir(tmp_path) == []


def test_save_rejects_wrong_arrays(tmp_path):
    with pytest.raises(ValueError, match="uint8"):
        save_image(tmp_path / "out.png", np.zeros((4, 4, 3), np.float32))
    with pytest.raises(ValueError, match="uint8"):
        save_image(tmp_path / "out.png", np.zeros((4, 4, 4), np.uint8))


def test_failed_save_keeps_the_old_file_and_leaves_no_temp_file(tmp_path, monkeypatch):
    target = tmp_path / "out.png"
    save_image(target, np.zeros((4, 4, 3), np.uint8))
    before = target.read_bytes()

    def disk_full(self, fp, *args, **kwargs):
        Path(fp).write_bytes(b"partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Image.Image, "save", disk_full)
    with pytest.raises(Export3DError) as caught:
        save_image(target, np.full((4, 4, 3), 255, np.uint8))
    # A full disk is the user's to fix (free space, another place): one line and exit 2, like every output error.
    assert str(caught.value) == f"{target}: cannot write it (no space left on the device); nothing was written"
    assert caught.value.exit_code == EXIT_USAGE
    assert target.read_bytes() == before
    assert os.listdir(tmp_path) == ["out.png"]
