"""The original's eighth perceptual loss: ImageNet ResNet features of n(x) against those of y.

`--config.imagenet_weights=DIR` names an export of torchvision's ResNet-50
(`python -m xtc_jax.convert resnet50-0676ba61.pth --out models` writes
`models/resnet50-0676ba61`). `add_imagenet_term(config)` then adds, for the
target T of the supervised path n(x) = [rgb, T]:
  networks["T->imagenet"]  the converted ResNet, frozen
  paths imagenet_of_n_x = [rgb, T, imagenet], imagenet_of_y = [T, imagenet]
  losses.percep_imagenet   L1 of the two feature maps, unmasked (xtconsistency.md §3.2),
                           weighted by config.imagenet_weight (1.0, as the original)
There is no ImageNet ground truth, so the term has no direct partner and no
win-rate: it is optimised at every step, besides the k losses chosen by
win-rate (`Plan.always`). The original paired it with a placeholder direct
term (rgb->curvature vs curvature), which made its win-rate meaningless.
Config files set `imagenet_weights = ""` (off); the term is added after the
command line's overrides, when a command resolves its config.
"""

from __future__ import annotations

import copy
import os

import ml_collections

from xtc_jax.errors import ConfigError
from xtc_jax.infra import export as export_lib
from xtc_jax.models.edges import edge_key

DOMAIN = "imagenet"
TERM = f"percep_{DOMAIN}"
HOW = ("convert torchvision's ImageNet ResNet-50 first: python -m xtc_jax.convert "
       "resnet50-0676ba61.pth --out models, then --config.imagenet_weights="
       "models/resnet50-0676ba61")  # fmt: skip


def imagenet_spec(directory: str) -> dict:
    """The frozen network spec of a converted ResNet export; ConfigError for anything else."""
    if not os.path.isfile(os.path.join(directory, export_lib.MODEL_JSON)):
        raise ConfigError(f"imagenet_weights={directory!r} is not an export folder (no "
                          f"{export_lib.MODEL_JSON}): {HOW}.")  # fmt: skip
    model_config = export_lib.read_model_config(directory)
    if model_config.get("arch") != "resnet":
        raise ConfigError(f"imagenet_weights={directory!r} holds a {model_config.get('arch')!r} "
                          f"network, not an ImageNet ResNet: {HOW}.")  # fmt: skip
    return export_lib.checkpoint_spec(directory, model_config)


def add_imagenet_term(config) -> ml_collections.ConfigDict:
    """`config` with the ImageNet perceptual term when `config.imagenet_weights` is set."""
    directory = config.get("imagenet_weights", "")
    if not directory or TERM in config.losses:
        return config
    supervised = [name for name, spec in config.losses.items() if spec.kind == "mae"]
    if len(supervised) != 1:
        raise ConfigError("imagenet_weights needs a config with one supervised (mae) loss.")
    pred = list(config.paths[config.losses[supervised[0]].pred])
    target = pred[-1]
    spec = imagenet_spec(directory)
    config = copy.deepcopy(config)
    with config.unlocked():
        edge = edge_key(target, DOMAIN)
        config.networks[edge] = spec
        config.freeze = [*config.freeze, edge]
        config.paths[f"{DOMAIN}_of_n_x"] = [*pred, DOMAIN]
        config.paths[f"{DOMAIN}_of_y"] = [target, DOMAIN]
        config.losses[TERM] = dict(kind="percep", pred=f"{DOMAIN}_of_n_x",
                                   target=f"{DOMAIN}_of_y", loss="l1",
                                   weight=float(config.get("imagenet_weight", 1.0)))  # fmt: skip
    return config
