"""The plan of a consistency config: validated once, then read by the step, evaluator and runs.

`make_plan(config)` checks the config before anything is compiled and
returns a `Plan`: the loss terms, the supervised ("mae") term, the target
edge it trains, the trainable and frozen edges, every path with canonical
domain names, and the task graph. Nothing else looks up the supervised term
or canonicalises a domain alias again.

Loss terms (`config.losses[name] = {kind, pred, target, loss, weight}`):
  kind "mae"     the supervised term n(x) vs y (exactly one);
  kind "percep"  F_K(n(x)) vs F_K(y) through a frozen F_K;
  kind "direct"  rgb->K vs K, evaluated for the win-rates only, never optimised.
"percep_K" and "direct_K" pair up through their suffix K. A perceptual term
on a feature domain (the ImageNet features, `consistency/imagenet.py`) has no
ground truth, hence no direct partner and no win-rate: it is "always" optimised,
besides the k chosen ones.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from xtc_jax import domains as domains_lib
from xtc_jax.consistency import frozen
from xtc_jax.consistency.graph import TaskGraph
from xtc_jax.errors import ConfigError
from xtc_jax.losses import masked, weighting
from xtc_jax.models.edges import canonical_path, edge_key, path_edges, split_edge

KINDS = ("mae", "percep", "direct")


@dataclasses.dataclass(frozen=True)
class LossTerm:
    """One configured loss: `loss`(paths[pred], paths[target]) on the pred path's last domain."""

    name: str
    kind: str
    pred: str
    target: str
    loss: str
    weight: float
    domain: str

    @property
    def perceptual_name(self) -> str:
        """ "percep_curv" and "direct_curv" pair up through the suffix "curv"."""
        return self.name.split("_", 1)[1] if "_" in self.name else self.name


def loss_terms(config) -> dict[str, LossTerm]:
    """The config's losses as LossTerms, with a ConfigError for any unknown name."""
    terms = {}
    for name, spec in config.losses.items():
        if spec.kind not in KINDS:
            raise ConfigError(f"losses.{name}.kind={spec.kind!r}: use one of {KINDS}.")
        for field in ("pred", "target"):
            if spec[field] not in config.paths:
                raise ConfigError(
                    f"losses.{name}.{field}={spec[field]!r} is not a path; "
                    f"paths are: {', '.join(config.paths)}."
                )
        masked.loss_fn(spec.loss)  # raises for unknown loss names
        domain = domains_lib.get(config.paths[spec.pred][-1]).name
        weight = float(spec.get("weight", 1.0))
        terms[name] = LossTerm(name, spec.kind, spec.pred, spec.target, spec.loss, weight, domain)
    if sum(t.kind == "mae" for t in terms.values()) != 1:
        raise ConfigError("losses: exactly one term of kind 'mae' (the supervised loss) is needed.")
    return terms


@dataclasses.dataclass(frozen=True)
class Plan:
    """Everything a consistency run derives from its config, computed once."""

    graph: TaskGraph
    terms: Mapping[str, LossTerm]
    supervised: LossTerm
    target_edge: str
    trainable: tuple[str, ...]  # learned edges the gradient updates
    frozen: tuple[str, ...]  # edges held fixed (learned or analytic)
    paths: Mapping[str, tuple[str, ...]]  # canonical domain names
    denominator: str  # config.loss.denominator
    weighting: str  # config.selection.weights, a losses.weighting strategy

    def _percep(self, feature: bool) -> list[LossTerm]:
        return [t for t in self.terms.values()
                if t.kind == "percep" and domains_lib.get(t.domain).feature == feature]  # fmt: skip

    @property
    def perceptual(self) -> tuple[str, ...]:
        """The perceptual losses by suffix K, sorted: what k-of-n selection chooses from."""
        return tuple(sorted(t.perceptual_name for t in self._percep(feature=False)))

    @property
    def always(self) -> tuple[str, ...]:
        """Perceptual losses on feature domains (no ground truth, no win-rate): every step."""
        return tuple(sorted(t.perceptual_name for t in self._percep(feature=True)))

    @property
    def perceptual_domains(self) -> list[str]:
        """The image domains K of the perceptual losses (F_K's outputs), in config order."""
        return [t.domain for t in self._percep(feature=False)]

    def step_terms(self, chosen: tuple[str, ...]) -> tuple[list[LossTerm], list[LossTerm]]:
        """(optimised, direct): the supervised term, the chosen perceptual terms and the
        `always` ones, which the gradient sees, and the chosen terms' direct partners,
        evaluated for the win-rates only."""
        by_suffix = {(t.kind, t.perceptual_name): t for t in self.terms.values()}
        optimised = [self.supervised, *(by_suffix["percep", k] for k in (*chosen, *self.always))]
        direct = [by_suffix["direct", k] for k in chosen if ("direct", k) in by_suffix]
        return optimised, direct

    def model_config(self, resolution: int) -> dict:
        """The model.json of the target network's export."""
        src, dst = split_edge(self.target_edge)
        spec = dict(self.graph.specs[self.target_edge])
        return dict(spec, edge=self.target_edge, src=src, dst=dst, resolution=resolution)


def _check_networks(config) -> None:
    for name in config.data.domains:
        if domains_lib.get(name).feature:
            raise ConfigError(f"data.domains lists {name!r}, a network's feature map with no "
                              "files: remove it (the network that computes it is enough).")
    resolution = config.data.resolution
    for key, spec in config.networks.items():
        split_edge(key)
        downsample = spec.get("downsample", 0)
        if downsample and resolution % 2**downsample:
            raise ConfigError(
                f"data.resolution={resolution} is not divisible by 2^{downsample} = "
                f"{2**downsample}, as networks[{key!r}] (downsample={downsample}) needs. "
                f"Use a multiple of {2**downsample}, e.g. {2**downsample * 4}."
            )
    unknown = [e for e in config.freeze if e not in config.networks]
    if unknown:
        raise ConfigError(f"freeze names unconfigured networks: {unknown}.")


def make_plan(config) -> Plan:
    """Checks `config` before any compilation and returns its Plan (ConfigError if invalid)."""
    _check_networks(config)
    graph = TaskGraph(config.networks, config.compute.dtype, config.compute.remat)
    graph.check_paths(config.paths, config.data.domains)
    terms = loss_terms(config)
    perceptual = sorted(t.perceptual_name for t in terms.values() if t.kind == "percep")
    if not 0 <= config.selection.k <= len(perceptual):
        raise ConfigError(
            f"selection.k={config.selection.k}, but the config has {len(perceptual)} perceptual "
            f"losses ({', '.join(perceptual) or 'none'})."
        )
    weighting.check_strategy(config.selection.weights)
    supervised = next(t for t in terms.values() if t.kind == "mae")
    target_edge = path_edges(config.paths[supervised.pred])[-1]
    frozen_edges = tuple(edge_key(*split_edge(e)) for e in config.freeze)
    if target_edge in frozen_edges:
        raise ConfigError(f"the supervised network {target_edge!r} is in freeze; unfreeze it.")
    frozen.check_checkpoints(config)
    used = {e for path in config.paths.values() for e in path_edges(path)}
    trainable = tuple(e for e in graph.edges if e in used and e not in frozen_edges
                      and graph.specs[e]["arch"] != "sobel")  # fmt: skip
    return Plan(
        graph=graph,
        terms=terms,
        supervised=supervised,
        target_edge=target_edge,
        trainable=trainable,
        frozen=frozen_edges,
        paths={name: canonical_path(path) for name, path in config.paths.items()},
        denominator=config.loss.denominator,
        weighting=config.selection.weights,
    )
