"""The task graph: networks keyed "src->dst", composed along paths as pure functions.

A config names its networks (`config.networks["rgb->normal"] = {arch, downsample,
width, checkpoint}`) and its paths (`config.paths.f_n_x = ["rgb", "normal",
"principal_curvature"]`). A path's first domain is read from the batch; each
further hop applies the edge network: [rgb, normal, principal_curvature] is
F(params_F, n(params_n, x)).

`TaskGraph.evaluate` computes every requested path in one traced function
with a cache keyed by path prefix, so shared prefixes such as n(x) are
computed once per step (the original recomputed them for every path: its
cache evaluated the default argument eagerly, xtconsistency.md §5 quirk 4).

Networks are Flax modules used functionally; training code only sees
`apply(edge, params, x)`. Which edges are trainable or frozen is the trainer's
business: it passes one params dict per call, frozen ones as constants.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import flax.linen as nn
import jax

from xtc_jax import domains as domains_lib
from xtc_jax.errors import ConfigError
from xtc_jax.models.edges import (
    canonical_path,
    compute_dtype,
    edge_key,
    edge_network,
    path_edges,
    remat_mode,
    split_edge,
)
from xtc_jax.models.registry import init_params


class TaskGraph:
    """The networks of a config and the pure functions that run them."""

    def __init__(
        self,
        networks: Mapping[str, Mapping],
        dtype: str = "float32",
        remat: bool | str = "none",
    ):
        compute_dtype(dtype)  # ConfigError for an unknown name, before any network is built
        self.remat = remat_mode(remat)
        self.specs: dict[str, dict] = {}
        self.modules: dict[str, nn.Module] = {}
        for key, spec in networks.items():
            edge = edge_key(*split_edge(key))
            self.modules[edge] = edge_network(key, spec, dtype, self.remat)
            self.specs[edge] = dict(spec)

    @property
    def edges(self) -> tuple[str, ...]:
        return tuple(self.modules)

    def check_paths(self, paths: Mapping[str, Sequence[str]], data_domains: Sequence[str]) -> None:
        """ConfigError for a path with an unknown domain, a missing edge or unloadable start."""
        data = set(canonical_path(data_domains))
        for name, path in paths.items():
            if not path:
                raise ConfigError(f"paths.{name} is empty.")
            canonical = canonical_path(path)
            if canonical[0] not in data:
                raise ConfigError(
                    f"paths.{name} = {list(path)} starts at {canonical[0]!r}, which the data "
                    f"does not load (data.domains: {sorted(data)}). Add it to data.domains."
                )
            for key in path_edges(path):
                if key not in self.modules:
                    raise ConfigError(
                        f"paths.{name} = {list(path)} needs the edge {key!r}, but no network is "
                        f"configured for it. Add networks[{key!r}] "
                        f"(known: {', '.join(self.edges)})."
                    )

    def init(self, rng: jax.Array, resolution: int, edges: Sequence[str] | None = None) -> dict:
        """Fresh parameters {edge: params} for `edges` (default: all)."""
        params = {}
        for i, key in enumerate(edges or self.edges):
            channels = domains_lib.get(split_edge(key)[0]).channels
            params[key] = init_params(self.modules[key], jax.random.fold_in(rng, i), resolution,
                                      channels)  # fmt: skip
        return params

    def apply(self, key: str, params, x: jax.Array) -> jax.Array:
        """Runs one edge network as a pure function (whole-network remat if configured)."""
        module = self.modules[key]

        def run(p, inputs):
            return module.apply({"params": p}, inputs)

        if self.remat == "networks":
            run = jax.checkpoint(run)
        return run(params, x)

    def evaluate(
        self,
        params: Mapping,
        batch: Mapping[str, jax.Array],
        paths: Mapping[str, Sequence[str]],
    ) -> dict[str, jax.Array]:
        """{path name: value} for `paths`, every shared prefix computed once."""
        cache: dict[tuple[str, ...], jax.Array] = {}

        def value(path: tuple[str, ...]) -> jax.Array:
            if path not in cache:
                if len(path) == 1:
                    cache[path] = batch[path[0]]
                else:
                    key = edge_key(path[-2], path[-1])
                    cache[path] = self.apply(key, params[key], value(path[:-1]))
            return cache[path]

        return {
            name: value(canonical_path(path))
            for name, path in paths.items()
        }
