"""Defaults shared by the experiment configs in configs/ (ml_collections).

Config files are thin: they pick the target, the domains and the preset.
Presets come through the `:preset` suffix of `--config=configs/x.py:preset`:
"" (the paper's setting: 256x256, ds=6, batch 64, AMSGrad lr 3e-5, coupled
weight decay 2e-6, k=3 by win-rate), "cpu" (a small version a 2-core CPU
finishes in minutes: 48x48 from 64 px renders, narrow networks, batch 8, few steps)
or "lab" (`:cpu` where docs/experiments.md found the method to show: rgb->target learns
from 12 of the 192 labelled training views, while the frozen networks keep all of them).

The energy configs of the original (xtconsistency.md §4) become:
  networks  {"src->dst": {arch, downsample, width, checkpoint}}
  paths     {name: [domain, domain, ...]}     (first domain read from the batch)
  freeze    ["src->dst", ...]                 (no gradient, no optimizer state)
  losses    {name: {kind, pred, target, loss, weight}}
            kind "mae" (supervised), "percep" (F_K(n(x)) vs F_K(y)), "direct"
            (rgb->K vs K, for win-rates only, never optimised)
  plots     [path names]                      (image grids at each evaluation)
"""

from __future__ import annotations

import ml_collections

from xtc_jax.errors import ConfigError

PRESETS = ("", "paper", "cpu", "lab")
#: Presets built on the small `:cpu` networks and data.
SMALL_PRESETS = ("cpu", "lab")
#: The `:lab` preset's labelled rgb->target views (of the 192 train views at the :cpu size):
#: with all 192 the perceptual losses cost the direct error; with 48 they lower it a little
#: on every seed, with 12 by about 3 degrees (docs/experiments.md, labels25 and labels12).
LAB_TRAIN_EXAMPLES = 12

#: Architectures of the original's pretrained edges (xtconsistency.md §2.5), paper preset.
PAPER_NETWORKS = {
    "rgb->normal": ("unet", 6),
    "rgb->depth_zbuffer": ("unet", 6),
    "rgb->reshading": ("unet_reshade", 5),
    "rgb->principal_curvature": ("unet", 5),
    "rgb->keypoints2d": ("unet", 3),
    "rgb->keypoints3d": ("unet", 5),
    "rgb->edge_occlusion": ("unet", 5),
    "rgb->edge_texture": ("sobel", 0),
    "normal->principal_curvature": ("dense1by1", 0),
    "normal->depth_zbuffer": ("unet_depth", 6),
    "normal->edge_texture": ("unet", 4),
    "normal->reshading": ("unet_reshade", 5),
    "normal->keypoints3d": ("unet", 5),
    "normal->keypoints2d": ("unet", 5),
    "normal->edge_occlusion": ("unet", 5),
    "depth_zbuffer->normal": ("unet", 6),
    "depth_zbuffer->edge_texture": ("unet", 4),
    "depth_zbuffer->principal_curvature": ("unet", 4),
    "depth_zbuffer->reshading": ("unet_reshade", 5),
    "depth_zbuffer->keypoints3d": ("unet", 5),
    "depth_zbuffer->keypoints2d": ("unet", 5),
    "depth_zbuffer->edge_occlusion": ("unet", 5),
    # The original's UNetReshade with 1 output channel (its 3 identical copies become one).
    "reshading->depth_zbuffer": ("unet_reshade", 5),
    "reshading->keypoints2d": ("unet", 5),
    "reshading->edge_occlusion": ("unet", 5),
    "reshading->keypoints3d": ("unet", 5),
    "reshading->edge_texture": ("unet", 5),
    "reshading->normal": ("unet", 4),
    "reshading->principal_curvature": ("unet", 5),
}
CPU_WIDTH = 0.25
CPU_MAX_DOWNSAMPLE = 3


def check_preset(preset: str) -> str:
    preset = (preset or "").strip()
    if preset not in PRESETS:
        raise ConfigError(
            f"unknown config preset {preset!r}; use one of: (none), paper, cpu, lab "
            "(e.g. --config=configs/normal.py:cpu)."
        )
    return "paper" if preset == "" else preset


def network(edge: str, preset: str, checkpoint: str = "") -> dict:
    """The network spec of `edge`: the original's architecture, or a small UNet for :cpu."""
    arch, downsample = PAPER_NETWORKS.get(edge, ("unet", 5))
    spec = dict(arch=arch, checkpoint=checkpoint)
    if arch == "sobel":
        return spec
    if preset in SMALL_PRESETS:  # the original's heavy nets become narrow, shallow UNets
        arch = "unet_reshade" if arch == "unet_reshade" else "unet"
        return dict(
            arch=arch, downsample=CPU_MAX_DOWNSAMPLE, width=CPU_WIDTH, checkpoint=checkpoint
        )
    if arch in ("unet", "unet_reshade"):
        spec.update(downsample=downsample, width=1.0)
    return spec


def data_config(domains: list[str], preset: str) -> ml_collections.ConfigDict:
    """The `data` section: where examples come from and how they are fed.

    path: a Taskonomy tree or a built shard folder; "" = the built-in synthetic
      Taskonomy, generated under the workdir on first use.
    format: "shards" (build array_record shards once, then stream them) or
      "raw" (read the tree's PNGs directly; no copy).
    """
    preset = check_preset(preset)
    cpu = preset in SMALL_PRESETS
    data = ml_collections.ConfigDict()
    data.path = ""
    data.format = "shards"
    data.layout = "auto"
    data.split_file = ""  # Taskonomy CSV or building list; "" = tiny/synthetic default
    data.train_split = "train"
    data.val_split = "val"
    data.domains = list(domains)
    data.resolution = 48 if cpu else 256
    data.augment = False
    data.worker_count = 0 if cpu else 8
    data.on_error = "skip"
    # Labelled rgb->target examples: 0 = the whole train split; N = N of them, evenly spaced
    # over it (sample-complexity experiments; frozen networks keep the whole split).
    data.train_examples = 0
    data.cache_dir = ""  # where prepared data lives; "" = $XTC_DATA_DIR or {workdir}/data
    data.synthetic = ml_collections.ConfigDict(
        dict(buildings=6 if cpu else 12, views=48 if cpu else 400, size=64 if cpu else 256, seed=0)
    )
    if preset == "lab":  # few labels for the target; frozen networks keep the whole split
        data.train_examples = LAB_TRAIN_EXAMPLES
    # "base", or "shifted": held-out textures, lighting and shapes, for evaluating under a
    # distribution shift (--mode=eval and the energy command's --style_shift render it).
    data.synthetic.style = "base"
    return data


def base_config(preset: str) -> ml_collections.ConfigDict:
    """Everything but the experiment's graph (networks, paths, freeze, losses, plots)."""
    preset = check_preset(preset)
    cpu = preset in SMALL_PRESETS
    config = ml_collections.ConfigDict()
    config.preset = preset
    config.seed = 0
    config.batch_size = 8 if cpu else 64
    config.optimizer = ml_collections.ConfigDict(
        dict(name="amsgrad", learning_rate=1e-3 if cpu else 3e-5, weight_decay=2e-6)
    )
    # The consistency phase's learning rate after the baseline warm start (0: learning_rate).
    config.optimizer.consistency_learning_rate = 0.0
    config.train = ml_collections.ConfigDict(
        dict(
            steps=300 if cpu else 100_000,
            baseline_steps=300 if cpu else 100_000,  # baseline warm start before consistency
            steps_per_epoch=100 if cpu else 0,  # 0: the original's N / (400 * batch)
            eval_every=100 if cpu else 2000,
            eval_batches=6 if cpu else 50,
            checkpoint_every=100 if cpu else 2000,
            keep_checkpoints=3,
            log_every_seconds=5.0 if cpu else 30.0,
            init_from="",  # an exported model to start the trainable target network from
            best_metric="",  # e.g. "l1": also keep the best checkpoints by this val metric
            on_nonfinite="raise",  # or "skip": drop a non-finite update and count it
        )
    )
    # remat: "none" | "blocks" | "networks" (models/edges.py REMAT_MODES); bools also work.
    config.compute = ml_collections.ConfigDict(dict(dtype="float32", remat="none"))
    config.loss = ml_collections.ConfigDict(dict(denominator="valid"))
    config.selection = ml_collections.ConfigDict(dict(k=3, mode="winrate", weights="fixed"))
    config.transfer_steps = 150 if cpu else 50_000
    config.networks_dir = ""  # trained perceptual/direct networks; "" = {workdir}/networks
    return config


def consistency_config(
    target: str, perceptual: list[str], preset: str, with_direct: bool = True
) -> ml_collections.ConfigDict:
    """The original's `multiperceptual_{target}`: mae + percep_K (+ direct_K for win-rates)."""
    config = base_config(preset)
    preset = config.preset
    config.target = target
    config.data = data_config(["rgb", target, *perceptual], preset)
    edges = [f"rgb->{target}", *(f"{target}->{k}" for k in perceptual)]
    paths = {"x": ["rgb"], "y": [target], "n_x": ["rgb", target]}
    losses = {"mae": dict(kind="mae", pred="n_x", target="y", loss="l1", weight=1.0)}
    for k in perceptual:
        paths[f"{k}_of_n_x"] = ["rgb", target, k]
        paths[f"{k}_of_y"] = [target, k]
        losses[f"percep_{k}"] = dict(
            kind="percep", pred=f"{k}_of_n_x", target=f"{k}_of_y", loss="l1", weight=1.0
        )
        if with_direct:
            edges.append(f"rgb->{k}")
            paths[f"{k}_direct"] = ["rgb", k]
            # The analytic sobel reproduces edge_texture exactly; the original compares it
            # with the perceptual net's output on the ground truth (example_normal's a(x), s(y^)).
            gt = f"{k}_of_y" if PAPER_NETWORKS.get(f"rgb->{k}", ("",))[0] == "sobel" else f"{k}_gt"
            paths.setdefault(gt, [k])
            losses[f"direct_{k}"] = dict(kind="direct", pred=f"{k}_direct", target=gt, loss="l1")
    config.networks = ml_collections.ConfigDict({e: network(e, preset) for e in edges})
    config.paths = ml_collections.ConfigDict(paths)
    config.freeze = [e for e in edges if e != f"rgb->{target}"]
    config.losses = ml_collections.ConfigDict(losses)
    config.plots = ["x", "y", "n_x", *(f"{k}_of_n_x" for k in perceptual[:3])]
    config.selection.k = min(config.selection.k, len(perceptual))
    # The original's eighth perceptual loss, ImageNet ResNet-50 features (off: ""). An export
    # of torchvision's resnet50-*.pth (python -m xtc_jax.convert); consistency/imagenet.py.
    config.imagenet_weights = ""
    config.imagenet_weight = 1.0  # the term's loss weight, as the original's
    # Consistency energy (python -m xtc_jax.energy): paths rgb -> K -> target for K in
    # middles ([] = the perceptual domains); statistics fitted on reference_images examples,
    # by the main command when the consistency model is trained (fit_after_training), so the
    # demo, the web demo and the video tool have energy maps from the start.
    config.energy = ml_collections.ConfigDict(
        dict(middles=[], reference_split="train", reference_images=256, fit_after_training=True)
    )
    return config


def transfer_config(spec: str) -> ml_collections.ConfigDict:
    """One edge src -> dst trained from ground truth; spec is "src->dst" or "src->dst,cpu".

    As the original: L2 for perceptual networks (X -> Y, X != rgb), L1 for rgb -> X.
    """
    parts = [p.strip() for p in (spec or "").split(",") if p.strip()]
    edges = [p for p in parts if "->" in p]
    presets = [p for p in parts if "->" not in p]
    if len(edges) != 1 or len(presets) > 1:
        raise ConfigError(
            f"configs/transfer.py:{spec!r}: name one edge and optionally a preset, e.g. "
            "--config=configs/transfer.py:normal->principal_curvature,cpu"
        )
    edge = edges[0]
    src, dst = (part.strip() for part in edge.split("->"))
    config = base_config(presets[0] if presets else "")
    config.target = dst
    config.data = data_config([src, dst], config.preset)
    config.networks = ml_collections.ConfigDict({edge: network(edge, config.preset)})
    config.paths = ml_collections.ConfigDict({"x": [src], "y": [dst], "f_x": [src, dst]})
    config.freeze = []
    loss = "l1" if src == "rgb" else "l2"
    config.losses = ml_collections.ConfigDict(
        {"mae": dict(kind="mae", pred="f_x", target="y", loss=loss, weight=1.0)}
    )
    config.plots = ["x", "y", "f_x"]
    config.selection.k = 0
    config.train.steps = config.transfer_steps
    config.train.baseline_steps = 0
    return config
