"""Consistency energy: how much the paths into one domain disagree (xtconsistency.md §6).

For a target domain (normal) and middle domains K, the direct prediction
n(x) and the path predictions n_K(K(x)) should agree. Per path K the
disagreement is |n_K(K(x)) - n(x)|, averaged over channels (a map) and over
pixels (a per-image term). Terms have different scales, so each is
standardised by statistics of a reference set, (term - mean) / MAD with
MAD = mean |term - mean| as in the original, and the standardised terms are
averaged over K. The pixel map is standardised with the same per-term
statistics, so the mean of an image's energy map is its image energy.

The statistics are fitted once on a reference set and applied unchanged to
any new image (the original standardised its query images by their own
raw mean, a scale mismatch this does not copy).
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
from collections.abc import Mapping, Sequence

import jax.numpy as jnp
import numpy as np

from xtc_jax.errors import DataError
from xtc_jax.infra import atomic

DIRECT = "direct"


def term_name(a: str, b: str) -> str:
    """Column name of the disagreement between path predictions a and b.

    As the original's data.csv: "percep__K" is the direct prediction against
    the path through K; "percep_K1_K2" two path predictions against each other.
    """
    if a == DIRECT:
        return f"percep__{b}"
    return f"percep_{a}_{b}"


def pixel_terms(direct, paths: Mapping[str, jnp.ndarray]) -> dict[str, jnp.ndarray]:
    """{K: (B, H, W)} mean-over-channels |path_K - direct| (float32)."""
    direct = jnp.asarray(direct, jnp.float32)
    return {
        k: jnp.mean(jnp.abs(jnp.asarray(v, jnp.float32) - direct), axis=-1)
        for k, v in paths.items()
    }


def image_terms(direct, paths: Mapping[str, jnp.ndarray]) -> dict[str, jnp.ndarray]:
    """Per-image mean |a - b| (B,) for every pair of {direct} U paths, named by `term_name`."""
    preds = {DIRECT: jnp.asarray(direct, jnp.float32)}
    preds.update({k: jnp.asarray(v, jnp.float32) for k, v in paths.items()})
    return {
        term_name(a, b): jnp.mean(jnp.abs(preds[a] - preds[b]), axis=(1, 2, 3))
        for a, b in itertools.combinations(preds, 2)
    }


@dataclasses.dataclass(frozen=True)
class Standardisation:
    """Per-term (mean, MAD) of the direct-vs-path terms on a reference set.

    `info` records what the statistics belong to (target, model, network
    exports, reference split and size); it travels with the file.
    """

    middles: tuple[str, ...]
    mean: tuple[float, ...]
    mad: tuple[float, ...]
    info: Mapping = dataclasses.field(default_factory=dict)

    @classmethod
    def fit(cls, terms: Mapping[str, np.ndarray], middles: Sequence[str], info=None):
        """Statistics of the per-image terms `percep__K` (arrays over the reference images)."""
        means, mads = [], []
        for k in middles:
            values = np.asarray(terms[term_name(DIRECT, k)], np.float64)
            if values.size < 2:
                raise DataError("fitting energy statistics needs at least 2 reference images.")
            mean = float(values.mean())
            means.append(mean)
            mads.append(max(float(np.abs(values - mean).mean()), 1e-12))
        return cls(tuple(middles), tuple(means), tuple(mads), dict(info or {}))

    def image_energy(self, terms: Mapping[str, np.ndarray]) -> np.ndarray:
        """Standardised energy per image: mean over K of (percep__K - mean_K) / MAD_K."""
        parts = [
            (np.asarray(terms[term_name(DIRECT, k)], np.float64) - m) / s
            for k, m, s in zip(self.middles, self.mean, self.mad, strict=True)
        ]
        return np.mean(parts, axis=0)

    def pixel_energy(self, pixels: Mapping[str, jnp.ndarray]) -> jnp.ndarray:
        """Standardised energy map (B, H, W) from `pixel_terms` (traceable under jit)."""
        parts = [
            (pixels[k] - m) / s for k, m, s in zip(self.middles, self.mean, self.mad, strict=True)
        ]
        return sum(parts) / len(parts)

    def to_json(self) -> dict:
        return {"middles": list(self.middles), "mean": list(self.mean), "mad": list(self.mad),
                **dict(self.info)}  # fmt: skip

    def save(self, path: str) -> str:
        """Writes the statistics as JSON atomically (temp file + rename)."""
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        return atomic.write_json(path, self.to_json())

    @classmethod
    def load(cls, path: str) -> Standardisation:
        try:
            with open(path) as f:
                data = json.load(f)
            middles, mean, mad = data.pop("middles"), data.pop("mean"), data.pop("mad")
        except FileNotFoundError as error:
            raise DataError(
                f"{path} does not exist: compute energy statistics first with "
                "python -m xtc_jax.energy --config=CONFIG --workdir=WORKDIR."
            ) from error
        except (ValueError, KeyError) as error:
            raise DataError(
                f"{path} is not an energy statistics file ({error}); delete it and rerun "
                "python -m xtc_jax.energy to fit it again."
            ) from error
        if not (len(middles) == len(mean) == len(mad)) or not middles:
            raise DataError(f"{path}: middles, mean and mad differ in length; delete and refit.")
        return cls(tuple(middles), tuple(map(float, mean)), tuple(map(float, mad)), data)
