"""An exported model (`checkpoint.export_model`) as a network you can call on arrays."""

from __future__ import annotations

import dataclasses

import jax
import numpy as np

from xtc_jax import checkpoint as ckpt_lib
from xtc_jax.graph import TaskGraph, edge_key

#: model.json fields that describe the export rather than the network.
_EXPORT_ONLY = ("edge", "src", "dst", "resolution", "checkpoint")


def network_spec(model_config: dict) -> dict:
    """The `config.networks[edge]` spec stored in a model.json."""
    return {k: v for k, v in model_config.items() if k not in _EXPORT_ONLY}


@dataclasses.dataclass
class ExportedNetwork:
    """src -> dst network loaded from an export folder; call it on (B, H, W, C) float arrays."""

    path: str
    src: str
    dst: str
    resolution: int
    params: dict
    spec: dict

    def __post_init__(self):
        self.edge = edge_key(self.src, self.dst)
        graph = TaskGraph({self.edge: self.spec})
        self._apply = jax.jit(lambda params, x: graph.apply(self.edge, params, x))

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(self._apply(self.params, np.asarray(x, np.float32)))

    def jax_apply(self, params, x):
        """The traceable function, for use inside another jitted function."""
        return self._apply(params, x)


def load(path: str) -> ExportedNetwork:
    """ExportedNetwork of `path`; DataError naming it if it is not an export."""
    params, model_config = ckpt_lib.load_exported(path)
    return ExportedNetwork(path, model_config["src"], model_config["dst"],
                           int(model_config.get("resolution", 256)), params,
                           network_spec(model_config))  # fmt: skip
