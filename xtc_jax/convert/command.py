"""The conversion itself: a published `.pth` file -> an export folder every command accepts.

`convert_file(path, out)` reads the file without torch (`pth.py`), takes the
original's wrappers off, finds the edge and architecture from the file name
(`table.py`) unless `edge`/`arch` say otherwise, maps the keys to Flax params
(`names.py`), checks every key and shape against the architecture, and writes
`{out}/{file stem}/` with `infra.export.export_model`. A training `graph.pth`
(`{"('src', 'dst')": state_dict}`) becomes one export per edge,
`{out}/{stem}_{src}__{dst}/`. torchvision's ImageNet ResNets (`resnet50-*.pth`)
convert the same way, without their classifier (`fc`): the perceptual network
and the multi-task encoder stop at layer4.
"""

from __future__ import annotations

import ast
import dataclasses
import os
from collections.abc import Callable, Mapping

from xtc_jax import domains as domains_lib
from xtc_jax.convert import names, table
from xtc_jax.convert.pth import read_pth
from xtc_jax.errors import ConfigError
from xtc_jax.infra import export as export_lib
from xtc_jax.models import param_shapes
from xtc_jax.models.edges import edge_key, edge_network, split_edge

#: Exports of the published networks are for the paper's 256 x 256 inputs.
RESOLUTION = 256
#: Architectures whose spec has a downsample count (the others have a fixed depth).
_WITH_DOWNSAMPLE = ("unet", "unet_reshade")


def network_spec(arch: str, downsample: int, depth: int = 0) -> dict:
    """The `networks[edge]` spec of a published network: full width, the original's depth."""
    spec = {"arch": arch}
    if arch in _WITH_DOWNSAMPLE:
        spec.update(downsample=int(downsample), width=1.0)
    if arch == "resnet":
        spec.update(depth=int(depth or 50), width=1.0)
    return spec


def _describe(identity: table.Identity) -> str:
    if identity.arch in _WITH_DOWNSAMPLE:
        return f"{identity.arch} (downsample {identity.downsample})"
    if identity.arch == "resnet":
        return f"resnet (depth {identity.depth or 50})"
    return identity.arch


def _graph_edges(obj) -> dict[tuple[str, str], Mapping] | None:
    """A training graph.pth's {(src, dst): state_dict}, or None for any other file."""
    if not isinstance(obj, Mapping) or not obj:
        return None
    edges = {}
    for key, value in obj.items():
        try:
            pair = ast.literal_eval(str(key))
        except (ValueError, SyntaxError):
            return None
        if not (isinstance(pair, tuple) and len(pair) == 2 and isinstance(value, Mapping)):
            return None
        edges[pair] = value
    return edges


def _convert(state: Mapping, path: str, identity: table.Identity, directory: str) -> str:
    spec = network_spec(identity.arch, identity.downsample, identity.depth)
    src, dst = split_edge(identity.edge)
    tensors = names.state_dict_of(state, path)
    if identity.arch == "resnet":  # torchvision's classifier: not part of the trunk
        tensors = {k: v for k, v in tensors.items() if not k.startswith("fc.")}
    params = names.to_flax(tensors)
    expected = param_shapes(edge_network(identity.edge, spec), 64, domains_lib.get(src).channels)
    names.check_shapes(params, expected, path, _describe(identity))
    model_config = dict(spec, edge=edge_key(src, dst), src=src, dst=dst, resolution=RESOLUTION)
    counts = names.batch_counts(tensors)
    if counts:
        model_config["batch_counts"] = counts  # written back by --to_torch
    export_lib.export_model(directory, params, model_config)
    return directory


def convert_file(path: str, out: str, edge: str = "", arch: str = "",
                 downsample: int | None = None, log: Callable[[str], None] = print,
                 depth: int | None = None) -> dict[str, dict]:  # fmt: skip
    """Converts one file; returns {export folder: {file, edge, arch, downsample}}."""
    stem = os.path.splitext(os.path.basename(path))[0]
    obj = read_pth(path)
    graph = _graph_edges(obj)
    jobs = []
    if graph is not None:
        for (src, dst), state in graph.items():
            identity = table.identify(f"{src}2{dst}.pth")
            folder = os.path.join(out, f"{stem}_{identity.edge.replace('->', '__')}")
            jobs.append((state, identity, folder))
    else:
        if bool(edge) != bool(arch):
            raise ConfigError("--edge and --arch go together: name both, or neither to read "
                              "them from the original's file name.")  # fmt: skip
        if edge:
            identity = table.Identity(edge_key(*split_edge(edge)), arch, 5)
        else:
            identity = table.identify(path)
        if downsample is not None:
            identity = dataclasses.replace(identity, downsample=downsample)
        if depth is not None:
            identity = dataclasses.replace(identity, depth=depth)
        jobs.append((obj, identity, os.path.join(out, stem)))
    written = {}
    for state, identity, folder in jobs:
        _convert(state, path, identity, folder)
        written[folder] = {"file": os.path.abspath(path), "edge": identity.edge,
                           "arch": identity.arch, "downsample": identity.downsample}
        if identity.arch == "resnet":
            written[folder]["depth"] = identity.depth
        log(f"{path} -> {folder} ({identity.edge}, {_describe(identity)})")
    return written


def export_to_torch(export_dir: str, out: str, log: Callable[[str], None] = print) -> str:
    """An export folder as the original's plain state_dict `.pth` (its key names and layouts),
    which the original repository's `load_state_dict` and `torch.load` read."""
    from xtc_jax.convert.write_pth import write_pth

    params, model_config = export_lib.load_exported(export_dir)
    path = write_pth(out, names.to_torch(params, model_config.get("batch_counts")))
    what = f"{model_config.get('edge', '?')}, {model_config.get('arch', '?')}"
    log(f"{export_dir} ({what}) -> {path}")
    return path


def convert_models_dir(models_dir: str, out: str, log: Callable[[str], None] = print) -> dict:
    """Converts every known file of a MODELS_DIR; writes and returns {out}/index.json.

    index.json: {"converted": {file: {"edge", "arch", "downsample", "export"}},
    "skipped": {file: reason}} (a name outside the table, or an architecture this
    version cannot build yet).
    """
    from xtc_jax.infra import atomic

    if not os.path.isdir(models_dir):
        raise ConfigError(f"--models_dir {models_dir} is not a folder of the original's .pth "
                          "files.")  # fmt: skip
    files = sorted(f for f in os.listdir(models_dir) if f.endswith(".pth"))
    if not files:
        raise ConfigError(f"--models_dir {models_dir} holds no .pth file.")
    index: dict[str, dict] = {"converted": {}, "skipped": {}}
    for name in files:
        path = os.path.join(models_dir, name)
        try:
            table.identify(path)
        except ConfigError as error:
            index["skipped"][name] = str(error)
            log(f"skipped {name}: {error}")
            continue
        for folder, info in convert_file(path, out, log=log).items():
            index["converted"][name] = dict(info, export=os.path.abspath(folder))
    os.makedirs(out, exist_ok=True)
    atomic.write_json(os.path.join(out, "index.json"), index)
    log(f"converted {len(index['converted'])} of {len(files)} files; {out}/index.json")
    return index
