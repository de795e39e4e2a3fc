"""Evaluation of the multi-task model on a whole split, on its direct predictions.

Metrics (`training/dense_metrics.py`): mIoU and pixel accuracy from one
confusion matrix, xtask_mt's legacy per-image mIoU and accuracy, depth
absolute and relative error, normal angles when predicted; "loss", the sum
of the direct losses (model selection ranks checkpoints by it); and, when the
model has its transfer nets, xtask_mt's consistency energy
0.5·KL(softmax(ŝ) ‖ softmax(s̃)) + 0.5·mean|d̃ − d̂| per image
(`consistency_energy`), averaged as "energy".
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from xtc_jax.data import pipeline
from xtc_jax.data.mtl.example import MultiTaskTransform
from xtc_jax.mtl.model import preprocess
from xtc_jax.mtl.step import direct_losses
from xtc_jax.training import dense_metrics
from xtc_jax.training.metrics import add_sums


def consistency_energy(out: dict) -> tuple[jax.Array, jax.Array]:
    """(per-image energy (B,), per-pixel energy map (B, H, W)) of xtask_mt's EnergyLogger."""
    logp = jax.nn.log_softmax(out["seg"], axis=-1)
    logq = jax.nn.log_softmax(out["tseg"], axis=-1)
    kl = jnp.sum(jnp.exp(logp) * (logp - logq), axis=-1)
    gap = jnp.abs(out["tdepth"] - out["depth"])[..., 0]
    pixel = 0.5 * kl + 0.5 * gap
    return 0.5 * jnp.mean(kl, axis=(1, 2)) + 0.5 * jnp.mean(gap, axis=(1, 2)), pixel


def make_sums_fn(config, model, num_classes: int) -> Callable:
    """variables, batch -> additive sums of every metric of one batch."""
    has_transfer = model.transfer

    def sums_fn(variables, batch):
        x = preprocess(batch["rgb"], config.model.imagenet_normalize)
        out = model.apply(variables, x, train=False, direct_only=not has_transfer)
        size = jnp.float32(batch["rgb"].shape[0])
        losses = direct_losses(config, out, batch)
        sums = {"loss_sum": sum(losses.values()) * size, "examples": size}
        if "seg" in out:
            pred = jnp.argmax(out["seg"], axis=-1)
            sums["confusion"] = dense_metrics.confusion_matrix(pred, batch["seg"], num_classes)
            sums.update(dense_metrics.legacy_sums(pred, batch["seg"], num_classes))
        if "depth" in out:
            sums.update(dense_metrics.depth_error_sums(out["depth"], batch["depth"]))
        if "normal" in out:
            sums.update(dense_metrics.unit_normal_sums(out["normal"], batch["normal"],
                                                       batch["normal_mask"] > 0))  # fmt: skip
        if has_transfer:
            sums["energy_sum"] = jnp.sum(consistency_energy(out)[0])
        return sums

    return sums_fn


class MultiTaskEvaluator:
    """Evaluates variables on one split (every example, or the first `batches` batches)."""

    def __init__(self, config, model, source, num_classes: int, batches: int = 0):
        self.config = config
        self.source = source
        self.batches = batches
        self.batch_size = min(config.batch_size, len(source))
        self.transform = MultiTaskTransform(*config.data.size, config.data.depth_kind)
        self.sums_fn = jax.jit(make_sums_fn(config, model, num_classes))

    def metrics(self, variables) -> dict[str, float]:
        data = pipeline.make_dataset(
            self.source, (), 0, self.batch_size, self.config.seed, shuffle=False, num_epochs=1,
            drop_remainder=False, process_index=0, process_count=1, example_fn=self.transform,
            on_error=self.config.data.on_error,
        )  # fmt: skip
        total = None
        for i, batch in enumerate(data):
            if self.batches and i >= self.batches:
                break
            batch.pop(pipeline.INDEX_KEY)
            total = add_sums(total, self.sums_fn(variables, batch))
        out = dense_metrics.finish(total)
        out["loss"] = float(total["loss_sum"] / total["examples"])
        if "energy_sum" in total:
            out["energy"] = float(total["energy_sum"] / total["examples"])
        return out

    def __call__(self, variables, step: int, writer, log: Callable[[str], None]) -> dict:
        metrics = self.metrics(variables)
        writer.write_scalars(step, metrics, split="val")
        log(f"eval step {step}: " + "  ".join(f"{k} {v:.4f}" for k, v in metrics.items()
                                              if not k.startswith("normal_pct")))  # fmt: skip
        return metrics


def as_numpy(tree):
    return jax.tree.map(np.asarray, jax.device_get(tree))
