"""An uploaded file as a model input, with limits and one message per kind of bad input.

The web demo takes whatever a browser sends. Every failure is an `UploadError`
whose message is shown on the page (the server keeps serving):
  - more than MAX_UPLOAD_BYTES, or an empty file;
  - not an image PIL reads, or a truncated or corrupt one;
  - smaller than MIN_SIDE pixels on a side;
  - more than MAX_PIXELS pixels (refused before decoding: a decompression bomb).
An image larger than MAX_SIDE on its longer side is downscaled first, and the
note says so. The input then becomes the models' input as the demo makes it
(`data/images.py`: shorter side to the resolution, centre crop, [0, 1]).
"""

from __future__ import annotations

import dataclasses
import io
import warnings

import numpy as np
from PIL import Image, UnidentifiedImageError

from xtc_jax.data import images

MAX_UPLOAD_BYTES = 20 * 1024 * 1024
MAX_PIXELS = 50_000_000
MAX_SIDE = 4096
MIN_SIDE = 16


class UploadError(ValueError):
    """A file the page cannot use; the message says why and what to send instead."""


@dataclasses.dataclass
class Upload:
    rgb: np.ndarray  # (R, R, 3) float32 in [0, 1]: the models' input
    original_size: tuple[int, int]  # (width, height) as uploaded
    note: str  # what was done to it ("" when nothing but the usual crop)


def read_upload(data: bytes, name: str, resolution: int) -> Upload:
    """The model input of an uploaded file; UploadError naming `name` when it is unusable."""
    if not data:
        raise UploadError(f"{name}: the file is empty; choose an image (PNG, JPEG, ...).")
    if len(data) > MAX_UPLOAD_BYTES:
        raise UploadError(f"{name}: {len(data) / 2**20:.1f} MB is over the "
                          f"{MAX_UPLOAD_BYTES // 2**20} MB limit; send a smaller image.")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            width, height = image.size
            if width * height > MAX_PIXELS:
                raise UploadError(
                    f"{name}: {width}x{height} pixels is over the {MAX_PIXELS // 10**6} "
                    "megapixel limit; downscale it first.")  # fmt: skip
            image.load()
    except UploadError:
        raise
    except (UnidentifiedImageError, Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise UploadError(f"{name}: not an image this page can read; upload a PNG, JPEG, "
                          "WebP, BMP, GIF or TIFF file.") from None  # fmt: skip
    except (OSError, ValueError, SyntaxError) as error:
        raise UploadError(f"{name}: the image is truncated or corrupt ({error}); upload it "
                          "again or try another file.") from None  # fmt: skip
    if min(width, height) < MIN_SIDE:
        raise UploadError(f"{name}: {width}x{height} pixels is too small; the models need at "
                          f"least {MIN_SIDE}x{MIN_SIDE}.")  # fmt: skip
    image, note = images.to_rgb(image), ""
    if max(width, height) > MAX_SIDE:
        scale = MAX_SIDE / max(width, height)
        image = image.resize((max(1, round(width * scale)), max(1, round(height * scale))),
                             Image.BILINEAR)  # fmt: skip
        note = (f"downscaled from {width}x{height} to {image.size[0]}x{image.size[1]} (the "
                f"limit is {MAX_SIDE} pixels a side)")  # fmt: skip
    rgb = images.resize_center_crop(image, resolution)
    return Upload(np.asarray(rgb, np.float32) / 255.0, (width, height), note)
