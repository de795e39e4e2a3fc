"""Input pipeline: per-domain decode, augmentation, determinism, sharding, checkpoints, bad PNGs."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from PIL import Image
from pipeline_helpers import ALL_DOMAINS, make_record, make_source

from xtc_jax import domains as domains_lib
from xtc_jax.data import pipeline, transforms
from xtc_jax.errors import ConfigError, DataError
from xtc_jax.infra.png import decode_png, encode_png

RES = 32


def _pipe(source, domains=("rgb", "depth_zbuffer"), batch=4, **kw):
    kw.setdefault("num_epochs", 1)
    kw.setdefault("process_index", 0)
    kw.setdefault("process_count", 1)
    return pipeline.make_dataset(source, list(domains), RES, batch, seed=kw.pop("seed", 7), **kw)


def _read(pipe, limit=None):
    """Batches as plain (copied) NumPy arrays; closes the iterator."""
    iterator = iter(pipe)
    out = []
    for batch in iterator:
        out.append({k: np.array(v) for k, v in batch.items()})
        if limit is not None and len(out) == limit:
            break
    iterator.close()
    return out


def _resize(raw: np.ndarray, method: str, size: int = RES) -> np.ndarray:
    resample = Image.Resampling.NEAREST if method == "nearest" else Image.Resampling.BILINEAR
    return np.asarray(Image.fromarray(raw).resize((size, size), resample))


def _direct(record: dict, name: str) -> np.ndarray:
    """The reference computation: decode_png -> PIL resize of raw -> Domain.decode / derive."""
    domain = domains_lib.get(name)
    stored = domains_lib.DOMAINS[domain.stored_name]
    raw = decode_png(record[stored.name])
    if domain.derive_raw is not None:
        return domain.decode(_resize(domain.derive_raw(raw), domain.resize))
    decoded = stored.decode(_resize(raw, stored.resize))
    return domain.derive_decoded(decoded) if domain.derive_decoded else decoded


@pytest.fixture(scope="module")
def source():
    return make_source(12)


def test_shapes_dtypes_and_ranges(source):
    (batch,) = _read(_pipe(source, ALL_DOMAINS, batch=4), limit=1)
    assert set(batch) == {*ALL_DOMAINS, "index"}
    assert batch["index"].dtype == np.int32 and batch["index"].shape == (4,)
    for name in ALL_DOMAINS:
        domain = domains_lib.get(name)
        x = batch[name]
        assert x.shape == (4, RES, RES, domain.channels), name
        assert x.dtype == np.float32, name
        assert np.isfinite(x).all(), name
    for name in ("rgb", "normal", "reshading", "principal_curvature", "depth_zbuffer",
                 "edge_occlusion", "keypoints2d", "keypoints3d"):  # fmt: skip
        assert batch[name].min() >= 0.0 and batch[name].max() <= 1.0, name
    assert set(np.unique(batch["mask_valid"])) == {0.0, 1.0}
    seg = batch["segment_semantic"]
    assert seg.min() >= -1 and seg.max() <= 16 and np.array_equal(seg, np.round(seg))
    assert batch["edge_texture"].min() >= 0 and batch["edge_texture"].max() > 0


@pytest.mark.parametrize("name", ALL_DOMAINS)
def test_decode_matches_direct_computation(source, name):
    record = source[5]
    got = transforms.transform_example(record, [name], RES)[name]
    np.testing.assert_array_equal(got, _direct(record, name))


def test_pipeline_batch_equals_per_example_transform(source):
    batches = _read(_pipe(source, ["rgb", "mask_valid", "edge_texture"], batch=4))
    for batch in batches:
        for row, index in enumerate(batch["index"]):
            want = transforms.transform_example(
                source[index], ["rgb", "mask_valid", "edge_texture"], RES
            )
            for name, value in want.items():
                np.testing.assert_array_equal(batch[name][row], value)


def test_native_resolution_skips_resize():
    record = make_record(0, size=RES)
    out = transforms.transform_example(record, ["rgb", "depth_zbuffer"], RES)
    np.testing.assert_array_equal(out["rgb"], decode_png(record["rgb"]) / np.float32(255))
    depth = decode_png(record["depth_zbuffer"]).astype(np.float32)[..., None]
    np.testing.assert_array_equal(out["depth_zbuffer"], np.clip(depth / 8000.0, 0, 1))


def test_non_square_is_centre_cropped():
    record = make_record(0, size=40)
    wide = np.zeros((40, 60, 3), np.uint8)
    wide[:, 10:50] = decode_png(record["rgb"])  # the square centre holds the real image
    record["rgb"] = encode_png(wide)
    out = transforms.transform_example(record, ["rgb"], 40)["rgb"]
    np.testing.assert_array_equal(out, decode_png(encode_png(wide[:, 10:50])) / np.float32(255))


def test_deterministic_for_seed_and_epochs_reshuffle(source):
    a = _read(_pipe(source, num_epochs=2, augment=True))
    b = _read(_pipe(source, num_epochs=2, augment=True))
    assert len(a) == 6
    for x, y in zip(a, b, strict=True):
        for key in x:
            np.testing.assert_array_equal(x[key], y[key])
    epochs = [
        np.concatenate([x["index"] for x in a[:3]]),
        np.concatenate([x["index"] for x in a[3:]]),
    ]
    for order in epochs:
        assert sorted(order.tolist()) == list(range(12))  # each epoch: every example once
    assert not np.array_equal(epochs[0], epochs[1])  # a new permutation per epoch
    other = _read(_pipe(source, seed=8))
    assert not np.array_equal(np.concatenate([x["index"] for x in other]), epochs[0])


def test_no_shuffle_keeps_source_order_and_keeps_remainder(source):
    batches = _read(_pipe(source, batch=5, shuffle=False, drop_remainder=False))
    assert [b["index"].tolist() for b in batches] == [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9], [10, 11]]


def test_same_output_with_worker_processes(source):
    kw = {"domains": ["rgb", "normal", "mask_valid"], "augment": True}
    base = _read(_pipe(source, worker_count=0, **kw))
    multi = _read(_pipe(source, worker_count=2, **kw))
    assert len(base) == len(multi) == 3
    for x, y in zip(base, multi, strict=True):
        for key in x:
            np.testing.assert_array_equal(x[key], y[key])


def test_process_shards_are_disjoint_and_cover_everything(source):
    seen = []
    for process in range(3):
        pipe = _pipe(source, batch=6, process_index=process, process_count=3)
        assert pipe.per_process_batch_size == 2 and pipe.steps_per_epoch == 2
        seen.append(np.concatenate([b["index"] for b in _read(pipe)]).tolist())
    flat = sorted(i for shard in seen for i in shard)
    assert flat == list(range(12))


def test_batch_not_divisible_by_processes_is_a_config_error(source):
    with pytest.raises(ConfigError, match="multiple of the number of processes"):
        _pipe(source, batch=5, process_index=0, process_count=2)
    with pytest.raises(ConfigError, match="unknown domain"):
        _pipe(source, domains=["rgbb"])


def _pattern_record(size: int = 64) -> dict:
    """Every domain holds the same smooth pattern p (0..255), so crops can be compared."""
    y, x = np.mgrid[0:size, 0:size]
    p = ((x * 3 + y * 5) % 256).astype(np.uint8)
    gray3 = np.repeat(p[..., None], 3, axis=-1)
    return {
        "building": "pat", "point": 0, "view": 0,
        "rgb": encode_png(gray3), "normal": encode_png(gray3),
        "principal_curvature": encode_png(gray3),
        "depth_zbuffer": encode_png(p.astype(np.uint16) * 20),
    }  # fmt: skip


def _zoom_seed() -> int:
    for seed in range(100):
        augment = transforms.draw_augment(np.random.default_rng(seed))
        if augment.zoom < 1.0:
            return seed
    raise AssertionError("no zoom drawn")


def test_zoom_crop_is_the_same_for_every_domain():
    record = _pattern_record()
    augment = transforms.draw_augment(np.random.default_rng(_zoom_seed()))
    out = transforms.transform_example(
        record, ["rgb", "normal", "principal_curvature", "depth_zbuffer"], RES, augment
    )
    np.testing.assert_array_equal(out["normal"], out["principal_curvature"])
    # Depth was resized in 16-bit: p*20 resized ~= 20 * (p resized), to PIL rounding (<= 1/255).
    np.testing.assert_allclose(
        out["depth_zbuffer"][..., 0] * 8000 / 20, out["normal"][..., 0] * 255, atol=1.01
    )
    # And it is the original's centre crop of side randint(358, 512)/512, then the resize.
    side = round(64 * augment.zoom)
    top = round((64 - side) / 2)
    p = decode_png(record["normal"])[top : top + side, top : top + side]
    np.testing.assert_array_equal(out["normal"], _resize(p, "bilinear") / np.float32(255))
    assert side < 64


def test_augmented_pipeline_crops_all_domains_alike():
    source = [_pattern_record()] * 8
    batches = _read(
        _pipe(source, ["normal", "principal_curvature", "depth_zbuffer"], augment=True, batch=8)
    )
    batch = batches[0]
    np.testing.assert_array_equal(batch["normal"], batch["principal_curvature"])
    depth = batch["depth_zbuffer"][..., 0] * 8000 / 20
    np.testing.assert_allclose(depth, batch["normal"][..., 0] * 255, atol=1.01)
    zoomed = [not np.array_equal(batch["normal"][i], batch["normal"][0]) for i in range(8)]
    assert any(zoomed)  # some examples were zoomed, differently from others


def test_color_jitter_changes_rgb_only(source):
    record = source[2]
    names = ["rgb", "normal", "edge_texture"]
    plain = transforms.transform_example(record, names, RES)
    jitter = transforms.Augment(jitter=(("brightness", 1.3), ("hue", 0.05), ("contrast", 0.8)))
    out = transforms.transform_example(record, names, RES, jitter)
    assert np.abs(out["rgb"] - plain["rgb"]).mean() > 0.02
    np.testing.assert_array_equal(out["normal"], plain["normal"])
    np.testing.assert_array_equal(
        out["edge_texture"], plain["edge_texture"]
    )  # from un-jittered rgb
    bright = transforms.transform_example(
        record, ["rgb"], RES, transforms.Augment(jitter=(("brightness", 1.2),))
    )
    want = np.clip(np.rint(plain["rgb"] * 255 * 1.2), 0, 255) / 255
    np.testing.assert_allclose(bright["rgb"], want, atol=1.01 / 255)


def _corrupt_source() -> list[dict]:
    source = make_source(8)
    source[3] = dict(source[3], rgb=source[3]["rgb"][:60])  # truncated PNG
    depth8 = np.zeros((48, 48), np.uint8)
    source[6] = dict(source[6], depth_zbuffer=encode_png(depth8))  # 8-bit depth: wrong format
    return source


def test_corrupt_and_misformatted_examples_are_skipped_and_counted(caplog):
    source = _corrupt_source()
    pipe = _pipe(source, ["rgb", "mask_valid"], batch=4, shuffle=False)
    with caplog.at_level(logging.WARNING, logger="xtc_jax.data.pipeline"):
        batches = _read(pipe)
    assert [b["rgb"].shape[0] for b in batches] == [4, 4]  # static batch shape kept
    seen = np.concatenate([b["index"] for b in batches]).tolist()
    assert 3 not in seen and 6 not in seen
    assert set(seen) == {0, 1, 2, 4, 5, 7}
    assert pipe.stats.skipped == 2
    text = caplog.text
    assert "bldg0/point_3_view_1/rgb" in text and "corrupt or truncated" in text
    assert "bldg0/point_6_view_0/depth_zbuffer" in text and "wrong PNG format" in text
    # The filled slots hold real examples, not zeros.
    for batch in batches:
        for row, index in enumerate(batch["index"]):
            want = transforms.transform_example(source[index], ["rgb"], RES)["rgb"]
            np.testing.assert_array_equal(batch["rgb"][row], want)


def test_corrupt_example_raises_when_asked():
    pipe = _pipe(_corrupt_source(), ["rgb"], batch=4, shuffle=False, on_error="raise")
    with pytest.raises(DataError, match=r"bldg0/point_3_view_1/rgb: corrupt or truncated"):
        _read(pipe)


def test_wrong_bit_depth_is_a_data_error():
    record = make_record(1)
    record["normal"] = encode_png(np.zeros((48, 48), np.uint16))
    with pytest.raises(DataError, match=r"point_1_view_1/normal: wrong PNG format.*16-bit"):
        transforms.transform_example(record, ["normal"], RES)
    with pytest.raises(DataError, match="has no 'normal' file"):
        transforms.transform_example({"building": "b", "point": 0, "view": 0}, ["normal"], RES)


@pytest.mark.parametrize("workers", [0, 2])
def test_checkpoint_restore_continues_the_same_order(source, tmp_path, workers):
    import grain
    import orbax.checkpoint as ocp

    def make():
        return _pipe(source, ["rgb"], batch=2, num_epochs=None, augment=True, worker_count=workers)

    k = 3
    iterator = iter(make())
    first = [np.array(next(iterator)["index"]) for _ in range(k)]
    with ocp.CheckpointManager(tmp_path / "ckpt") as manager:
        save = grain.checkpoint.CheckpointSave(item=iterator)
        manager.save(k, args=ocp.args.Composite(data=save))
        manager.wait_until_finished()
    expected = [{key: np.array(v) for key, v in next(iterator).items()} for _ in range(k + 4)]
    iterator.close()

    fresh = iter(make())
    with ocp.CheckpointManager(tmp_path / "ckpt") as manager:
        assert manager.latest_step() == k
        restore = grain.checkpoint.CheckpointRestore(item=fresh)
        manager.restore(k, args=ocp.args.Composite(data=restore))
    resumed = [next(fresh) for _ in range(k + 4)]  # crosses into the second epoch
    fresh.close()
    for want, got in zip(expected, resumed, strict=True):
        for key in want:
            np.testing.assert_array_equal(got[key], want[key])
    assert not np.array_equal(
        np.concatenate(first), np.concatenate([e["index"] for e in expected[:k]])
    )
