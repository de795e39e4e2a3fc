"""The original's state_dict keys <-> this project's Flax params, both ways, exactly.

The Flax modules carry the original's names (xtconsistency.md §2.2–2.3) with
list indices joined by "_": `down_blocks.0.conv1.weight` is
`down_blocks_0/conv1/kernel`, `decoder.6.bn.weight` is `decoder_6/bn/scale`.
Conv weights are OIHW in torch and HWIO here; a GroupNorm's or BatchNorm's
`weight` is its `scale`, and a BatchNorm's `running_mean`/`running_var` are its
`mean`/`var` (torchvision's ResNet, `models/resnet.py`). `num_batches_tracked`
is no parameter: `batch_counts` keeps it aside, so a round trip writes it back.
The wrappers the original wrote are taken off first: a
`{"state_dict": ..., "optimizer": ...}` dict, and the key prefixes
`parallel_apply.module.` (DataParallelModel), `model.` (graph.pth) and `resnet.`
(the original's `ResNetClass` around torchvision's network).
"""

from __future__ import annotations

import collections
import re
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np

from xtc_jax.errors import DataError

PREFIXES = ("model.", "parallel_apply.module.", "resnet.")
#: torch leaf names of 1-D tensors -> Flax leaf names ("weight" of a norm layer is its scale).
_LEAVES = {"bias": "bias", "running_mean": "mean", "running_var": "var"}
_TORCH_LEAVES = {"kernel": "weight", "scale": "weight", **{v: k for k, v in _LEAVES.items()}}
BATCH_COUNT = "num_batches_tracked"
_INDEXED = re.compile(r"^(.*)_(\d+)$")


def state_dict_of(obj: Any, path: str) -> dict[str, np.ndarray]:
    """The tensors of a loaded .pth: the state_dict itself, or the one a wrapper holds,
    with the original's key prefixes removed."""
    if isinstance(obj, Mapping) and "state_dict" in obj:
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping) or not obj:
        raise DataError(f"{path} holds no state_dict (a dict of tensors): nothing to convert.")
    tensors = {}
    for key, value in obj.items():
        if not isinstance(value, np.ndarray):
            raise DataError(f"{path}: {key!r} is not a tensor; is this a state_dict?")
        name = str(key)
        while name.startswith(PREFIXES):
            name = next(name[len(p) :] for p in PREFIXES if name.startswith(p))
        tensors[name] = value
    return tensors


def to_flax(state: Mapping[str, np.ndarray]) -> dict:
    """A nested Flax params dict from original keys (see the module doc)."""
    params: dict = {}
    for key, value in state.items():
        if key.endswith(f".{BATCH_COUNT}"):
            continue  # a counter, not a parameter: see batch_counts
        parts = key.split(".")
        *modules, leaf = parts
        path: list[str] = []
        for part in modules:
            if part.isdigit() and path:
                path[-1] = f"{path[-1]}_{part}"
            else:
                path.append(part)
        if leaf == "weight":
            leaf, value = ("kernel", value.transpose(2, 3, 1, 0)) if value.ndim == 4 else ("scale",
                                                                                       value)
        elif leaf in _LEAVES:
            leaf = _LEAVES[leaf]
        else:
            raise DataError(f"state_dict key {key!r}: only weight, bias and BatchNorm running "
                            "statistics are known.")  # fmt: skip
        node = params
        for name in path:
            node = node.setdefault(name, {})
        node[leaf] = np.ascontiguousarray(value, np.float32)
    return params


def batch_counts(state: Mapping[str, np.ndarray]) -> dict[str, int]:
    """{BatchNorm key prefix: num_batches_tracked}, e.g. {"layer1.0.bn1": 12}."""
    suffix = f".{BATCH_COUNT}"
    return {k.removesuffix(suffix): int(np.asarray(v).reshape(-1)[0])
            for k, v in state.items() if k.endswith(suffix)}  # fmt: skip


def _torch_module(modules: list[str]) -> str:
    parts = []
    for name in modules:
        match = _INDEXED.match(name)
        parts += [match.group(1), match.group(2)] if match else [name]
    return ".".join(parts)


def torch_key(flax_path: str) -> str:
    """"down_blocks_0/conv1/kernel" -> "down_blocks.0.conv1.weight"."""
    *modules, leaf = flax_path.split("/")
    return f"{_torch_module(modules)}.{_TORCH_LEAVES.get(leaf, leaf)}"


def _flat(params: Mapping) -> dict[str, Any]:
    return {"/".join(str(getattr(k, "key", k)) for k in path): value
            for path, value in jax.tree_util.tree_flatten_with_path(params)[0]}  # fmt: skip


def to_torch(params: Mapping, counts: Mapping[str, int] | None = None
             ) -> collections.OrderedDict[str, np.ndarray]:  # fmt: skip
    """Original keys and layouts from a Flax params tree: the inverse of `to_flax`.

    Every BatchNorm (a module with a `var`) also gets its int64 `num_batches_tracked`,
    from `counts` (see `batch_counts`) or 0, so torch's strict `load_state_dict` takes it.
    """
    state = collections.OrderedDict()
    for name, value in _flat(params).items():
        array = np.asarray(value, np.float32)
        if name.endswith("/kernel"):
            array = array.transpose(3, 2, 0, 1)
        state[torch_key(name)] = np.ascontiguousarray(array)
        if name.endswith("/var"):
            module = _torch_module(name.split("/")[:-1])
            count = (counts or {}).get(module, 0)
            state[f"{module}.{BATCH_COUNT}"] = np.asarray(count, np.int64)
    return state


def check_shapes(params: Mapping, expected: Mapping, path: str, arch: str) -> None:
    """DataError naming the first missing key, unexpected key or shape that disagrees."""
    got = {name: tuple(np.shape(v)) for name, v in _flat(params).items()}
    want = {name: tuple(v.shape) for name, v in _flat(expected).items()}
    torch_name = {name: torch_key(name) for name in got.keys() | want.keys()}
    missing = sorted(want.keys() - got.keys())
    if missing:
        raise DataError(f"{path} lacks {torch_name[missing[0]]!r}, which {arch} needs "
                        f"({len(missing)} keys missing): not a {arch} checkpoint, or pass "
                        "--arch/--downsample for this file.")  # fmt: skip
    extra = sorted(got.keys() - want.keys())
    if extra:
        raise DataError(f"{path} has {torch_name[extra[0]]!r}, which {arch} does not "
                        f"({len(extra)} unexpected keys): pass --arch/--downsample for this file.")
    for name in sorted(want):
        if got[name] != want[name]:
            raise DataError(f"{path}: {torch_name[name]!r} has shape {got[name]} (Flax layout) "
                            f"but {arch} expects {want[name]}: check --arch/--downsample.")
