"""Stage III: the win-rate tournament per target and its AHP normalisation (taskonomy.md §4.2).

For one target t with candidate sources s_1..s_n (single tasks or sets) and their
per-image losses on held-out images, w_ij is the fraction of images on which s_i's
transfer has the lower loss than s_j's (a tie counts half for each, so w_ij + w_ji = 1
always). Entries are clipped to [0.001, 0.999]; W'_t = W_t / W_tᵀ elementwise is a
reciprocal pairwise-comparison matrix, and its principal (Perron) eigenvector,
normalised to sum 1, gives each candidate's affinity for t. The affinities of all
targets are the columns of P (candidates × targets).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from xtc_jax.errors import ConfigError

CLIP = (0.001, 0.999)


def winrate_matrix(losses: np.ndarray) -> np.ndarray:
    """(n, n) win rates from (n candidates, m images) per-image losses; the diagonal is 0.5."""
    losses = np.asarray(losses, np.float64)
    if losses.ndim != 2 or losses.shape[1] == 0:
        raise ConfigError(f"winrate_matrix: losses must be (candidates, images), got "
                          f"{losses.shape}.")  # fmt: skip
    if not np.isfinite(losses).all():
        raise ConfigError("winrate_matrix: a per-image loss is not finite.")
    lower = (losses[:, None, :] < losses[None, :, :]).mean(axis=2)
    ties = (losses[:, None, :] == losses[None, :, :]).mean(axis=2)
    return lower + 0.5 * ties


def ahp_weights(winrates: np.ndarray, clip: tuple[float, float] = CLIP) -> np.ndarray:
    """The principal eigenvector of clip(W) / clip(W)ᵀ, positive and normalised to sum 1."""
    w = np.clip(np.asarray(winrates, np.float64), *clip)
    if w.ndim != 2 or w.shape[0] != w.shape[1]:
        raise ConfigError(f"ahp_weights: a square win-rate matrix is needed, got {w.shape}.")
    comparison = w / w.T
    values, vectors = np.linalg.eig(comparison)
    principal = np.real(vectors[:, np.argmax(np.real(values))])
    principal = np.abs(principal)  # the Perron vector has one sign; eig may return it negated
    return principal / principal.sum()


def affinity_matrix(per_target: Mapping[str, Mapping[str, np.ndarray]]) -> dict[str, dict]:
    """{target: {candidate: affinity}} from {target: {candidate: per-image losses}}."""
    out = {}
    for target, candidates in per_target.items():
        names = list(candidates)
        losses = np.stack([np.asarray(candidates[n], np.float64) for n in names])
        weights = ahp_weights(winrate_matrix(losses))
        out[target] = dict(zip(names, weights.tolist(), strict=True))
    return out


def versus(losses: np.ndarray, reference: np.ndarray) -> float:
    """Win rate of a transfer against a reference network on the same images (gain against
    scratch, quality against the task-specific network; taskonomy.md §4.3)."""
    return float(winrate_matrix(np.stack([losses, reference]))[0, 1])


def candidate_name(sources: Sequence[str]) -> str:
    """Taskonomy's key of a source set: the sources joined by "__"."""
    return "__".join(sources)
