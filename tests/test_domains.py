"""Domain registry: on-disk encodings round-trip, masks follow XTC's rule, PNG I/O is strict."""

from __future__ import annotations

import io

import jax
import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from xtc_jax import domains
from xtc_jax.errors import ConfigError, DataError
from xtc_jax.infra import png

RNG = np.random.default_rng(0)


def _raw(domain: domains.Domain, shape=(12, 12)) -> np.ndarray:
    if domain.bit_depth == 16:
        return RNG.integers(0, 65535, size=shape, dtype=np.uint16)
    channels = 3 if 3 in domain.stored_channels else max(domain.stored_channels)
    return RNG.integers(0, 256, size=(*shape, channels), dtype=np.uint8)


@pytest.mark.parametrize("name", ["rgb", "normal", "reshading", "principal_curvature"])
def test_8bit_images_round_trip_exactly(name):
    domain = domains.get(name)
    raw = _raw(domain)
    values = domain.decode(raw)
    assert values.shape == (12, 12, 3) and values.dtype == np.float32
    assert values.min() >= 0.0 and values.max() <= 1.0
    np.testing.assert_array_equal(domain.encode(values), raw)


def test_gray_reshading_is_broadcast_to_three_equal_channels():
    raw = np.arange(16, dtype=np.uint8).reshape(4, 4)
    values = domains.get("reshading").decode(raw)
    assert values.shape == (4, 4, 3)
    np.testing.assert_array_equal(values[..., 0], values[..., 2])
    np.testing.assert_allclose(values[1, 2, 1], 6 / 255)


def test_rgba_and_gray_rgb_become_three_channels():
    rgb = domains.get("rgb")
    rgba = RNG.integers(0, 256, size=(5, 5, 4), dtype=np.uint8)
    np.testing.assert_array_equal(rgb.decode(rgba), rgba[..., :3] / np.float32(255))
    gray = RNG.integers(0, 256, size=(5, 5), dtype=np.uint8)
    assert rgb.decode(gray).shape == (5, 5, 3)


def test_depth_follows_xtc_scale_and_hole_marker():
    depth = domains.get("depth_zbuffer")
    raw = np.array([[0, 4000, 7999, 8000, 30000, 65535]], dtype=np.uint16)
    values = depth.decode(raw)[0, :, 0]
    np.testing.assert_allclose(values, [0.0, 0.5, 7999 / 8000, 1.0, 1.0, 1.0])
    # Below the clamp the encoding is exact; the clamp value is the mask value, written as a hole.
    np.testing.assert_array_equal(
        depth.encode(depth.decode(raw)), [[0, 4000, 7999, 65535, 65535, 65535]]
    )
    assert domains.DEPTH_INVALID == 65535 and depth.mask_value == 1.0


def test_keypoints3d_linear_round_trip():
    domain = domains.get("keypoints3d")
    raw = np.array([[0, 1, 1000, 64131, 65535]], dtype=np.uint16)
    np.testing.assert_allclose(domain.decode(raw)[0, :, 0], [0, 1 / 64131, 1000 / 64131, 1, 1])
    np.testing.assert_array_equal(domain.encode(domain.decode(raw)), [[0, 1, 1000, 64131, 64131]])


@pytest.mark.parametrize(("name", "scale"), [("edge_occlusion", 4000.0), ("keypoints2d", 2000.0)])
def test_power_normaliser_blurs_then_inverts(name, scale):
    domain = domains.get(name)
    # A constant image is unchanged by the blur, so the power normaliser inverts exactly.
    raw = np.full((9, 9), 1234, dtype=np.uint16)
    values = domain.decode(raw)
    np.testing.assert_allclose(values, (1234 / scale) ** 0.8, rtol=1e-5)
    np.testing.assert_array_equal(domain.encode(values), raw)
    # An impulse is spread by a sigma-2 Gaussian, as the original transform does.
    impulse = np.zeros((21, 21), dtype=np.uint16)
    impulse[10, 10] = 60000
    blurred = ndimage.gaussian_filter(impulse.astype(np.float32), 2.0)
    np.testing.assert_allclose(
        domain.decode(impulse)[..., 0], np.clip(blurred**0.8 / scale**0.8, 0, 1), rtol=1e-5
    )


def test_semantic_labels_shift_by_one_and_mark_uncertain():
    domain = domains.get("segment_semantic")
    raw = np.arange(18, dtype=np.uint8).reshape(3, 6)
    ids = domain.decode(raw)
    assert ids[0, 0, 0] == -1 and ids[0, 1, 0] == 0 and ids[2, 5, 0] == 16
    np.testing.assert_array_equal(domain.encode(ids), raw)
    assert len(domains.SEMANTIC_CLASSES) == 17 and domains.SEMANTIC_CLASSES[0] == "background"
    assert domain.resize == "nearest" and domain.loss == "cross_entropy"
    assert domains.DOMAIN_OF_TOKEN["segmentsemantic"] == "segment_semantic"


def test_mask_valid_is_derived_from_depth_holes():
    domain = domains.get("mask_valid")
    depth_raw = np.array([[100, 65535], [7000, 65535]], dtype=np.uint16)
    assert domain.source == "depth_zbuffer"
    raw = domain.derive_raw(depth_raw)
    np.testing.assert_array_equal(domain.decode(raw)[..., 0], [[1, 0], [1, 0]])
    # A bilinear blend of valid and hole (e.g. 127.5) counts as invalid.
    assert domain.decode(np.array([[127.5, 254.9, 255.0]]))[0, :, 0].tolist() == [0, 1, 1]


def test_edge_texture_is_xtc_sobel_of_rgb():
    domain = domains.get("edge_texture")
    assert domain.source == "rgb" and domains.stored_domains_for(["edge_texture", "rgb"]) == (
        "rgb",
    )
    rgb = RNG.random((16, 16, 3)).astype(np.float32)
    gray = ndimage.gaussian_filter(rgb.mean(-1), 2.0)
    expected = np.hypot(
        ndimage.sobel(gray, axis=1, mode="constant"), ndimage.sobel(gray, axis=0, mode="constant")
    )
    np.testing.assert_allclose(domain.derive_decoded(rgb)[..., 0], expected, rtol=1e-5, atol=1e-5)


def test_derived_and_blurred_domains_are_bitwise_deterministic():
    rgb = RNG.random((32, 32, 3)).astype(np.float32)
    raw = RNG.integers(0, 5000, size=(32, 32), dtype=np.uint16)
    edges = [domains.sobel_edges(rgb.copy()) for _ in range(20)]
    blurred = [domains.get("keypoints2d").decode(raw.copy()) for _ in range(20)]
    assert all(np.array_equal(edges[0], e) for e in edges)
    assert all(np.array_equal(blurred[0], b) for b in blurred)


def test_normal_mask_is_dilated_5x5_and_jittable():
    normal = domains.get("normal")
    target = np.full((1, 16, 16, 3), 0.3, dtype=np.float32)
    target[0, 8, 8] = 0.502
    target[0, 2, 2] = [0.502, 0.502, 0.9]  # one channel off: still valid
    valid = np.asarray(jax.jit(normal.valid_mask)(target))
    assert valid.shape == (1, 16, 16, 1)
    invalid = ~valid[0, ..., 0]
    assert invalid.sum() == 25 and invalid[6:11, 6:11].all()


def test_depth_mask_marks_clamped_pixels_and_unmasked_domains_are_all_valid():
    depth = domains.get("depth_zbuffer")
    target = np.zeros((8, 8, 1), dtype=np.float32)
    target[0, 0] = 1.0
    valid = np.asarray(depth.valid_mask(target))[..., 0]
    assert (~valid).sum() == 9  # 3x3 corner of the 5x5 window fits in the image
    assert np.asarray(domains.get("rgb").valid_mask(target)).all()


def test_unknown_domain_names_the_known_ones():
    with pytest.raises(ConfigError, match=r"unknown domain 'normalz'.*normal.*depth_zbuffer"):
        domains.get("normalz")
    assert domains.get("depth").name == "depth_zbuffer"
    assert domains.get("sobel_edges").name == "edge_texture"


def test_normal_frame_constant_is_documented_single_source():
    assert domains.NORMAL_FRAME == "x_right_y_down_z_forward"
    assert domains.NORMAL_Z_SIGN in (1, -1)


# --- PNG codec -------------------------------------------------------------------------


def test_png_round_trip_8_and_16_bit():
    rgb = RNG.integers(0, 256, size=(7, 5, 3), dtype=np.uint8)
    depth = RNG.integers(0, 65536, size=(7, 5), dtype=np.uint16)
    for array, bits, color in ((rgb, 8, 2), (depth, 16, 0)):
        data = png.encode_png(array)
        header = png.png_header(data)
        assert (header.width, header.height, header.bit_depth, header.color_type) == (
            5,
            7,
            bits,
            color,
        )
        decoded = png.decode_png(data)
        assert decoded.dtype == array.dtype
        np.testing.assert_array_equal(decoded, array)


def test_palette_png_is_expanded_to_rgb():
    image = Image.fromarray(RNG.integers(0, 256, size=(4, 4, 3), dtype=np.uint8)).convert("P")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    assert png.decode_png(buffer.getvalue()).shape == (4, 4, 3)


def test_truncated_and_garbage_png_name_the_file():
    data = png.encode_png(RNG.integers(0, 256, size=(32, 32, 3), dtype=np.uint8))
    with pytest.raises(DataError, match=r"b/rgb/x\.png: corrupt or truncated PNG"):
        png.decode_png(data[: len(data) // 2], name="b/rgb/x.png")
    with pytest.raises(DataError, match=r"y\.png: not a PNG file"):
        png.decode_png(b"hello world" * 10, name="y.png")
