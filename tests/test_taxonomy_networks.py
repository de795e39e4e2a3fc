"""Taskonomy's small networks and tasks: shapes, the fixed-size representation, the losses."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from xtc_jax.errors import ConfigError
from xtc_jax.models.taskonomy_net import TaskDecoder, TaskEncoder, TransferReadout
from xtc_jax.models.unet import ModelError
from xtc_jax.taxonomy import tasks


def test_one_encoder_gives_a_fixed_size_representation_every_decoder_reads():
    x = jax.random.uniform(jax.random.key(0), (2, 64, 64, 3))
    encoder = TaskEncoder(width=0.125)
    rep = encoder.apply(encoder.init(jax.random.key(1), x), x)
    assert rep.shape == (2, 4, 4, 8)  # H/16 x W/16 x 8, as the paper's 16x16x8 at 256 px
    for name in tasks.TASKS:
        task = tasks.get(name)
        decoder = TaskDecoder(task.channels, width=0.125)
        out = decoder.apply(decoder.init(jax.random.key(2), rep), rep)
        assert out.shape == (2, 64, 64, task.channels), name
    pair = jnp.concatenate([rep, rep], axis=-1)  # an order-2 transfer's input
    readout = TransferReadout(3, width=0.125)
    assert readout.apply(readout.init(jax.random.key(3), pair), pair).shape == (2, 64, 64, 3)
    with pytest.raises(ModelError, match="multiples of 16"):
        encoder.init(jax.random.key(1), jnp.zeros((1, 40, 40, 3)))


def test_tasks_their_targets_and_losses():
    assert tasks.get("segment_semantic").channels == 17
    assert tasks.get("autoencoder").target_domain == "rgb"
    assert tasks.domains_needed(["denoise", "normal", "segment_semantic"]) == [
        "rgb", "normal", "segment_semantic"]
    rgb = jax.random.uniform(jax.random.key(0), (2, 16, 16, 3))
    noisy = tasks.get("denoise").inputs(rgb, jax.random.key(1))
    assert float(jnp.abs(noisy - rgb).mean()) > 0.03 and float(noisy.min()) >= 0
    assert tasks.get("autoencoder").inputs(rgb, jax.random.key(1)) is rgb
    batch = {"rgb": rgb, "segment_semantic": jnp.zeros((2, 16, 16, 1))}
    losses = tasks.get("autoencoder").per_image_loss(rgb + 0.25, batch)
    np.testing.assert_allclose(losses, [0.25, 0.25], rtol=1e-5)
    uniform = tasks.get("segment_semantic").per_image_loss(jnp.zeros((2, 16, 16, 17)), batch)
    np.testing.assert_allclose(uniform, np.log(17), rtol=1e-5)  # uniform logits: log C
    with pytest.raises(ConfigError, match="unknown taxonomy task 'colorization'"):
        tasks.get("colorization")


def _tiny_config():
    import ml_collections

    from xtc_jax.data.mtl import synthetic

    return ml_collections.ConfigDict(dict(
        seed=0, batch_size=4,
        data=dict(path="", format="shards", layout="auto", split_file="",
                  domains=list(synthetic.DOMAINS), resolution=32, worker_count=0,
                  cache_dir="", synthetic=dict(buildings=3, views=8, size=32, seed=0,
                                               style="base")),
        model=dict(width=0.125, rep_channels=8),
        optimizer=dict(learning_rate=1e-3),
        train=dict(steps=4, eval_every=4, checkpoint_every=4, keep_checkpoints=1,
                   best_metric="", eval_batches=1, log_every_seconds=60.0,
                   on_nonfinite="raise"),
    ))  # fmt: skip


@pytest.mark.parametrize("task", ["normal", "denoise"])
def test_a_task_specific_network_trains_through_the_loop(tmp_path, task):
    import json

    from xtc_jax.data import prepare
    from xtc_jax.taxonomy.task_method import TaskNetworkMethod
    from xtc_jax.training.loop import train_and_evaluate

    config = _tiny_config()
    config.data.cache_dir = str(tmp_path / "data")
    location = prepare.data_location(config.data, str(tmp_path))
    train = prepare.open_split(config.data, location, "train")
    val = prepare.open_split(config.data, location, "val")
    method = TaskNetworkMethod(config, task, train, val, log=lambda _: None)
    result = train_and_evaluate(method, config.train, 0, str(tmp_path / task), lambda _: None)
    assert np.isfinite(result["loss"]) and result["loss"] > 0
    model = json.loads((tmp_path / task / "export" / "model.json").read_text())
    assert model["task"] == task and model["arch"] == "taskonomy_task"


def test_stacked_transfers_train_together_and_rank_an_informative_source_first():
    from xtc_jax.taxonomy import tournament, transfers

    rng = np.random.default_rng(0)
    n, size = 32, 16
    colour = rng.random((n, 1, 1, 3)).astype(np.float32)  # each image has its own colour
    target = np.clip(colour + 0.05 * rng.normal(size=(n, size, size, 3)), 0, 1).astype(np.float32)
    # an informative "source" represents each image by its colour; a useless one by noise
    informative = colour
    reps = {"good": np.concatenate([informative, informative, informative[..., :2]], -1),
            "noise": rng.normal(size=(n, 1, 1, 8)).astype(np.float32)}
    candidates = [("good",), ("noise",)]
    inputs = transfers.stacked_inputs(reps, candidates)
    assert inputs.shape == (2, n, 1, 1, 8)
    task = tasks.get("autoencoder")
    readout = TransferReadout(3, width=0.125)
    params = transfers.train_transfers(task, readout, inputs[:, :16], {"rgb": target[:16]},
                                       steps=300, batch_size=8, learning_rate=1e-2, seed=0,
                                       log=lambda _: None)  # fmt: skip
    losses = transfers.per_image_losses(task, readout, params, inputs[:, 16:],
                                        {"rgb": target[16:]})  # fmt: skip
    assert losses.shape == (2, 16) and np.isfinite(losses).all()
    assert losses[0].mean() < 0.7 * losses[1].mean()  # measured: 0.15 against 0.34
    winrates = tournament.winrate_matrix(losses)
    assert winrates[0, 1] >= 0.75  # the informative source wins on most images (0.94 here)
    weights = tournament.ahp_weights(winrates)
    assert weights[0] > weights[1]


def test_looped_and_vmapped_readouts_train_alike():
    from xtc_jax.taxonomy import transfers

    rng = np.random.default_rng(1)
    inputs = rng.normal(size=(3, 8, 1, 1, 8)).astype(np.float32)
    target = {"rgb": rng.random((8, 16, 16, 3)).astype(np.float32)}
    task, readout = tasks.get("autoencoder"), TransferReadout(3, width=0.125)
    out = {}
    for batching in ("vmap", "loop"):
        params = transfers.train_transfers(task, readout, inputs, target, steps=5, batch_size=4,
                                           learning_rate=1e-2, seed=0, log=lambda _: None,
                                           batching=batching)  # fmt: skip
        out[batching] = transfers.per_image_losses(task, readout, params, inputs, target,
                                                   batching=batching)  # fmt: skip
    assert out["loop"].shape == (3, 8)
    np.testing.assert_allclose(out["loop"], out["vmap"], rtol=2e-3, atol=1e-5)
    with pytest.raises(ConfigError, match=r"config\.transfer\.batching='scan'"):
        transfers.resolve_batching("scan")
