"""Stage I: one task-specific network (encoder + decoder) as a `training.method.Method`.

Every task uses the same `TaskEncoder` architecture and the same fixed-size
representation; its decoder outputs the task's target. State: params {"encoder",
"decoder"}, Adam state, the rng (for the denoising task's noise). Evaluation: the
mean per-image loss on the first `train.eval_batches` batches of the validation
split (`training/evaluator.py`). Export: the params and a model.json naming the task.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

from xtc_jax.data import pipeline
from xtc_jax.infra import export as export_lib
from xtc_jax.models.taskonomy_net import TaskDecoder, TaskEncoder
from xtc_jax.taxonomy import tasks as tasks_lib
from xtc_jax.training.evaluator import Evaluator


class TaskNetworkMethod:
    """Trains the task-specific network of `task` on `train_source`."""

    def __init__(self, config, task: str, train_source, val_source,
                 log: Callable[[str], None]):  # fmt: skip
        self.config = config
        self.task = tasks_lib.get(task)
        self.train_source = train_source
        self.log = log
        width = config.model.width
        self.encoder = TaskEncoder(width, config.model.rep_channels)
        self.decoder = TaskDecoder(self.task.channels, width)
        self.domains = tasks_lib.domains_needed([task])
        self.optimizer = optax.adam(config.optimizer.learning_rate)
        res = config.data.resolution

        def metric_fn(params, batch):
            return {"loss": self.task.per_image_loss(self.apply(params, batch["rgb"]), batch)}

        self.evaluator = Evaluator(val_source, self.domains, res, config.batch_size,
                                   config.train.eval_batches, metric_fn, seed=config.seed)

    def apply(self, params, x):
        rep = self.encoder.apply({"params": params["encoder"]}, x)
        return self.decoder.apply({"params": params["decoder"]}, rep)

    def describe(self) -> str:
        return f"the task-specific network of {self.task.name}"

    def train_data(self):
        c = self.config
        return pipeline.make_dataset(self.train_source, self.domains, c.data.resolution,
                                     c.batch_size, c.seed, augment=False,
                                     worker_count=c.data.worker_count)  # fmt: skip

    def init_state(self, rng: jax.Array) -> dict:
        enc_rng, dec_rng, rng = jax.random.split(rng, 3)
        res = self.config.data.resolution
        x = jnp.zeros((1, res, res, 3))
        encoder = jax.jit(self.encoder.init)(enc_rng, x)["params"]
        r = self.encoder.apply({"params": encoder}, x)
        decoder = jax.jit(self.decoder.init)(dec_rng, r)["params"]
        params = {"encoder": encoder, "decoder": decoder}
        return {"step": np.int32(0), "rng": rng, "params": params,
                "opt_state": self.optimizer.init(params)}  # fmt: skip

    def constants(self) -> dict:
        return {}

    def step_variant(self, step: int, state: dict):
        return "train", state

    def make_step(self, key):
        task, optimizer = self.task, self.optimizer

        def step(state, constants, batch):
            del constants
            rng, noise_rng = jax.random.split(state["rng"])

            def loss_fn(params):
                pred = self.apply(params, task.inputs(batch["rgb"], noise_rng))
                return jnp.mean(task.per_image_loss(pred, batch))

            loss, grads = jax.value_and_grad(loss_fn)(state["params"])
            updates, opt_state = optimizer.update(grads, state["opt_state"], state["params"])
            return (dict(state, step=state["step"] + 1, rng=rng, opt_state=opt_state,
                         params=optax.apply_updates(state["params"], updates)),
                    {"loss": loss})  # fmt: skip

        return step

    def evaluate(self, state, constants, step: int, writer) -> dict[str, float]:
        return self.evaluator(state["params"], step, writer, self.log)

    def checkpoint_meta(self) -> dict:
        return {}

    def restore_meta(self, meta: dict) -> None:
        del meta

    def export(self, state, directory: str) -> None:
        export_lib.export_model(directory, jax.device_get(state["params"]), {
            "arch": "taskonomy_task", "task": self.task.name, "width": self.config.model.width,
            "rep_channels": self.config.model.rep_channels,
            "resolution": self.config.data.resolution})  # fmt: skip
