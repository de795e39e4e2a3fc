"""Taskonomy indexer, splits, raw-folder source and the TF-free TFDS builder."""

from __future__ import annotations

import pickle
import sys

import numpy as np
import pytest
import tree_fixtures as fx

from xtc_jax.data.sources import index as index_lib
from xtc_jax.data.sources import layouts, shards, splits
from xtc_jax.errors import ConfigError, DataError
from xtc_jax.infra.png import encode_png

DOMAINS = ("rgb", "normal", "depth_zbuffer", "segment_semantic")
BUILDINGS = ("alpha", "synth_000")
VIEWS = {(b, p, v) for b in BUILDINGS for p in (1, 10) for v in (0, 2)}
TABLE = {"train": ["alpha"], "val": ["synth_000"]}


def _tree(tmp_path, layout="plain", **kwargs):
    root = tmp_path / f"tree_{layout}"
    paths = fx.make_tree(root, layout, buildings=BUILDINGS, **kwargs)
    fx.write_split_csv(root / splits.SYNTHETIC_CSV, TABLE)
    return root, paths


def _build(root, out, domains=DOMAINS, **kwargs):
    return shards.build_dataset(root, out, domains, log=None, **kwargs)


@pytest.mark.parametrize("layout", layouts.LAYOUTS)
def test_index_finds_same_views_in_every_layout(tmp_path, layout):
    root, _ = _tree(tmp_path, layout)
    index = index_lib.build_index(root, DOMAINS)
    assert index.layout == layout
    assert index.buildings == BUILDINGS
    for domain in DOMAINS:
        keys, _ = index.files[domain]
        b, p, v = index_lib.unpack_keys(keys)
        views = [(index.buildings[i], int(q), int(w)) for i, q, w in zip(b, p, v, strict=True)]
        assert set(views) == VIEWS
        assert views == sorted(views)  # numeric order: point 1 before point 10
    assert index_lib.build_index(root, DOMAINS, layout=layout).counts["indexed"] == 32


def test_segmentsemantic_token_is_indexed_as_segment_semantic(tmp_path):
    root, paths = _tree(tmp_path, "by_domain")
    source = shards.RawFolderSource(root, ["segment_semantic"])
    path = source.paths(0)["segment_semantic"]
    assert path.endswith("segment_semantic/alpha/point_1_view_0_domain_segmentsemantic.png")
    assert source[0]["segment_semantic"] == paths[("alpha", 1, 0, "segment_semantic")].read_bytes()


@pytest.mark.parametrize("ending", ["\r", "\r\n", "\n"])
def test_split_csv_any_line_ending(tmp_path, ending):
    path = fx.write_split_csv(tmp_path / "s.csv", {"train": ["a", "b"], "test": ["c"]}, ending)
    assert splits.read_split_csv(path) == {"train": ["a", "b"], "val": [], "test": ["c"]}


def test_tiny_subset_has_25_5_5_buildings():
    table = splits.subset_table("tiny")
    assert [len(table[s]) for s in splits.SPLITS] == [25, 5, 5]
    assert len({b for bs in table.values() for b in bs}) == 35
    assert "woodbine" in table["train"] and "mcdade" in table["test"]


def test_splits_from_synthetic_csv_list_and_missing_subset(tmp_path):
    root, _ = _tree(tmp_path)
    assert splits.resolve_split("val", root, available=BUILDINGS) == ["synth_000"]
    assert splits.resolve_split("all", root) == ["alpha", "synth_000"]
    listing = tmp_path / "list.txt"
    listing.write_text("# chunk\nsynth_000\n\nalpha\n")
    assert splits.resolve_split("test", split_file=listing) == ["synth_000", "alpha"]
    with pytest.raises(DataError, match="lists no buildings"):
        splits.resolve_split("test", root)
    with pytest.raises(DataError, match=r"absent from the tree: ghost.*in the tree: alpha"):
        splits.resolve_split("train", split_file=_csv(tmp_path, ["ghost"]), available=["alpha"])
    with pytest.raises(DataError, match=r"--split_file train_val_test_full\.csv"):
        splits.resolve_split("train", subset="full")


def _csv(tmp_path, train):
    return fx.write_split_csv(tmp_path / "x.csv", {"train": train})


@pytest.mark.parametrize("layout", layouts.LAYOUTS)
def test_build_reads_back_original_bytes_without_tensorflow(tmp_path, layout):
    root, paths = _tree(tmp_path, layout)
    summary = _build(root, tmp_path / "out")
    assert {s: i["written"] for s, i in summary["splits"].items()} == {"train": 4, "val": 4}
    for split, building in (("train", "alpha"), ("val", "synth_000")):
        source = shards.open_source(tmp_path / "out", split, DOMAINS)
        assert len(source) == 4
        for i in range(len(source)):
            record = source[i]
            assert record["building"] == building.encode()
            for domain in DOMAINS:
                key = (building, int(record["point"]), int(record["view"]), domain)
                assert record[domain] == paths[key].read_bytes()
    assert "tensorflow" not in sys.modules


def test_raw_source_equals_tfds_records_and_pickles(tmp_path):
    root, _ = _tree(tmp_path, "xtc")
    _build(root, tmp_path / "out")
    raw = shards.open_source(root, "train", DOMAINS)
    built = shards.open_source(tmp_path / "out/taskonomy/1.0.0", "train", DOMAINS)
    assert isinstance(raw, shards.RawFolderSource) and len(raw) == len(built) == 4
    for i in range(4):
        a, b = raw[i], built[i]
        assert (a["building"].encode(), a["point"], a["view"]) == (
            b["building"],
            b["point"],
            b["view"],
        )
        assert all(a[d] == b[d] for d in DOMAINS)
    clone = pickle.loads(pickle.dumps(raw))
    assert len(clone) == 4 and clone[3] == raw[3]


def test_derived_domains_map_to_stored_ones():
    assert shards.stored_names("edge_texture,mask_valid,normal") == (
        "rgb",
        "depth_zbuffer",
        "normal",
    )


def test_views_missing_a_domain_are_skipped_and_counted(tmp_path):
    root, paths = _tree(tmp_path)
    paths[("alpha", 10, 2, "normal")].unlink()
    source = shards.RawFolderSource(root, DOMAINS, "train")
    assert len(source) == 3
    assert source.summary()["skipped"] == {"missing_normal": 1}
    assert source.summary()["skipped_examples"]["missing_normal"] == ["alpha point_10_view_2"]
    summary = _build(root, tmp_path / "out")
    assert summary["splits"]["train"]["skipped"] == {"missing_normal": 1}


def test_bad_files_are_skipped_and_named(tmp_path):
    root, paths = _tree(tmp_path)
    rng = np.random.default_rng(1)
    good = paths[("alpha", 1, 0, "rgb")].read_bytes()
    broken = good[:40] + bytes(len(good) - 52) + good[-12:]  # header intact, data zeroed
    paths[("alpha", 1, 0, "rgb")].write_bytes(broken)
    truncated = paths[("alpha", 1, 2, "normal")]
    truncated.write_bytes(truncated.read_bytes()[:-30])
    eight_bit = paths[("alpha", 10, 0, "depth_zbuffer")]
    eight_bit.write_bytes(encode_png(rng.integers(0, 255, (8, 8), dtype=np.uint8)))
    small = paths[("synth_000", 1, 0, "segment_semantic")]
    small.write_bytes(encode_png(rng.integers(0, 17, (4, 4), dtype=np.uint8)))
    summary = _build(root, tmp_path / "out")
    assert summary["splits"]["train"]["written"] == 1
    assert summary["splits"]["train"]["skipped"] == {"corrupt": 2, "wrong_bit_depth": 1}
    assert summary["splits"]["val"]["skipped"] == {"wrong_size": 1}
    examples = summary["skipped_examples"]
    assert any("point_1_view_0_domain_rgb.png" in e for e in examples["corrupt"])
    assert any("point_1_view_2_domain_normal.png" in e for e in examples["corrupt"])
    assert "(8-bit, expected 16)" in examples["wrong_bit_depth"][0]
    assert "point_1_view_0_domain_segmentsemantic.png (4x4" in examples["wrong_size"][0]
    saved = (tmp_path / "out/taskonomy/1.0.0" / shards.SUMMARY_FILE).read_text()
    assert "wrong_bit_depth" in saved


def test_chunks_build_separately_and_open_together(tmp_path, capsys):
    root, _ = _tree(tmp_path, "omnidata")
    out = tmp_path / "out"
    for i in range(2):
        args = ["--root", str(root), "--out", str(out), "--domains", "rgb,edge_texture"]
        assert shards.main([*args, "--chunk", f"{i}/2"]) == 0
    assert "train: 4 views written from 1 buildings" in capsys.readouterr().out
    both = shards.open_source(out, "all", ["rgb"])
    assert len(both) == 8
    assert {both[i]["building"] for i in range(8)} == {b"alpha", b"synth_000"}
    with pytest.raises(DataError, match="domain 'normal' is not stored"):
        shards.open_source(out, "train", ["normal"])
    assert shards.main([*args, "--chunk", "1/2"]) == 2
    assert "already exists" in capsys.readouterr().err


def test_bad_input_messages(tmp_path):
    with pytest.raises(DataError, match=r"nowhere.*does not exist"):
        shards.RawFolderSource(tmp_path / "nowhere", DOMAINS)
    (tmp_path / "empty" / "x").mkdir(parents=True)
    with pytest.raises(DataError, match="no Taskonomy files"):
        shards.RawFolderSource(tmp_path / "empty", DOMAINS)
    root, _ = _tree(tmp_path)
    found = "Domains found: depth_zbuffer, normal, rgb, segment_semantic"
    with pytest.raises(DataError, match=f"domain 'keypoints3d': no files anywhere.*{found}"):
        shards.RawFolderSource(root, ["rgb", "keypoints3d"])
    with pytest.raises(DataError, match=r"split 'test'.*lists no buildings"):
        shards.RawFolderSource(root, DOMAINS, "test")
    with pytest.raises(DataError, match=r"split 'train'.*absent from the tree: ghost"):
        _build(root, tmp_path / "out", split_file=_csv(tmp_path, ["ghost", "alpha"]))
    with pytest.raises(ConfigError, match="--split_file"):
        _build(tmp_path / "empty", tmp_path / "out")
    with pytest.raises(ConfigError, match="layout='weird'"):
        shards.RawFolderSource(root, DOMAINS, layout="weird")


def test_wrong_explicit_layout_and_bad_chunk(tmp_path, capsys):
    root, _ = _tree(tmp_path, "plain")
    with pytest.raises(DataError, match=r"layout omnidata \(expected \{domain\}/taskonomy"):
        shards.RawFolderSource(root, DOMAINS, layout="omnidata")
    args = ["--root", str(root), "--out", str(tmp_path / "o"), "--domains", "rgb"]
    assert shards.main([*args, "--chunk", "2/2"]) == 2
    assert "--chunk 2/2: use I/N" in capsys.readouterr().err


def test_build_errors_name_the_real_mistake(tmp_path):
    with pytest.raises(DataError, match=r"Taskonomy root .*nope does not exist\. Check --root"):
        shards.build_dataset(tmp_path / "nope", tmp_path / "out", ["rgb"], subset="tiny")
    root = tmp_path / "tree"
    fx.make_tree(root, "plain", buildings=BUILDINGS)
    with pytest.raises(
        DataError, match=r"names 25 building\(s\) absent from the tree.*Buildings in the tree: "
    ):
        shards.build_dataset(root, tmp_path / "out", ["rgb"], subset="tiny")
