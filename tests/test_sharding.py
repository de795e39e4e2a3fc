"""Mesh and batch sharding: one device here; two fake devices and two processes in subprocesses."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest
from jax.sharding import PartitionSpec

from xtc_jax.errors import ConfigError
from xtc_jax.infra import sharding

HELPER = Path(__file__).with_name("pipeline_helpers.py")
REPO = HELPER.parents[1]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JAX_", "XLA_"))}
    env.update(JAX_PLATFORMS="cpu", PYTHONPATH=str(REPO), **extra)
    return env


def _result(output: str) -> dict:
    lines = [line for line in output.splitlines() if line.startswith("RESULT ")]
    assert lines, output[-3000:]
    return json.loads(lines[-1][len("RESULT ") :])


def test_mesh_and_shardings_on_local_devices():
    mesh = sharding.make_mesh()
    assert mesh.axis_names == ("data",) and mesh.shape["data"] == jax.device_count()
    assert sharding.batch_sharding(mesh).spec == PartitionSpec("data")
    assert sharding.replicated(mesh).spec == PartitionSpec()
    two_axes = sharding.make_mesh(("data", "fsdp"))
    assert dict(two_axes.shape) == {"data": jax.device_count(), "fsdp": 1}
    assert sharding.batch_sharding(two_axes).spec == PartitionSpec(("data", "fsdp"))
    with pytest.raises(ConfigError, match="multiply to"):
        sharding.make_mesh(("data",), axis_sizes=(jax.device_count() + 1,))


def test_host_batch_to_global_single_process():
    mesh = sharding.make_mesh()
    n = jax.device_count()
    batch = {"rgb": np.arange(n * 2 * 4 * 3, dtype=np.float32).reshape(n * 2, 2, 2, 3),
             "index": np.arange(n * 2, dtype=np.int32)}  # fmt: skip
    out = sharding.host_batch_to_global(batch, mesh)
    assert isinstance(out["rgb"], jax.Array) and out["rgb"].shape == (n * 2, 2, 2, 3)
    assert out["rgb"].sharding == sharding.batch_sharding(mesh)
    np.testing.assert_array_equal(np.asarray(out["rgb"]), batch["rgb"])
    with pytest.raises(ConfigError, match="scalar"):
        sharding.host_batch_to_global({"x": np.float32(1)}, mesh)


def test_two_cpu_devices_shard_the_batch_and_cover_the_epoch():
    proc = subprocess.run(
        [sys.executable, str(HELPER), "two_devices"],
        env=_env(JAX_NUM_CPU_DEVICES="2"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    result = _result(proc.stdout + proc.stderr)
    assert result["devices"] == 2 and result["spec"] == "P('data',)"
    assert result["device_sets"] == [2, 2, 2]  # every global array spans both devices
    assert all(shapes == [[2, 8, 8, 3], [2, 8, 8, 3]] for shapes in result["shard_shapes"])
    flat = sorted(i for batch in result["indices"] for i in batch)
    assert flat == list(range(12))  # one epoch: every example exactly once


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_read_disjoint_shards_and_build_global_arrays():
    port = _free_port()
    procs = [
        subprocess.Popen(
            [sys.executable, str(HELPER), "two_processes", str(i), str(port)],
            env=_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for i in range(2)
    ]
    try:
        outputs = [p.communicate(timeout=150)[0] for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    results = sorted((_result(o) for o in outputs), key=lambda r: r["process_index"])
    assert [r["process_index"] for r in results] == [0, 1]
    assert all(r["process_count"] == 2 and r["devices"] == 2 for r in results)
    shards = [sorted(i for batch in r["local"] for i in batch) for r in results]
    assert not set(shards[0]) & set(shards[1])  # disjoint
    assert sorted(shards[0] + shards[1]) == list(range(8))  # together: every example once
    for r in results:
        assert r["global_shapes"] == [[4, 8, 8, 3], [4, 8, 8, 3]]  # 2 per process -> 4 global
        assert "collective_error" not in r, r.get("collective_error")
        # The jitted sum over the global array sees both processes' examples.
        want = [
            sum(a) + sum(b) for a, b in zip(results[0]["local"], results[1]["local"], strict=True)
        ]
        assert r["global_sums"] == want
