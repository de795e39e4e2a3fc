"""Reading .pth files without torch: both formats, every layout, and refusing what a pickle runs."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest

from xtc_jax.convert.pth import read_pth
from xtc_jax.errors import DataError


class _Shell:
    """Pickles as a call of os.system, as a hostile .pth would."""

    def __reduce__(self):
        return (os.system, ("echo owned > /dev/null",))


def test_a_pickle_that_names_os_system_is_refused_and_nothing_runs(tmp_path, monkeypatch):
    payloads = [pickle.dumps(p, protocol=2) for p in (_Shell(), {"weight": _Shell()})]
    calls = []
    monkeypatch.setattr(os, "system", lambda command: calls.append(command))
    path = tmp_path / "evil.pth"
    for payload in payloads:
        path.write_bytes(payload)
        with pytest.raises(DataError, match=r"evil\.pth names the global posix\.system"):
            read_pth(path)
    assert calls == []


def test_files_that_are_not_checkpoints_get_one_message_naming_them(tmp_path):
    with pytest.raises(DataError, match=r"nope\.pth does not exist"):
        read_pth(tmp_path / "nope.pth")
    (tmp_path / "text.pth").write_text("hello")
    with pytest.raises(DataError, match=r"text\.pth: not a PyTorch \.pth file"):
        read_pth(tmp_path / "text.pth")
    (tmp_path / "number.pth").write_bytes(pickle.dumps(42))
    with pytest.raises(DataError, match=r"number\.pth: not a PyTorch \.pth file \(wrong magic"):
        read_pth(tmp_path / "number.pth")


@pytest.fixture
def torch():
    """torch writes the files these tests read (skipped where torch is absent)."""
    return pytest.importorskip("torch")


def _state_dict(torch):
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.GroupNorm(2, 4))
    with torch.no_grad():
        net[1].weight.uniform_(0.5, 1.5)  # GroupNorm scale and bias not 1 and 0
        net[1].bias.uniform_(-0.5, 0.5)
    return net.state_dict()


def _same(got, want) -> None:
    assert list(got) == list(want)
    for key, tensor in want.items():
        bf16 = str(tensor.dtype) == "torch.bfloat16"  # NumPy has no bfloat16: compare as float32
        expected = tensor.float().numpy() if bf16 else tensor.numpy()
        value = got[key].astype(np.float32) if bf16 else got[key]
        assert value.dtype == expected.dtype and value.flags.c_contiguous, key
        np.testing.assert_array_equal(value, expected, err_msg=key)


@pytest.mark.parametrize("zip_format", [True, False], ids=["zip", "legacy"])
def test_both_formats_read_every_tensor_bit_for_bit(tmp_path, zip_format, torch):
    tensors = dict(_state_dict(torch))
    tensors.update(
        half=torch.randn(2, 5).half(), bf16=torch.randn(3).bfloat16(), scalar=torch.tensor(3),
        transposed=torch.arange(6).reshape(2, 3).t(), flags=torch.tensor([True, False]),
    )  # fmt: skip
    path = tmp_path / "model.pth"
    torch.save(tensors, path, _use_new_zipfile_serialization=zip_format)
    _same(read_pth(path), tensors)


@pytest.mark.parametrize("zip_format", [True, False], ids=["zip", "legacy"])
def test_the_originals_layouts_read_as_they_were_saved(tmp_path, zip_format, torch):
    state = _state_dict(torch)
    prefixed = {f"parallel_apply.module.{k}": v for k, v in state.items()}  # DataParallelModel
    net = torch.nn.Linear(2, 2)
    wrapped = {"state_dict": prefixed, "optimizer": torch.optim.Adam(net.parameters()).state_dict()}
    graph = {"('normal', 'principal_curvature')": {f"model.{k}": v for k, v in state.items()}}
    base = torch.randn(10)
    views = {"whole": base, "part": base[2:5]}  # two tensors sharing one storage
    for name, obj in (("prefixed", prefixed), ("wrapped", wrapped), ("graph", graph),
                      ("views", views)):  # fmt: skip
        path = tmp_path / f"{name}.pth"
        torch.save(obj, path, _use_new_zipfile_serialization=zip_format)
        got = read_pth(path)
        if name == "wrapped":
            _same(got["state_dict"], prefixed)
            assert got["optimizer"]["param_groups"][0]["lr"] == 0.001
        elif name == "graph":
            edge = "('normal', 'principal_curvature')"
            _same(got[edge], graph[edge])
        else:
            _same(got, obj)


def test_a_legacy_file_saved_from_cuda_0_reads_on_a_cpu_machine(tmp_path, monkeypatch, torch):
    # torch tags each storage with its device when saving; a GPU run tags "cuda:0".
    monkeypatch.setattr(torch.serialization, "location_tag", lambda storage: "cuda:0")
    state = _state_dict(torch)
    path = tmp_path / "gpu.pth"
    torch.save(state, path, _use_new_zipfile_serialization=False)
    assert b"cuda:0" in path.read_bytes()
    _same(read_pth(path), state)


def test_a_cut_file_is_named_not_silently_short(tmp_path, torch):
    path = tmp_path / "cut.pth"
    torch.save(_state_dict(torch), path, _use_new_zipfile_serialization=False)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 40])
    with pytest.raises(DataError, match=r"cut\.pth is truncated"):
        read_pth(path)
