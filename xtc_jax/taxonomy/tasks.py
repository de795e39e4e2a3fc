"""The taxonomy's tasks on the built-in data: every rendered domain, plus two that need no labels.

A task maps rgb to its target: a domain of the built-in data (normal, depth_zbuffer,
reshading, principal_curvature, edge_texture, edge_occlusion, keypoints2d, keypoints3d,
segment_semantic), "autoencoder" (rgb itself) or "denoise" (rgb from a noisy copy,
Gaussian σ = DENOISE_SIGMA). Its loss is the target domain's masked loss
(`losses/masked.py`: L1, or cross-entropy for segment_semantic).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from xtc_jax.errors import ConfigError
from xtc_jax.losses import masked
from xtc_jax.models.edges import output_channels

DOMAIN_TASKS = ("normal", "depth_zbuffer", "reshading", "principal_curvature", "edge_texture",
                "edge_occlusion", "keypoints2d", "keypoints3d", "segment_semantic")  # fmt: skip
LABEL_FREE = ("autoencoder", "denoise")
TASKS = DOMAIN_TASKS + LABEL_FREE
DENOISE_SIGMA = 0.1


@dataclasses.dataclass(frozen=True)
class Task:
    name: str
    target_domain: str  # the batch key of the target

    @property
    def channels(self) -> int:
        return output_channels(self.target_domain)

    def inputs(self, rgb: jax.Array, rng: jax.Array) -> jax.Array:
        """The network's input: rgb, or a noisy copy of it for denoising."""
        if self.name != "denoise":
            return rgb
        return jnp.clip(rgb + DENOISE_SIGMA * jax.random.normal(rng, rgb.shape), 0.0, 1.0)

    def per_image_loss(self, pred: jax.Array, batch: dict) -> jax.Array:
        """(B,) losses of the target domain (masked as the domain says)."""
        domain = "rgb" if self.name in LABEL_FREE else self.target_domain
        kind = "cross_entropy" if domain == "segment_semantic" else "l1"
        return masked.loss_fn(kind)(pred, batch[self.target_domain], domain, per_example=True)


def get(name: str) -> Task:
    """The task `name`; ConfigError naming the choices otherwise."""
    if name not in TASKS:
        raise ConfigError(f"unknown taxonomy task {name!r}: use names from {', '.join(TASKS)}.")
    return Task(name, "rgb" if name in LABEL_FREE else name)


def domains_needed(names) -> list[str]:
    """The data domains a batch needs for the tasks `names` (rgb first)."""
    out = ["rgb"]
    for name in names:
        domain = get(name).target_domain
        if domain not in out:
            out.append(domain)
    return out
