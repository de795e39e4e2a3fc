"""TensorBoard event files, encoded and decoded by hand (no TensorFlow, no tensorboardX).

Event files are TFRecords (length, masked crc32c of the length, payload,
masked crc32c of the payload) of `Event` protobufs:
Event{wall_time=1 double, step=2 int64, file_version=3 string, summary=5},
Summary{value=1 repeated}, Value{tag=1, simple_value=2 float, image=4},
Image{height=1, width=2, colorspace=3, encoded_image_string=4}. The small
TF-free `tensorboardX` would do the same but imports torch when present.
`read_events` / `read_event_scalars` parse them back, checking every crc.
"""

from __future__ import annotations

import os
import struct
import time
from pathlib import Path
from typing import Any

import numpy as np

from xtc_jax.errors import DataError
from xtc_jax.infra.png import decode_png, encode_png

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

def event(step: int, summary_values: list[bytes] | None = None) -> bytes:
    """An Event: the file-version header when `summary_values` is None, else a Summary."""
    record = _field(1, 1, struct.pack("<d", time.time())) + _field(2, 0, _varint(step))
    if summary_values is None:
        return record + _message(3, b"brain.Event:2")
    return record + _message(5, b"".join(_message(1, v) for v in summary_values))


def scalar_value(tag: str, value: float) -> bytes:
    """A Summary.Value holding one float."""
    return _message(1, tag.encode()) + _field(2, 5, struct.pack("<f", value))


def image_value(tag: str, array: np.ndarray) -> bytes:
    """A Summary.Value holding a uint8 (H, W, C) image, PNG-encoded."""
    height, width, channels = array.shape
    proto = b"".join(
        _field(number, 0, _varint(value))
        for number, value in ((1, height), (2, width), (3, channels))
    )
    proto += _message(4, encode_png(array))
    return _message(1, tag.encode()) + _message(4, proto)


def frame(record: bytes) -> bytes:
    """One TFRecord: length, its masked crc, the payload, its masked crc."""
    header = struct.pack("<Q", len(record))
    return (header + struct.pack("<I", _masked_crc(header))
            + record + struct.pack("<I", _masked_crc(record)))  # fmt: skip


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
