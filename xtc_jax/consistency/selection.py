"""Win-rate statistics of the perceptual losses and the k-of-n choice between epochs (§4.3).

The win-rate of a perceptual loss K is the fraction of examples where the
perceptual error |F_K(n(x)) - F_K(y)| exceeds the direct error |d_K(x) - K|
of the rgb->K network: high means the target network is most inconsistent
with constraint K, so that constraint is worth optimising next.

Differences from the original (`shared/reference/xtconsistency.md` §4.3):
- The statistic is a running mean over the epoch (wins and counts summed
  over every batch passed to `winrate_update`), not an overwrite with the
  latest batch, and a win-rate of 1.0 is kept (the original dropped values
  that were not < 1.0).
- Train and validation batches are not mixed unless the caller passes both.
- Losses not measured in an epoch keep their last known value through
  `latest_winrates` on the host, which is what the original's stale
  `running_stats` amounted to.

`winrate_init` / `winrate_update` / `winrate_reset` are pure JAX (call
`winrate_update` inside the jitted train step); `winrate_values`,
`latest_winrates` and `choose_losses` run on the host between epochs.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

#: {"wins": {name: int32 scalar}, "count": {name: int32 scalar}}: a pytree whose
#: structure (the loss names) is static, so it can be carried through jit.
WinRateStats = dict[str, dict[str, jax.Array]]

SELECTION_MODES = ("winrate", "random")


def winrate_init(names: Sequence[str]) -> WinRateStats:
    """Zeroed statistics for the perceptual losses `names` (e.g. ("curv", "edge"))."""
    if len(set(names)) != len(names):
        raise ValueError(f"duplicate loss names in {list(names)}")
    zero = jnp.zeros((), jnp.int32)
    return {"wins": {n: zero for n in names}, "count": {n: zero for n in names}}


def winrate_reset(stats: WinRateStats) -> WinRateStats:
    """The same statistics zeroed, for a new epoch (pure)."""
    return jax.tree_util.tree_map(jnp.zeros_like, stats)


def winrate_update(
    stats: WinRateStats,
    name: str,
    percep_per_example: jax.Array,
    direct_per_example: jax.Array,
    example_mask: jax.Array | None = None,
) -> WinRateStats:
    """Add one batch for loss `name`: wins += #(percep_K > direct_K), count += batch size.

    percep_per_example and direct_per_example are [B] per-example losses (e.g.
    the perceptual term per example and the direct network's masked L1).
    example_mask ([B] bool, optional) excludes padding examples from both
    counts. Pure and jit-able; `name` must be a key of `stats` (static).
    """
    if name not in stats["wins"]:
        raise KeyError(f"no win-rate statistic for {name!r}; known: {list(stats['wins'])}")
    percep, direct = jnp.asarray(percep_per_example), jnp.asarray(direct_per_example)
    if percep.shape != direct.shape or percep.ndim != 1:
        raise ValueError(f"expected two [B] vectors, got {percep.shape} and {direct.shape}")
    real = jnp.ones(percep.shape, bool) if example_mask is None else jnp.asarray(example_mask)
    wins = jnp.sum((percep > direct) & real, dtype=jnp.int32)
    count = jnp.sum(real, dtype=jnp.int32)
    return {
        "wins": {**stats["wins"], name: stats["wins"][name] + wins},
        "count": {**stats["count"], name: stats["count"][name] + count},
    }


def winrate_values(stats: WinRateStats) -> dict[str, float]:
    """Host side: {name: wins / count}, NaN where nothing was counted this epoch."""
    host = jax.device_get(stats)
    return {
        name: float(host["wins"][name]) / float(c) if int(c) > 0 else math.nan
        for name, c in host["count"].items()
    }


def latest_winrates(
    previous: Mapping[str, float], current: Mapping[str, float]
) -> dict[str, float]:
    """Host side: this epoch's values where measured (not NaN), else the previous ones."""
    merged = dict(previous)
    merged.update({k: v for k, v in current.items() if not math.isnan(v)})
    return merged


def choose_losses(
    names: Sequence[str],
    k: int,
    mode: str,
    stats_values: Mapping[str, float],
    rng: np.random.Generator,
) -> tuple[str, ...]:
    """Host side: the k perceptual losses to optimise next epoch, in the order of `names`.

    mode "winrate": the k highest win-rates (ties go to the earlier name); as
    in the original, a random choice while any loss still lacks a statistic
    (missing or NaN in `stats_values`). mode "random": k at random every epoch.
    Randomness comes only from `rng`, so a seeded Generator is reproducible.
    The result follows the order of `names` so that it can key a cache of
    compiled train steps.
    """
    names = tuple(names)
    n = len(names)
    if len(set(names)) != n:
        raise ValueError(f"duplicate loss names in {list(names)}")
    if mode not in SELECTION_MODES:
        raise ValueError(f"unknown selection mode {mode!r}; expected one of {SELECTION_MODES}")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 0 <= k <= n:
        raise ValueError(f"k must be an integer in [0, {n}] (the number of losses), got {k!r}")
    if k == n:
        return names
    known = all(not math.isnan(stats_values.get(name, math.nan)) for name in names)
    if mode == "random" or not known:
        picked = rng.choice(n, size=k, replace=False)
    else:
        # Stable sort on -winrate keeps the order of `names` among ties.
        picked = np.argsort([-stats_values[name] for name in names], kind="stable")[:k]
    return tuple(names[i] for i in sorted(int(i) for i in picked))


__all__ = [
    "SELECTION_MODES",
    "WinRateStats",
    "choose_losses",
    "latest_winrates",
    "winrate_init",
    "winrate_reset",
    "winrate_update",
    "winrate_values",
]
