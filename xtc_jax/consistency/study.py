"""The paper's experiments on the built-in data: rows x seeds, each a main run (issue 13).

    python -m xtc_jax.consistency.study --out DIR [--rows a,b] [--seeds 0,1,2] [--phase all]

Every row varies one thing from the `:cpu` setting (`ROWS`). Per seed, the
`default` row runs the whole experiment; a row that changes only the
consistency phase copies the default row's baseline and warm start instead of
retraining them, and a row that keeps the frozen networks shares the seed's
networks folder, so a row costs only what it changes. The rendered data is
shared by every run of the same data settings. Phases:
  train     python -m xtc_jax.main for each (row, seed) not yet done
  evaluate  in this process, for each trained (row, seed): both models on the val
            and test buildings and on the style-shifted buildings, and the energy
            command's work (severity-5 blur and noise, the style shift)
  report    DIR/results.json, DIR/results.md (the table) and the plots
Every command it runs is printed first and logged to DIR/commands.sh, so any
figure can be reproduced by hand. Runs resume: a killed study continues.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shlex
import shutil
import subprocess
import sys
import time

from configs.normal import PERCEPTUAL
from xtc_jax.consistency.study_report import run_dir

CONFIG = "configs/normal.py"  # the study runs from the repository root, as every command


#: The perceptual domains that are functions of the scene's geometry, hence of the normals
#: (up to the camera): the others (texture edges, 2D keypoints, 3D keypoints) also depend on
#: the rgb textures, which a normal map does not hold.
GEOMETRIC = ("principal_curvature", "reshading", "depth_zbuffer", "edge_occlusion")


def _weights(value: float, domains=tuple(PERCEPTUAL)) -> tuple[str, ...]:
    return tuple(f"--config.losses.percep_{k}.weight={value}" for k in domains)


@dataclasses.dataclass(frozen=True)
class Row:
    """One experiment: overrides of the :cpu setting and what it shares with row `base`.

    shares: "baseline" (only the consistency phase differs: copy the base row's
    baseline and warm start), "networks" (the frozen networks are the base row's,
    the baseline is retrained) or "" (a run of its own, networks included).
    """

    name: str
    group: str
    what: str
    overrides: tuple[str, ...] = ()
    shares: str = "baseline"
    preset: str = "cpu"  # of configs/normal.py
    base: str = "default"  # the row whose stages `shares` names


#: 10 buildings: 6 train (288 views), 2 val and 2 test; the evaluation covers the 96 val views.
_BUILDINGS10 = ("--config.data.synthetic.buildings=10", "--config.train.eval_batches=12")

ROWS = (
    Row("default", "reference", ":cpu as it is: k=3 by win-rate, weights 1, lr 1e-3", shares=""),
    Row("weight0", "weighting", "control: every perceptual weight 0 (restart, no perceptual "
        "gradient)", _weights(0.0)),
    Row("weight0.1", "weighting", "every perceptual weight 0.1", _weights(0.1)),
    Row("grad_ratio", "weighting", "the original's gradient-ratio weights",
        ("--config.selection.weights=grad_ratio",)),
    Row("lr1e-4", "weighting", "consistency phase at lr 1e-4 (baseline keeps 1e-3)",
        ("--config.optimizer.consistency_learning_rate=1e-4",)),
    Row("weight0_lr1e-4", "weighting", "control of lr1e-4: weights 0 at lr 1e-4",
        (*_weights(0.0), "--config.optimizer.consistency_learning_rate=1e-4")),
    Row("geometry4", "frozen networks", "only the 4 geometric perceptual losses (curvature, "
        "reshading, depth, occlusion edges), all optimised; the others weight 0",
        (*_weights(0.0, tuple(k for k in PERCEPTUAL if k not in GEOMETRIC)),
         "--config.selection.k=7")),
    Row("k7", "selection", "all 7 perceptual losses (k=7)", ("--config.selection.k=7",)),
    Row("random3", "selection", "k=3 chosen at random each epoch",
        ("--config.selection.mode=random",)),
    Row("frozen600", "frozen networks", "frozen networks trained 600 steps instead of 150",
        ("--config.transfer_steps=600",), shares=""),
    Row("labels25", "labelled data", "rgb->normal sees 48 of the 192 training views (the "
        "frozen networks keep all 192)", ("--config.data.train_examples=48",),
        shares="networks"),
    Row("labels25_weight0", "labelled data", "control of labels25: its perceptual weights 0",
        ("--config.data.train_examples=48", *_weights(0.0)), base="labels25"),
    Row("labels12", "labelled data", "rgb->normal sees 12 of the 192 training views (the "
        "frozen networks keep all 192)", ("--config.data.train_examples=12",),
        shares="networks"),
    Row("labels12_weight0", "labelled data", "control of labels12: its perceptual weights 0",
        ("--config.data.train_examples=12", *_weights(0.0)), base="labels12"),
    Row("buildings10_w0.1", "labelled data", "10 buildings (6 train, 4 held out), perceptual "
        "weights 0.1", (*_BUILDINGS10, *_weights(0.1)), shares=""),
    Row("buildings10_weight0", "labelled data", "control of buildings10_w0.1: weights 0",
        (*_BUILDINGS10, *_weights(0.0)), base="buildings10_w0.1"),
    Row("res96", "resolution", "96 px crops of 128 px renders (everything retrained)",
        ("--config.data.resolution=96", "--config.data.synthetic.size=128"), shares=""),
)
ROW_NAMES = tuple(r.name for r in ROWS)


def _networks(out: str, row: Row, seed: int) -> str:
    if row.shares in ("baseline", "networks"):  # the networks of the row it builds on
        return _networks(out, next(r for r in ROWS if r.name == row.base), seed)
    return os.path.join(out, f"seed{seed}", f"networks_{row.name}")


def _data_dir(out: str) -> str:
    return os.path.join(out, "data")


def base_flags(out: str, row: Row, seed: int) -> list[str]:
    """Flags every command of (row, seed) shares: config, workdir, seed, caches, overrides."""
    return [
        f"--config={CONFIG}:{row.preset}", f"--workdir={run_dir(out, row.name, seed)}",
        f"--config.seed={seed}", f"--config.data.cache_dir={_data_dir(out)}",
        f"--config.networks_dir={_networks(out, row, seed)}", *row.overrides,
    ]  # fmt: skip


def _run(command: list[str], out: str, log_name: str) -> None:
    """Runs one command, appending it to DIR/commands.sh and its output to a log file."""
    line = shlex.join(command)
    print(f"$ {line}", flush=True)
    with open(os.path.join(out, "commands.sh"), "a") as f:
        f.write(line + "\n")
    with open(log_name, "a") as log:
        start = time.perf_counter()
        code = subprocess.call(command, stdout=log, stderr=subprocess.STDOUT)
        print(f"  exit {code} in {time.perf_counter() - start:.0f} s ({log_name})", flush=True)
    if code:
        raise SystemExit(f"command failed with exit {code}; see {log_name}")


def _copy_shared(out: str, row: Row, seed: int) -> None:
    """Copies the base row's finished baseline and warm start into a consistency-only row."""
    if row.shares != "baseline":
        return
    source, target = run_dir(out, row.base, seed), run_dir(out, row.name, seed)
    for stage in ("baseline", "warmstart"):
        if not os.path.isdir(os.path.join(target, stage)):
            shutil.copytree(os.path.join(source, stage), os.path.join(target, stage))


def train(out: str, rows: list[Row], seeds: list[int]) -> None:
    """Trains each (row, seed) without a DONE marker, after the row its stages come from."""
    python = sys.executable
    for seed in seeds:
        for row in sorted(rows, key=lambda r: r.shares != ""):
            workdir = run_dir(out, row.name, seed)
            if os.path.exists(os.path.join(workdir, "DONE")):
                continue
            base_done = os.path.join(run_dir(out, row.base, seed), "DONE")
            if row.shares and not os.path.exists(base_done):
                train(out, [r for r in ROWS if r.name == row.base], [seed])
            os.makedirs(workdir, exist_ok=True)
            _copy_shared(out, row, seed)
            _run([python, "-m", "xtc_jax.main", *base_flags(out, row, seed)], out,
                 os.path.join(workdir, "train.log"))  # fmt: skip
            open(os.path.join(workdir, "DONE"), "w").close()


class _Concat:
    """Several random-access sources read as one (the val and test buildings together)."""

    def __init__(self, sources):
        self.sources = list(sources)

    def __len__(self) -> int:
        return sum(len(s) for s in self.sources)

    def __getitem__(self, index: int):
        for source in self.sources:
            if index < len(source):
                return source[index]
            index -= len(source)
        raise IndexError(index)


def row_config(out: str, row: Row, seed: int):
    """The config the main command runs for (row, seed), built in this process."""
    from configs.normal import get_config

    config = get_config(row.preset)
    flags = base_flags(out, row, seed)
    for flag in flags:
        if not flag.startswith("--config."):
            continue
        key, value = flag[len("--config."):].split("=", 1)
        *parents, leaf = key.split(".")
        node = config
        for name in parents:
            node = node[name]
        old = node[leaf]
        node[leaf] = type(old)(value) if not isinstance(old, bool) else value == "True"
    return config


def _curve(run: str) -> list[tuple[int, float]]:
    """(step, val angular error) of a run's evaluations, from its metrics.jsonl."""
    path = os.path.join(run, "logs", "metrics.jsonl")
    points = []
    with open(path) as f:
        for line in f:
            record = json.loads(line)
            if record.get("split") == "val" and "angular_error_deg" in record:
                points.append((int(record["step"]), float(record["angular_error_deg"])))
    return points


def _batches(source, domain: str, resolution: int, batch_size: int):
    """`domain` of every example of `source`, in order, batch by batch (JAX arrays)."""
    import jax.numpy as jnp

    from xtc_jax.data import pipeline

    data = pipeline.make_dataset(source, [domain], resolution, batch_size, seed=0,
                                 shuffle=False, num_epochs=1, drop_remainder=False,
                                 process_index=0, process_count=1)  # fmt: skip
    return (jnp.asarray(batch[domain]) for batch in data)


def _valid_mean(source, domain: str, resolution: int, batch_size: int):
    """Per-channel mean of `domain` over the valid pixels of `source` (float64)."""
    import numpy as np

    from xtc_jax import domains as domains_lib

    spec = domains_lib.get(domain)
    sums, count = 0.0, 0.0
    for y in _batches(source, domain, resolution, batch_size):
        mask = np.asarray(spec.valid_mask(y), np.float64)
        sums = sums + (np.asarray(y, np.float64) * mask).sum(axis=(0, 1, 2))
        count += mask.sum()
    return sums / max(count, 1.0)


def _constant_l1(source, domain: str, resolution: int, batch_size: int, value) -> float:
    """Masked L1 over `source` of predicting `value` (per channel) at every pixel."""
    import jax.numpy as jnp

    from xtc_jax.training import metrics as metrics_lib

    total = None
    for y in _batches(source, domain, resolution, batch_size):
        pred = jnp.broadcast_to(jnp.asarray(value, jnp.float32), y.shape)
        total = metrics_lib.add_sums(total, metrics_lib.split_sums(pred, y, domain))
    return metrics_lib.finish_split_metrics(total)["l1"]


def frozen_quality(config, workdir: str, held_out) -> dict[str, float]:
    """Held-out L1 of each frozen F_K(y) -> K, and of the best constant guess (the train
    split's mean of K) beside it: what a perceptual loss can pass on."""
    from xtc_jax.consistency import evaluate_exports, frozen
    from xtc_jax.infra import export

    data = config.data
    train_source = _splits(data, workdir, ("train",))
    figures = {}
    for edge, spec in config.networks.items():
        if not edge.startswith(f"{config.target}->") or spec.get("arch") == "sobel":
            continue
        net = export.load_network(frozen.export_dir(config, workdir, edge))
        figures[f"frozen/{edge}"] = evaluate_exports.evaluate_network(
            net, held_out, config.batch_size
        )["l1"]
        mean = _valid_mean(train_source, net.dst, data.resolution, config.batch_size)
        figures[f"constant/{edge}"] = _constant_l1(
            held_out, net.dst, data.resolution, config.batch_size, mean
        )
    return figures


def _splits(data, workdir: str, splits):
    """The `splits` of the data `data` describes, read as one source."""
    from xtc_jax.data import prepare

    location = prepare.data_location(data, workdir)
    return _Concat(prepare.open_split(data, location, split) for split in splits)


def _held_out(config, workdir: str):
    return _splits(config.data, workdir, ("val", "test"))


def evaluate_one(out: str, row: Row, seed: int) -> dict:
    """Held-out and shifted errors of both models, energy figures and learning curves."""
    from xtc_jax.consistency import evaluate_exports, experiment
    from xtc_jax.data import prepare
    from xtc_jax.energy import command
    from xtc_jax.infra import export

    workdir = run_dir(out, row.name, seed)
    config = experiment.resolve(row_config(out, row, seed), workdir)
    data = config.data
    held_out = _held_out(config, workdir)
    # every shifted building is unseen: use all of them
    shifted_source = _splits(prepare.shifted(data), workdir, ("train", "val", "test"))
    result: dict = {"row": row.name, "seed": seed, "examples": len(held_out),
                    "shifted_examples": len(shifted_source)}  # fmt: skip
    for model in ("baseline", "consistency"):
        run = os.path.join(workdir, model)
        net = export.load_network(os.path.join(run, "export"))
        for name, source in (("held_out", held_out), ("shifted", shifted_source)):
            metrics = evaluate_exports.evaluate_network(net, source, config.batch_size)
            result[f"{model}/{name}"] = metrics
        result[f"{model}/curve"] = _curve(run)
    if row.shares == "":  # a row with its own frozen networks: how good is each F_K?
        result.update(frozen_quality(config, workdir, held_out))
    energy_out = os.path.join(workdir, "energy", "consistency")
    summary = command.run(config, workdir, "consistency", data="val",
                          corruptions="blur:5,noise:5", output=energy_out, style_shift=True,
                          log=lambda line: None)  # fmt: skip
    result["energy"] = {
        "r_clean": summary["correlation_error_angular_error_deg"]["pearson_r"],
        "r_all": summary["correlation_error_angular_error_deg_all_sets"]["pearson_r"],
        "auc": summary["roc_auc"],
    }
    return result


def evaluate(out: str, rows: list[Row], seeds: list[int]) -> None:
    """Evaluates each trained (row, seed) once, into {run}/study_eval.json."""
    from xtc_jax.infra import atomic

    for seed in seeds:
        for row in rows:
            workdir = run_dir(out, row.name, seed)
            path = os.path.join(workdir, "study_eval.json")
            if not os.path.exists(os.path.join(workdir, "DONE")):
                continue
            if os.path.exists(path):  # evaluated; fill in the frozen figures if they are new
                with open(path) as f:
                    result = json.load(f)
                if row.shares == "" and not any(k.startswith("constant/") for k in result):
                    from xtc_jax.consistency import experiment

                    config = experiment.resolve(row_config(out, row, seed), workdir)
                    result.update(frozen_quality(config, workdir, _held_out(config, workdir)))
                    atomic.write_json(path, result)
                continue
            start = time.perf_counter()
            result = evaluate_one(out, row, seed)
            atomic.write_json(path, result)
            b, c = (result[f"{m}/held_out"]["angle_mean_deg"] for m in ("baseline", "consistency"))
            print(f"evaluated {row.name} seed {seed}: baseline {b:.2f}°, consistency {c:.2f}° "
                  f"({time.perf_counter() - start:.0f} s)", flush=True)  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m xtc_jax.consistency.study", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--out", required=True, help="study folder (runs, logs, results)")
    parser.add_argument("--rows", default=",".join(ROW_NAMES),
                        help=f"comma-separated rows (default all: {', '.join(ROW_NAMES)})")
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated seeds (default 0,1,2)")
    parser.add_argument("--phase", default="all", choices=["all", "train", "evaluate", "report"])
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.rows.split(",") if n.strip()]
    unknown = sorted(set(names) - set(ROW_NAMES))
    if unknown:
        parser.error(f"unknown rows {', '.join(unknown)}; choose from {', '.join(ROW_NAMES)}")
    try:
        seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    except ValueError:
        parser.error(f"--seeds={args.seeds!r}: give integers, e.g. 0,1,2")
    rows = [r for r in ROWS if r.name in names]
    os.makedirs(args.out, exist_ok=True)
    if args.phase in ("all", "train"):
        train(args.out, rows, seeds)
    if args.phase in ("all", "evaluate"):
        evaluate(args.out, rows, seeds)
    if args.phase in ("all", "report"):
        from xtc_jax.consistency import study_report

        study_report.write(args.out, rows, seeds)


if __name__ == "__main__":
    main()
