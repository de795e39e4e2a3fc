"""The multi-task method's config: `mtl_config(dataset, preset)` for configs/mtl_*.py.

Defaults are xtask_mt's (xtask_mt.md §1.8-1.9, §1.11): ResNet-34 from scratch,
L1 direct depth, L1 transferred depth, cross-entropy transferred seg,
uncertainty weighting, Adam 1e-4 β = (0.9, 0.99) halved every 80 (Cityscapes) or
60 (NYUv2) epochs; Cityscapes 128×256, 7 classes, batch 8, 250 epochs,
λ = 0.01; NYUv2 288×384, 13 classes, batch 6, 100 epochs, λ = 1e-4. The
":cpu" preset is a few minutes on a 2-core CPU: a narrow ResNet-18 at 64 px
(or 64×128), a few hundred steps. The original's flags map to fields as the
README's table says (`FLAGS` below).
"""

from __future__ import annotations

import ml_collections

from xtc_jax.data.mtl import synthetic
from xtc_jax.errors import ConfigError

PRESETS = ("", "cpu")
#: The original's command-line flags and the config fields that replace them.
FLAGS = {
    "--enc_layers": "model.encoder_depth",
    "--use_pretrain": "model.pretrained=DIR (converted torchvision weights)",
    "--lp": "loss.depth (l1, mse, logl1, smoothl1)",
    "--tdep_loss": "loss.transferred_depth (l1, ssim)",
    "--tseg_loss": "loss.transferred_seg (cross, kl)",
    "--label_smoothing": "loss.label_smoothing",
    "--lambda_1 / --alpha": "loss.lambda_1 (weight of the transferred depth)",
    "--lambda_2 / --gamma": "loss.lambda_2 (weight of the transferred seg)",
    "--uncertainty_weights": 'weighting="uncertainty"',
    "--grad_norm": 'weighting="gradnorm" (weighting_options.alpha, .layer)',
    "--batch_norm": "model.transfer_batch_norm",
    "--wider_ttnet": "model.transfer_wider",
    "--direct_only": "inference: XTaskNet(..., direct_only=True) (always used for evaluation)",
}
SETTINGS = {
    "cityscapes": dict(size=(128, 256), num_classes=7, batch=8, epochs=250, step_epochs=80,
                       lam=0.01, depth_kind="inverse", imagenet_normalize=True),
    "nyuv2": dict(size=(288, 384), num_classes=13, batch=6, epochs=100, step_epochs=60,
                  lam=1e-4, depth_kind="metric", imagenet_normalize=False),
    "synthetic": dict(size=(256, 256), num_classes=len(synthetic.CLASSES), batch=8, epochs=100,
                      step_epochs=60, lam=0.01, depth_kind="metric", imagenet_normalize=False),
}  # fmt: skip
#: The models the synthetic experiment compares (`mtl/experiment.py`).
COMPARE = ("stl_seg", "stl_depth", "mtl", "xtask")


def mtl_config(dataset: str, preset: str = "") -> ml_collections.ConfigDict:
    if preset not in PRESETS:
        raise ConfigError(f"unknown preset {preset!r} for configs/mtl_{dataset}.py: use "
                          "(none) or cpu, e.g. --config=configs/mtl_synthetic.py:cpu.")  # fmt: skip
    s = SETTINGS[dataset]
    cpu = preset == "cpu"
    config = ml_collections.ConfigDict()
    config.method = "mtl"
    config.preset = preset
    config.seed = 0
    config.batch_size = 4 if cpu else s["batch"]
    config.data = data_config(dataset, s, cpu)
    config.model = ml_collections.ConfigDict(dict(
        tasks=("seg", "depth"), encoder_depth=18 if cpu else 34, encoder_width=0.25 if cpu else 1.0,
        mid_features=32 if cpu else 128, transfer=True, transfer_batch_norm=False,
        transfer_wider=False, transfer_width=0.25 if cpu else 1.0,
        imagenet_normalize=s["imagenet_normalize"], pretrained="",
    ))  # fmt: skip
    config.loss = ml_collections.ConfigDict(dict(
        depth="l1", transferred_depth="l1", transferred_seg="cross", label_smoothing=0.0,
        seg_label_smoothing=0.0,
        lambda_1=s["lam"], lambda_2=s["lam"], normal_weight=1.0,
    ))  # fmt: skip
    config.weighting = "uncertainty"
    config.weighting_options = ml_collections.ConfigDict(dict(
        form="xtask", alpha=0.16, layer="", temperature=2.0, calpha=0.5, weights=(),
    ))  # fmt: skip
    steps_per_epoch = 50 if cpu else 0  # 0: one pass over the train split
    config.optimizer = ml_collections.ConfigDict(dict(
        name="adam", learning_rate=1e-3 if cpu else 1e-4, b1=0.9, b2=0.99,
        decay_every_epochs=4 if cpu else s["step_epochs"], decay=0.5,
    ))  # fmt: skip
    config.train = ml_collections.ConfigDict(dict(
        epochs=8 if cpu else s["epochs"], steps=0, steps_per_epoch=steps_per_epoch,
        eval_every=100 if cpu else 0, checkpoint_every=100 if cpu else 0, keep_checkpoints=2,
        best_metric="loss", eval_batches=0, log_every_seconds=5.0 if cpu else 30.0,
        on_nonfinite="raise",
    ))  # fmt: skip
    config.compare = COMPARE if dataset == "synthetic" else ("xtask",)
    return config


def data_config(dataset: str, s: dict, cpu: bool) -> ml_collections.ConfigDict:
    data = ml_collections.ConfigDict()
    data.dataset = dataset
    data.path = ""
    data.num_classes = s["num_classes"]
    data.size = (64, 64) if cpu and dataset == "synthetic" else (
        (64, 128) if cpu else s["size"])  # fmt: skip
    data.depth_kind = s["depth_kind"]
    data.val_fraction = 0.1
    data.augment = True
    data.worker_count = 0 if cpu else 8
    data.on_error = "raise"
    data.normals = False  # NYUv2's third task (model.tasks must then include "normal")
    # The built-in data (data.dataset="synthetic"), as the consistency configs render it.
    data.format = "shards"
    data.layout = "auto"
    data.split_file = ""
    data.train_split, data.val_split, data.test_split = "train", "val", "test"
    data.domains = list(synthetic.DOMAINS)
    data.resolution = data.size[0]
    data.cache_dir = ""
    data.synthetic = ml_collections.ConfigDict(dict(
        buildings=6 if cpu else 12, views=48 if cpu else 400, size=64 if cpu else 256, seed=0,
        style="base"))  # fmt: skip
    return data
