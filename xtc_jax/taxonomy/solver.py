"""Stage IV: the supervision BIP over the transfer hypergraph (taskonomy.md §4.4), with HiGHS.

Binary variables: one per candidate transfer e = (sources → target) and one per
task that may be a source (a "root": trained with full supervision). Maximise

    Σ_e r_t(e)·v(e)·x_e + Σ_{s ∈ S∩T} r_s·v(self → s)·y_s

subject to
  1. sources first: x_e ≤ y_s for every source s of e (transfers do not chain);
  2. coverage: every target t is solved exactly once, Σ_{e → t} x_e + y_t = 1
     (y_t only when t may be a source); source-only tasks are roots or unused;
  3. budget: Σ c_s·y_s + Σ c_e·x_e ≤ budget (supervision and transfer costs);
  4. order: only transfers with at most max_order sources, all of them possible
     sources, into a wanted target that is not among its own sources, are candidates.
v is the chosen table (affinity, gain or quality) keyed "s1__s2__target" as
Taskonomy's released files, with "self__t" the value of t's own fully supervised
network. The original square-rooted the affinities (after clipping to [1e-5, 1])
without saying so; here that is `sqrt_values=True`, off by default.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import numpy as np
from scipy import optimize, sparse

from xtc_jax.errors import ConfigError

SELF = "self"


@dataclasses.dataclass(frozen=True)
class Transfer:
    sources: tuple[str, ...]
    target: str
    value: float


@dataclasses.dataclass(frozen=True)
class Policy:
    roots: list[str]
    transfers: dict[str, list[str]]  # target -> its sources (targets solved as roots absent)
    objective: float
    cost: float
    budget: float

    def to_json(self) -> dict:
        return {"roots": self.roots, "transfers": self.transfers, "objective": self.objective,
                "budget": self.budget, "cost": self.cost}  # fmt: skip


def parse_key(key: str) -> tuple[tuple[str, ...], str]:
    """"s1__s2__target" -> (("s1", "s2"), "target")."""
    parts = key.split("__")
    if len(parts) < 2 or not all(parts):
        raise ConfigError(f"affinity key {key!r}: expected 'source__target' or "
                          "'source1__source2__target'.")  # fmt: skip
    return tuple(parts[:-1]), parts[-1]


@dataclasses.dataclass
class Problem:
    """A supervision problem: which tasks are wanted (targets), which may be trained (sources)."""

    values: Mapping[str, float]
    targets: Sequence[str]
    sources: Sequence[str]
    budget: float
    max_order: int = 5
    importance: Mapping[str, float] = dataclasses.field(default_factory=dict)
    supervision_cost: float | Mapping[str, float] = 1.0
    transfer_cost: float | Mapping[str, float] = 0.0
    sqrt_values: bool = False

    def value(self, key: str) -> float:
        v = float(self.values[key])
        return float(np.sqrt(np.clip(v, 1e-5, 1.0))) if self.sqrt_values else v

    def candidates(self) -> list[Transfer]:
        """The transfers the program may choose (constraint 4)."""
        targets, sources = set(self.targets), set(self.sources)
        out = []
        for key in self.values:
            srcs, target = parse_key(key)
            if SELF in srcs or target not in targets or target in srcs:
                continue
            if len(srcs) > self.max_order or not set(srcs) <= sources:
                continue
            out.append(Transfer(srcs, target, self.value(key)))
        return sorted(out, key=lambda e: (e.target, e.sources))

    def root_value(self, task: str) -> float:
        if task not in self.targets:
            return 0.0  # a source-only task is worth nothing by itself
        key = f"{SELF}__{task}"
        if key not in self.values:
            raise ConfigError(f"the values have no {key!r}: the worth of training {task} with "
                              f"full supervision is unknown; add {key} to the table or drop {task} "
                              "from the sources.")  # fmt: skip
        return self.value(key)


def cost_of(cost: float | Mapping[str, float], task: str) -> float:
    """A task's cost: one number for every task, or a {task: cost} map (1 if absent)."""
    return float(cost.get(task, 1.0) if isinstance(cost, Mapping) else cost)


def _check(problem: Problem) -> None:
    if problem.max_order < 1:
        raise ConfigError(f"max_order={problem.max_order}: allow at least 1 source per transfer.")
    if not problem.targets:
        raise ConfigError("no targets: name at least one task to solve.")
    unknown = [t for t in problem.importance if t not in problem.targets]
    if unknown:
        raise ConfigError(f"importance given for {', '.join(unknown)}, which are not targets.")


def solve(problem: Problem) -> Policy:
    """The optimal policy; ConfigError naming the failing constraint when there is none."""
    _check(problem)
    edges = problem.candidates()
    roots = list(dict.fromkeys(problem.sources))
    targets = list(dict.fromkeys(problem.targets))
    for t in targets:
        if t not in roots and not any(e.target == t for e in edges):
            raise ConfigError(f"target {t} cannot be covered: it is not a source (target-only) and "
                              f"no candidate transfer of at most {problem.max_order} sources "
                              "reaches it from the sources; add sources or transfers into it.")
    n_e, n = len(edges), len(edges) + len(roots)
    root_index = {s: n_e + i for i, s in enumerate(roots)}
    importance = {t: float(problem.importance.get(t, 1.0)) for t in targets}
    gain = np.zeros(n)
    for i, e in enumerate(edges):
        gain[i] = importance[e.target] * e.value
    for s in roots:
        gain[root_index[s]] = importance.get(s, 0.0) * problem.root_value(s)
    rows, lower, upper = [], [], []
    for i, e in enumerate(edges):  # 1. x_e - y_s <= 0
        for s in e.sources:
            row = np.zeros(n)
            row[i], row[root_index[s]] = 1.0, -1.0
            rows.append(row), lower.append(-np.inf), upper.append(0.0)
    for t in targets:  # 2. exactly one way to solve t
        row = np.zeros(n)
        row[[i for i, e in enumerate(edges) if e.target == t]] = 1.0
        if t in root_index:
            row[root_index[t]] = 1.0
        rows.append(row), lower.append(1.0), upper.append(1.0)
    cost = np.zeros(n)  # 3. budget
    for i, e in enumerate(edges):
        cost[i] = cost_of(problem.transfer_cost, e.target)
    for s in roots:
        cost[root_index[s]] = cost_of(problem.supervision_cost, s)
    constraints = [optimize.LinearConstraint(sparse.csr_array(np.array(rows)), lower, upper),
                   optimize.LinearConstraint(cost[None], -np.inf, problem.budget)]  # fmt: skip
    result = optimize.milp(-gain, constraints=constraints, integrality=np.ones(n),
                           bounds=optimize.Bounds(0, 1))  # fmt: skip
    if result.status == 2:  # infeasible: only the budget can be at fault after the checks above
        cheapest = optimize.milp(cost, constraints=constraints[:1], integrality=np.ones(n),
                                 bounds=optimize.Bounds(0, 1))  # fmt: skip
        need = "no policy at all" if cheapest.status != 0 else f"{cheapest.fun:g}"
        raise ConfigError(f"budget {problem.budget:g} is too small: the cheapest policy that "
                          f"solves every target ({', '.join(targets)}) costs {need}.")
    if result.status != 0:
        raise ConfigError(f"the solver failed: {result.message}")
    x = np.round(result.x).astype(bool)
    chosen_roots = [s for s in roots if x[root_index[s]]]
    transfers = {e.target: list(e.sources) for i, e in enumerate(edges) if x[i]}
    return Policy(chosen_roots, transfers, float(gain @ x), float(cost @ x), problem.budget)
