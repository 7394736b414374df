"""Captions drawn onto rendered frames (e.g. the λ of each sweep-basis tile), so a grid says what it shows.

Pillow's built-in default font is used: it ships inside Pillow (no font file to find or download) and is
scalable, so the caption can follow the frame size.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFont

# Caption height as a share of the frame side: legible on a 128² tile, small on a 512² one.
CAPTION_SHARE = 0.11
MIN_FONT_PIXELS = 9


def caption_frame(frame: np.ndarray, text: str) -> np.ndarray:
    """``frame`` [H, W, 3] uint8 with ``text`` on a dark band along its bottom edge (a new array)."""
    height, width = frame.shape[:2]
    font_pixels = max(MIN_FONT_PIXELS, round(CAPTION_SHARE * min(height, width)))
    font = ImageFont.load_default(size=font_pixels)
    image = Image.fromarray(np.ascontiguousarray(frame))
    draw = ImageDraw.Draw(image)
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    band = bottom - top + font_pixels // 2
    pixels = np.asarray(image).copy()
    # A darkened band, not an opaque one: the chin stays visible under the caption.
    pixels[height - band :] = (pixels[height - band :] * 0.35).astype(np.uint8)
    image = Image.fromarray(pixels)
    draw = ImageDraw.Draw(image)
    x = max(0, (width - (right - left)) // 2 - left)
    y = height - band + (band - (bottom - top)) // 2 - top
    draw.text((x, y), text, fill=(255, 255, 255), font=font)
    return np.asarray(image)
