"""PNG bytes <-> NumPy arrays, without TensorFlow.

Taskonomy stores every pixel domain as PNG: 8-bit gray/RGB or 16-bit gray.
The shards keep those bytes untouched; this module is the one place that
decodes and encodes them. `png_header` reads width, height, bit depth and
colour type from the IHDR chunk without decoding, so a file of the wrong
format is rejected before any pixel work. Every failure is a `DataError`
naming the file.
"""

from __future__ import annotations

import dataclasses
import io
import struct
import zlib

import numpy as np
from PIL import Image

from xtc_jax.errors import DataError

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

# PNG colour types (PNG spec, IHDR) -> number of channels.
_CHANNELS_OF_COLOR_TYPE = {0: 1, 2: 3, 3: 3, 4: 2, 6: 4}


@dataclasses.dataclass(frozen=True)
class PngHeader:
    """What the IHDR chunk says about a PNG."""

    width: int
    height: int
    bit_depth: int
    color_type: int

    @property
    def channels(self) -> int:
        return _CHANNELS_OF_COLOR_TYPE[self.color_type]


def png_header(data: bytes, name: str = "<bytes>") -> PngHeader:
    """Parses the IHDR chunk of `data`; raises DataError if it is not a PNG."""
    if len(data) < 33 or data[:8] != PNG_SIGNATURE or data[12:16] != b"IHDR":
        raise DataError(
            f"{name}: not a PNG file (bad signature or missing IHDR, {len(data)} bytes). "
            "Re-download or re-extract this file, or delete it so the view is skipped."
        )
    width, height, bit_depth, color_type = struct.unpack(">IIBB", data[16:26])
    if color_type not in _CHANNELS_OF_COLOR_TYPE:
        raise DataError(f"{name}: invalid PNG colour type {color_type}. Re-download this file.")
    return PngHeader(width, height, bit_depth, color_type)


def decode_png(data: bytes, name: str = "<bytes>") -> np.ndarray:
    """Decodes PNG bytes to an (H, W) or (H, W, C) uint8/uint16 array.

    Palette images are expanded to RGB. A corrupt or truncated file raises
    DataError naming `name`; a silently partial image is never returned.
    """
    header = png_header(data, name)
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            if image.mode == "P":
                image = image.convert("RGB")
            array = np.asarray(image)
    except (OSError, SyntaxError, ValueError, zlib.error) as error:
        raise DataError(
            f"{name}: corrupt or truncated PNG ({error}). Re-download or re-extract this "
            "file, or delete it so the view is skipped."
        ) from error
    if header.bit_depth == 16 and array.dtype != np.uint16:
        array = array.astype(np.uint16)
    return array


def encode_png(array: np.ndarray, compress_level: int = 1) -> bytes:
    """Encodes an (H, W) / (H, W, 1|3) uint8 or (H, W) uint16 array as PNG bytes.

    16-bit arrays are written as 16-bit grayscale, as Taskonomy stores depth,
    edges and keypoints. Level 1 compression trades size for speed.
    """
    array = np.asarray(array)
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.dtype == np.uint16:
        if array.ndim != 2:
            raise ValueError(f"16-bit PNGs must be grayscale, got shape {array.shape}")
        image = Image.fromarray(array)  # mode I;16
    elif array.dtype == np.uint8:
        image = Image.fromarray(array)
    else:
        raise ValueError(f"encode_png takes uint8 or uint16 arrays, got {array.dtype}")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=compress_level)
    return buffer.getvalue()
