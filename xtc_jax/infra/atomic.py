"""Atomic writes: a temporary file (or folder) beside the target, then a rename over it.

Readers (and a crash at any moment) see the old file or the new one, never half
of one, so nothing written is lost or left truncated.
"""

from __future__ import annotations

import json
import os
import shutil
from typing import Any


def write_bytes(path: str | os.PathLike, data: bytes) -> str:
    """Writes `data` to `path` atomically; returns `path` as a string."""
    path = os.fspath(path)
    folder, name = os.path.split(os.path.abspath(path))
    tmp = os.path.join(folder, f".{name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as handle:
        handle.write(data)
    os.replace(tmp, path)
    return path


def write_json(path: str | os.PathLike, value: Any) -> str:
    """`value` as indented JSON at `path`, atomically."""
    return write_bytes(path, json.dumps(value, indent=2).encode())


def copy_tree(src: str | os.PathLike, dst: str | os.PathLike) -> str:
    """Copies folder `src` to `dst` through a temporary sibling renamed into place."""
    dst = os.fspath(dst)
    tmp = f"{dst}.tmp{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(src, tmp)
    os.replace(tmp, dst)
    return dst
