"""Atomic file writes: a temporary file in the same folder, then a rename over the target.

Readers (and a crash at any moment) see the old file or the new one, never half
of one, so nothing written is lost or left truncated.
"""

from __future__ import annotations

import json
import os
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
