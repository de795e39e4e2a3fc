"""Test records for the input pipeline, and the subprocess entry for device/process tests.

Records follow the source contract of `xtc_jax.data.pipeline`: "building",
"point", "view" and one encoded PNG per stored domain, encoded the way
Taskonomy stores it (each Domain's `encode`, then `png.encode_png`).

Run as a script (`python tests/pipeline_helpers.py MODE ...`) it is the body
of the multi-device and multi-process tests; it prints one JSON line.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from xtc_jax import domains as domains_lib  # noqa: E402
from xtc_jax.infra.png import encode_png  # noqa: E402

ALL_DOMAINS = (
    "rgb", "normal", "reshading", "principal_curvature", "depth_zbuffer", "edge_occlusion",
    "keypoints2d", "keypoints3d", "edge_texture", "segment_semantic", "mask_valid",
)  # fmt: skip


def make_record(index: int, size: int = 48, seed: int = 0) -> dict:
    """A record with every stored domain: random but valid values in each encoding."""
    rng = np.random.default_rng((seed, index))
    record: dict = {"building": f"bldg{index % 3}", "point": index, "view": index % 2}
    for name in domains_lib.STORED_DOMAINS:
        domain = domains_lib.DOMAINS[name]
        if name == "segment_semantic":
            values = rng.integers(-1, 17, (size, size, 1)).astype(np.float32)
        elif name == "depth_zbuffer":
            values = rng.uniform(0.0, 0.9, (size, size, 1)).astype(np.float32)
            values[: size // 4, : size // 4] = 1.0  # a hole (raw 65535) -> mask_valid 0
        else:
            values = rng.uniform(0.0, 1.0, (size, size, domain.channels)).astype(np.float32)
        record[name] = encode_png(domain.encode(values))
    return record


def make_source(n: int, size: int = 48, seed: int = 0) -> list[dict]:
    return [make_record(i, size, seed) for i in range(n)]


def _two_devices() -> dict:
    """One process, two CPU devices: global arrays sharded over both; one epoch covers all."""
    import jax

    from xtc_jax.data import pipeline
    from xtc_jax.infra import sharding

    mesh = sharding.make_mesh()
    source = make_source(12, size=16)
    pipe = pipeline.make_dataset(source, ["rgb", "depth_zbuffer"], 8, 4, seed=3, num_epochs=1)
    indices, device_sets, shard_shapes = [], [], []
    for batch in pipe:
        global_batch = sharding.host_batch_to_global(batch, mesh)
        rgb = global_batch["rgb"]
        device_sets.append(len(rgb.sharding.device_set))
        shard_shapes.append([list(s.data.shape) for s in rgb.addressable_shards])
        indices.append(np.asarray(global_batch["index"]).tolist())
        total = jax.jit(lambda x: x.sum())(global_batch["index"])
        assert int(total) == sum(indices[-1])
    return {
        "devices": jax.device_count(),
        "indices": indices,
        "device_sets": device_sets,
        "shard_shapes": shard_shapes,
        "spec": str(sharding.batch_sharding(mesh).spec),
    }


def _two_processes(process_id: int, port: int) -> dict:
    """One of two processes on localhost: read this process's shard, build global arrays."""
    import jax

    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(
        coordinator_address=f"127.0.0.1:{port}", num_processes=2, process_id=process_id
    )
    from xtc_jax.data import pipeline
    from xtc_jax.infra import sharding

    source = make_source(8, size=16)
    pipe = pipeline.make_dataset(source, ["rgb"], 8, 4, seed=5, num_epochs=1)
    mesh = sharding.make_mesh()
    result: dict = {
        "process_index": jax.process_index(),
        "process_count": jax.process_count(),
        "devices": jax.device_count(),
        "local": [],
        "global_shapes": [],
        "global_sums": [],
    }
    for batch in pipe:
        result["local"].append(np.asarray(batch["index"]).tolist())
        global_batch = sharding.host_batch_to_global(batch, mesh)
        result["global_shapes"].append(list(global_batch["rgb"].shape))
        try:  # needs cross-process collectives (gloo on CPU)
            total = jax.jit(lambda x: x.sum(), out_shardings=sharding.replicated(mesh))(
                global_batch["index"]
            )
            result["global_sums"].append(int(total))
        except Exception as error:  # report, do not hide: the test decides
            result["collective_error"] = repr(error)[:300]
    jax.distributed.shutdown()
    return result


if __name__ == "__main__":
    mode = sys.argv[1]
    if mode == "two_devices":
        out = _two_devices()
    elif mode == "two_processes":
        out = _two_processes(int(sys.argv[2]), int(sys.argv[3]))
    else:
        raise SystemExit(f"unknown mode {mode}")
    print("RESULT " + json.dumps(out), flush=True)
    os._exit(0)  # skip interpreter teardown of grain/jax threads
