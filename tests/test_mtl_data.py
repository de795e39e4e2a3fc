"""Multi-task data: the NYUv2 and Cityscapes loaders on rendered stand-ins, their errors, the
synthetic records, and the RandomScaleCrop transform."""

from __future__ import annotations

import os

import ml_collections
import numpy as np
import pytest

from xtc_jax.data import pipeline
from xtc_jax.data.mtl import cityscapes, nyuv2, sources, standins
from xtc_jax.data.mtl.example import MultiTaskTransform
from xtc_jax.errors import ConfigError, DataError
from xtc_jax.infra import png


@pytest.fixture(scope="module")
def nyu_root(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("nyu"))
    assert standins.write("nyuv2", root, views=8, size=32) == {"train": 8, "val": 8}
    return root


@pytest.fixture(scope="module")
def cityscapes_root(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("cityscapes"))
    standins.write("cityscapes", root, views=8, size=32)
    return root


def test_nyu_stand_in_reads_in_the_mtan_layout(nyu_root):
    source = nyuv2.NYUv2Source(nyu_root, "train", normals=True)
    record = source[0]
    assert len(source) == 8
    assert record["rgb"].shape == (24, 32, 3) and record["seg"].shape == (24, 32)
    assert record["depth"].shape == (24, 32, 1) and record["normal"].shape == (24, 32, 3)
    assert set(np.unique(record["seg"])) <= set(range(-1, 13))
    assert (record["depth"] > 0).any() and 0 <= record["rgb"].min() <= record["rgb"].max() <= 1


def test_cityscapes_stand_in_reads_in_the_official_layout(cityscapes_root):
    seven = cityscapes.CityscapesSource(cityscapes_root, "train", 7)
    nineteen = cityscapes.CityscapesSource(cityscapes_root, "train", 19)
    a, b = seven[0], nineteen[0]
    assert a["rgb"].shape == (16, 32, 3) and a["depth"].shape == (16, 32, 1)
    assert set(np.unique(a["seg"])) <= set(range(-1, 7))
    assert set(np.unique(b["seg"])) <= set(range(-1, 19))
    assert 0 < a["depth"].max() <= cityscapes.INVERSE_DEPTH_MAX


def test_cityscapes_label_tables_and_inverse_depth():
    seven, nineteen = cityscapes.label_table(7), cityscapes.label_table(19)
    assert [seven[i] for i in (0, 6, 7, 10, 11, 17, 21, 23, 24, 26, 33)] == [
        -1, -1, 0, 0, 1, 2, 3, 4, 5, 6, 6]
    assert [nineteen[i] for i in (7, 8, 9, 26, 33, 0)] == [0, 1, -1, 13, 18, -1]
    depth = cityscapes.inverse_depth(np.array([0, 1, 257, 65535], np.uint16))
    np.testing.assert_allclose(depth, [0.0, 0.0, 256 / 65536, 0.4922], rtol=1e-6)


def _copy_tree(src: str, dst: str) -> str:
    import shutil

    shutil.copytree(src, dst)
    return dst


def test_nyu_bad_input_is_one_message_naming_the_file(nyu_root, tmp_path):
    with pytest.raises(DataError, match="train/label is missing"):
        broken = _copy_tree(nyu_root, str(tmp_path / "a"))
        import shutil

        shutil.rmtree(os.path.join(broken, "train", "label"))
        nyuv2.NYUv2Source(broken, "train")
    broken = _copy_tree(nyu_root, str(tmp_path / "b"))
    os.remove(os.path.join(broken, "train", "depth", "7.npy"))
    with pytest.raises(DataError, match=r"different numbers of files.*depth 7"):
        nyuv2.NYUv2Source(broken, "train")
    broken = _copy_tree(nyu_root, str(tmp_path / "c"))
    np.save(os.path.join(broken, "train", "label", "2.npy"), np.full((24, 32), 13.0))
    np.save(os.path.join(broken, "train", "depth", "3.npy"), np.zeros((20, 32, 1)))
    np.save(os.path.join(broken, "train", "image", "4.npy"), np.array([{"x": 1}], dtype=object))
    source = nyuv2.NYUv2Source(broken, "train")
    with pytest.raises(DataError, match=r"label/2.npy: label 13 is outside the 13 classes"):
        source[2]
    with pytest.raises(DataError, match=r"depth/3.npy: shape \(20, 32, 1\), expected"):
        source[3]
    with pytest.raises(DataError, match=r"image/4.npy: not a readable .npy array"):
        source[4]  # an object array is never unpickled


def test_cityscapes_bad_input_is_one_message_naming_the_file(cityscapes_root, tmp_path):
    broken = _copy_tree(cityscapes_root, str(tmp_path / "a"))
    label = next(p for p in sorted(os.listdir(os.path.join(broken, "gtFine", "train",
                                                           "synthtown"))))  # fmt: skip
    os.remove(os.path.join(broken, "gtFine", "train", "synthtown", label))
    with pytest.raises(DataError, match="1 label or disparity files are missing"):
        cityscapes.CityscapesSource(broken, "train")
    os.makedirs(tmp_path / "nothing" / "leftImg8bit" / "train")
    with pytest.raises(DataError, match=r"gtFine/train is missing: data.path must be a Cityscapes"):
        cityscapes.CityscapesSource(str(tmp_path / "nothing"), "train")
    broken = _copy_tree(cityscapes_root, str(tmp_path / "b"))
    source = cityscapes.CityscapesSource(broken, "train")
    with open(source.items[0][2], "wb") as f:
        f.write(png.encode_png(np.zeros((16, 32), np.uint8)))
    with pytest.raises(DataError, match=r"disparity.png: a 8-bit PNG, expected 16-bit"):
        source[0]
    with pytest.raises(DataError, match="7 \\(categories\\) or 19 classes"):
        cityscapes.CityscapesSource(broken, "train", 13)


def _data(dataset: str, path: str = "", **fields) -> ml_collections.ConfigDict:
    from xtc_jax.mtl.config import mtl_config

    data = mtl_config(dataset, "cpu").data
    data.path = path
    data.update(fields)
    return data


def test_the_validation_split_is_held_out_of_the_train_folder(nyu_root, tmp_path):
    splits = sources.open_splits(_data("nyuv2", nyu_root, val_fraction=0.25), str(tmp_path))
    assert [len(splits[k]) for k in ("train", "val", "test")] == [6, 2, 8]
    assert not set(splits["train"].indices) & set(splits["val"].indices)
    with pytest.raises(ConfigError, match=r"needs --config.data.path"):
        sources.open_splits(_data("nyuv2"), str(tmp_path))
    with pytest.raises(ConfigError, match="multiples of 32"):
        sources.check(_data("nyuv2", nyu_root, size=(48, 64)))


def test_random_scale_crop_rescales_depth_flips_normals_and_keeps_fields_aligned():
    rng = np.random.default_rng(0)
    hole = np.zeros((16, 16), bool)
    hole[:, :5] = True  # no label and no depth on the left: must stay together
    record = {"rgb": rng.random((16, 16, 3)).astype(np.float32),
              "seg": np.where(hole, -1, 2).astype(np.int32),
              "depth": np.where(hole, 0.0, 3.0)[..., None].astype(np.float32),
              "normal": np.tile(np.array([0.6, 0.8, 0.0], np.float32), (16, 16, 1))}  # fmt: skip
    seen = set()
    for seed in range(40):
        metric = MultiTaskTransform(16, 16, "metric")(record, np.random.default_rng(seed))
        inverse = MultiTaskTransform(16, 16, "inverse")(record, np.random.default_rng(seed))
        valid = metric["depth_mask"] > 0
        np.testing.assert_array_equal(valid[..., 0], metric["seg"] != -1)
        scale = 3.0 / float(metric["depth"][valid][0])
        assert min(abs(scale - s) for s in (1.0, 1.2, 1.5)) < 1e-5
        np.testing.assert_allclose(metric["depth"][valid], 3.0 / scale, rtol=1e-6)
        np.testing.assert_allclose(inverse["depth"][valid], 3.0 * scale, rtol=1e-5)
        flip = bool(metric["normal"][0, 0, 0] < 0)
        np.testing.assert_allclose(metric["normal"][..., 0], -0.6 if flip else 0.6, atol=1e-6)
        if not valid.all():  # the hole (when the crop keeps it) is on the left, or right if flipped
            assert not valid[:, -1 if flip else 0].any() and valid[:, 0 if flip else -1].all()
        seen.add((round(scale, 1), flip))
    assert len(seen) == 6
    plain = MultiTaskTransform(16, 16)(record, None)
    np.testing.assert_array_equal(plain["rgb"], record["rgb"])


def test_the_pipeline_batches_multi_task_examples(nyu_root):
    source = nyuv2.NYUv2Source(nyu_root, "train")
    data = pipeline.make_dataset(source, (), 0, 4, 0, augment=True, process_index=0,
                                 process_count=1,
                                 example_fn=MultiTaskTransform(32, 64))  # fmt: skip
    batch = next(iter(data))
    assert batch["rgb"].shape == (4, 32, 64, 3) and batch["seg"].dtype == np.int32
    assert batch["depth"].shape == batch["depth_mask"].shape == (4, 32, 64, 1)
