"""Benchmark plumbing: memory estimates, the largest-batch search, the PyTorch twin's step."""

from __future__ import annotations

import pytest

from xtc_jax.bench import memory, step_cases, train_step


def test_largest_batch_bisects_on_the_memory_estimate(monkeypatch):
    calls = []

    def fake(case, batch, remat, chosen):
        calls.append(batch)
        per_example = 60 if remat else 100
        return {"total": 50 + per_example * batch}

    monkeypatch.setattr(memory, "step_memory_bytes", fake)
    assert memory.largest_batch("x", 1000, remat=False, log=lambda _: None) == 9
    assert memory.largest_batch("x", 1000, remat=True, log=lambda _: None) == 15
    assert memory.largest_batch("x", 100, remat=False, log=lambda _: None) == 0
    assert max(calls) <= 32  # doubling stops at the first batch that does not fit


def test_step_memory_grows_with_batch():
    small = memory.step_memory_bytes("unet_cpu", 1, remat=False)
    large = memory.step_memory_bytes("unet_cpu", 8, remat=False)
    assert large["temporaries"] > 4 * small["temporaries"]  # activations scale with the batch
    assert large["arguments"] > small["arguments"]  # the batch is an argument
    assert set(large) == {"arguments", "outputs", "temporaries", "total"}
    assert large["total"] == large["arguments"] + large["outputs"] + large["temporaries"]


def test_cases_and_peaks_are_named_clearly():
    case = step_cases.make_case("consistency_cpu", 4)
    assert case.chosen == step_cases.CHOSEN and case.resolution == 48 and case.batch == 4
    assert set(step_cases.random_batch(case)) == {"rgb", "normal", *step_cases.CHOSEN}
    assert step_cases.make_case("unet_paper", 2).config.networks["rgb->normal"].downsample == 6
    with pytest.raises(ValueError, match="unknown case 'unet'"):
        step_cases.make_case("unet", 2)
    assert train_step.bf16_peak("NVIDIA H100 80GB HBM3") == 989e12
    assert train_step.bf16_peak("cpu") is None


def test_jax_and_torch_steps_compute_the_same_loss_and_update():
    pytest.importorskip("torch")
    case = step_cases.make_case("unet_cpu", 2)
    jax_step = step_cases.JaxStep(case)
    torch_step = step_cases.TorchStep(case, jax_step.params, "original")
    losses = []
    for _ in range(2):  # the second loss reflects the first AMSGrad update
        jax_step.run(1)
        torch_step.run(1)
        losses.append((jax_step.loss(), torch_step.loss()))
    for jax_loss, torch_loss in losses:
        assert jax_loss == pytest.approx(torch_loss, rel=2e-4)
    assert losses[1][0] != losses[0][0]
