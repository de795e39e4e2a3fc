"""The multi-task training step: the four xtask losses grouped by source branch, then weighted.

Losses (xtask_mt.md §1.5-1.6; ŝ, d̂ direct, s̃ = d2s(d̂), d̃ = s2d(ŝ), sg = stop-gradient):
  seg group    (1 − λ₁)·CE(ŝ, labels)       + λ₁·L_tdepth(d̃, sg(d̂))  [GT-depth mask]
  depth group  (1 − λ₂)·L_depth(d̂, depth)   + λ₂·L_tseg(s̃, argmax sg(ŝ))  [GT-seg mask]
  normal       1 − cos(n̂, normal)            (NYUv2's third task, when configured)
Without the transfer nets the groups are the direct losses. The direct seg loss takes
label smoothing with loss.seg_label_smoothing (default 0: the original's plain CE).
The targets of the transferred losses are stop-gradient copies of the direct predictions, so a
transferred loss trains the transfer net and, through its input, the other
branch. The weighting strategy (`losses/task_weighting.py`) turns the group
losses into the update; BatchNorm's statistics come out of the same forward.
"""

from __future__ import annotations

from collections.abc import Mapping

import jax
import jax.numpy as jnp
import optax

from xtc_jax.losses import task_weighting, xtask
from xtc_jax.mtl.model import preprocess

Array = jax.Array


def task_names(config) -> tuple[str, ...]:
    """The loss groups, in the model's task order."""
    return tuple(config.model.tasks)


def direct_losses(config, out: Mapping[str, Array], batch: Mapping[str, Array]) -> dict:
    """The direct loss of each task the model predicts."""
    losses = {}
    if "seg" in out:
        smoothing = config.loss.get("seg_label_smoothing", 0.0)
        if smoothing:
            losses["seg"] = xtask.label_smoothing_ce(out["seg"], batch["seg"],
                                                     batch["seg"] != xtask.IGNORE, smoothing)
        else:
            losses["seg"] = xtask.segmentation_ce(out["seg"], batch["seg"])
    if "depth" in out:
        losses["depth"] = xtask.depth_loss(config.loss.depth, out["depth"], batch["depth"],
                                           batch["depth_mask"])  # fmt: skip
    if "normal" in out:
        losses["normal"] = xtask.normal_cosine(out["normal"], batch["normal"],
                                               batch["normal_mask"] > 0)  # fmt: skip
    return losses


def transferred_losses(config, out: Mapping[str, Array], batch: Mapping[str, Array]) -> dict:
    """L_tdepth and L_tseg against the stop-gradient direct predictions."""
    depth_target = jax.lax.stop_gradient(out["depth"])
    if config.loss.transferred_depth == "ssim":
        tdepth = xtask.masked_ssim(out["tdepth"], depth_target, batch["depth_mask"])
    else:
        tdepth = xtask.depth_loss("l1", out["tdepth"], depth_target, batch["depth_mask"])
    seg_target = jax.lax.stop_gradient(out["seg"])
    labelled = batch["seg"] != xtask.IGNORE
    if config.loss.transferred_seg == "kl":
        tseg = xtask.soft_kl(out["tseg"], seg_target, labelled)
    else:
        tseg = xtask.label_smoothing_ce(out["tseg"], jnp.argmax(seg_target, axis=-1), labelled,
                                        config.loss.label_smoothing)  # fmt: skip
    return {"tdepth": tdepth, "tseg": tseg}


def group_losses(config, out: Mapping[str, Array], batch: Mapping[str, Array]
                 ) -> tuple[Array, dict[str, Array]]:  # fmt: skip
    """(the (T,) group losses in task order, every named loss for the log)."""
    named = direct_losses(config, out, batch)
    groups = dict(named)
    if "tseg" in out:
        named.update(transferred_losses(config, out, batch))
        l1, l2 = config.loss.lambda_1, config.loss.lambda_2
        groups["seg"] = (1 - l1) * named["seg"] + l1 * named["tdepth"]
        groups["depth"] = (1 - l2) * named["depth"] + l2 * named["tseg"]
    if "normal" in groups:
        groups["normal"] = config.loss.normal_weight * groups["normal"]
    return jnp.stack([groups[t] for t in task_names(config)]), named


def weighting_options(config, epoch_steps: int, shared: str = "encoder") -> dict:
    """The strategy's options: the config's, plus what the step knows."""
    from xtc_jax.mtl.model import gradnorm_layer

    options = dict(config.weighting_options.to_dict())
    options.update(layer=gradnorm_layer(config), epoch_steps=epoch_steps, shared=shared,
                   learning_rate=config.optimizer.learning_rate)  # fmt: skip
    options["weights"] = tuple(options.get("weights") or ())
    return options


def make_train_step(config, model, optimizer: optax.GradientTransformation, options: dict):
    """step(state, constants, batch) -> (state, metrics), pure; the loop jits it."""
    strategy = task_weighting.get(config.weighting)
    tasks = task_names(config)
    normalize = config.model.imagenet_normalize

    def step(state, constants, batch):
        del constants
        rng, step_rng = jax.random.split(state["rng"])
        x = preprocess(batch["rgb"], normalize)

        def losses_fn(params):
            variables = {"params": params, "batch_stats": state["batch_stats"]}
            out, updates = model.apply(variables, x, train=True, mutable=["batch_stats"])
            losses, named = group_losses(config, out, batch)
            return losses, (named, updates["batch_stats"])

        ctx = task_weighting.Context(losses_fn, state["params"], state["weighting"],
                                     state["step"], step_rng, options)  # fmt: skip
        combined = strategy.combine(ctx)
        updates, opt_state = optimizer.update(combined.grads, state["opt_state"], state["params"])
        named, batch_stats = combined.aux
        new_state = dict(state, step=state["step"] + 1, rng=rng, opt_state=opt_state,
                         params=optax.apply_updates(state["params"], updates),
                         batch_stats=batch_stats, weighting=combined.state)  # fmt: skip
        metrics = {f"loss_{k}": v for k, v in named.items()}
        metrics["loss"] = jnp.sum(combined.losses)
        metrics.update({f"weight_{t}": combined.weights[i] for i, t in enumerate(tasks)})
        return new_state, metrics

    return step


def make_optimizer(config, epoch_steps: int) -> optax.GradientTransformation:
    """Adam (β = (0.9, 0.99)) with StepLR: the rate × decay every decay_every_epochs epochs."""
    from xtc_jax.errors import ConfigError

    opt = config.optimizer
    if opt.name != "adam":
        raise ConfigError(f'optimizer.name={opt.name!r}: the multi-task method uses "adam".')
    schedule = optax.exponential_decay(
        opt.learning_rate, transition_steps=max(1, opt.decay_every_epochs * epoch_steps),
        decay_rate=opt.decay, staircase=True,
    )  # fmt: skip
    return optax.adam(schedule, b1=opt.b1, b2=opt.b2)
