"""The original's state_dict keys <-> this project's Flax params, both ways, exactly.

The Flax modules carry the original's names (xtconsistency.md §2.2–2.3) with
list indices joined by "_": `down_blocks.0.conv1.weight` is
`down_blocks_0/conv1/kernel`, `decoder.6.bn.weight` is `decoder_6/bn/scale`.
Conv weights are OIHW in torch and HWIO here; a GroupNorm's `weight` is its
`scale`. The wrappers the original wrote are taken off first: a
`{"state_dict": ..., "optimizer": ...}` dict, and the key prefixes
`parallel_apply.module.` (DataParallelModel) and `model.` (graph.pth).
"""

from __future__ import annotations

import collections
import re
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np

from xtc_jax.errors import DataError

PREFIXES = ("model.", "parallel_apply.module.")
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
        elif leaf != "bias":
            raise DataError(f"state_dict key {key!r}: only weight and bias tensors are known.")
        node = params
        for name in path:
            node = node.setdefault(name, {})
        node[leaf] = np.ascontiguousarray(value, np.float32)
    return params


def torch_key(flax_path: str) -> str:
    """"down_blocks_0/conv1/kernel" -> "down_blocks.0.conv1.weight"."""
    *modules, leaf = flax_path.split("/")
    parts = []
    for name in modules:
        match = _INDEXED.match(name)
        parts += [match.group(1), match.group(2)] if match else [name]
    return ".".join([*parts, "bias" if leaf == "bias" else "weight"])


def _flat(params: Mapping) -> dict[str, Any]:
    return {"/".join(str(getattr(k, "key", k)) for k in path): value
            for path, value in jax.tree_util.tree_flatten_with_path(params)[0]}  # fmt: skip


def to_torch(params: Mapping) -> collections.OrderedDict[str, np.ndarray]:
    """Original keys and layouts from a Flax params tree: the inverse of `to_flax`."""
    state = collections.OrderedDict()
    for name, value in _flat(params).items():
        array = np.asarray(value, np.float32)
        if name.endswith("/kernel"):
            array = array.transpose(3, 2, 0, 1)
        state[torch_key(name)] = np.ascontiguousarray(array)
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
