"""Image corruptions for shift detection: blur, noise, jpeg, contrast at severity 1-5.

The constants follow ImageNet-C (Hendrycks & Dietterich, 2019) so severities
mean what readers expect; blur radii are given at 224 px there and are
scaled to the image size here. Every corruption is deterministic given the
image and `seed`, works on float (H, W, 3) images in [0, 1] and keeps them
in [0, 1].
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np

from xtc_jax.errors import ConfigError

_BLUR_SIGMA_AT_224 = (1.0, 2.0, 3.0, 4.0, 6.0)
_NOISE_STD = (0.08, 0.12, 0.18, 0.26, 0.38)
_JPEG_QUALITY = (25, 18, 15, 10, 7)
_CONTRAST = (0.4, 0.3, 0.2, 0.1, 0.05)


def _blur(image: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    sigma = _BLUR_SIGMA_AT_224[severity - 1] * image.shape[0] / 224.0
    return cv2.GaussianBlur(image, (0, 0), sigmaX=sigma, borderType=cv2.BORDER_REFLECT)


def _noise(image: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    return image + rng.normal(scale=_NOISE_STD[severity - 1], size=image.shape)


def _jpeg(image: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    pixels = np.clip(image * 255.0 + 0.5, 0, 255).astype(np.uint8)
    ok, data = cv2.imencode(".jpg", pixels[..., ::-1],
                            [cv2.IMWRITE_JPEG_QUALITY, _JPEG_QUALITY[severity - 1]])  # fmt: skip
    assert ok, "OpenCV could not JPEG-encode an image"
    return cv2.imdecode(data, cv2.IMREAD_COLOR)[..., ::-1].astype(np.float32) / 255.0


def _contrast(image: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    mean = image.mean(axis=(0, 1), keepdims=True)
    return (image - mean) * _CONTRAST[severity - 1] + mean


CORRUPTIONS: dict[str, Callable[[np.ndarray, int, np.random.Generator], np.ndarray]] = {
    "blur": _blur,
    "noise": _noise,
    "jpeg": _jpeg,
    "contrast": _contrast,
}


def parse(spec: str) -> list[tuple[str, int]]:
    """Corruptions with severities: a severity applies to the names before it, back to the
    previous severity, and 3 to names with none after them.

    'blur,noise:3' -> [("blur", 3), ("noise", 3)]; 'blur:3,noise:5' -> [("blur", 3),
    ("noise", 5)]; 'blur,noise' -> both at 3.
    """
    example = "e.g. --corrupt=blur,noise,jpeg,contrast:3 or --corrupt=blur:3,noise:5"
    pending: list[str] = []
    out: list[tuple[str, int]] = []
    for item in (spec or "").split(","):
        name, has_severity, severity_text = item.strip().partition(":")
        name = name.strip()
        if name not in CORRUPTIONS:
            raise ConfigError(f"--corrupt={spec!r}: {name!r} is no corruption; name them from "
                              f"{', '.join(CORRUPTIONS)}, {example}.")  # fmt: skip
        pending.append(name)
        if has_severity:
            try:
                severity = int(severity_text)
            except ValueError:
                severity = -1
            if not 1 <= severity <= 5:
                raise ConfigError(f"--corrupt={spec!r}: the severity after {name}: must be "
                                  f"1..5, {example}.")  # fmt: skip
            out += [(n, severity) for n in pending]
            pending = []
    return out + [(n, 3) for n in pending]


def corrupt(image: np.ndarray, kind: str, severity: int, seed: int = 0) -> np.ndarray:
    """`image` (H, W, 3) float in [0, 1] with corruption `kind` at `severity` (1-5)."""
    rng = np.random.default_rng(seed)
    out = CORRUPTIONS[kind](np.asarray(image, np.float32), severity, rng)
    return np.clip(out, 0.0, 1.0).astype(np.float32)
