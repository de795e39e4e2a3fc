"""Any image file as a network input: the original demo's preprocessing.

`load_image` reads whatever PIL reads (grayscale, RGBA, palette and 16-bit
images included), makes it RGB, resizes the shorter side to `resolution`
(bilinear), centre-crops a square and scales to [0, 1] with no mean/std
normalisation (xtconsistency.md §7). The original drops alpha by slicing
[:3], which crashes on grayscale input; here every mode becomes 3 channels.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import numpy as np
from PIL import Image, UnidentifiedImageError

from xtc_jax.errors import DataError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm")


def list_images(path: str) -> list[str]:
    """The image files of a folder (sorted, by suffix, not recursive), or [path] for a file."""
    if os.path.isfile(path):
        return [path]
    if not os.path.isdir(path):
        raise DataError(f"{path} does not exist: pass an image file or a folder of images.")
    files = sorted(
        os.path.join(path, name)
        for name in os.listdir(path)
        if name.lower().endswith(IMAGE_SUFFIXES) and os.path.isfile(os.path.join(path, name))
    )
    if not files:
        raise DataError(f"{path} holds no image files (looked for {', '.join(IMAGE_SUFFIXES)}).")
    return files


def to_rgb(image: Image.Image) -> Image.Image:
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "F"):  # 16-bit/float gray: scale to 8 bit
        values = np.asarray(image, dtype=np.float32)
        high = 65535.0 if image.mode != "F" and values.max() > 255 else max(values.max(), 1.0)
        gray = np.clip(values / high * 255.0 + 0.5, 0, 255).astype(np.uint8)
        image = Image.fromarray(gray, mode="L")
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        image = image.convert("RGBA").convert("RGB")  # alpha dropped, as the original's [:3]
    return image.convert("RGB")


def resize_center_crop(image: Image.Image, resolution: int | tuple[int, int]) -> Image.Image:
    """Shorter side to `resolution` (bilinear), then the central resolution x resolution square.

    A (height, width) `resolution` scales the image to cover that frame and crops its centre
    (the multi-task models' non-square inputs).
    """
    out_h, out_w = (resolution, resolution) if isinstance(resolution, int) else resolution
    width, height = image.size
    scale = max(out_w / width, out_h / height)
    size = (max(out_w, round(width * scale)), max(out_h, round(height * scale)))
    image = image.resize(size, Image.BILINEAR)
    left = (size[0] - out_w) // 2
    top = (size[1] - out_h) // 2
    return image.crop((left, top, left + out_w, top + out_h))


def load_image(path: str, resolution: int | tuple[int, int]) -> np.ndarray:
    """float32 (resolution, resolution, 3) (or (height, width, 3)) in [0, 1]; DataError naming
    `path` if unreadable."""
    try:
        with Image.open(path) as image:
            image.load()
            rgb = resize_center_crop(to_rgb(image), resolution)
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, ValueError,
            SyntaxError) as error:  # fmt: skip
        raise DataError(f"{path}: not a readable image ({error}).") from error
    return np.asarray(rgb, dtype=np.float32) / 255.0


def iter_images(
    paths: list[str], resolution: int | tuple[int, int], on_error=None
) -> Iterator[tuple[str, np.ndarray]]:
    """(path, image) for each readable file; unreadable ones go to `on_error(path, error)`."""
    for path in paths:
        try:
            yield path, load_image(path, resolution)
        except DataError as error:
            if on_error is None:
                raise
            on_error(path, error)
