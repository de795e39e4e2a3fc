"""The networks of the energy: n(x), rgb -> K and K -> target, as one jitted function.

`load(config, workdir, model)` gathers them for a consistency config:
n(x) is the experiment's consistency (or baseline) export, or "direct", the
plain rgb -> target transfer network of the cache, or any export folder;
rgb -> K are the config's direct networks; K -> target are new edges. All
come from the networks cache (`consistency/frozen.py`); the experiment
trains missing ones with the transfer config first
(`experiment.ensure_networks`), so one command works from a fresh workdir. The
statistics file records every network's export, and `from_stats` rebuilds
the same model from it alone (the demo needs no config).
"""

from __future__ import annotations

import copy
import dataclasses
import os
from collections.abc import Callable

import jax
import numpy as np

from xtc_jax import domains as domains_lib
from xtc_jax.consistency import experiment, frozen
from xtc_jax.consistency.config import network
from xtc_jax.consistency.graph import TaskGraph
from xtc_jax.consistency.plan import make_plan
from xtc_jax.energy.terms import Standardisation, image_terms, pixel_terms
from xtc_jax.errors import ConfigError, DataError
from xtc_jax.infra import export as export_lib
from xtc_jax.infra import workdir as workdir_lib
from xtc_jax.models.edges import edge_key

MODELS = ("consistency", "baseline", "direct")
VARIANTS = ("consistency", "baseline")  # the published rgb->target models
STATS_FILE = "energy_stats.json"


def middle_domains(config) -> list[str]:
    """config.energy.middles, or else the domains of the config's perceptual losses."""
    energy = config.get("energy") or {}
    middles = list(energy.get("middles") or [])
    if not middles:
        middles = make_plan(config).perceptual_domains
    if not middles:
        raise ConfigError(
            "the energy needs middle domains K (paths rgb -> K -> target): this config has no "
            "perceptual losses; set --config.energy.middles=depth_zbuffer,reshading or use a "
            "consistency config such as configs/normal.py."
        )
    return [domains_lib.get(k).name for k in middles]


def energy_config(config, middles: list[str]):
    """`config` with networks for rgb -> target, rgb -> K and K -> target (all but n frozen)."""
    config = copy.deepcopy(config)
    target = domains_lib.get(config.target).name
    edges = [edge_key("rgb", target)]
    edges += [edge_key("rgb", k) for k in middles] + [edge_key(k, target) for k in middles]
    with config.unlocked():
        for edge in edges:
            if edge not in config.networks:
                config.networks[edge] = network(edge, config.preset)
        config.freeze = edges
    return config


def stats_path(model_export: str) -> str:
    """Where the statistics of a model live: next to its checkpoints (its run folder), or
    beside a published model's export (`models/rgb2normal_consistency_energy_stats.json`)."""
    model_export = os.path.abspath(model_export)
    if os.path.basename(model_export) == workdir_lib.EXPORT:
        return os.path.join(os.path.dirname(model_export), STATS_FILE)
    return f"{model_export}_{STATS_FILE}"


def model_export(config, workdir: str, model: str, log: Callable[[str], None]) -> str:
    """The export folder of n(x) for `model` (a name in MODELS or an export path)."""
    target = domains_lib.get(config.target).name
    if model == "direct":
        edge = edge_key("rgb", target)
        experiment.ensure_networks(config, workdir, [edge], log)
        return frozen.export_dir(config, workdir, edge)
    if model in experiment.model_dirs(workdir):
        path = workdir_lib.export(experiment.model_dirs(workdir)[model])
        if not os.path.isdir(path):
            raise DataError(
                f"{path} does not exist: train the {model} model first with "
                f"python -m xtc_jax.main --config=CONFIG --workdir={workdir}, or pass "
                "--model=direct (the plain rgb->target network) or --model=EXPORT_DIR."
            )
        return path
    if not os.path.isdir(model):
        raise ConfigError(f"--model={model!r}: use one of {', '.join(MODELS)} or an export folder.")
    return model


def _check_resolution(config) -> None:
    """ConfigError when data.resolution does not suit a published network's poolings."""
    from xtc_jax.models import ModelError, param_shapes
    from xtc_jax.models.edges import edge_network, split_edge

    resolution = config.data.resolution
    for edge in config.freeze:
        channels = domains_lib.get(split_edge(edge)[0]).channels
        try:
            param_shapes(edge_network(edge, config.networks[edge]), resolution, channels)
        except ModelError as error:
            raise ConfigError(
                f"data.resolution={resolution} does not suit the published {edge} network "
                f"({error}): use --config.data.resolution=256, the resolution it was trained "
                "at (the paper preset, configs/normal.py)."
            ) from None


@dataclasses.dataclass
class EnergyModel:
    """n(x) and the path predictions n_K(K(x)) for a batch of rgb images, with their terms."""

    target: str
    middles: tuple[str, ...]
    specs: dict[str, dict]
    params: dict
    resolution: int
    exports: dict[str, str]

    def __post_init__(self):
        self.graph = TaskGraph(self.specs)
        self._predict = jax.jit(self.outputs)

    def outputs(self, params, rgb) -> dict:
        """n(x), the path predictions, and their pixel and image terms (traceable)."""
        paths = {"direct": ["rgb", self.target]}
        paths.update({k: ["rgb", k, self.target] for k in self.middles})
        values = self.graph.evaluate(params, {"rgb": rgb}, paths)
        direct = values.pop("direct")
        return {
            "direct": direct,
            "pixels": pixel_terms(direct, values),
            "terms": image_terms(direct, values),
            "paths": values,
        }

    def __call__(self, rgb: np.ndarray) -> dict:
        """{"direct": (B,H,W,C), "pixels": {K: (B,H,W)}, "terms": {name: (B,)},
        "paths": {K: (B,H,W,C)}} as NumPy."""
        rgb = np.asarray(rgb, np.float32)
        if rgb.ndim != 4 or rgb.shape[-1] != 3:
            raise DataError(f"energy input must be (B, H, W, 3) rgb, got shape {rgb.shape}.")
        return jax.device_get(self._predict(self.params, rgb))

    @property
    def direct_export(self) -> str:
        """The export folder of n(x), the rgb -> target network."""
        return self.exports[edge_key("rgb", self.target)]

    def info(self) -> dict:
        """What statistics fitted with this model must record to rebuild it."""
        return {"target": self.target, "resolution": self.resolution,
                "specs": self.specs, "exports": self.exports}  # fmt: skip

    @classmethod
    def from_stats(cls, stats: Standardisation, model: str | None = None) -> EnergyModel:
        """The model a statistics file was fitted with (n(x) replaced by `model` if given)."""
        info = stats.info
        try:
            target, exports, specs = info["target"], dict(info["exports"]), dict(info["specs"])
        except KeyError as error:
            raise DataError(f"energy statistics lack {error}; refit with xtc_jax.energy.") from None
        if model:
            exports[edge_key("rgb", target)] = model
        params = {edge: (export_lib.load_exported(path)[0] if path else {})
                  for edge, path in exports.items()}  # fmt: skip
        return cls(target, tuple(stats.middles), specs, params, int(info["resolution"]), exports)


def published_config(config, models_dir: str):
    """(config, middles) for the published networks converted into `models_dir`: the middle
    domains K whose rgb->K and K->target networks are there (or analytic), and every edge's
    spec and checkpoint from its export."""
    from xtc_jax.convert.published import PublishedModels

    published = PublishedModels(models_dir)
    target = domains_lib.get(config.target).name
    wanted = [domains_lib.get(k).name for k in (config.get("energy") or {}).get("middles") or []]
    candidates = wanted or make_plan(config).perceptual_domains
    analytic = {k for k in candidates if network(edge_key("rgb", k), "paper")["arch"] == "sobel"}
    middles = [k for k in candidates if (k in analytic or published.edge(edge_key("rgb", k)))
               and published.edge(edge_key(k, target))]  # fmt: skip
    missing = sorted(set(wanted) - set(middles))
    if missing or not middles:
        raise ConfigError(
            f"--models_dir {models_dir} lacks the rgb->K or K->{target} networks of "
            f"{', '.join(missing or candidates)} (the original's energy_graph_edges files, "
            "e.g. rgb2principal_curvature.pth and principal_curvature2normal.pth): convert "
            "them into it, or set --config.energy.middles to the domains it has."
        )
    config = energy_config(config, middles)
    with config.unlocked():
        for edge in config.freeze:
            folder = published.edge(edge)
            if folder and config.networks[edge].arch != "sobel":
                config.networks[edge] = published.spec(folder)
    return config, middles, published


def load(config, workdir: str, model: str = "consistency", log: Callable[[str], None] = print,
         models_dir: str = ""):  # fmt: skip
    """The EnergyModel of `config` in `workdir`, training missing rgb->K / K->target networks;
    with `models_dir`, the published networks converted there (nothing is trained)."""
    config = experiment.resolve(config, workdir)
    target = domains_lib.get(config.target).name
    if models_dir:
        config, middles, published = published_config(config, models_dir)
        export = published.rgb_model(target, model) if model in VARIANTS else model
        _check_resolution(config)
    else:
        middles = middle_domains(config)
        config = energy_config(config, middles)
        experiment.check_frozen(config, workdir, config.freeze)  # before anything is trained
        export = model_export(config, workdir, model, log)
    direct_edge = edge_key("rgb", target)
    path_edges = [e for e in config.freeze if e != direct_edge]
    specs = {e: {k: v for k, v in config.networks[e].to_dict().items() if k != "checkpoint"}
             for e in config.freeze}  # fmt: skip
    graph = TaskGraph({e: config.networks[e] for e in config.freeze})
    experiment.ensure_networks(config, workdir, path_edges, log)
    params = frozen.load(config, graph, path_edges, workdir)
    params[direct_edge], _ = export_lib.load_exported(export)
    exports = {direct_edge: os.path.abspath(export)}
    for edge in path_edges:
        sobel = config.networks[edge].arch == "sobel"
        exports[edge] = (
            "" if sobel else os.path.abspath(frozen.export_dir(config, workdir, edge))
        )
    return EnergyModel(target, tuple(middles), specs, params, config.data.resolution, exports)


def checked_stats(path: str, energy_model: EnergyModel) -> Standardisation | None:
    """The statistics at `path` if they were fitted for this model's networks, else None."""
    if not os.path.exists(path):
        return None
    stats = Standardisation.load(path)
    same = (
        tuple(stats.middles) == energy_model.middles
        and stats.info.get("exports") == energy_model.exports
        and stats.info.get("resolution") == energy_model.resolution
    )
    return stats if same else None
