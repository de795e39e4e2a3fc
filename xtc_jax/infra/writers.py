"""Metric writers without TensorFlow: JSONL + TensorBoard event files, and a progress line.

`MetricWriter(logdir)` appends one JSON line per `write_scalars` call to
``logdir/metrics.jsonl`` and writes TensorBoard event files, one folder per
split (``logdir/train/``, ``logdir/val/``, ... as the `split` argument names
them) so TensorBoard overlays the splits' curves. Only process 0 writes; the
other processes' writers no-op. The event-file format is `tfevents.py`.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from collections import deque
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TextIO

import jax
import numpy as np

from xtc_jax.infra import tfevents

JSONL_NAME = "metrics.jsonl"


def log(message: str) -> None:
    """A run log line, printed by process 0 only (every process runs the same code)."""
    if jax.process_index() == 0:
        print(message, flush=True)


def _as_number(name: str, value: Any) -> int | float:
    array = np.asarray(value)
    if array.size != 1:
        raise ValueError(f"metric {name!r} is not a scalar: shape {array.shape}.")
    return int(array) if array.dtype.kind in "biu" else float(array)


def _as_image(name: str, image: Any) -> np.ndarray:
    """uint8 (H, W, 3): uint8 as is, floats clipped to [0, 1]; gray (H, W[, 1]) repeated."""
    array = np.asarray(image)
    if array.dtype != np.uint8:
        array = np.round(np.clip(array.astype(np.float32), 0.0, 1.0) * 255).astype(np.uint8)
    if array.ndim == 2:
        array = array[..., None]
    if array.ndim != 3 or array.shape[-1] not in (1, 3):
        raise ValueError(
            f"image {name!r} must be (H, W), (H, W, 1) or (H, W, 3); got {array.shape}."
        )
    return np.repeat(array, 3, axis=-1) if array.shape[-1] == 1 else array


class MetricWriter:
    """Scalars to ``logdir/metrics.jsonl`` and TensorBoard; images to TensorBoard.

    Args:
      logdir: created if missing; an existing ``metrics.jsonl`` is appended to
        (a resumed run may repeat the steps after its last checkpoint).
      enabled: defaults to ``jax.process_index() == 0``.
    """

    def __init__(self, logdir: str | os.PathLike, enabled: bool | None = None):
        self.logdir = Path(logdir)
        self.enabled = jax.process_index() == 0 if enabled is None else enabled
        self._jsonl: TextIO | None = None
        self._events: dict[str, Any] = {}
        if self.enabled:
            self.logdir.mkdir(parents=True, exist_ok=True)
            self._jsonl = open(self.logdir / JSONL_NAME, "a")  # noqa: SIM115 (closed in close)

    def _write_event(self, split: str, record: bytes) -> None:
        file = self._events.get(split)
        if file is None:
            folder = self.logdir / split
            folder.mkdir(parents=True, exist_ok=True)
            name = f"events.out.tfevents.{time.time():.0f}.{socket.gethostname()}.{os.getpid()}"
            file = self._events[split] = open(folder / name, "ab")  # noqa: SIM115
            self._write_event(split, tfevents.event(0))
        file.write(tfevents.frame(record))

    def write_scalars(self, step: int, scalars: Mapping[str, Any], split: str = "train") -> None:
        """One JSONL line {"step", "split", name: value...} and one TensorBoard scalar each."""
        if not self.enabled:
            return
        values = {name: _as_number(name, value) for name, value in scalars.items()}
        if {"step", "split"} & values.keys():
            raise ValueError("metric names 'step' and 'split' are reserved.")
        assert self._jsonl is not None
        self._jsonl.write(json.dumps({"step": int(step), "split": split, **values}) + "\n")
        self._jsonl.flush()
        summary = [tfevents.scalar_value(name, value) for name, value in values.items()]
        self._write_event(split, tfevents.event(int(step), summary))
        self._events[split].flush()

    def write_images(self, step: int, images: Mapping[str, Any], split: str = "train") -> None:
        """TensorBoard images from uint8 (H, W, 3) arrays (e.g. a grid of predictions), as PNG."""
        if not self.enabled:
            return
        summary = []
        for name, image in images.items():
            summary.append(tfevents.image_value(name, _as_image(name, image)))
        self._write_event(split, tfevents.event(int(step), summary))
        self._events[split].flush()

    def flush(self) -> None:
        for file in [self._jsonl, *self._events.values()]:
            if file is not None:
                file.flush()

    def close(self) -> None:
        for file in [self._jsonl, *self._events.values()]:
            if file is not None:
                file.close()
        self._jsonl, self._events = None, {}

    def __enter__(self) -> MetricWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _format_duration(seconds: float) -> str:
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    if seconds < 86400:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 86400}d{seconds % 86400 // 3600:02d}h"


def _format_value(value: Any) -> str:
    number = _as_number("", value)
    if isinstance(number, int):
        return str(number)
    return f"{number:.4f}" if number == 0 or 1e-3 <= abs(number) < 1e5 else f"{number:.3e}"


class Progress:
    """Prints ``step 120/2000 (6%)  3.41 steps/s  ETA 9m11s  loss 0.1234`` now and then.

    At most every `every_seconds` (and always at the last step), on process 0,
    to stdout, flushed. Steps/s is measured over the last `window_seconds`, so
    compilation and evaluation pauses fade out of it.
    """

    def __init__(
        self,
        total_steps: int,
        every_seconds: float = 30.0,
        window_seconds: float = 120.0,
        clock: Any = time.monotonic,
        enabled: bool | None = None,
        unit: str = "step",
    ):
        self.unit = unit
        self.total_steps = total_steps
        self.every_seconds = every_seconds
        self.window_seconds = window_seconds
        self.clock = clock
        self.enabled = jax.process_index() == 0 if enabled is None else enabled
        self._history: deque[tuple[float, int]] = deque()
        self._last_print = clock()

    def update(self, step: int, metrics: Mapping[str, Any] | None = None) -> str | None:
        """Records that `step` is done; returns the line if one was printed."""
        if not self.enabled:
            return None
        now = self.clock()
        self._history.append((now, step))
        while len(self._history) > 2 and now - self._history[1][0] >= self.window_seconds:
            self._history.popleft()
        last = step >= self.total_steps
        if not last and now - self._last_print < self.every_seconds:
            return None
        self._last_print = now
        (t0, s0) = self._history[0]
        rate = (step - s0) / (now - t0) if now > t0 and step > s0 else None
        unit = self.unit
        line = f"{unit} {step}/{self.total_steps} ({100 * step // max(self.total_steps, 1)}%)"
        if rate is None:
            line += f"  -- {unit}s/s  ETA --"
        else:
            eta = max(self.total_steps - step, 0) / rate
            line += f"  {rate:.2f} {unit}s/s  ETA {_format_duration(eta)}"
        for name, value in (metrics or {}).items():
            line += f"  {name} {_format_value(value)}"
        print(line, file=sys.stdout, flush=True)
        return line
