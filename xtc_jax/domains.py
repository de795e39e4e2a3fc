"""The visual domains: on-disk encoding <-> the float tensors the networks use.

One `Domain` per Taskonomy domain. For each: channels, the file-name token
and folder on disk, the PNG bit depth, how the (resized) raw pixels become
floats exactly as the original XTConsistency transforms them
(`shared/reference/xtconsistency.md` §3.1), the inverse (write a prediction
as a Taskonomy-format PNG), how the validity mask is built (§3.2) and the
default loss. Encodings on disk follow `shared/reference/taskonomy.md` §2.

Conventions
- Arrays are channels-last: (H, W, C) per example, (B, H, W, C) in batches.
- `decode` takes raw on-disk values *after* crop/resize (float32 or the
  integer dtype) and returns float32 (H, W, channels).
- `encode` maps floats back to the uint8/uint16 array written to disk. Where
  the forward transform loses information (clamps, blurs), `encode` inverts
  the invertible part and says so.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping

import cv2
import numpy as np

from xtc_jax.errors import ConfigError

# ---------------------------------------------------------------------------
# Conventions with a documented assumption.

#: Frame of the stored surface normals: x right, y down, z *away from* the
#: camera (OpenCV camera frame); stored value = (n + 1) * 127.5. So a wall
#: facing the camera is stored with B ~ 0, the floor with G ~ 0. This is what
#: the released Taskonomy files show (taskonomy.md §2 "Normals": sample
#: building and the 2018 dump). It conflicts with the often-quoted 2D3DS
#: sentence "blue towards the camera" (XTConsistency #2); the renderer, the
#: tests and every analytic conversion use this one constant. To follow the
#: other reading, flip NORMAL_Z_SIGN to -1.
NORMAL_FRAME = "x_right_y_down_z_forward"
NORMAL_Z_SIGN = +1

#: Depth units on disk: raw / DEPTH_UNITS_PER_METRE metres; DEPTH_INVALID = no geometry.
DEPTH_UNITS_PER_METRE = 512.0
DEPTH_INVALID = 65535
#: XTConsistency's depth normaliser: raw / 8000, clamped to [0, 1] (1.0 = 15.625 m).
DEPTH_XTC_SCALE = 8000.0

#: Curvature: raw = (k * CURVATURE_RADIUS + 1) / 2 * 254, k in 1/m, clipped to +-1/r.
CURVATURE_RADIUS = 0.03
#: Reshading value of holes/background (~13/255, XTC mask 0.0507).
RESHADING_INVALID = 13

#: segment_semantic on disk: 0 = uncertain (masked), 1 = background, 2..17 = these classes
#: (taskonomy.md §2, from coco_selected_classes.txt). Decoded ids are raw - 1 (0..16).
SEMANTIC_CLASSES = (
    "background", "bottle", "chair", "couch", "potted plant", "bed", "dining table",
    "toilet", "tv", "microwave", "oven", "toaster", "sink", "refrigerator", "book",
    "clock", "vase",
)  # fmt: skip

# ---------------------------------------------------------------------------
# Raw <-> float transforms (NumPy; they run in the input pipeline workers).


def _float(raw: np.ndarray) -> np.ndarray:
    return np.asarray(raw, dtype=np.float32)


def _channels_last(array: np.ndarray) -> np.ndarray:
    return array[..., None] if array.ndim == 2 else array


def _to_channels(raw: np.ndarray, channels: int) -> np.ndarray:
    """Gray -> repeated channels; RGBA/gray-alpha -> colour channels only."""
    raw = _channels_last(raw)
    if raw.shape[-1] == channels:
        return raw
    if raw.shape[-1] in (1, 2) and channels == 3:  # gray or gray+alpha
        return np.repeat(raw[..., :1], 3, axis=-1)
    if raw.shape[-1] == 4 and channels == 3:  # RGBA
        return raw[..., :3]
    if channels == 1:
        return raw[..., :1]
    raise ValueError(f"cannot map {raw.shape[-1]} stored channels to {channels}")


def _decode_unit8(channels: int) -> Callable[[np.ndarray], np.ndarray]:
    def decode(raw: np.ndarray) -> np.ndarray:
        return np.divide(_to_channels(raw, channels), np.float32(255.0), dtype=np.float32)

    return decode


def _encode_unit8(values: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(_channels_last(values) * 255.0), 0, 255).astype(np.uint8)


def _decode_depth(raw: np.ndarray) -> np.ndarray:
    depth = np.divide(_channels_last(raw), np.float32(DEPTH_XTC_SCALE), dtype=np.float32)
    return np.clip(depth, 0.0, 1.0, out=depth)


def _encode_depth(values: np.ndarray) -> np.ndarray:
    """[0, 1] -> raw units; 1.0 (the clamp, also the mask value) is written as the hole 65535."""
    values = _channels_last(values)[..., 0]
    raw = np.clip(np.rint(values * DEPTH_XTC_SCALE), 0, DEPTH_INVALID - 1).astype(np.uint16)
    return np.where(values >= 1.0, DEPTH_INVALID, raw).astype(np.uint16)


def gaussian_blur(image: np.ndarray, sigma: float = 2.0) -> np.ndarray:
    """Gaussian blur over H and W: scipy.ndimage.gaussian_filter(sigma) semantics.

    A (2*round(4 sigma)+1)-tap separable kernel with mirrored borders
    (scipy's 'reflect' = OpenCV's BORDER_REFLECT), computed with OpenCV, which
    is ~8x faster than scipy and equal to it within 1e-6 (tests check).
    """
    image = _channels_last(_float(image))
    taps = 2 * int(4.0 * sigma + 0.5) + 1
    blurred = cv2.GaussianBlur(image, (taps, taps), sigma, borderType=cv2.BORDER_REFLECT)
    return _channels_last(blurred)


def _decode_power(scale: float) -> Callable[[np.ndarray], np.ndarray]:
    """XTC's edge_occlusion/keypoints2d transform: blur sigma 2, x^0.8 / scale^0.8, clamp."""

    def decode(raw: np.ndarray) -> np.ndarray:
        blurred = np.maximum(gaussian_blur(_to_channels(raw, 1)), 0.0)
        return np.clip(blurred**0.8 / np.float32(scale**0.8), 0.0, 1.0)

    return decode


def _encode_power(scale: float) -> Callable[[np.ndarray], np.ndarray]:
    """Inverts the power normaliser (not the blur, which is not invertible)."""

    def encode(values: np.ndarray) -> np.ndarray:
        values = np.clip(_channels_last(values)[..., 0], 0.0, 1.0)
        return np.clip(np.rint(values ** (1 / 0.8) * scale), 0, 65535).astype(np.uint16)

    return encode


def _decode_linear16(scale: float) -> Callable[[np.ndarray], np.ndarray]:
    def decode(raw: np.ndarray) -> np.ndarray:
        values = np.divide(_to_channels(raw, 1), np.float32(scale), dtype=np.float32)
        return np.clip(values, 0.0, 1.0, out=values)

    return decode


def _encode_linear16(scale: float) -> Callable[[np.ndarray], np.ndarray]:
    def encode(values: np.ndarray) -> np.ndarray:
        values = np.clip(_channels_last(values)[..., 0], 0.0, 1.0)
        return np.rint(values * scale).astype(np.uint16)

    return encode


def sobel_edges(rgb: np.ndarray) -> np.ndarray:
    """XTC's analytic rgb -> sobel_edges (its `SobelKernel`), per image.

    Channel mean of rgb in [0, 1] -> Gaussian blur sigma 2 -> Sobel along both
    axes (scipy's mode 'constant': zero border) -> hypot. Unnormalised,
    roughly [0, a few]. OpenCV computes the same kernels as the original's
    scipy calls (tests compare them).
    """
    rgb = _float(rgb)
    # Equal bit for bit to rgb.mean(axis=-1) (same summation order), 10x faster.
    gray = gaussian_blur((rgb[..., 0] + rgb[..., 1] + rgb[..., 2]) / np.float32(3.0))[..., 0]
    gx = cv2.Sobel(gray, cv2.CV_32F, 1, 0, ksize=3, borderType=cv2.BORDER_CONSTANT)
    gy = cv2.Sobel(gray, cv2.CV_32F, 0, 1, ksize=3, borderType=cv2.BORDER_CONSTANT)
    # np.hypot, not cv2.magnitude: the latter differs by an ulp from call to call.
    return np.hypot(gx, gy)[..., None]


def _decode_semantic(raw: np.ndarray) -> np.ndarray:
    """Raw 0..17 -> class ids 0..16 (raw - 1); uncertain (raw 0) -> -1. Kept as float32 ids."""
    return _channels_last(_float(raw))[..., :1] - 1.0


def _encode_semantic(values: np.ndarray) -> np.ndarray:
    ids = np.rint(_channels_last(values)[..., 0]) + 1
    return np.clip(ids, 0, len(SEMANTIC_CLASSES)).astype(np.uint8)


def _raw_valid_from_depth(depth_raw: np.ndarray) -> np.ndarray:
    """mask_valid is derived from depth_zbuffer at native resolution: 255 valid, 0 hole."""
    depth_raw = _channels_last(np.asarray(depth_raw))[..., 0]
    return np.where(depth_raw == DEPTH_INVALID, 0, 255).astype(np.uint8)


def _decode_valid(raw: np.ndarray) -> np.ndarray:
    """After a bilinear resize, a pixel is valid only if its whole footprint was valid."""
    return (_channels_last(_float(raw))[..., :1] > 254.0).astype(np.float32)


# ---------------------------------------------------------------------------
# The registry.


@dataclasses.dataclass(frozen=True)
class Domain:
    """One visual domain: its storage format, its float form and its mask and loss.

    Attributes:
      name: registry key (Taskonomy folder name where one exists).
      channels: channels of the float tensor the networks see.
      bit_depth: PNG bit depth on disk (8 or 16).
      stored_channels: channel counts accepted on disk (e.g. reshading: gray or RGB).
      decode: resized raw array -> float32 (H, W, channels).
      encode: float array -> raw uint8/uint16 array in the on-disk encoding.
      mask_value: XTC `mask_val`: target pixels within 1e-3 of it in every channel
        are invalid (then dilated 5x5). None: nothing is masked.
      loss: default loss name ("l1" masked L1; "cross_entropy" for labels).
      resize: "bilinear" for continuous values, "nearest" for labels.
      file_token: domain token in file names (segment_semantic: "segmentsemantic");
        None for derived domains, which have no files of their own.
      source: for a derived domain, the stored domain it is computed from.
      derive_raw: source raw (native resolution) -> this domain's raw (before resize).
      derive_decoded: source float (after resize + decode) -> this domain's float.
      feature: a network's feature map only ("imagenet"): no files, no ground truth.
    """

    name: str
    channels: int
    bit_depth: int
    stored_channels: tuple[int, ...]
    decode: Callable[[np.ndarray], np.ndarray]
    encode: Callable[[np.ndarray], np.ndarray]
    mask_value: float | None
    loss: str
    resize: str = "bilinear"
    file_token: str | None = None
    source: str | None = None
    derive_raw: Callable[[np.ndarray], np.ndarray] | None = None
    derive_decoded: Callable[[np.ndarray], np.ndarray] | None = None
    feature: bool = False

    @property
    def is_derived(self) -> bool:
        return self.source is not None

    @property
    def stored_name(self) -> str:
        """The domain whose files hold this domain's data (itself unless derived)."""
        return self.source or self.name

    @property
    def raw_dtype(self) -> type:
        return np.uint16 if self.bit_depth == 16 else np.uint8

    def valid_mask(self, target):
        """XTC's mask (§3.2) from a target batch (..., H, W, C): True where valid.

        Invalid where every channel is within 1e-3 of `mask_value`, dilated by
        a 5x5 window. Works on NumPy and JAX arrays (traceable under jit).
        Returns (..., H, W, 1) bool.
        """
        import jax.numpy as jnp
        from jax import lax

        target = jnp.asarray(target)
        if self.mask_value is None:
            return jnp.ones((*target.shape[:-1], 1), dtype=bool)
        hit = jnp.all(jnp.abs(target - self.mask_value) <= 1e-3, axis=-1, keepdims=True)
        window = (1,) * (hit.ndim - 3) + (5, 5, 1)
        dilated = lax.reduce_window(hit, False, lax.bitwise_or, window, (1,) * hit.ndim, "SAME")
        return ~dilated


def _image(name: str, channels: int, mask_value: float | None, **kw) -> Domain:
    return Domain(
        name=name,
        channels=channels,
        bit_depth=8,
        stored_channels=kw.pop("stored_channels", (3,)),
        decode=_decode_unit8(channels),
        encode=_encode_unit8,
        mask_value=mask_value,
        loss="l1",
        file_token=kw.pop("file_token", name),
        **kw,
    )


def _sixteen(name: str, decode, encode, mask_value: float | None = None, **kw) -> Domain:
    return Domain(
        name=name,
        channels=1,
        bit_depth=16,
        stored_channels=(1,),
        decode=decode,
        encode=encode,
        mask_value=mask_value,
        loss="l1",
        file_token=kw.pop("file_token", name),
        **kw,
    )


DOMAINS: dict[str, Domain] = {
    d.name: d
    for d in (
        _image("rgb", 3, None, stored_channels=(1, 2, 3, 4)),
        _image("normal", 3, 0.502),
        _image("reshading", 3, 0.0507, stored_channels=(1, 3)),
        _image("principal_curvature", 3, 0.0),
        _sixteen("depth_zbuffer", _decode_depth, _encode_depth, mask_value=1.0),
        _sixteen("edge_occlusion", _decode_power(4000.0), _encode_power(4000.0)),
        _sixteen("keypoints2d", _decode_power(2000.0), _encode_power(2000.0)),
        _sixteen("keypoints3d", _decode_linear16(64131.0), _encode_linear16(64131.0)),
        # Stored edge_texture files exist, but the original computes Edge-2D from the rgb.
        _sixteen(
            "edge_texture",
            _decode_linear16(65535.0),
            _encode_linear16(65535.0),
            file_token=None,
            source="rgb",
            derive_decoded=sobel_edges,
        ),
        Domain(
            name="segment_semantic",
            channels=1,
            bit_depth=8,
            stored_channels=(1, 3),
            decode=_decode_semantic,
            encode=_encode_semantic,
            mask_value=-1.0,
            loss="cross_entropy",
            resize="nearest",
            file_token="segmentsemantic",
        ),
        Domain(
            name="mask_valid",
            channels=1,
            bit_depth=8,
            stored_channels=(1,),
            decode=_decode_valid,
            encode=_encode_unit8,
            mask_value=None,
            loss="l1",
            source="depth_zbuffer",
            derive_raw=_raw_valid_from_depth,
        ),
    )
}

def _no_files(name: str) -> Callable[[np.ndarray], np.ndarray]:
    def refuse(_: np.ndarray) -> np.ndarray:
        raise ConfigError(f"{name} is a feature domain (a network's output): it has no files "
                          "to read or write.")  # fmt: skip

    return refuse


#: Domains that exist only as a network's output: the original's "imagenet", ResNet-50's
#: layer4 map (2048 channels at H/32) of a normal, depth or reshading map. No mask.
FEATURE_DOMAINS: dict[str, Domain] = {
    "imagenet": Domain(name="imagenet", channels=2048, bit_depth=0, stored_channels=(),
                       decode=_no_files("imagenet"), encode=_no_files("imagenet"),
                       mask_value=None, loss="l1", feature=True),
}  # fmt: skip

#: Names used by the original code and by Taskonomy's 2018 release (taskonomy.md §1.3).
ALIASES: Mapping[str, str] = {
    "depth": "depth_zbuffer",
    "sobel_edges": "edge_texture",
    "edge2d": "edge_texture",
    "edge": "edge_occlusion",
    "edge3d": "edge_occlusion",
    "curvature": "principal_curvature",
    "reshade": "reshading",
    "keypoint2d": "keypoints2d",
    "keypoint": "keypoints3d",
    "keypoint3d": "keypoints3d",
    "segmentsemantic": "segment_semantic",
    "normals": "normal",
    "mask": "mask_valid",
}

#: File-name token -> domain, for indexing files (segment_semantic files say "segmentsemantic").
DOMAIN_OF_TOKEN: Mapping[str, str] = {
    d.file_token: d.name for d in DOMAINS.values() if d.file_token is not None
}

#: The nine stored pixel domains of an XTConsistency training example, plus labels.
STORED_DOMAINS = tuple(name for name, d in DOMAINS.items() if not d.is_derived)


def get(name: str) -> Domain:
    """The Domain called `name` (or a legacy alias); a clear ConfigError otherwise."""
    name = ALIASES.get(name, name)
    domain = DOMAINS.get(name) or FEATURE_DOMAINS.get(name)
    if domain is None:
        raise ConfigError(
            f"unknown domain {name!r}. Known domains: {', '.join([*DOMAINS, *FEATURE_DOMAINS])} "
            f"(aliases: {', '.join(sorted(ALIASES))})."
        )
    return domain


def stored_domains_for(names: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """The stored domains needed to produce `names` (derived ones map to their source)."""
    needed: list[str] = []
    for name in names:
        stored = get(name).stored_name
        if stored not in needed:
            needed.append(stored)
    return tuple(needed)
