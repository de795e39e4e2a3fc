"""The jitted training step: loss terms of a config, one compiled step per chosen subset.

Loss = w_mae * L(n(x), y) + sum over the CHOSEN perceptual terms of
w_K * L(F_K(n(x)), F_K(y)) (xtconsistency.md §4.3). Only the chosen terms'
paths are evaluated, so a smaller k really saves compute and memory: each
subset gets its own compiled step (cached by the trainer), nothing is masked.
The chosen terms' "direct" partners (rgb -> K vs K) are evaluated too, without
gradient, to update the win-rate statistics.

Gradients: the per-term mean losses are one function of the trainable
params; one `jax.vjp` gives the forward pass, and the weighted gradient is
its pullback of the weight vector. With `selection.weights == "grad_ratio"`,
each term's own gradient is pulled back first (n backward passes, as the
original) and the weights w_i = (G - g_i)/((n-1) G) come from their mean
absolute values on the target network (weights are constants).

Frozen networks are an argument of their own: no gradient, no optimizer
state, not donated. The state is donated and stays replicated on the mesh.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import jax
import jax.numpy as jnp
import optax

from xtc_jax import domains as domains_lib
from xtc_jax import losses as losses_lib
from xtc_jax import selection
from xtc_jax.errors import ConfigError
from xtc_jax.graph import TaskGraph

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
        losses_lib.loss_fn(spec.loss)  # raises for unknown loss names
        domain = domains_lib.get(config.paths[spec.pred][-1]).name
        weight = float(spec.get("weight", 1.0))
        terms[name] = LossTerm(name, spec.kind, spec.pred, spec.target, spec.loss, weight, domain)
    if sum(t.kind == "mae" for t in terms.values()) != 1:
        raise ConfigError("losses: exactly one term of kind 'mae' (the supervised loss) is needed.")
    return terms


def perceptual_names(terms: Mapping[str, LossTerm]) -> tuple[str, ...]:
    return tuple(sorted(t.perceptual_name for t in terms.values() if t.kind == "percep"))


def _term_values(graph, params, batch, paths, terms, denominator) -> dict[str, jax.Array]:
    """Per-example loss [B] of each term in `terms`."""
    wanted = {n for t in terms for n in (t.pred, t.target)}
    values = graph.evaluate(params, batch, {n: paths[n] for n in wanted})
    out = {}
    for t in terms:
        target = values[t.target]
        if t.kind == "percep":
            target = jax.lax.stop_gradient(target)
        fn = losses_lib.loss_fn(t.loss)
        out[t.name] = fn(values[t.pred], target, domains_lib.get(t.domain),
                         denominator=denominator, per_example=True)  # fmt: skip
    return out


def step_terms(
    terms: Mapping[str, LossTerm], chosen: tuple[str, ...]
) -> tuple[list[LossTerm], list[LossTerm]]:
    """(optimised, direct): the supervised term and the chosen perceptual terms, which the
    gradient sees, and the chosen terms' direct partners, evaluated for the win-rates only."""
    by_suffix = {(t.kind, t.perceptual_name): t for t in terms.values()}
    mae = next(t for t in terms.values() if t.kind == "mae")
    optimised = [mae, *(by_suffix["percep", k] for k in chosen)]
    direct = [by_suffix["direct", k] for k in chosen if ("direct", k) in by_suffix]
    return optimised, direct


def make_term_means(graph: TaskGraph, config, terms: Mapping[str, LossTerm],
                    chosen: tuple[str, ...]):  # fmt: skip
    """term_means(trainable, frozen, batch) -> (mean loss of each optimised term, per-example
    losses): the function a step differentiates with respect to `trainable`."""
    paths = {k: list(v) for k, v in config.paths.items()}
    optimised, _ = step_terms(terms, chosen)

    def term_means(trainable, frozen, batch):
        params = {**frozen, **trainable}
        per_example = _term_values(graph, params, batch, paths, optimised,
                                   config.loss.denominator)  # fmt: skip
        return jnp.stack([per_example[t.name].mean() for t in optimised]), per_example

    return term_means


def make_train_step(
    graph: TaskGraph,
    config,
    terms: Mapping[str, LossTerm],
    chosen: tuple[str, ...],
    optimizer: optax.GradientTransformation,
    target_edge: str,
):
    """step(state, frozen, batch) -> (state, metrics) for the chosen perceptual terms."""
    paths = {k: list(v) for k, v in config.paths.items()}
    optimised, direct = step_terms(terms, chosen)
    denominator = config.loss.denominator
    grad_ratio = config.selection.weights == "grad_ratio" and len(optimised) > 1
    term_means = make_term_means(graph, config, terms, chosen)

    def step(state, frozen, batch):
        means, pullback, per_example = jax.vjp(
            lambda trainable: term_means(trainable, frozen, batch), state["params"], has_aux=True
        )
        fixed = jnp.asarray([t.weight for t in optimised], jnp.float32)
        if grad_ratio:
            eye = jnp.eye(len(optimised), dtype=means.dtype)
            own = [pullback(eye[i])[0] for i in range(len(optimised))]
            g = {t.name: losses_lib.mean_abs_grad(own[i][target_edge])
                 for i, t in enumerate(optimised)}  # fmt: skip
            ratio = losses_lib.grad_ratio_weights(g)
            weights = fixed * jnp.stack([ratio[t.name] for t in optimised])
            grads = jax.tree.map(lambda *gs: sum(w * x for w, x in zip(weights, gs, strict=True)),
                                 *own)  # fmt: skip
        else:
            weights = fixed
            (grads,) = pullback(weights)
        updates, opt_state = optimizer.update(grads, state["opt_state"], state["params"])
        params = optax.apply_updates(state["params"], updates)

        winrate = state["winrate"]
        metrics = {f"loss/{t.name}": means[i] for i, t in enumerate(optimised)}
        metrics["loss/total"] = jnp.dot(weights, means)
        if direct:
            all_params = {**frozen, **params}
            direct_values = _term_values(graph, all_params, batch, paths, direct, denominator)
            for t in direct:
                k = t.perceptual_name
                winrate = selection.winrate_update(
                    winrate, k, per_example[f"percep_{k}"], direct_values[t.name]
                )
                metrics[f"loss/{t.name}"] = direct_values[t.name].mean()
        new_state = dict(state, params=params, opt_state=opt_state, winrate=winrate,
                         step=state["step"] + 1)  # fmt: skip
        return new_state, metrics

    return step
