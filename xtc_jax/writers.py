"""Metric writers without TensorFlow: JSONL + TensorBoard event files, and a progress line.

`MetricWriter(logdir)` appends one JSON line per `write_scalars` call to
``logdir/metrics.jsonl`` and writes TensorBoard event files, one folder per
split (``logdir/train/``, ``logdir/eval/``) so TensorBoard overlays the
splits' curves. Only process 0 writes; the other processes' writers no-op.

Event files are TFRecords (length, masked crc32c of the length, payload,
masked crc32c of the payload) of `Event` protobufs, encoded here by hand:
Event{wall_time=1 double, step=2 int64, file_version=3 string, summary=5},
Summary{value=1 repeated}, Value{tag=1, simple_value=2 float, image=4},
Image{height=1, width=2, colorspace=3, encoded_image_string=4}. The small
TF-free `tensorboardX` would do the same but imports torch when present.
`read_events` / `read_event_scalars` parse them back, checking every crc.
"""

from __future__ import annotations

import json
import os
import socket
import struct
import sys
import time
from collections import deque
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TextIO

import jax
import numpy as np

from xtc_jax.data.png import decode_png, encode_png
from xtc_jax.errors import DataError

JSONL_NAME = "metrics.jsonl"
_POLY = 0x82F63B78  # crc32c (Castagnoli), reflected
_TABLE = np.arange(256, dtype=np.uint32)
for _ in range(8):
    _TABLE = np.where(_TABLE & 1, (_TABLE >> 1) ^ _POLY, _TABLE >> 1).astype(np.uint32)
_TABLE_LIST = _TABLE.tolist()


def _feed(register: int, data: bytes) -> int:
    table = _TABLE_LIST
    for byte in data:
        register = table[(register ^ byte) & 0xFF] ^ (register >> 8)
    return register


def _apply(op: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Applies a linear map on 32-bit registers, given as four byte tables (4, 256)."""
    return op[0][x & 255] ^ op[1][(x >> 8) & 255] ^ op[2][(x >> 16) & 255] ^ op[3][x >> 24]


def crc32c(data: bytes) -> int:
    """CRC-32C of `data`. Long inputs: NumPy over 2**k lanes, lane CRCs joined by shift maps."""
    if len(data) < 4096:
        return _feed(0xFFFFFFFF, data) ^ 0xFFFFFFFF
    lanes = 1 << min(12, (len(data) // 64).bit_length() - 1)
    width = len(data) // lanes
    head, body = data[: len(data) - lanes * width], data[len(data) - lanes * width :]
    columns = np.frombuffer(body, np.uint8).reshape(lanes, width).T.copy()
    registers = np.zeros(lanes, np.uint32)
    for column in columns:  # raw CRC (zero start) of each lane
        registers = _TABLE[(registers ^ column) & 0xFF] ^ (registers >> 8)
    # op: the CRC register after `width` zero bytes, as a linear map (CRC is linear in GF(2))
    op = np.arange(256, dtype=np.uint32)[None, :] << (8 * np.arange(4, dtype=np.uint32))[:, None]
    for _ in range(width):
        op = _TABLE[op & 0xFF] ^ (op >> 8)
    while len(registers) > 1:  # raw(A || B) = shift_|B|(raw(A)) ^ raw(B)
        registers = _apply(op, registers[0::2]) ^ registers[1::2]
        op = _apply(op, op)  # shift by twice as many bytes
    start = np.array([_feed(0xFFFFFFFF, head)], np.uint32)
    return int(_apply(op, start)[0] ^ registers[0]) ^ 0xFFFFFFFF


def _masked_crc(data: bytes) -> int:
    crc = crc32c(data)
    return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + 0xA282EAD8) & 0xFFFFFFFF


def _varint(value: int) -> bytes:
    value &= (1 << 64) - 1  # negative int64 as two's complement
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _field(number: int, wire: int, payload: bytes) -> bytes:
    return _varint(number << 3 | wire) + payload


def _message(number: int, data: bytes) -> bytes:
    return _field(number, 2, _varint(len(data)) + data)


def _event(step: int, summary_values: list[bytes] | None = None) -> bytes:
    event = _field(1, 1, struct.pack("<d", time.time())) + _field(2, 0, _varint(step))
    if summary_values is None:
        return event + _message(3, b"brain.Event:2")
    return event + _message(5, b"".join(_message(1, v) for v in summary_values))


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
            self._write_event(split, _event(0))
        header = struct.pack("<Q", len(record))
        file.write(header + struct.pack("<I", _masked_crc(header)))
        file.write(record + struct.pack("<I", _masked_crc(record)))

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
        summary = [
            _message(1, name.encode()) + _field(2, 5, struct.pack("<f", value))
            for name, value in values.items()
        ]
        self._write_event(split, _event(int(step), summary))
        self._events[split].flush()

    def write_images(self, step: int, images: Mapping[str, Any], split: str = "train") -> None:
        """TensorBoard images from uint8 (H, W, 3) arrays (e.g. a grid of predictions), as PNG."""
        if not self.enabled:
            return
        summary = []
        for name, image in images.items():
            array = _as_image(name, image)
            height, width, channels = array.shape
            proto = b"".join(
                _field(number, 0, _varint(value))
                for number, value in ((1, height), (2, width), (3, channels))
            )
            proto += _message(4, encode_png(array))
            summary.append(_message(1, name.encode()) + _message(4, proto))
        self._write_event(split, _event(int(step), summary))
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


def read_events(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Decodes one event file, checking its TFRecord framing (crc32c of length and payload).

    Each event: {"step", "wall_time", "file_version"?, "values": [{"tag",
    "simple_value"? , "image"?: {"height", "width", "colorspace", "array"}}]}.
    """
    data = Path(path).read_bytes()
    events, offset = [], 0
    while offset < len(data):
        if offset + 12 > len(data):
            raise DataError(f"{path}: truncated record header at byte {offset}.")
        header = data[offset : offset + 8]
        (length,) = struct.unpack("<Q", header)
        if struct.unpack_from("<I", data, offset + 8)[0] != _masked_crc(header):
            raise DataError(f"{path}: bad crc32c of the record length at byte {offset}.")
        end = offset + 12 + length
        if end + 4 > len(data):
            raise DataError(f"{path}: truncated record at byte {offset}.")
        payload = data[offset + 12 : end]
        if struct.unpack_from("<I", data, end)[0] != _masked_crc(payload):
            raise DataError(f"{path}: bad crc32c of the record at byte {offset}.")
        events.append(_decode_event(_parse(payload)))
        offset = end + 4
    return events


def _parse(buffer: bytes) -> dict[int, list[Any]]:
    """Protobuf wire format -> {field number: [int | bytes, ...]}."""
    fields: dict[int, list[Any]] = {}
    index = 0

    def varint() -> int:
        nonlocal index
        value = shift = 0
        while True:
            byte = buffer[index]
            index += 1
            value |= (byte & 0x7F) << shift
            shift += 7
            if byte < 0x80:
                return value

    while index < len(buffer):
        key = varint()
        wire = key & 7
        if wire == 0:
            value: Any = varint()
        elif wire in (1, 5):
            size = 8 if wire == 1 else 4
            value, index = buffer[index : index + size], index + size
        elif wire == 2:
            size = varint()
            value, index = buffer[index : index + size], index + size
        else:
            raise DataError(f"unsupported protobuf wire type {wire}.")
        fields.setdefault(key >> 3, []).append(value)
    return fields


def _decode_event(fields: dict[int, list[Any]]) -> dict[str, Any]:
    event: dict[str, Any] = {"step": fields.get(2, [0])[0], "values": []}
    event["wall_time"] = struct.unpack("<d", fields[1][0])[0] if 1 in fields else 0.0
    if 3 in fields:
        event["file_version"] = fields[3][0].decode()
    for summary in fields.get(5, []):
        for raw in _parse(summary).get(1, []):
            value = _parse(raw)
            decoded: dict[str, Any] = {"tag": value[1][0].decode()}
            if 2 in value:
                decoded["simple_value"] = struct.unpack("<f", value[2][0])[0]
            if 4 in value:
                image = _parse(value[4][0])
                decoded["image"] = {
                    "height": image[1][0],
                    "width": image[2][0],
                    "colorspace": image[3][0],
                    "array": decode_png(image[4][0]),
                }
            event["values"].append(decoded)
    return event


def read_event_scalars(logdir: str | os.PathLike) -> dict[str, list[tuple[int, float]]]:
    """tag -> [(step, value), ...] from every event file under `logdir`.

    Tags from a split folder are prefixed with it: ``train/loss``.
    """
    logdir = Path(logdir)
    scalars: dict[str, list[tuple[int, float]]] = {}
    for path in sorted(logdir.rglob("*tfevents*")):
        prefix = path.parent.relative_to(logdir).as_posix()
        for event in read_events(path):
            for value in event["values"]:
                if "simple_value" in value:
                    tag = value["tag"] if prefix == "." else f"{prefix}/{value['tag']}"
                    scalars.setdefault(tag, []).append((event["step"], value["simple_value"]))
    return scalars
