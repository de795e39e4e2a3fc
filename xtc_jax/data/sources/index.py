"""Walks a Taskonomy tree and indexes its files by (building, point, view).

Every per-view file is `point_{P}_view_{V}_domain_{token}.{ext}`
(taskonomy.md §1.1). The building and the domain folder come from the
nearest path components, as each layout places them (`layouts.py`); the
domain itself comes from the file-name token (`segmentsemantic` ->
segment_semantic). File names are read from disk, never rebuilt from folder
names.

A real tree holds millions of files, so the walk lists only the domain
folders that were asked for (`os.scandir`, one listing per folder) and the
index is a handful of NumPy arrays, not one dict per file: a view is a
packed int64 key (building index, point, view), sorted numerically, and a
file is a key plus a "location" (folder, token, extension) from which its
canonical name is rebuilt; the few names that are not canonical (leading
zeros) are kept verbatim.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Sequence

import numpy as np

from xtc_jax import domains as domains_lib
from xtc_jax.data.sources import layouts
from xtc_jax.errors import ConfigError, DataError

EXAMPLES_PER_REASON = 5
FILE_RE = re.compile(r"point_(\d+)_view_(\d+|all)_domain_(\w+)\.(png|json|npy)")

#: File tokens whose domain has a different folder name (besides domains.DOMAIN_OF_TOKEN).
_EXTRA_TOKENS = {"class_places": "class_scene"}

# Key packing: building (21 bits) | point (22 bits) | view (20 bits).
_POINT_SHIFT, _VIEW_BITS, _POINT_BITS, _BUILDING_BITS = 20, 20, 22, 21


def token_domain(token: str) -> str:
    """Domain of a file token; unknown tokens (depth_euclidean, point_info) stay as they are."""
    return (
        domains_lib.DOMAIN_OF_TOKEN.get(token)
        or domains_lib.ALIASES.get(token)
        or _EXTRA_TOKENS.get(token, token)
    )


def folder_domain(folder: str) -> str:
    """Domain name of a domain folder (legacy names such as `depth` are mapped)."""
    return domains_lib.ALIASES.get(folder, folder)


def pack_key(building: int, point: int, view: int) -> int:
    if point >> _POINT_BITS or view >> _VIEW_BITS or building >> _BUILDING_BITS:
        raise DataError(f"point {point} / view {view} / building #{building} too large to index")
    return (building << (_POINT_SHIFT + _POINT_BITS)) | (point << _POINT_SHIFT) | view


def unpack_keys(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    keys = np.asarray(keys, dtype=np.int64)
    return (
        keys >> (_POINT_SHIFT + _POINT_BITS),
        (keys >> _POINT_SHIFT) & ((1 << _POINT_BITS) - 1),
        keys & ((1 << _VIEW_BITS) - 1),
    )


def _subdirs(path: str) -> list[os.DirEntry]:
    try:
        with os.scandir(path) as entries:
            return sorted(
                (e for e in entries if not e.name.startswith(".") and e.is_dir()),
                key=lambda e: e.name,
            )
    except FileNotFoundError:
        return []
    except OSError as error:
        raise DataError(f"cannot list {path}: {error}. Check permissions and the mount.") from error


def _find_sample(root: str, depth: int = 4) -> tuple[tuple[str, ...], str] | None:
    """(folders from root to the first Taskonomy file found, its token); depth-first, bounded."""
    try:
        with os.scandir(root) as entries:
            names = sorted(entries, key=lambda e: e.name)
    except OSError:
        return None
    for entry in names:
        match = FILE_RE.fullmatch(entry.name)
        if match and entry.is_file():
            return (), match.group(3)
    if depth == 0:
        return None
    for entry in names:
        if entry.is_dir() and not entry.name.startswith("."):
            found = _find_sample(entry.path, depth - 1)
            if found is not None:
                return (entry.name, *found[0]), found[1]
    return None


def detect_layout(root: str) -> str:
    """Which of layouts.LAYOUTS `root` is, judged from the path of the first file found."""
    found = _find_sample(root)
    if found is None:
        raise DataError(
            f"no Taskonomy files (point_P_view_V_domain_D.png) found under {root}. "
            "Pass the folder that holds the buildings or domain folders as --root."
        )
    parts, token = found
    domain = token_domain(token)
    example = os.path.join(root, *parts)
    if len(parts) == 3 and parts[1] == "taskonomy":
        return "omnidata"
    if len(parts) == 2:
        outer, inner = parts
        if outer.endswith("_" + inner) and len(outer) > len(inner) + 1:
            return "xtc"
        if folder_domain(inner) == domain:
            return "plain"
        if folder_domain(outer) == domain:
            return "by_domain"
    if len(parts) == 1:
        raise DataError(
            f"{example} holds Taskonomy files directly, so {root} looks like a single building. "
            f"Move it into a parent folder ({{root}}/{{building}}/{{domain}}/...) and pass that."
        )
    raise DataError(
        f"cannot tell the layout of {root} from {example}: expected one of "
        "{building}/{domain}/, {building}_{domain}/{domain}/, {domain}/taskonomy/{building}/ "
        "or {domain}/{building}/ below the root. Pass the right --root, or --layout."
    )


def _domain_dirs(root: str, layout: str) -> list[tuple[str, str, str]]:
    """(building, domain folder, folder path relative to root) for every domain folder."""
    found = []
    if layout in ("plain", "xtc"):
        for outer in _subdirs(root):
            for inner in _subdirs(outer.path):
                if layout == "plain":
                    found.append((outer.name, inner.name, f"{outer.name}/{inner.name}"))
                elif outer.name.endswith("_" + inner.name) and outer.name != "_" + inner.name:
                    building = outer.name[: -len(inner.name) - 1]
                    found.append((building, inner.name, f"{outer.name}/{inner.name}"))
    elif layout in ("omnidata", "by_domain"):
        for outer in _subdirs(root):
            parent = os.path.join(outer.path, "taskonomy") if layout == "omnidata" else outer.path
            prefix = f"{outer.name}/taskonomy" if layout == "omnidata" else outer.name
            for inner in _subdirs(parent):
                found.append((inner.name, outer.name, f"{prefix}/{inner.name}"))
    else:
        raise ConfigError(f"layout={layout!r} is unknown; use auto or one of {layouts.LAYOUTS}.")
    return found


@dataclasses.dataclass
class TreeIndex:
    """The files of some domains of a Taskonomy tree, indexed by view.

    Attributes:
      root: the tree's root folder.
      layout: one of layouts.LAYOUTS.
      buildings: sorted names of the buildings having a folder of a requested domain
        (also those left out by the `buildings` filter, whose files are not indexed).
      domains_found: every domain folder seen in the tree (also those not indexed).
      dirs: folders holding files, relative to root.
      locs: (dir index, token, extension) per file location.
      files: domain -> (sorted int64 view keys, int32 location per key).
      names: (domain, key) -> file name, only where the name is not canonical.
      counts: files indexed and files ignored, by reason.
    """

    root: str
    layout: str
    buildings: tuple[str, ...]
    domains_found: tuple[str, ...]
    dirs: list[str]
    locs: list[tuple[int, str, str]]
    files: dict[str, tuple[np.ndarray, np.ndarray]]
    names: dict[tuple[str, int], str]
    counts: dict[str, int]


def build_index(
    root: str,
    domains: list[str] | tuple[str, ...] | None = None,
    layout: str = "auto",
    buildings: list[str] | tuple[str, ...] | None = None,
) -> TreeIndex:
    """Indexes the files of `domains` and `buildings` (None: all) under `root`."""
    root = os.path.abspath(os.fspath(root))
    if not os.path.isdir(root):
        what = "is not a folder" if os.path.exists(root) else "does not exist"
        raise DataError(f"Taskonomy root {root} {what}. Check --root.")
    if layout == "auto":
        layout = detect_layout(root)
    all_dirs = _domain_dirs(root, layout)
    domains_found = tuple(sorted({folder_domain(f) for _, f, _ in all_dirs}))
    wanted = None if domains is None else set(domains)
    keep = None if buildings is None else set(buildings)
    dirs = [
        (b, folder_domain(f), rel)
        for b, f, rel in all_dirs
        if wanted is None or folder_domain(f) in wanted
    ]
    names = sorted({b for b, _, _ in dirs})  # every building present, for split checks
    dirs = [d for d in dirs if keep is None or d[0] in keep]
    building_id = {b: i for i, b in enumerate(names)}
    counts = dict.fromkeys(("indexed", "per_point", "token_mismatch", "other", "duplicate"), 0)
    locs: list[tuple[int, str, str]] = []
    loc_id: dict[tuple[int, str, str], int] = {}
    keys: dict[str, list[int]] = {}
    key_locs: dict[str, list[int]] = {}
    odd_names: dict[tuple[str, int], str] = {}
    for dir_index, (building, domain, rel) in enumerate(dirs):
        try:
            with os.scandir(os.path.join(root, rel)) as entries:
                file_names = [e.name for e in entries]
        except OSError as error:
            raise DataError(f"cannot list {os.path.join(root, rel)}: {error}.") from error
        for name in file_names:
            match = FILE_RE.fullmatch(name)
            if match is None:
                counts["other"] += 1
                continue
            point_s, view_s, token, ext = match.groups()
            if view_s == "all":
                counts["per_point"] += 1
                continue
            if token_domain(token) != domain:
                counts["token_mismatch"] += 1
                continue
            key = pack_key(building_id[building], int(point_s), int(view_s))
            loc = loc_id.setdefault((dir_index, token, ext), len(loc_id))
            if loc == len(locs):
                locs.append((dir_index, token, ext))
            if name != f"point_{int(point_s)}_view_{int(view_s)}_domain_{token}.{ext}":
                odd_names[(domain, key)] = name
            keys.setdefault(domain, []).append(key)
            key_locs.setdefault(domain, []).append(loc)
    files = {}
    for domain, domain_keys in keys.items():
        key_array = np.asarray(domain_keys, dtype=np.int64)
        order = np.argsort(key_array, kind="stable")
        key_array, loc_array = key_array[order], np.asarray(key_locs[domain], np.int32)[order]
        unique = np.concatenate([[True], np.diff(key_array) != 0])
        counts["duplicate"] += int((~unique).sum())
        files[domain] = (key_array[unique], loc_array[unique])
        counts["indexed"] += int(unique.sum())
    return TreeIndex(
        root=root,
        layout=layout,
        buildings=tuple(names),
        domains_found=domains_found,
        dirs=[rel for _, _, rel in dirs],
        locs=locs,
        files=files,
        names=odd_names,
        counts=counts,
    )


def stored_names(domains: Sequence[str] | str) -> tuple[str, ...]:
    """Requested domains -> the stored domains whose files hold them (edge_texture -> rgb).

    Names outside the registry (point_info, depth_euclidean) are kept as they are.
    """
    if isinstance(domains, str):
        domains = [d for d in domains.split(",") if d.strip()]
    names: list[str] = []
    for name in (d.strip() for d in domains):
        known = name in domains_lib.DOMAINS or name in domains_lib.ALIASES
        stored = domains_lib.get(name).stored_name if known else name
        if stored not in names:
            names.append(stored)
    if not names:
        raise ConfigError("domains is empty; pass e.g. --domains rgb,normal.")
    return tuple(names)


def check_domains(index: TreeIndex, domains: Sequence[str]) -> None:
    """DataError naming the first requested domain without files, and the domains found."""
    if not index.domains_found:
        raise DataError(
            f"no domain folders under {index.root} in layout {index.layout} (expected "
            f"{layouts.domain_dir(index.layout, '{building}', '{domain}')}/). "
            "Check --root and --layout (--layout auto detects it)."
        )
    for domain in domains:
        if domain not in index.files:
            where = "in the selected buildings" if domain in index.domains_found else "anywhere"
            raise DataError(
                f"domain {domain!r}: no files {where} under {index.root} (layout "
                f"{index.layout}). Domains found: {', '.join(index.domains_found) or '(none)'}. "
                "Download that domain, or drop it from --domains."
            )
