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

import itertools
from collections.abc import Mapping, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from xtc_jax import domains as domains_lib
from xtc_jax import models
from xtc_jax.errors import ConfigError

ARROW = "->"
#: Config fields of a network spec that are not model constructor arguments.
_SPEC_ONLY = ("checkpoint", "loss", "steps")


def edge_key(src: str, dst: str) -> str:
    return f"{src}{ARROW}{dst}"


def split_edge(key: str) -> tuple[str, str]:
    parts = key.split(ARROW)
    if len(parts) != 2 or not all(parts):
        raise ConfigError(f"network key {key!r}: write edges as 'src->dst', e.g. 'rgb->normal'.")
    return domains_lib.get(parts[0]).name, domains_lib.get(parts[1]).name


def path_edges(path: Sequence[str]) -> list[str]:
    """The edge keys a path walks, names canonicalised: [a, b, c] -> ["a->b", "b->c"]."""
    canonical = [domains_lib.get(d).name for d in path]
    return [edge_key(a, b) for a, b in itertools.pairwise(canonical)]


#: compute.remat values: what the backward pass keeps of each network's forward pass.
REMAT_MODES = ("none", "blocks", "networks")


def remat_mode(value: bool | str) -> str:
    """compute.remat as one of REMAT_MODES; True means "blocks", False "none".

    - "none": keep every activation (fastest, most memory);
    - "blocks": keep each block's input and output, recompute the layers inside it
      (about 9× fewer saved bytes for the paper UNet; one extra forward per block);
    - "networks": keep only each network's input and recompute the whole network at once
      (fewest saved bytes, but the recomputation's activations are all alive together).
    """
    if isinstance(value, str) and value.lower() in ("true", "false"):  # from a command line
        value = value.lower() == "true"
    if isinstance(value, bool):
        return "blocks" if value else "none"
    if value not in REMAT_MODES:
        raise ConfigError(
            f"compute.remat={value!r}: use one of {', '.join(map(repr, REMAT_MODES))} "
            f"(or True = 'blocks', False = 'none')."
        )
    return value


def output_channels(domain: str) -> int:
    """Channels a network must output for `domain` (logits for label domains)."""
    spec = domains_lib.get(domain)
    return len(domains_lib.SEMANTIC_CLASSES) if spec.loss == "cross_entropy" else spec.channels


class TaskGraph:
    """The networks of a config and the pure functions that run them."""

    def __init__(
        self,
        networks: Mapping[str, Mapping],
        compute_dtype: str = "float32",
        remat: bool | str = "none",
    ):
        if compute_dtype not in ("float32", "bfloat16"):
            raise ConfigError(f'compute.dtype={compute_dtype!r}: use "float32" or "bfloat16".')
        dtype = jnp.bfloat16 if compute_dtype == "bfloat16" else jnp.float32
        self.remat = remat_mode(remat)
        self.specs: dict[str, dict] = {}
        self.modules: dict[str, nn.Module] = {}
        for key, spec in networks.items():
            src, dst = split_edge(key)
            spec = dict(spec)
            kwargs = {k: v for k, v in spec.items() if k not in (*_SPEC_ONLY, "arch")}
            if spec["arch"] != "sobel":
                kwargs.setdefault("out_channels", output_channels(dst))
                kwargs["dtype"] = dtype
            if self.remat == "blocks" and "remat" in models.model_fields(spec["arch"]):
                kwargs.setdefault("remat", True)
            try:
                self.modules[edge_key(src, dst)] = models.build(spec["arch"], **kwargs)
            except (TypeError, ValueError) as error:
                raise ConfigError(f"networks[{key!r}] = {spec}: {error}") from error
            self.specs[edge_key(src, dst)] = spec

    @property
    def edges(self) -> tuple[str, ...]:
        return tuple(self.modules)

    def check_paths(self, paths: Mapping[str, Sequence[str]], data_domains: Sequence[str]) -> None:
        """ConfigError for a path with an unknown domain, a missing edge or unloadable start."""
        data = {domains_lib.get(d).name for d in data_domains}
        for name, path in paths.items():
            if not path:
                raise ConfigError(f"paths.{name} is empty.")
            canonical = [domains_lib.get(d).name for d in path]
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
            src, _ = split_edge(key)
            x = jnp.zeros((1, resolution, resolution, domains_lib.get(src).channels), jnp.float32)
            # Jitted: Flax's init run op by op compiles every op separately (seconds on CPU).
            variables = jax.jit(self.modules[key].init)(jax.random.fold_in(rng, i), x)
            params[key] = variables.get("params", {})
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
            name: value(tuple(domains_lib.get(d).name for d in path))
            for name, path in paths.items()
        }
