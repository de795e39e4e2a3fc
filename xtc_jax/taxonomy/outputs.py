"""Stages III and IV from Stage II's per-image losses: every table and figure of the taxonomy.

Per target, the candidates are its transfers (every order) and its own task network
("self"); their per-image test losses give the win-rate matrix W_t and its AHP weights,
the column of P (`tournament.py`). Gain is each candidate's win rate against the network
trained from scratch on the transfer images, quality its win rate against the task
network (taskonomy.md §4.3). Written to {workdir}/taxonomy/:
  affinities.{csv,json}  gain.{csv,json}  quality.{csv,json}   "s1__s2__target" -> value
  winrates.json          {target: {"candidates": [...], "matrix": W_t}}
  affinity_heatmap.png   P over first-order sources
  task_tree.{png,json}   the task-similarity dendrogram and its merges
  policy.{png,json}      the BIP's policy for config.solver.budget
  budget_sweep.{png,json} the optimal policy against random ones for every budget
  summary.{json,md}      top-3 sources per target, the tree, the policy, the references
"""

from __future__ import annotations

import os
from collections.abc import Callable

import numpy as np

from xtc_jax.infra import atomic
from xtc_jax.taxonomy import report, solver, tables, tournament
from xtc_jax.taxonomy.stage_transfers import SELF

TOP = 3


def score_tables(results: dict[str, dict]) -> dict[str, dict]:
    """{"affinity", "gain", "quality": {key: value}, "winrates": {target: {...}}}."""
    affinity, gain, quality, winrates = {}, {}, {}, {}
    for target, r in results.items():
        names = [str(n) for n in r["names"]] + [SELF]
        losses = np.concatenate([r["losses"], r["self"][None]])
        w = tournament.winrate_matrix(losses)
        weights = tournament.ahp_weights(w)
        winrates[target] = {"candidates": names, "matrix": np.round(w, 6).tolist()}
        for name, weight, row in zip(names, weights, losses, strict=True):
            key = f"{name}__{target}"
            affinity[key] = float(weight)
            gain[key] = tournament.versus(row, r["scratch"])
            quality[key] = 0.5 if name == SELF else tournament.versus(row, r["self"])
    return {"affinity": affinity, "gain": gain, "quality": quality, "winrates": winrates}


def top_sources(affinity: dict[str, float], tasks, k: int = TOP) -> dict[str, list[str]]:
    """Each target's k first-order sources of highest affinity, best first."""
    out = {}
    for target in tasks:
        firsts = [(v, key.split("__")[0]) for key, v in affinity.items()
                  if key.count("__") == 1 and key.endswith(f"__{target}")
                  and not key.startswith(f"{SELF}__")]  # fmt: skip
        out[target] = [s for _, s in sorted(firsts, key=lambda p: (-p[0], p[1]))[:k]]
    return out


def make_problem(config, values: dict[str, float], budget: float) -> solver.Problem:
    s = config.solver
    return solver.Problem(values, list(config.tasks), list(config.tasks), budget, s.max_order,
                          {}, s.supervision_cost, s.transfer_cost, s.sqrt)  # fmt: skip


def write_all(config, results: dict[str, dict], out_dir: str,
              log: Callable[[str], None]) -> dict:  # fmt: skip
    """Every output of the taxonomy; returns the summary."""
    tasks = list(config.tasks)
    scores = score_tables(results)
    for name in ("affinity", "gain", "quality"):
        stem = os.path.join(out_dir, "affinities" if name == "affinity" else name)
        tables.write_table(stem + ".csv", scores[name])
        tables.write_table(stem + ".json", scores[name])
    atomic.write_json(os.path.join(out_dir, "winrates.json"), scores["winrates"])
    affinity = scores["affinity"]
    report.affinity_heatmap(affinity, tasks, os.path.join(out_dir, "affinity_heatmap"))
    merges = report.task_tree(affinity, tasks, os.path.join(out_dir, "task_tree"))
    atomic.write_json(os.path.join(out_dir, "task_tree.json"), {"merges": merges})

    s = config.solver
    policy = solver.solve(make_problem(config, scores[s.objective], s.budget))
    report.policy_figure(policy, tasks, os.path.join(out_dir, "policy"))
    atomic.write_json(os.path.join(out_dir, "policy.json"),
                      dict(policy.to_json(), objective_table=s.objective))  # fmt: skip
    sweep_values = scores[s.sweep_objective]
    sweep = report.budget_sweep(lambda b: make_problem(config, sweep_values, b),
                                list(range(1, len(tasks) + 1)),
                                os.path.join(out_dir, "budget_sweep"),
                                random_policies=s.random_policies, seed=config.seed,
                                ylabel=f"total {s.sweep_objective} over the targets")  # fmt: skip
    atomic.write_json(os.path.join(out_dir, "budget_sweep.json"),
                      {"objective": s.sweep_objective,
                       "budgets": {str(b): row for b, row in sweep.items()}})  # fmt: skip

    top = top_sources(affinity, tasks)
    references = {t: {"self_vs_scratch": scores["gain"][f"{SELF}__{t}"],
                      "self_loss": float(np.mean(r["self"])),
                      "scratch_loss": float(np.mean(r["scratch"])),
                      "best_transfer_quality": max(v for k, v in scores["quality"].items()
                                                   if k.endswith(f"__{t}")
                                                   and not k.startswith(f"{SELF}__"))}
                  for t, r in results.items()}  # fmt: skip
    summary = {"top_sources": top, "tree_merges": merges, "policy": policy.to_json(),
               "policy_objective": s.objective, "references": references,
               "candidates": {t: len(r["names"]) for t, r in results.items()}}  # fmt: skip
    atomic.write_json(os.path.join(out_dir, "summary.json"), summary)
    text = summary_markdown(summary, sweep)
    atomic.write_bytes(os.path.join(out_dir, "summary.md"), text.encode())
    log(text)
    return summary


def summary_markdown(summary: dict, sweep: dict) -> str:
    lines = ["# Taxonomy summary", "", "| target | top-3 first-order sources (affinity) | "
             "transfers | task net vs scratch | best transfer quality |", "|---|---|---|---|---|"]
    for t, top in summary["top_sources"].items():
        r = summary["references"][t]
        lines.append(f"| {t} | {', '.join(top)} | {summary['candidates'][t]} | "
                     f"{r['self_vs_scratch']:.2f} | {r['best_transfer_quality']:.2f} |")
    p = summary["policy"]
    lines += ["", f"Policy ({summary['policy_objective']}, budget {p['budget']:g}): roots "
              f"{', '.join(p['roots'])}; objective {p['objective']:.3f}"]
    lines += [f"- {'+'.join(srcs)} -> {t}" for t, srcs in sorted(p["transfers"].items())]
    lines += ["", "Task tree merges (first first): " +
              "; ".join("{" + ", ".join(m) + "}" for m in summary["tree_merges"])]
    lines += ["", "Budget sweep (optimal vs mean of random feasible policies):"]
    for b, row in sweep.items():
        mean = f"{np.mean(row['random']):.3f}" if row["random"] else "-"
        opt = f"{row['optimal']:.3f}" if row["optimal"] is not None else "infeasible"
        lines.append(f"- budget {b:g}: {opt} vs {mean}")
    return "\n".join(lines) + "\n"
