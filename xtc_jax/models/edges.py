"""Edge networks: a network keyed "src->dst" built from its config spec.

An edge is a network from one domain to another ("rgb->normal"); its spec is
the config entry `networks[edge] = {arch, downsample, width, checkpoint}`.
Everything that runs an edge network (the consistency graph, an exported
model, the energy, the benchmarks) builds it here, so an edge's output
channels, compute dtype and remat mode mean the same everywhere.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence

import flax.linen as nn
import jax.numpy as jnp

from xtc_jax import domains as domains_lib
from xtc_jax.errors import ConfigError
from xtc_jax.models import registry

ARROW = "->"
#: Config fields of a network spec that are not model constructor arguments.
SPEC_ONLY = ("checkpoint", "loss", "steps")
#: compute.remat values: what the backward pass keeps of each network's forward pass.
REMAT_MODES = ("none", "blocks", "networks")
COMPUTE_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def edge_key(src: str, dst: str) -> str:
    return f"{src}{ARROW}{dst}"


def split_edge(key: str) -> tuple[str, str]:
    """("src", "dst") of an edge key, both canonical domain names; ConfigError if malformed."""
    parts = key.split(ARROW)
    if len(parts) != 2 or not all(parts):
        raise ConfigError(f"network key {key!r}: write edges as 'src->dst', e.g. 'rgb->normal'.")
    return domains_lib.get(parts[0]).name, domains_lib.get(parts[1]).name


def canonical_path(path: Sequence[str]) -> tuple[str, ...]:
    """A path's domains by their canonical names (aliases such as "depth" resolved)."""
    return tuple(domains_lib.get(d).name for d in path)


def path_edges(path: Sequence[str]) -> list[str]:
    """The edge keys a path walks, names canonicalised: [a, b, c] -> ["a->b", "b->c"]."""
    return [edge_key(a, b) for a, b in itertools.pairwise(canonical_path(path))]


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


def compute_dtype(name: str):
    """The jnp dtype of compute.dtype ("float32" or "bfloat16")."""
    if name not in COMPUTE_DTYPES:
        raise ConfigError(f'compute.dtype={name!r}: use "float32" or "bfloat16".')
    return COMPUTE_DTYPES[name]


def output_channels(domain: str) -> int:
    """Channels a network must output for `domain` (logits for label domains)."""
    spec = domains_lib.get(domain)
    return len(domains_lib.SEMANTIC_CLASSES) if spec.loss == "cross_entropy" else spec.channels


def edge_network(
    key: str, spec: Mapping, dtype: str = "float32", remat: bool | str = "none"
) -> nn.Module:
    """The Flax module of edge `key` with config spec `spec`; ConfigError for a bad spec.

    Output channels follow the destination domain unless the spec sets them;
    with remat "blocks" the blocks of networks that support it are rematerialised.
    """
    _, dst = split_edge(key)
    spec = dict(spec)
    kwargs = {k: v for k, v in spec.items() if k not in (*SPEC_ONLY, "arch")}
    try:
        fields = registry.model_fields(spec["arch"])
    except ConfigError as error:
        raise ConfigError(f"networks[{key!r}] = {spec}: {error}") from error
    if "out_channels" in fields:
        kwargs.setdefault("out_channels", output_channels(dst))
    if "broadcast_channels" in fields:  # UNetReshade: as many copies as the domain has
        kwargs.setdefault("broadcast_channels", output_channels(dst))
    if "dtype" in fields:
        kwargs["dtype"] = compute_dtype(dtype)
    if remat_mode(remat) == "blocks" and "remat" in fields:
        kwargs.setdefault("remat", True)
    try:
        return registry.build(spec["arch"], **kwargs)
    except (TypeError, ValueError) as error:
        raise ConfigError(f"networks[{key!r}] = {spec}: {error}") from error
