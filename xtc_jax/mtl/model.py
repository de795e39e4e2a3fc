"""The multi-task network of a config: build, initialise, load a pretrained encoder, export.

The trainable variables are {"params", "batch_stats"}: BatchNorm's running
averages live beside the params, are updated by the training step and
averaged over the whole (sharded) batch, and are used at evaluation.
`model.pretrained` names an exported torchvision ResNet (`python -m
xtc_jax.convert` of resnet{depth}-*.pth): its frozen-BatchNorm params are
split into params (scale, bias) and batch statistics (mean, var).
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp

from xtc_jax.data.mtl import sources
from xtc_jax.errors import ConfigError
from xtc_jax.infra import export as export_lib
from xtc_jax.models.resnet import DEPTHS
from xtc_jax.models.xtask import XTaskNet

MODEL_FIELDS = ("tasks", "encoder_depth", "encoder_width", "transfer", "transfer_batch_norm",
                "transfer_wider", "transfer_width", "mid_features")  # fmt: skip


def model_fields(config) -> dict:
    """XTaskNet's constructor fields from the config."""
    fields = {k: config.model[k] for k in MODEL_FIELDS}
    fields["tasks"] = tuple(fields["tasks"])
    fields["num_classes"] = sources.num_classes(config.data)
    return fields


def build(config) -> XTaskNet:
    return XTaskNet(**model_fields(config))


def load_export(directory: str) -> tuple[XTaskNet, dict, dict]:
    """(network, variables, model.json) of an exported multi-task model; the network is rebuilt
    from model.json, so an export is read with the settings it was trained with."""
    if not os.path.isfile(os.path.join(directory, export_lib.MODEL_JSON)):
        raise ConfigError(f"{directory} holds no exported model ({export_lib.MODEL_JSON}): run "
                          "the main command with this config and workdir first.")  # fmt: skip
    variables, model_config = export_lib.load_exported(directory)
    if model_config.get("arch") != "xtask":
        raise ConfigError(f"{directory} holds a {model_config.get('arch')!r} model, not a "
                          "multi-task (xtask) one.")  # fmt: skip
    fields = {k: model_config[k] for k in (*MODEL_FIELDS, "num_classes") if k in model_config}
    fields["tasks"] = tuple(fields["tasks"])
    return XTaskNet(**fields), variables, model_config


def preprocess(x: jax.Array, imagenet_normalize: bool) -> jax.Array:
    """The network's input: rgb in [0, 1], ImageNet-normalised for Cityscapes (as the original)."""
    if not imagenet_normalize:
        return x
    mean = jnp.asarray((0.485, 0.456, 0.406), x.dtype)
    std = jnp.asarray((0.229, 0.224, 0.225), x.dtype)
    return (x - mean) / std


def init_variables(model: XTaskNet, rng: jax.Array, size) -> dict:
    """{"params", "batch_stats"} of `model` for (height, width) inputs."""
    dummy = jnp.zeros((1, *size, 3), jnp.float32)
    variables = jax.jit(lambda key: model.init(key, dummy))(rng)
    return {"params": variables["params"], "batch_stats": variables["batch_stats"]}


def split_frozen_batch_norm(tree: dict) -> tuple[dict, dict]:
    """A frozen-BN ResNet params tree -> (params with scale/bias, batch_stats with mean/var)."""
    params, stats = {}, {}
    for name, value in tree.items():
        if isinstance(value, dict) and {"mean", "var"} <= set(value):
            params[name] = {k: v for k, v in value.items() if k not in ("mean", "var")}
            stats[name] = {"mean": value["mean"], "var": value["var"]}
        elif isinstance(value, dict):
            sub_params, sub_stats = split_frozen_batch_norm(value)
            params[name] = sub_params
            if sub_stats:
                stats[name] = sub_stats
        else:
            params[name] = value
    return params, stats


def load_pretrained_encoder(variables: dict, directory: str, depth: int) -> dict:
    """`variables` with the encoder replaced by the exported torchvision ResNet at `directory`."""
    if not os.path.isfile(os.path.join(directory, export_lib.MODEL_JSON)):
        raise ConfigError(f"model.pretrained={directory!r} is not an exported model (no "
                          f"{export_lib.MODEL_JSON}); convert torchvision's resnet{depth}-*.pth "
                          "with python -m xtc_jax.convert first.")  # fmt: skip
    loaded, model_config = export_lib.load_exported(directory)
    if model_config.get("arch") != "resnet" or model_config.get("depth") != depth:
        raise ConfigError(f"model.pretrained={directory!r} holds {model_config.get('arch')} "
                          f"depth {model_config.get('depth')}, but model.encoder_depth={depth}; "
                          f"convert resnet{depth}.")  # fmt: skip
    params, stats = split_frozen_batch_norm(jax.device_get(loaded))
    expected = jax.tree.map(jnp.shape, variables["params"]["encoder"])
    if jax.tree.map(jnp.shape, params) != expected:
        raise ConfigError(f"model.pretrained={directory!r}: its ResNet-{depth} does not match the "
                          "encoder (model.encoder_width must be 1.0).")  # fmt: skip
    return {"params": {**variables["params"], "encoder": params},
            "batch_stats": {**variables["batch_stats"], "encoder": stats}}


def check(config) -> None:
    """ConfigError for model settings that cannot work, before anything is built."""
    if config.model.encoder_depth not in DEPTHS:
        raise ConfigError(f"model.encoder_depth={config.model.encoder_depth}: use one of "
                          f"{sorted(DEPTHS)}.")  # fmt: skip
    build(config)  # XTaskNet's own checks (tasks, transfer, classes)
    if "normal" in config.model.tasks and config.data.dataset == "cityscapes":
        raise ConfigError('model.tasks has "normal", but Cityscapes has no normals.')
    nyu_without_normals = config.data.dataset == "nyuv2" and not config.data.normals
    if "normal" in config.model.tasks and nyu_without_normals:
        raise ConfigError('model.tasks has "normal": set data.normals=True to read NYUv2 normals.')


def gradnorm_layer(config) -> str:
    """weighting_options.layer, or the last shared conv: layer4's last block's last conv."""
    if config.weighting_options.layer:
        return config.weighting_options.layer
    kind, counts = DEPTHS[config.model.encoder_depth]
    last = "conv2" if kind == "basic" else "conv3"
    return f"encoder/layer4_{counts[-1] - 1}/{last}/kernel"
