"""The multi-task model as a `training.method.Method`: one jitted step, no constants.

State: step, rng, params, batch_stats (BatchNorm's running averages), the
optimizer state and the weighting strategy's state (learned loss weights,
GradNorm's reference losses, DWA's epoch averages). Evaluation runs the
validation split's direct predictions (`mtl/evaluate.py`); the loop keeps the
checkpoints with the lowest validation "loss", and `train` returns the best
one's test metrics. The export is {params, batch_stats} and a model.json that
rebuilds the network.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import numpy as np

from xtc_jax.data import pipeline
from xtc_jax.data.mtl import sources
from xtc_jax.data.mtl.example import MultiTaskTransform
from xtc_jax.infra import checkpoint as ckpt_lib
from xtc_jax.infra import export as export_lib
from xtc_jax.infra import sharding
from xtc_jax.infra import workdir as workdir_lib
from xtc_jax.losses import task_weighting
from xtc_jax.mtl import model as model_lib
from xtc_jax.mtl.evaluate import MultiTaskEvaluator
from xtc_jax.mtl.step import make_optimizer, make_train_step, task_names, weighting_options
from xtc_jax.training.loop import train_and_evaluate


def train_settings(config, epoch_steps: int):
    """The loop's `train` section: steps from epochs; eval and checkpoints once an epoch by
    default."""
    train = config.train.copy_and_resolve_references()
    with train.unlocked():
        train.steps = train.steps or train.epochs * epoch_steps
        train.eval_every = train.eval_every or epoch_steps
        train.checkpoint_every = train.checkpoint_every or train.eval_every
    return train


class MultiTaskMethod:
    """xtask_mt's model (or a single-task or plain multi-task variant of it) on config.data."""

    def __init__(self, config, workdir: str, log: Callable[[str], None], splits: dict):
        self.config = config
        self.workdir = workdir
        self.log = log
        self.splits = splits
        self.model = model_lib.build(config)
        self.num_classes = sources.num_classes(config.data)
        batch = config.batch_size
        self.epoch_steps = config.train.steps_per_epoch or max(1, len(splits["train"]) // batch)
        self.optimizer = make_optimizer(config, self.epoch_steps)
        self.options = weighting_options(config, self.epoch_steps)
        self.evaluator = MultiTaskEvaluator(config, self.model, splits["val"], self.num_classes,
                                            config.train.eval_batches)  # fmt: skip

    def describe(self) -> str:
        c = self.config.model
        transfer = "with transfer nets" if c.transfer else "without transfer nets"
        return (f"tasks {'+'.join(c.tasks)}, ResNet-{c.encoder_depth} {transfer}, "
                f"{self.config.weighting} weighting (epoch = {self.epoch_steps} steps)")

    def train_data(self):
        config = self.config
        return pipeline.make_dataset(
            self.splits["train"], (), 0, config.batch_size, config.seed,
            augment=config.data.augment, worker_count=config.data.worker_count,
            on_error=config.data.on_error,
            example_fn=MultiTaskTransform(*config.data.size, config.data.depth_kind),
        )  # fmt: skip

    def init_state(self, rng: jax.Array) -> dict:
        init_rng, rng = jax.random.split(rng)
        variables = model_lib.init_variables(self.model, init_rng, self.config.data.size)
        if self.config.model.pretrained:
            variables = model_lib.load_pretrained_encoder(
                variables, self.config.model.pretrained, self.config.model.encoder_depth)
        strategy = task_weighting.get(self.config.weighting)
        return {
            "step": np.int32(0),
            "rng": rng,
            "params": variables["params"],
            "batch_stats": variables["batch_stats"],
            "opt_state": self.optimizer.init(variables["params"]),
            "weighting": strategy.init(len(task_names(self.config)), self.options),
        }

    def constants(self) -> dict:
        return {}

    def step_variant(self, step: int, state: dict):
        return "train", state

    def make_step(self, key):
        return make_train_step(self.config, self.model, self.optimizer, self.options)

    def evaluate(self, state, constants, step: int, writer) -> dict[str, float]:
        return self.evaluator(variables(state), step, writer, self.log)

    def checkpoint_meta(self) -> dict:
        return {}

    def restore_meta(self, meta: dict) -> None:
        del meta

    def export(self, state, directory: str) -> None:
        export_lib.export_model(directory, jax.device_get(variables(state)), export_config(
            self.config))


def variables(state: dict) -> dict:
    return {"params": state["params"], "batch_stats": state["batch_stats"]}


def export_config(config) -> dict:
    """model.json of an exported multi-task model: how to rebuild it and read its outputs."""
    return dict(arch="xtask", **model_lib.model_fields(config),
                imagenet_normalize=config.model.imagenet_normalize,
                size=list(config.data.size), dataset=config.data.dataset,
                classes=list(sources.class_names(config.data)),
                depth_kind=config.data.depth_kind)  # fmt: skip


def best_variables(method: MultiTaskMethod, run_dir: str, state_template: dict) -> tuple[dict, int]:
    """The variables of the checkpoint with the lowest validation loss, and its step."""
    checkpoints = ckpt_lib.Checkpoints(workdir_lib.checkpoints(run_dir), best_metric="loss")
    try:
        step = checkpoints.best_step() or checkpoints.latest_step()
        replicated = sharding.replicated(sharding.make_mesh())
        abstract = jax.tree.map(
            lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=replicated),
            state_template)  # fmt: skip
        state, _ = checkpoints.restore(step, abstract_state=abstract)
    finally:
        checkpoints.close()
    return variables(state), step


@dataclasses.dataclass
class RunResult:
    validation: dict
    test: dict
    best_step: int
    export: str


def train(config, workdir: str, splits: dict, log: Callable[[str], None]) -> RunResult:
    """One multi-task run in `workdir`; the test metrics are those of the best checkpoint, which
    is also what `{workdir}/export` holds."""
    method = MultiTaskMethod(config, workdir, log, splits)
    result = train_and_evaluate(method, train_settings(config, method.epoch_steps), config.seed,
                                workdir, log)  # fmt: skip
    # the state's shapes only: no second initialisation (or pretrained load) of the network
    template = jax.eval_shape(method.init_state, jax.random.PRNGKey(config.seed))
    best, step = best_variables(method, workdir, template)
    export_dir = workdir_lib.export(workdir)
    export_lib.export_model(export_dir, jax.device_get(best), export_config(config))
    test = MultiTaskEvaluator(config, method.model, splits["test"], method.num_classes).metrics(
        best)
    validation = {k: v for k, v in result.items() if isinstance(v, float)}
    log(f"best checkpoint: step {step}; test: " + "  ".join(
        f"{k} {v:.4f}" for k, v in test.items() if not k.startswith("normal_pct")))
    return RunResult(validation, test, step, export_dir)
