"""Consistency training as a `training.method.Method`: one target network, frozen F_K, k of n.

The state is the trainable networks' params, their optimizer state, the rng
and the win-rate statistics; the frozen networks are the loop's constants.
Every epoch (train.steps_per_epoch, or the original's N / (400 * batch)
steps) the k perceptual losses are re-chosen (by win-rate or at random) and
the step compiled for that subset is the step variant; the choice and the
latest win-rates are the method's checkpoint meta. A single-edge transfer
is the same method with no perceptual terms.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import numpy as np

from xtc_jax.consistency import frozen, selection
from xtc_jax.consistency.plan import Plan, make_plan
from xtc_jax.consistency.step import make_train_step
from xtc_jax.data import pipeline, prepare
from xtc_jax.infra import export as export_lib
from xtc_jax.infra import workdir as workdir_lib
from xtc_jax.training import metrics as metrics_lib
from xtc_jax.training import optim
from xtc_jax.training.evaluator import Evaluator
from xtc_jax.training.loop import train_and_evaluate


def steps_per_epoch(config, examples: int) -> int:
    """config.train.steps_per_epoch, or the original's N / (400 * batch) (at least 1)."""
    return config.train.steps_per_epoch or max(1, examples // (400 * config.batch_size))


def _evaluator(config, plan: Plan, source, workdir: str) -> Evaluator:
    """The target network's held-out metrics, and image grids of the config's plot paths."""
    supervised = plan.supervised
    pred, target = plan.paths[supervised.pred], plan.paths[supervised.target]

    def metric_fn(params, batch):
        values = plan.graph.evaluate(params, batch, {"pred": pred, "target": target})
        return metrics_lib.target_metrics(values["pred"], values["target"], supervised.domain)

    plots = {p: plan.paths[p] for p in config.plots}
    return Evaluator(
        source, config.data.domains, config.data.resolution, config.batch_size,
        config.train.eval_batches, metric_fn,
        plot_fn=lambda params, batch: plan.graph.evaluate(params, batch, plots),
        plot_names=list(config.plots), plot_dir=workdir_lib.plots(workdir), seed=config.seed,
    )  # fmt: skip


class ConsistencyMethod:
    """rgb -> target trained with its direct loss and the chosen perceptual losses.

    Building it validates the config (`make_plan`), prepares the data and
    loads the frozen networks, which must exist (the experiment trains
    missing ones first).
    """

    def __init__(self, config, workdir: str, log: Callable[[str], None]):
        self.config = config
        self.workdir = workdir
        self.log = log
        self.plan = make_plan(config)
        location = prepare.data_location(config.data, workdir)
        self.train_source = prepare.labelled_subset(
            prepare.open_split(config.data, location, config.data.train_split),
            config.data.get("train_examples", 0),
        )
        val_source = prepare.open_split(config.data, location, config.data.val_split)
        self.frozen = frozen.load(config, self.plan.graph, self.plan.frozen, workdir)
        self.optimizer = optim.make_optimizer(config.optimizer)
        self.epoch_steps = steps_per_epoch(config, len(self.train_source))
        self.chosen: tuple[str, ...] = ()
        self.winrates: dict[str, float] = {}
        self._start: int | None = None  # the first step this process runs
        self.evaluator = _evaluator(config, self.plan, val_source, workdir)

    def describe(self) -> str:
        return (f"{self.plan.target_edge} ({len(self.plan.trainable)} trainable, "
                f"{len(self.plan.frozen)} frozen networks, epoch = {self.epoch_steps} steps)")

    def train_data(self):
        config = self.config
        return pipeline.make_dataset(
            self.train_source, list(config.data.domains), config.data.resolution,
            config.batch_size, config.seed, augment=config.data.augment,
            worker_count=config.data.worker_count, on_error=config.data.on_error,
        )  # fmt: skip

    def init_state(self, rng: jax.Array) -> dict:
        params = self.plan.graph.init(rng, self.config.data.resolution, self.plan.trainable)
        if self.config.train.init_from:
            loaded, _ = export_lib.load_exported(self.config.train.init_from)
            params[self.plan.target_edge] = loaded
        return {
            "step": np.int32(0),
            "params": params,
            "opt_state": self.optimizer.init(params),
            "rng": rng,
            "winrate": selection.winrate_init(self.plan.perceptual),
        }

    def constants(self) -> dict:
        return self.frozen

    def step_variant(self, step: int, state: dict) -> tuple[tuple[str, ...], dict]:
        """The chosen subset: re-chosen at every epoch start, and on a start without one."""
        first = self._start is None
        if first:
            self._start = step
        if step % self.epoch_steps == 0 or (first and not self.chosen):
            if not first:  # an epoch ended here: its win-rates decide, then count afresh
                self.winrates = selection.latest_winrates(
                    self.winrates, selection.winrate_values(state["winrate"])
                )
                reset = selection.winrate_reset(state["winrate"])
                state = dict(state, winrate=jax.device_put(reset, state["step"].sharding))
            rng = np.random.default_rng([self.config.seed, step])
            choice = self.config.selection
            self.chosen = selection.choose_losses(self.plan.perceptual, choice.k, choice.mode,
                                                  self.winrates, rng)  # fmt: skip
        return self.chosen, state

    def make_step(self, key: tuple[str, ...]):
        return make_train_step(self.plan, key, self.optimizer)

    def evaluate(self, state, constants, step: int, writer) -> dict[str, float]:
        return self.evaluator({**constants, **state["params"]}, step, writer, self.log)

    def checkpoint_meta(self) -> dict:
        return {"chosen": list(self.chosen), "winrates": self.winrates}

    def restore_meta(self, meta: dict) -> None:
        self.chosen = tuple(meta.get("chosen") or ())
        self.winrates = dict(meta.get("winrates") or {})

    def export(self, state, directory: str) -> None:
        params = jax.device_get(state["params"][self.plan.target_edge])
        export_lib.export_model(directory, params,
                                self.plan.model_config(self.config.data.resolution))


def train(config, workdir: str, log: Callable[[str], None]) -> dict:
    """One consistency (or transfer) run of `config` in run folder `workdir`."""
    method = ConsistencyMethod(config, workdir, log)
    return train_and_evaluate(method, config.train, config.seed, workdir, log)
