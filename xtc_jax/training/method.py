"""What a training method gives the loop (`loop.train_and_evaluate`).

A method (consistency, the multi-task model, a taxonomy transfer) owns its
networks, losses and metrics; the loop owns steps, the mesh, checkpoints,
evaluation cadence, logging, preemption and the non-finite guard. The loop
calls, in this order:

  train_data()                  once: a Grain pipeline; iter() gives a checkpointable iterator
  init_state(rng)               once: the trainable state, a pytree of host arrays
  constants()                   once: inputs of every step that are never updated (e.g.
                                frozen networks): not donated, no optimizer state
  restore_meta(meta)            after a checkpoint restore: the method's host-side state
  step_variant(step, state)     every step: (key, state); key picks the compiled step
                                (a method may have several, e.g. one per chosen loss subset)
  make_step(key)                once per key: step(state, constants, batch) -> (state, metrics),
                                pure, jitted by the loop with the state donated
  evaluate(state, constants, step, writer)   at the evaluation cadence: {name: float}
  checkpoint_meta()             at every save: JSON-able host-side state
  export(state, directory)      at the end: the trained model for inference
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable
from typing import Any, Protocol

import jax

State = Any
StepFn = Callable[[State, Any, dict], tuple[State, dict[str, jax.Array]]]


class Method(Protocol):
    """A training method run by `training.loop.train_and_evaluate`."""

    def describe(self) -> str:
        """What is trained, for the run's first log line: "training {describe()} for N steps"."""
        ...

    def train_data(self) -> Iterable[dict]:
        ...

    def init_state(self, rng: jax.Array) -> State:
        ...

    def constants(self) -> Any:
        ...

    def step_variant(self, step: int, state: State) -> tuple[Hashable, State]:
        ...

    def make_step(self, key: Hashable) -> StepFn:
        ...

    def evaluate(self, state: State, constants: Any, step: int, writer) -> dict[str, float]:
        ...

    def checkpoint_meta(self) -> dict:
        ...

    def restore_meta(self, meta: dict) -> None:
        ...

    def export(self, state: State, directory: str) -> None:
        ...
