"""Reading and writing media files: still images (``image_io``)."""

from export3d_cli.media.image_io import IMAGE_SUFFIXES, MAX_PIXELS, load_image, save_image

__all__ = ["IMAGE_SUFFIXES", "MAX_PIXELS", "load_image", "save_image"]
