"""Benchmark plumbing: memory estimates, the largest-batch search, the PyTorch twin's step."""

from __future__ import annotations

import jax
import pytest

from xtc_jax.bench import memory, step_cases, train_step, xla_options


def test_largest_batch_bisects_on_the_memory_estimate(monkeypatch):
    calls = []

    def fake(case, batch, remat, chosen):
        calls.append(batch)
        per_example = 60 if remat == "blocks" else 100
        return {"total": 50 + per_example * batch}

    monkeypatch.setattr(memory, "step_memory_bytes", fake)
    assert memory.largest_batch("x", 1000, remat="none", log=lambda _: None) == 9
    assert memory.largest_batch("x", 1000, remat="blocks", log=lambda _: None) == 15
    assert memory.largest_batch("x", 100, remat="none", log=lambda _: None) == 0
    assert max(calls) <= 32  # doubling stops at the first batch that does not fit
    for start in (4, 8, 9, 12, 64):  # a start near the answer: the same answer
        assert memory.largest_batch("x", 1000, remat="none", log=lambda _: None,
                                    start=start) == 9  # fmt: skip
    calls.clear()
    assert memory.largest_batch("x", 1000, remat="none", log=lambda _: None, start=8) == 9
    assert calls == [8, 16, 12, 10, 9]  # 5 compilations instead of 9 from batch 1
    assert memory.largest_batch("x", 100, remat="none", log=lambda _: None, start=8) == 0


def test_step_memory_grows_with_batch():
    small = memory.step_memory_bytes("unet_cpu", 1, remat="none")
    large = memory.step_memory_bytes("unet_cpu", 8, remat="none")
    assert large["temporaries"] > 4 * small["temporaries"]  # activations scale with the batch
    assert large["arguments"] > small["arguments"]  # the batch is an argument
    assert set(large) == {"arguments", "outputs", "temporaries", "total"}
    assert large["total"] == large["arguments"] + large["outputs"] + large["temporaries"]


def test_block_remat_saves_far_fewer_bytes_for_the_backward_pass():
    saved = {
        mode: memory.saved_bytes("unet_cpu", 8, mode) for mode in ("none", "blocks", "networks")
    }
    # Per saved activation: 8 images of 48x48 with 8 channels, float32 = 589,824 bytes.
    activation = 8 * 48 * 48 * 8 * 4
    assert saved["none"] > 40 * activation  # every conv, norm and ReLU output of the UNet
    assert saved["blocks"] < saved["none"] / 4  # only block inputs and outputs
    assert saved["networks"] < saved["blocks"]  # only the network's input


def test_memory_command_prints_a_row_per_mode(capsys):
    result = memory.main(["--case", "unet_cpu", "--batch", "2", "--modes", "none,blocks",
                          "--no_compile"])  # fmt: skip
    assert set(result["modes"]) == {"none", "blocks"}
    assert result["modes"]["blocks"]["saved"] < result["modes"]["none"]["saved"]
    out = capsys.readouterr().out
    assert "saved for backward" in out and out.count(" GiB") == 2
    with pytest.raises(SystemExit, match="use a comma list of none, blocks, networks"):
        memory.main(["--case", "unet_cpu", "--modes", "layers", "--no_compile"])


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


def test_xla_options_variants_parse_and_compare_in_one_process(capsys):
    parsed = xla_options.parse_variant("off:a=,b=LIBRARY_X,c=true,d=4")
    assert parsed == ("off", {"a": "", "b": "LIBRARY_X", "c": True, "d": 4})
    assert xla_options.parse_variant("plain") == ("plain", {})
    with pytest.raises(SystemExit, match="write NAME:OPTION=VALUE"):
        xla_options.parse_variant("bad:novalue")
    jax.devices()  # JAX has started: XLA_FLAGS can no longer change
    with pytest.raises(SystemExit, match="fresh process"):
        xla_options.drop_from_xla_flags(["xla_cpu_enable_fast_math"], {"XLA_FLAGS": ""})
    argv = ["--case", "unet_cpu", "--batch", "1", "--rounds", "2", "--steps", "1",
            "--variant", "plain", "--variant", "fast:xla_cpu_enable_fast_math=true"]  # fmt: skip
    result = xla_options.main(argv)
    assert set(result) == {"plain", "fast"} and result["plain"]["speedup"] == 1.0
    assert all(r["ms"] > 0 and 0 <= r["wins"] <= 2 for r in result.values())
    assert "paired speedup vs plain" in capsys.readouterr().out


def test_guard_benchmark_times_the_plain_and_guarded_steps(capsys):
    from xtc_jax.bench import guard

    result = guard.main(["--case", "unet_cpu", "--batch", "1", "--rounds", "2", "--steps", "1"])
    assert {"plain", "guard_raise", "guard_skip"} <= set(result)
    assert result["plain"]["ratio_to_plain"] == 1.0
    assert all(result[k]["median_ms"] > 0 for k in ("plain", "guard_raise", "guard_skip"))
    assert "guard_skip" in capsys.readouterr().out
