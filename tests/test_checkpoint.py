"""Checkpoints: bitwise round trip, retention, best metric, data position, atomicity, export."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import grain
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from xtc_jax.errors import ConfigError, DataError
from xtc_jax.infra import sharding
from xtc_jax.infra.checkpoint import Checkpoints
from xtc_jax.infra.export import export_model, load_exported

REPO = Path(__file__).resolve().parents[1]


def _state(seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    params = {
        "rgb->normal": {
            "w": jnp.asarray(rng.normal(size=(3, 4)), jnp.float32),
            "b": jnp.asarray(rng.normal(size=(4,)), jnp.bfloat16),
        }
    }
    return {
        "params": params,
        "opt": optax.adam(1e-3).init(params),
        "step": jnp.int32(17 + seed),
        "rng": jax.random.key(seed),
        "wins": rng.uniform(size=(3, 3)).astype(np.float32),
    }


def _abstract(state: dict) -> dict:
    replicated = sharding.replicated(sharding.make_mesh())
    shapes = jax.eval_shape(lambda: state)
    return jax.tree.map(
        lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=replicated), shapes
    )


def _bits(x) -> np.ndarray:
    if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
        x = jax.random.key_data(x)
    return np.ascontiguousarray(np.asarray(x)).reshape(-1).view(np.uint8)


def _assert_bitwise_equal(got, want) -> None:
    assert jax.tree.structure(got) == jax.tree.structure(want)
    for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
        assert g.dtype == w.dtype and g.shape == w.shape
        np.testing.assert_array_equal(_bits(g), _bits(w))


def test_round_trip_is_bitwise_and_keeps_sharding(tmp_path):
    state, meta = _state(), {"losses": ["normal->curvature"], "config": {"lr": 1e-3}}
    with Checkpoints(tmp_path, save_every=5) as ckpt:
        assert ckpt.save(10, state, meta=meta)
        ckpt.wait()
        assert ckpt.latest_step() == 10
        restored, got_meta = ckpt.restore(abstract_state=_abstract(state))
    _assert_bitwise_equal(restored, state)
    assert got_meta == meta
    replicated = sharding.replicated(sharding.make_mesh())
    assert all(x.sharding == replicated for x in jax.tree.leaves(restored))
    assert isinstance(restored["opt"][0], optax.ScaleByAdamState)


def test_save_every_and_keep_last(tmp_path):
    with Checkpoints(tmp_path, keep=2, save_every=2, async_save=False) as ckpt:
        saved = [ckpt.save(step, _state()) for step in range(1, 9)]
        assert saved == [False, True] * 4
        assert not ckpt.save(8, _state(), force=True)  # existing step: not overwritten
        assert ckpt.save(9, _state(), force=True)
        assert ckpt.all_steps() == [8, 9] and ckpt.latest_step() == 9
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.isdigit()) == ["8", "9"]


@pytest.mark.parametrize(("mode", "best"), [("min", [2, 4]), ("max", [3, 5])])
def test_best_metric_retention(tmp_path, mode, best):
    losses = {1: 0.5, 2: 0.1, 3: 0.9, 4: 0.3, 5: 0.8, 6: 0.7}
    with Checkpoints(tmp_path, keep=2, save_every=1, best_metric="loss", best_mode=mode) as ckpt:
        for step, loss in losses.items():
            ckpt.save(step, _state(), metrics={"loss": np.float32(loss), "acc": 1 - loss})
        ckpt.wait()
        # the best two by the metric, plus always the latest (to resume from)
        assert ckpt.all_steps() == sorted({*best, 6})
        assert ckpt.best_step() == best[0]
        with pytest.raises(ConfigError, match="lack best_metric 'loss'"):
            ckpt.save(7, _state(), metrics={"acc": 0.5})
    # metrics are stored with the checkpoints: a resumed run still knows the best ones
    with Checkpoints(tmp_path, keep=2, save_every=1, best_metric="loss", best_mode=mode) as ckpt:
        assert ckpt.best_step() == best[0]
        ckpt.save(7, _state(), metrics={"loss": 0.6})
        ckpt.wait()
        assert ckpt.all_steps() == sorted({*best, 7})


def _ints(iterator, n: int) -> list[int]:
    return [int(next(iterator)) for _ in range(n)]


def test_data_iterator_resumes_same_data(tmp_path):
    dataset = grain.MapDataset.range(20).shuffle(seed=3).repeat(None).to_iter_dataset()
    iterator = iter(dataset)
    _ints(iterator, 7)
    with Checkpoints(tmp_path, save_every=1) as ckpt:  # async: the position is taken at save()
        ckpt.save(7, _state(), data_iterator=iterator)
        expected = _ints(iterator, 25)  # crosses an epoch boundary
        ckpt.wait()
    fresh = iter(dataset)
    with Checkpoints(tmp_path) as ckpt:
        ckpt.restore(7, _abstract(_state()), data_iterator=fresh)
    assert _ints(fresh, 25) == expected


def test_half_written_checkpoint_is_ignored(tmp_path):
    state = _state()
    with Checkpoints(tmp_path, save_every=1, async_save=False) as ckpt:
        ckpt.save(4, state, meta={"step": 4})
    # a crash during the save of step 6: orbax's tmp folder, partly written
    tmp = tmp_path / "6.orbax-checkpoint-tmp-1700000000"
    shutil.copytree(tmp_path / "4", tmp)
    shutil.rmtree(tmp / "state")
    with Checkpoints(tmp_path, save_every=1) as ckpt:
        assert ckpt.latest_step() == 4 and ckpt.all_steps() == [4]
        restored, meta = ckpt.restore(abstract_state=_abstract(state))
    _assert_bitwise_equal(restored, state)
    assert meta == {"step": 4}
    assert not tmp.exists()  # cleaned up when the manager was opened


def test_restore_errors_name_the_problem(tmp_path):
    with Checkpoints(tmp_path / "empty") as ckpt, pytest.raises(DataError, match="no complete"):
        ckpt.restore()
    state = _state()
    with Checkpoints(tmp_path / "run", save_every=1, async_save=False) as ckpt:
        ckpt.save(3, state)
        with pytest.raises(DataError, match=r"no checkpoint for step 5 .* have \[3\]"):
            ckpt.restore(5)
        wider = {**state, "wins": np.zeros((4, 4), np.float32)}
        with pytest.raises(DataError, match=r"'wins' has shape \(3, 3\) but the state expects"):
            ckpt.restore(abstract_state=_abstract(wider))
        with pytest.raises(DataError, match=r"missing \['extra'\]"):
            ckpt.restore(abstract_state=_abstract({**state, "extra": jnp.zeros(2)}))
        with pytest.raises(DataError, match="holds no data iterator position"):
            ckpt.restore(data_iterator=iter(grain.MapDataset.range(3).to_iter_dataset()))
    with pytest.raises(ConfigError, match="keep=0"):
        Checkpoints(tmp_path / "x", keep=0)


def test_restore_replicated_on_two_device_mesh(tmp_path):
    """Saved and restored as replicated NamedSharding over a 2-device mesh (subprocess)."""
    script = f"""
import jax, jax.numpy as jnp, numpy as np
from xtc_jax.infra import sharding
from xtc_jax.infra.checkpoint import Checkpoints
rep = sharding.replicated(sharding.make_mesh())
state = {{"w": jax.device_put(jnp.arange(12.0).reshape(3, 4), rep), "step": jnp.int32(3)}}
abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=rep), state)
with Checkpoints({str(tmp_path)!r}, save_every=1) as ckpt:
    ckpt.save(3, state)
    ckpt.wait()
    got, _ = ckpt.restore(abstract_state=abstract)
assert jax.device_count() == 2 and got["w"].sharding == rep
np.testing.assert_array_equal(got["w"], np.arange(12.0).reshape(3, 4))
print("OK", int(got["step"]))
"""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JAX_", "XLA_"))}
    env.update(JAX_PLATFORMS="cpu", JAX_NUM_CPU_DEVICES="2", PYTHONPATH=str(REPO))
    result = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0 and "OK 3" in result.stdout, result.stderr[-3000:]


def test_export_round_trip_and_errors(tmp_path):
    params = _state()["params"]
    config = {"arch": "unet", "downsample": 6, "out_channels": 3, "domains": ("rgb", "normal")}
    out = export_model(tmp_path / "model", params, config)
    assert sorted(p.name for p in out.iterdir()) == ["model.json", "params"]
    assert [p.name for p in tmp_path.iterdir()] == ["model"]  # no tmp left
    loaded, got_config = load_exported(tmp_path / "model")
    assert got_config == {**config, "domains": ["rgb", "normal"]}
    assert all(isinstance(x, np.ndarray) for x in jax.tree.leaves(loaded))
    _assert_bitwise_equal(loaded, jax.tree.map(np.asarray, params))
    replicated = sharding.replicated(sharding.make_mesh())
    placed, _ = load_exported(tmp_path / "model", sharding=replicated)
    assert all(x.sharding == replicated for x in jax.tree.leaves(placed))

    with pytest.raises(DataError, match=r"already exists.*overwrite=True"):
        export_model(tmp_path / "model", params, config, overwrite=False)
    export_model(tmp_path / "model", _state(1)["params"], {"arch": "v2"})  # replaces it
    assert load_exported(tmp_path / "model")[1] == {"arch": "v2"}
    _assert_bitwise_equal(load_exported(tmp_path / "model")[0], _state(1)["params"])
    assert [p.name for p in tmp_path.iterdir()] == ["model"]

    with pytest.raises(DataError, match=r"does not exist: export one with .*export_model"):
        load_exported(tmp_path / "nope")
    (tmp_path / "other").mkdir()
    with pytest.raises(DataError, match=r"not an exported model: expected params/ and model.json"):
        load_exported(tmp_path / "other")
    with pytest.raises(DataError, match=r"already exists.*delete it"):
        export_model(tmp_path / "other", params, config)
    (tmp_path / "model" / "model.json").write_text("{oops")
    with pytest.raises(DataError, match=r"model\.json is not valid JSON"):
        load_exported(tmp_path / "model")
    with pytest.raises(ConfigError, match="model_config must be JSON"):
        export_model(tmp_path / "m2", params, {"fn": print})
