"""How a multi-task step turns T task losses into one update, by strategy name (`config.weighting`).

Each strategy is one function `combine(ctx) -> Combined` registered with
`@strategy(name, init=...)`; `init(num_tasks, options)` gives its state (a
pytree carried in the train state; learnable loss weights bring their own optax
optimizer). `ctx.losses_fn(params) -> (losses[T], aux)` is the forward pass.

- "fixed": Σ wᵢ Lᵢ, weights from options["weights"] (default 1 each).
- "uncertainty": Kendall et al.'s learned log-variances s (xtask_mt.md §1.6).
  form "xtask" (default, the original): 0.5·exp(−s)·L + s with s₀ = 0; form
  "kendall" (MTAN/LibMTL): L / (2·exp(s)) + s / 2 with s₀ = −0.5. Adam with the
  model's learning rate and β = (0.9, 0.99), as the original shares its optimizer.
- "gradnorm": Chen et al.; weights w (renormalised to sum to T) with their own
  Adam; Gᵢ = ‖∂(wᵢ Lᵢ / T)/∂W‖ on one shared layer W (options["layer"], a
  "/"-path into params); targets Ḡ·rᵢ^α with rᵢ the relative inverse training
  rate against Lᵢ(0), taken once at the first step (the original overwrote it
  for a whole epoch and hard-coded α and W, §1.12 item 4). α = options["alpha"].
- "dwa": MTAN's Dynamic Weight Average: from the third epoch, λ = T·softmax(r / temp)
  with rₖ = Lₖ(t−1) / Lₖ(t−2) of the epoch-averaged training losses; computed in
  the step (options["epoch_steps"], options["temperature"] = 2).
- "pcgrad": Yu et al. as LibMTL: each task's gradient of the shared params is
  projected off every conflicting task's (random order), then summed.
- "cagrad": Liu et al. as LibMTL (c = options["calpha"] = 0.5, rescale 1): the
  simplex weights are solved in the step by projected gradient descent.

PCGrad, CAGrad and GradNorm need per-task gradients: one forward and T
backward passes (`task_gradients`, a vmap over the vjp). "Shared" params are
the subtree options["shared"] (the encoder); the others get Σ of the task
gradients, i.e. the gradient of Σ Lᵢ.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax.flatten_util import ravel_pytree

from xtc_jax.errors import ConfigError

Array = jax.Array
LossesFn = Callable[[Any], tuple[Array, Any]]


@dataclasses.dataclass(frozen=True)
class Context:
    """What a strategy sees in one step."""

    losses_fn: LossesFn  # params -> (losses (T,), aux)
    params: Any
    state: Any  # the strategy's own state
    step: Array  # int32 scalar: the step being taken (0 first)
    rng: Array
    options: Mapping[str, Any]


class Combined(NamedTuple):
    """A strategy's result: model gradients, its new state, the losses and aux, log values."""

    grads: Any
    state: Any
    losses: Array
    aux: Any
    weights: Array  # (T,) effective weight of each task's loss, for the log


@dataclasses.dataclass(frozen=True)
class Strategy:
    combine: Callable[[Context], Combined]
    init: Callable[[int, Mapping[str, Any]], Any]


STRATEGIES: dict[str, Strategy] = {}


def _no_state(num_tasks: int, options: Mapping[str, Any]) -> dict:
    del num_tasks, options
    return {}


def strategy(name: str, init: Callable[[int, Mapping[str, Any]], Any] = _no_state):
    """Registers `combine` as strategy `name` with state initialiser `init`."""

    def register(combine: Callable[[Context], Combined]) -> Callable[[Context], Combined]:
        STRATEGIES[name] = Strategy(combine, init)
        return combine

    return register


def get(name: str) -> Strategy:
    """The strategy `name`; ConfigError naming the choices otherwise."""
    if name not in STRATEGIES:
        raise ConfigError(f"weighting={name!r}: use one of {', '.join(map(repr, STRATEGIES))}.")
    return STRATEGIES[name]


def weighted_gradients(ctx: Context, weights: Array) -> Combined:
    """Σ wᵢ Lᵢ with constant weights: one backward pass."""
    def total(params):
        losses, aux = ctx.losses_fn(params)
        return jnp.sum(jax.lax.stop_gradient(weights) * losses), (losses, aux)

    grads, (losses, aux) = jax.grad(total, has_aux=True)(ctx.params)
    return Combined(grads, ctx.state, losses, aux, weights)


def task_gradients(losses_fn: LossesFn, params: Any) -> tuple[Array, Any, Any]:
    """(losses (T,), aux, per-task gradients: params' pytree with a leading T axis)."""
    losses, vjp, aux = jax.vjp(losses_fn, params, has_aux=True)
    (grads,) = jax.vmap(vjp)(jnp.eye(losses.shape[0], dtype=losses.dtype))
    return losses, aux, grads


def _split_shared(grads: Any, shared: str) -> tuple[Any, Any]:
    """(the shared subtree of stacked grads, the rest summed over tasks)."""
    if shared not in grads:
        raise ConfigError(f"weighting: the shared params {shared!r} are not in the model "
                          f"(it has {', '.join(grads)}).")  # fmt: skip
    rest = {k: jax.tree.map(lambda g: jnp.sum(g, axis=0), v) for k, v in grads.items()
            if k != shared}  # fmt: skip
    return grads[shared], rest


def _with_shared(rest: dict, shared: str, flat: Array, unravel) -> dict:
    return {**rest, shared: unravel(flat)}


def _ravel_tasks(tree: Any) -> tuple[Array, Callable]:
    """Stacked per-task pytree -> (T, P) matrix and the unravel of one row."""
    one = jax.tree.map(lambda g: g[0], tree)
    _, unravel = ravel_pytree(one)
    flat = jax.vmap(lambda t: ravel_pytree(t)[0])(tree)
    return flat, unravel


@strategy("fixed")
def fixed(ctx: Context) -> Combined:
    weights = ctx.options.get("weights") or ()
    return weighted_gradients(ctx, _weights_array(weights, ctx))


def _weights_array(weights, ctx: Context) -> Array:
    losses_shape = jax.eval_shape(lambda p: ctx.losses_fn(p)[0], ctx.params).shape
    if not weights:
        return jnp.ones(losses_shape, jnp.float32)
    if len(weights) != losses_shape[0]:
        raise ConfigError(f"weighting_options.weights has {len(weights)} values for "
                          f"{losses_shape[0]} tasks: give one per task.")  # fmt: skip
    return jnp.asarray(weights, jnp.float32)


# --- Uncertainty weighting.

UNCERTAINTY_FORMS = {"xtask": 0.0, "kendall": -0.5}  # form -> initial log-variance


def _adam(options: Mapping[str, Any]) -> optax.GradientTransformation:
    return optax.adam(options.get("learning_rate", 1e-4), b1=0.9, b2=0.99)


def _init_uncertainty(num_tasks: int, options: Mapping[str, Any]) -> dict:
    form = options.get("form", "xtask")
    if form not in UNCERTAINTY_FORMS:
        raise ConfigError(f"weighting_options.form={form!r}: use one of "
                          f"{', '.join(UNCERTAINTY_FORMS)}.")  # fmt: skip
    s = jnp.full((num_tasks,), UNCERTAINTY_FORMS[form], jnp.float32)
    return {"log_var": s, "opt": _adam(options).init(s)}


def uncertainty_total(losses: Array, log_var: Array, form: str) -> Array:
    """The uncertainty-weighted total of `losses` for log-variances `log_var`."""
    if form == "kendall":
        return jnp.sum(losses / (2 * jnp.exp(log_var)) + log_var / 2)
    return jnp.sum(0.5 * jnp.exp(-log_var) * losses + log_var)


@strategy("uncertainty", init=_init_uncertainty)
def uncertainty(ctx: Context) -> Combined:
    form = ctx.options.get("form", "xtask")

    def total(params, log_var):
        losses, aux = ctx.losses_fn(params)
        return uncertainty_total(losses, log_var, form), (losses, aux)

    log_var = ctx.state["log_var"]
    (grads, grad_s), (losses, aux) = jax.grad(total, argnums=(0, 1), has_aux=True)(
        ctx.params, log_var
    )
    updates, opt = _adam(ctx.options).update(grad_s, ctx.state["opt"], log_var)
    state = {"log_var": optax.apply_updates(log_var, updates), "opt": opt}
    return Combined(grads, state, losses, aux, 0.5 * jnp.exp(-log_var))  # both forms


# --- GradNorm.


def _init_gradnorm(num_tasks: int, options: Mapping[str, Any]) -> dict:
    w = jnp.ones((num_tasks,), jnp.float32)
    return {"w": w, "initial_losses": jnp.ones((num_tasks,), jnp.float32),
            "opt": _adam(options).init(w)}  # fmt: skip


def _subtree(tree: Any, path: str) -> Any:
    node = tree
    for part in path.split("/"):
        if not isinstance(node, Mapping) or part not in node:
            raise ConfigError(f"weighting_options.layer={path!r}: no {part!r} in the params "
                              f"(there: {', '.join(node) if isinstance(node, Mapping) else '-'}).")
        node = node[part]
    return node


def gradnorm_loss(w: Array, layer_norms: Array, losses: Array, initial_losses: Array,
                  alpha: float) -> Array:  # fmt: skip
    """Σ |Gᵢ − sg(Ḡ·rᵢ^α)| with Gᵢ = ŵᵢ·‖∂Lᵢ/∂W‖ / T and ŵ = w·T/Σw."""
    t = w.shape[0]
    normalised = w * t / jnp.sum(w)
    g = normalised * layer_norms / t
    ratio = losses / initial_losses
    r = ratio / jnp.mean(ratio)
    target = jax.lax.stop_gradient(jnp.mean(g) * r**alpha)
    return jnp.sum(jnp.abs(g - target))


@strategy("gradnorm", init=_init_gradnorm)
def gradnorm(ctx: Context) -> Combined:
    losses, aux, grads = task_gradients(ctx.losses_fn, ctx.params)
    state = ctx.state
    t = losses.shape[0]
    initial = jnp.where(ctx.step == 0, jax.lax.stop_gradient(losses), state["initial_losses"])
    layer = _subtree(grads, ctx.options["layer"])
    layer_norms = jnp.sqrt(sum(jnp.sum(jnp.square(g).reshape(t, -1), axis=1)
                               for g in jax.tree.leaves(layer)))  # fmt: skip
    weights = state["w"] * t / jnp.sum(state["w"])
    alpha = ctx.options.get("alpha", 0.16)
    grad_w = jax.grad(gradnorm_loss)(state["w"], layer_norms, losses, initial, alpha)
    updates, opt = _adam(ctx.options).update(grad_w, state["opt"], state["w"])
    model_grads = jax.tree.map(lambda g: jnp.tensordot(weights / t, g, axes=1), grads)
    new_state = {"w": optax.apply_updates(state["w"], updates), "initial_losses": initial,
                 "opt": opt}  # fmt: skip
    return Combined(model_grads, new_state, losses, aux, weights / t)


# --- Dynamic Weight Average.


def _init_dwa(num_tasks: int, options: Mapping[str, Any]) -> dict:
    del options
    zeros = jnp.zeros((num_tasks,), jnp.float32)
    return {"weights": jnp.ones((num_tasks,), jnp.float32), "sum": zeros, "count": jnp.int32(0),
            "previous": jnp.stack([zeros, zeros]), "epochs": jnp.int32(0)}  # fmt: skip


def dwa_weights(previous: Array, temperature: float) -> Array:
    """T·softmax((L(t−1) / L(t−2)) / temperature) from the last two epoch averages."""
    ratio = previous[1] / jnp.where(previous[0] == 0, 1.0, previous[0])
    return previous.shape[1] * jax.nn.softmax(ratio / temperature)


@strategy("dwa", init=_init_dwa)
def dwa(ctx: Context) -> Combined:
    state = ctx.state
    epoch_steps = int(ctx.options["epoch_steps"])
    ended = (ctx.step > 0) & (ctx.step % epoch_steps == 0)
    average = state["sum"] / jnp.maximum(state["count"], 1).astype(jnp.float32)
    previous = jnp.where(ended, jnp.stack([state["previous"][1], average]), state["previous"])
    epochs = state["epochs"] + ended.astype(jnp.int32)
    weights = jnp.where(
        ended & (epochs >= 2), dwa_weights(previous, ctx.options.get("temperature", 2.0)),
        state["weights"],
    )  # fmt: skip
    combined = weighted_gradients(dataclasses.replace(ctx, state={}), weights)
    start = jnp.where(ended, 0.0, 1.0)
    new_state = {
        "weights": weights,
        "sum": state["sum"] * start + jax.lax.stop_gradient(combined.losses),
        "count": jnp.where(ended, 0, state["count"]) + 1,
        "previous": previous,
        "epochs": epochs,
    }
    return combined._replace(state=new_state)


# --- Gradient surgery: PCGrad and CAGrad.


@strategy("pcgrad")
def pcgrad(ctx: Context) -> Combined:
    losses, aux, grads = task_gradients(ctx.losses_fn, ctx.params)
    shared = ctx.options.get("shared", "encoder")
    shared_grads, rest = _split_shared(grads, shared)
    flat, unravel = _ravel_tasks(shared_grads)
    t = flat.shape[0]
    projected = []
    for i, key in enumerate(jax.random.split(ctx.rng, t)):
        g = flat[i]
        for j in jax.random.permutation(key, t):
            other = flat[j]
            dot = jnp.dot(g, other)
            g = jnp.where(dot < 0, g - dot * other / (jnp.dot(other, other) + 1e-8), g)
        projected.append(g)
    total = jnp.sum(jnp.stack(projected), axis=0)
    return Combined(_with_shared(rest, shared, total, unravel), ctx.state, losses, aux,
                    jnp.ones((t,), jnp.float32))  # fmt: skip


def project_simplex(v: Array) -> Array:
    """Euclidean projection of `v` onto the probability simplex (sort-based)."""
    n = v.shape[0]
    u = jnp.sort(v)[::-1]
    css = jnp.cumsum(u)
    k = jnp.arange(1, n + 1, dtype=v.dtype)
    rho = jnp.max(jnp.where(u - (css - 1) / k > 0, k, 0))
    theta = (jnp.take(css, rho.astype(jnp.int32) - 1) - 1) / rho
    return jnp.maximum(v - theta, 0.0)


def cagrad_objective(w: Array, gram: Array, c: Array) -> Array:
    """wᵀ·G·b + c·sqrt(wᵀ·G·w + 1e-8) with b uniform: LibMTL's CAGrad inner problem."""
    b = jnp.full_like(w, 1.0 / w.shape[0])
    return w @ gram @ b + c * jnp.sqrt(w @ gram @ w + 1e-8)


def cagrad_weights(gram: Array, c: Array, iterations: int = 300) -> Array:
    """argmin over the simplex of `cagrad_objective`, by projected gradient descent.

    The objective is homogeneous (G → sG, c → √s·c scales it by s), so G is
    normalised by its mean magnitude first and one step size fits every scale.
    """
    scale = jnp.maximum(jnp.mean(jnp.abs(gram)), 1e-20)
    gram_n, c_n = gram / scale, c / jnp.sqrt(scale)
    grad = jax.grad(cagrad_objective)
    t = gram.shape[0]

    def body(k, carry):
        w, best, best_value = carry
        w = project_simplex(w - 0.5 / jnp.sqrt(k + 1.0) * grad(w, gram_n, c_n))
        value = cagrad_objective(w, gram_n, c_n)
        better = value < best_value
        return w, jnp.where(better, w, best), jnp.where(better, value, best_value)

    w0 = jnp.full((t,), 1.0 / t, gram.dtype)
    carry = (w0, w0, cagrad_objective(w0, gram_n, c_n))
    return jax.lax.fori_loop(0, iterations, body, carry)[1]


@strategy("cagrad")
def cagrad(ctx: Context) -> Combined:
    losses, aux, grads = task_gradients(ctx.losses_fn, ctx.params)
    shared = ctx.options.get("shared", "encoder")
    calpha = ctx.options.get("calpha", 0.5)
    shared_grads, rest = _split_shared(grads, shared)
    flat, unravel = _ravel_tasks(shared_grads)
    gram = flat @ flat.T
    c = calpha * jnp.sqrt(jnp.mean(gram) + 1e-8) + 1e-8
    w = jax.lax.stop_gradient(cagrad_weights(gram, c))
    gw = w @ flat
    lam = c / (jnp.linalg.norm(gw) + 1e-8)
    total = (jnp.mean(flat, axis=0) + lam * gw) / (1 + calpha**2)
    return Combined(_with_shared(rest, shared, total, unravel), ctx.state, losses, aux, w)
