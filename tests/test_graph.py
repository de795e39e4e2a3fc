"""Task graph: paths compose edges as pure functions, prefixes are computed once; config checks."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from configs import normal, transfer
from xtc_jax.consistency.graph import TaskGraph
from xtc_jax.consistency.plan import make_plan
from xtc_jax.errors import ConfigError
from xtc_jax.training.loop import check_train_config

RES = 16
NETS = {
    "rgb->normal": dict(arch="unet", downsample=2, width=0.25),
    "normal->principal_curvature": dict(arch="unet", downsample=2, width=0.25),
    "rgb->edge_texture": dict(arch="sobel"),
}


def _batch():
    rng = np.random.default_rng(0)
    return {"rgb": rng.random((2, RES, RES, 3), dtype=np.float32)}


def test_path_equals_manual_composition():
    graph = TaskGraph(NETS)
    params = graph.init(jax.random.PRNGKey(0), RES)
    batch = _batch()
    out = graph.evaluate(params, batch, {"f_n_x": ["rgb", "normal", "curvature"]})["f_n_x"]
    normal_net = graph.modules["rgb->normal"]
    curvature_net = graph.modules["normal->principal_curvature"]
    n = normal_net.apply({"params": params["rgb->normal"]}, batch["rgb"])
    manual = curvature_net.apply({"params": params["normal->principal_curvature"]}, n)
    np.testing.assert_allclose(np.asarray(out), np.asarray(manual), rtol=1e-6, atol=1e-6)
    assert out.shape == (2, RES, RES, 3)


@pytest.mark.parametrize(
    ("remat", "mode"), [(False, "none"), (True, "blocks"), ("True", "blocks"), ("false", "none"),
                        ("networks", "networks")],
)  # fmt: skip
def test_remat_modes_give_the_same_values_and_gradients(remat, mode):
    """Remat changes what the backward pass keeps, never a value or a gradient."""
    batch = _batch()
    paths = {"f_n_x": ["rgb", "normal", "curvature"]}
    plain = TaskGraph(NETS)
    params = plain.init(jax.random.PRNGKey(0), RES)

    def loss_and_grad(graph):
        loss = lambda p: graph.evaluate(p, batch, paths)["f_n_x"].mean()  # noqa: E731
        return jax.jit(jax.value_and_grad(loss))(params)

    graph = TaskGraph(NETS, remat=remat)
    assert graph.remat == mode
    assert graph.modules["rgb->normal"].remat is (mode == "blocks")
    (want, want_grad), (got, got_grad) = loss_and_grad(plain), loss_and_grad(graph)
    np.testing.assert_allclose(float(got), float(want), rtol=1e-6)
    for g, w in zip(jax.tree.leaves(got_grad), jax.tree.leaves(want_grad), strict=True):
        np.testing.assert_allclose(np.asarray(g), np.asarray(w), rtol=1e-4, atol=1e-7)


def test_shared_prefix_is_computed_once(monkeypatch):
    graph = TaskGraph(NETS)
    params = graph.init(jax.random.PRNGKey(0), RES)
    calls = []
    original = graph.apply
    monkeypatch.setattr(graph, "apply", lambda key, p, x: calls.append(key) or original(key, p, x))
    paths = {"n": ["rgb", "normal"], "f_n": ["rgb", "normal", "principal_curvature"],
             "edges": ["rgb", "edge_texture"]}  # fmt: skip
    jax.make_jaxpr(lambda p, b: graph.evaluate(p, b, paths))(params, _batch())
    assert sorted(calls) == ["normal->principal_curvature", "rgb->edge_texture", "rgb->normal"]


def test_analytic_sobel_edge_has_no_parameters_and_matches_the_pipeline():
    from xtc_jax import domains

    graph = TaskGraph(NETS)
    params = graph.init(jax.random.PRNGKey(0), RES)
    assert params["rgb->edge_texture"] == {}
    batch = _batch()
    edges = graph.evaluate(params, batch, {"e": ["rgb", "edge_texture"]})["e"]
    expected = np.stack([domains.sobel_edges(image) for image in batch["rgb"]])
    np.testing.assert_allclose(np.asarray(edges), expected, atol=1e-5)


def _cpu_normal():
    return normal.get_config("cpu")


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda c: c.data.domains.append("normalz"), r"unknown domain 'normalz'"),
        (lambda c: c.paths.update({"bad": ["rgb", "keypoints2d", "normal"]}),
         r"needs the edge 'keypoints2d->normal', but no network is configured"),
        (lambda c: c.networks["normal->reshading"].update({"checkpoint": "/nowhere/ckpt"}),
         r"networks\['normal->reshading'\]\.checkpoint='/nowhere/ckpt' does not exist"),
        (lambda c: c.data.update({"resolution": 50}),
         r"data\.resolution=50 is not divisible by 2\^3 = 8"),
        (lambda c: c.selection.update({"k": 9}), r"selection\.k=9, but the config has 7"),
        (lambda c: c.losses.mae.update({"pred": "nope"}),
         r"losses\.mae\.pred='nope' is not a path"),
        (lambda c: c.freeze.append("rgb->normal"), r"'rgb->normal' is in freeze"),
        (lambda c: c.train.update({"best_metric": "l1", "checkpoint_every": 150}),
         r"checkpoint_every \(150\) must be a multiple of train\.eval_every \(100\)"),
        (lambda c: c.compute.update({"remat": "layers"}),
         r"compute\.remat='layers': use one of 'none', 'blocks', 'networks'"),
    ],
)  # fmt: skip
def test_config_errors_before_compilation(edit, message):
    config = _cpu_normal()
    edit(config)
    with pytest.raises(ConfigError, match=message):
        make_plan(config)
        check_train_config(config.train)


def test_transfer_config_needs_an_edge():
    with pytest.raises(ConfigError, match=r"name one edge and optionally a preset"):
        transfer.get_config("cpu")
    config = transfer.get_config("normal->reshading,cpu")
    assert list(config.networks) == ["normal->reshading"] and config.losses.mae.loss == "l2"
    assert transfer.get_config("rgb->normal").losses.mae.loss == "l1"


def test_paper_preset_is_the_papers_setting():
    config = normal.get_config()
    assert config.data.resolution == 256 and config.batch_size == 64
    assert config.networks["rgb->normal"].downsample == 6
    assert config.optimizer.name == "amsgrad" and config.optimizer.learning_rate == 3e-5
    assert config.optimizer.weight_decay == 2e-6
    assert config.selection.k == 3 and config.selection.mode == "winrate"
    assert len([n for n in config.losses if n.startswith("percep_")]) == 7
    assert "rgb->normal" not in config.freeze and "normal->reshading" in config.freeze
