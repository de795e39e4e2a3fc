"""Metric writers: JSONL lines, valid TensorBoard event files (crc framing, protobuf), progress."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest

from xtc_jax.errors import DataError
from xtc_jax.infra import tfevents, writers


def _crc32c_bitwise(data: bytes) -> int:
    """Independent reference: bit by bit, polynomial 0x82F63B78 (reflected Castagnoli)."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def _masked(data: bytes) -> int:
    crc = _crc32c_bitwise(data)
    return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + 0xA282EAD8) & 0xFFFFFFFF


def _records(path) -> list[bytes]:
    """TFRecord payloads, each frame's two crcs checked with the reference crc."""
    data, offset, out = path.read_bytes(), 0, []
    while offset < len(data):
        (length,) = struct.unpack_from("<Q", data, offset)
        assert struct.unpack_from("<I", data, offset + 8)[0] == _masked(data[offset : offset + 8])
        payload = data[offset + 12 : offset + 12 + length]
        assert struct.unpack_from("<I", data, offset + 12 + length)[0] == _masked(payload)
        out.append(payload)
        offset += 16 + length
    assert offset == len(data)
    return out


def _event_class():
    """tensorboard's Event schema (the fields used), built with the real protobuf library."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    fd = descriptor_pb2.FieldDescriptorProto
    proto = descriptor_pb2.FileDescriptorProto(name="xtc_event_test.proto", package="t")
    messages = {
        "Image": [("height", 1, fd.TYPE_INT32), ("width", 2, fd.TYPE_INT32),
                  ("colorspace", 3, fd.TYPE_INT32), ("encoded_image_string", 4, fd.TYPE_BYTES)],
        "Value": [("tag", 1, fd.TYPE_STRING), ("simple_value", 2, fd.TYPE_FLOAT),
                  ("image", 4, ".t.Image")],
        "Summary": [("value", 1, ".t.Value")],
        "Event": [("wall_time", 1, fd.TYPE_DOUBLE), ("step", 2, fd.TYPE_INT64),
                  ("file_version", 3, fd.TYPE_STRING), ("summary", 5, ".t.Summary")],
    }  # fmt: skip
    for name, fields in messages.items():
        message = proto.message_type.add(name=name)
        for field_name, number, kind in fields:
            field = message.field.add(name=field_name, number=number, label=fd.LABEL_OPTIONAL)
            if isinstance(kind, str):
                field.type, field.type_name = fd.TYPE_MESSAGE, kind
                if name == "Summary":
                    field.label = fd.LABEL_REPEATED
            else:
                field.type = kind
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("t.Event"))


def test_crc32c_matches_reference():
    assert tfevents.crc32c(b"123456789") == 0xE3069283  # the standard check value
    rng = np.random.default_rng(0)
    for n in (0, 1, 100, 4095, 4096, 4097, 10_007):  # both the short and the lane path
        data = rng.integers(0, 256, n, dtype=np.uint8).tobytes()
        assert tfevents.crc32c(data) == _crc32c_bitwise(data), n


def test_jsonl_lines_hold_the_values(tmp_path):
    with writers.MetricWriter(tmp_path) as writer:
        writer.write_scalars(10, {"loss": np.float32(0.5), "count": np.int64(3)})
        writer.write_scalars(20, {"loss": 0.25}, split="eval")
    with writers.MetricWriter(tmp_path) as writer:  # a resumed run appends
        writer.write_scalars(30, {"loss": 0.125})
        with pytest.raises(ValueError, match="reserved"):
            writer.write_scalars(40, {"step": 1})
        with pytest.raises(ValueError, match="not a scalar"):
            writer.write_scalars(40, {"x": np.zeros(2)})
    lines = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert lines == [
        {"step": 10, "split": "train", "loss": 0.5, "count": 3},
        {"step": 20, "split": "eval", "loss": 0.25},
        {"step": 30, "split": "train", "loss": 0.125},
    ]
    assert isinstance(lines[0]["count"], int)


def test_event_files_are_valid_and_read_back(tmp_path):
    losses = {1: 0.5, 2: 0.123456789, 3: 1e-7}
    with writers.MetricWriter(tmp_path) as writer:
        for step, loss in losses.items():
            writer.write_scalars(step, {"loss": loss, "lr": 1e-3})
        writer.write_scalars(3, {"loss": 0.75}, split="eval")
    scalars = tfevents.read_event_scalars(tmp_path)
    assert scalars["train/loss"] == [(s, float(np.float32(v))) for s, v in losses.items()]
    assert scalars["train/lr"] == [(s, float(np.float32(1e-3))) for s in losses]
    assert scalars["eval/loss"] == [(3, 0.75)]

    (path,) = (tmp_path / "train").glob("events.out.tfevents.*")
    event_class = _event_class()
    events = [event_class.FromString(r) for r in _records(path)]
    assert events[0].file_version == "brain.Event:2"
    assert [e.step for e in events[1:]] == [1, 2, 3]
    assert [(v.tag, v.simple_value) for v in events[3].summary.value] == [
        ("loss", np.float32(1e-7)),
        ("lr", np.float32(1e-3)),
    ]
    assert all(e.wall_time > 1e9 for e in events)

    corrupt = bytearray(path.read_bytes())
    corrupt[-6] ^= 0xFF
    path.write_bytes(bytes(corrupt))
    with pytest.raises(DataError, match="bad crc32c"):
        tfevents.read_event_scalars(tmp_path)


def test_image_summary(tmp_path):
    rng = np.random.default_rng(1)
    grid = rng.integers(0, 256, (48, 80, 3), dtype=np.uint8)  # PNG > 4 KiB: the lane crc path
    gray = np.linspace(0, 1, 12, dtype=np.float32).reshape(3, 4)
    with writers.MetricWriter(tmp_path) as writer:
        writer.write_images(7, {"pred/normal": grid, "energy": gray}, split="eval")
    (path,) = (tmp_path / "eval").glob("*tfevents*")
    events = tfevents.read_events(path)
    (image, energy) = events[1]["values"]
    assert events[1]["step"] == 7 and image["tag"] == "pred/normal"
    assert (image["image"]["height"], image["image"]["width"], image["image"]["colorspace"]) == (
        48,
        80,
        3,
    )
    np.testing.assert_array_equal(image["image"]["array"], grid)
    expected = np.repeat(np.round(gray * 255).astype(np.uint8)[..., None], 3, axis=-1)
    np.testing.assert_array_equal(energy["image"]["array"], expected)
    proto = _event_class().FromString(_records(path)[1])
    assert proto.summary.value[0].image.encoded_image_string.startswith(b"\x89PNG")


def test_only_enabled_writer_writes(tmp_path):
    with writers.MetricWriter(tmp_path / "other", enabled=False) as writer:
        writer.write_scalars(1, {"loss": 1.0})
        writer.write_images(1, {"x": np.zeros((2, 2, 3), np.uint8)})
    assert not (tmp_path / "other").exists()


class _Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_progress_line_rate_and_eta(capsys):
    clock = _Clock()
    progress = writers.Progress(100, every_seconds=10, window_seconds=20, clock=clock)
    lines = []
    for step in range(1, 101):
        clock.now += 0.5 if step <= 50 else 1.0  # 2 steps/s, then 1 step/s
        lines.append(progress.update(step, {"loss": 0.123449, "n": 3, "tiny": 2e-5}))
    printed = [line for line in lines if line is not None]
    assert capsys.readouterr().out.splitlines() == printed
    assert (
        printed[0] == "step 20/100 (20%)  2.00 steps/s  ETA 40s  loss 0.1234  n 3  tiny 2.000e-05"
    )
    assert len(printed) == 8  # every 10 s over 75 s, plus the last step
    # steps/s over the last 20 s: (55 - 20) steps in 20 s at t=30; only 1 step/s later
    assert printed[2].startswith("step 55/100 (55%)  1.75 steps/s  ETA 26s")
    assert printed[-2].startswith("step 95/100 (95%)  1.00 steps/s  ETA 5s")
    assert printed[-1].startswith("step 100/100 (100%)  1.00 steps/s  ETA 0s")
    quiet = writers.Progress(10, clock=clock, enabled=False)
    assert quiet.update(10, {"loss": 1.0}) is None and capsys.readouterr().out == ""


@pytest.mark.parametrize(
    ("seconds", "text"), [(5, "5s"), (551, "9m11s"), (7500, "2h05m"), (90000, "1d01h")]
)
def test_duration_format(seconds, text):
    assert writers._format_duration(seconds) == text
