"""Per-example transform: Taskonomy PNG bytes -> float32 (H, W, C) arrays per domain.

This is the hot path of the input pipeline. It follows the original
XTConsistency loader (`shared/reference/xtconsistency.md` §3.1, §5):

1. Each needed *stored* domain's PNG is decoded once (`png.decode_png`,
   OpenCV's libpng). Its IHDR header is checked first (bit depth and channel
   count must match the `Domain`), so a file of the wrong format is a
   `DataError`, never a silently wrong tensor. Images stay NumPy arrays; PIL
   is used only where it defines the original's result (resize, jitter).
2. Optional zoom augmentation: with p=0.5 a *centre* crop of side
   ``randint(358, 512) / 512`` of the image, the same fraction for every
   domain of the example.
3. Centre crop to a square, then resize to ``resolution`` on the raw values
   (PIL BILINEAR, which antialiases when downscaling, exactly as the
   original's ``Resize(256, BILINEAR)``; NEAREST for label domains). 16-bit
   images are resized in PIL's 16-bit mode, like the original's mode ``I``.
   The resize is skipped when the size already matches.
   Deviation: the original resizes the shorter side and then centre-crops;
   we crop then resize. Identical for Taskonomy's square 512x512 images; for
   non-square inputs only the outermost pixels' filter support differs.
4. ``derive_raw`` domains (mask_valid from depth) are computed from the
   source's raw values at native resolution, before the resize.
5. ``Domain.decode`` turns the resized raw values into float32.
6. ``derive_decoded`` domains (edge_texture = sobel of rgb) are computed from
   the source's decoded floats after the resize.
7. Optional colour jitter on rgb only (p=0.5; brightness/contrast/saturation
   0.4, hue 0.1, in random order, on the uint8 image as torchvision's PIL
   path does). Derived domains (edge_texture) see the un-jittered rgb, as in
   the original, where sobel_edges loads the rgb file with its own transform.

Randomness comes only from the `np.random.Generator` passed in, so the output
is a pure function of (record, seed, epoch, index).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from PIL import Image, ImageEnhance

from xtc_jax import domains as domains_lib
from xtc_jax.errors import DataError
from xtc_jax.infra import png

#: The original's zoom crop: centre crop of side randint(ZOOM_MIN, ZOOM_OF) on 512 images.
ZOOM_MIN, ZOOM_OF = 358, 512
ZOOM_P = 0.5
#: torchvision ColorJitter(0.4, 0.4, 0.4, 0.1), applied with p=0.5.
JITTER_P = 0.5
JITTER_BRIGHTNESS = JITTER_CONTRAST = JITTER_SATURATION = 0.4
JITTER_HUE = 0.1

_RESAMPLE = {"bilinear": Image.Resampling.BILINEAR, "nearest": Image.Resampling.NEAREST}


@dataclasses.dataclass(frozen=True)
class Augment:
    """The random choices for one example (drawn once, shared by all its domains).

    Attributes:
      zoom: crop fraction of the image side in (0, 1]; 1.0 means no zoom crop.
      jitter: None (no colour jitter) or ((op, factor), ...) applied in order,
        op in {"brightness", "contrast", "saturation", "hue"}.
    """

    zoom: float = 1.0
    jitter: tuple[tuple[str, float], ...] | None = None


NO_AUGMENT = Augment()


def draw_augment(rng: np.random.Generator) -> Augment:
    """Draws the original's augmentation: zoom crop (p=0.5) and colour jitter (p=0.5)."""
    zoom = 1.0
    if rng.random() < ZOOM_P:
        zoom = int(rng.integers(ZOOM_MIN, ZOOM_OF + 1)) / ZOOM_OF
    jitter = None
    if rng.random() < JITTER_P:
        factors = {
            "brightness": rng.uniform(1 - JITTER_BRIGHTNESS, 1 + JITTER_BRIGHTNESS),
            "contrast": rng.uniform(1 - JITTER_CONTRAST, 1 + JITTER_CONTRAST),
            "saturation": rng.uniform(1 - JITTER_SATURATION, 1 + JITTER_SATURATION),
            "hue": rng.uniform(-JITTER_HUE, JITTER_HUE),
        }
        order = rng.permutation(4)
        names = tuple(factors)
        jitter = tuple((names[i], float(factors[names[i]])) for i in order)
    return Augment(zoom=zoom, jitter=jitter)


def record_name(record: Mapping[str, Any], domain: str | None = None) -> str:
    """'building/point_P_view_V[/domain]' for messages."""
    building = record.get("building", "?")
    if isinstance(building, bytes):
        building = building.decode("utf-8", "replace")
    name = f"{building}/point_{record.get('point', '?')}_view_{record.get('view', '?')}"
    return f"{name}/{domain}" if domain else name


def open_png(data: bytes, domain: domains_lib.Domain, name: str) -> np.ndarray:
    """Decodes PNG bytes to a uint8/uint16 array, checking the domain's format.

    Raises DataError naming `name` if the bytes are not a PNG, are corrupt or
    truncated, or have the wrong bit depth / channel count for `domain`.
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise DataError(f"{name}: expected encoded PNG bytes, got {type(data).__name__}.")
    header = png.png_header(bytes(data[:33]), name)
    if header.bit_depth != domain.bit_depth or header.channels not in domain.stored_channels:
        raise DataError(
            f"{name}: wrong PNG format for domain {domain.name!r}: {header.bit_depth}-bit with "
            f"{header.channels} channel(s), expected {domain.bit_depth}-bit with "
            f"{' or '.join(map(str, domain.stored_channels))} channel(s). The file probably "
            "belongs to another domain or was re-encoded; replace it with the original."
        )
    return png.decode_png(bytes(data), name)


def _crop_box(width: int, height: int, zoom: float) -> tuple[int, int, int, int] | None:
    """torchvision CenterCrop box of the square side min(W, H) * zoom; None if no crop."""
    side = min(width, height)
    if zoom < 1.0:
        side = max(1, round(side * zoom))
    if side == width == height:
        return None
    left = round((width - side) / 2.0)  # Python round, as torchvision
    top = round((height - side) / 2.0)
    return left, top, left + side, top + side


def crop_resize(image: np.ndarray, resolution: int, method: str, zoom: float) -> np.ndarray:
    """Centre crop to a square (optionally zoomed), then resize to `resolution` square.

    The resize is PIL's (BILINEAR antialiases when shrinking, as the
    original's torchvision Resize on PIL images; 16-bit arrays resize in PIL's
    16-bit mode). Nothing is copied when no crop or resize is needed.
    """
    height, width = image.shape[:2]
    box = _crop_box(width, height, zoom)
    if box is not None:
        left, top, right, bottom = box
        image = image[top:bottom, left:right]
    if image.shape[:2] != (resolution, resolution):
        resized = Image.fromarray(np.ascontiguousarray(image)).resize(
            (resolution, resolution), _RESAMPLE[method]
        )
        image = _raw_array(resized)
    return image


def _adjust_hue(image: Image.Image, factor: float) -> Image.Image:
    """torchvision's PIL adjust_hue: shift the uint8 H channel with wrap-around."""
    hsv = np.array(image.convert("HSV"))
    hsv[..., 0] += np.uint8(int(factor * 255) % 256)  # truncation, as np.uint8(h * 255)
    return Image.fromarray(hsv, "HSV").convert("RGB")


def color_jitter(array: np.ndarray, ops: Sequence[tuple[str, float]]) -> np.ndarray:
    """Applies (op, factor) colour adjustments in order, as torchvision's ColorJitter on PIL."""
    image = Image.fromarray(np.ascontiguousarray(array))
    mode = image.mode
    if mode != "RGB":
        image = image.convert("RGB")
    for op, factor in ops:
        if op == "brightness":
            image = ImageEnhance.Brightness(image).enhance(factor)
        elif op == "contrast":
            image = ImageEnhance.Contrast(image).enhance(factor)
        elif op == "saturation":
            image = ImageEnhance.Color(image).enhance(factor)
        elif op == "hue":
            image = _adjust_hue(image, factor)
        else:
            raise ValueError(f"unknown colour jitter op {op!r}")
    return np.asarray(image if mode == "RGB" else image.convert(mode))


def _raw_array(image: Image.Image) -> np.ndarray:
    array = np.asarray(image)
    if image.mode.startswith("I;16") and array.dtype != np.uint16:
        array = array.astype(np.uint16)
    return array


def transform_example(
    record: Mapping[str, Any],
    domains: Sequence[str],
    resolution: int,
    augment: Augment = NO_AUGMENT,
) -> dict[str, np.ndarray]:
    """Record of PNG bytes -> {domain: float32 (resolution, resolution, channels)}.

    `domains` are canonical domain names (see `domains.get`). Each stored
    domain is decoded once, even when several requested domains derive from
    it. Raises DataError naming the record and domain for any bad file.
    """
    wanted = [domains_lib.get(name) for name in domains]
    requested = {d.name for d in wanted}
    out: dict[str, np.ndarray] = {}
    decoded: dict[str, np.ndarray] = {}  # stored domain -> decoded float (un-jittered)
    for stored_name in domains_lib.stored_domains_for([d.name for d in wanted]):
        stored = domains_lib.DOMAINS[stored_name]
        name = record_name(record, stored_name)
        if stored_name not in record:
            raise DataError(
                f"{name}: the record has no {stored_name!r} file (record keys: "
                f"{sorted(k for k in record if isinstance(k, str))}). Include this domain "
                "when building the source, or drop the domains that need it."
            )
        image = open_png(record[stored_name], stored, name)
        dependants = [d for d in wanted if d.stored_name == stored_name]
        for dom in dependants:
            if dom.derive_raw is None:
                continue
            raw = np.asarray(dom.derive_raw(image))
            out[dom.name] = dom.decode(crop_resize(raw, resolution, dom.resize, augment.zoom))
        if not any(d.derive_raw is None for d in dependants):
            continue  # only derived-from-raw domains use this file
        image = crop_resize(image, resolution, stored.resize, augment.zoom)
        base = stored.decode(image)
        decoded[stored_name] = base
        if stored_name in requested and stored_name == "rgb" and augment.jitter:
            out[stored_name] = stored.decode(color_jitter(image, augment.jitter))
        elif stored_name in requested:
            out[stored_name] = base
        for dom in dependants:
            if dom.derive_decoded is not None:
                out[dom.name] = np.asarray(dom.derive_decoded(base), dtype=np.float32)
    return {d.name: out[d.name] for d in wanted}
