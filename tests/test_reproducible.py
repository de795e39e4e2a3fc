"""One seed on one machine gives one result: a consistency step does not depend on the process.

Two runs of the same consistency stage used to differ from their second step on (issue 13:
34.59 vs 34.75 degrees). The step evaluated its paths in the order of a Python set of
strings, which changes with PYTHONHASHSEED, so each process traced the perceptual paths in
another order and XLA summed floats in another order. This runs one step of the `:cpu`
normal config in processes with different hash seeds (0 and 1 gave different bits before
the fix) and compares the bits.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
STEP = r"""
import hashlib, sys
import jax, jax.numpy as jnp, numpy as np
sys.path.insert(0, "tests")
from test_train import _random_params
from configs import normal
from xtc_jax import domains
from xtc_jax.consistency import selection
from xtc_jax.consistency.plan import make_plan
from xtc_jax.consistency.step import make_train_step
from xtc_jax.training import optim

config = normal.get_config("cpu")
config.data.resolution = 16
plan = make_plan(config)
params = _random_params(plan.graph, ["rgb->normal"], 0)
frozen = _random_params(plan.graph, list(config.freeze), 1)
optimizer = optim.make_optimizer(config.optimizer)
state = {"step": jnp.int32(0), "params": params, "opt_state": optimizer.init(params),
         "rng": jax.random.PRNGKey(0), "winrate": selection.winrate_init(plan.perceptual)}
rng = np.random.default_rng(0)
batch = {d: rng.random((4, 16, 16, domains.get(d).channels), dtype=np.float32)
         for d in config.data.domains}
step = jax.jit(make_train_step(plan, ("keypoints2d", "keypoints3d", "reshading"), optimizer))
digest = hashlib.sha256()
for leaf in jax.tree.leaves(jax.device_get(step(state, frozen, batch))):
    digest.update(np.ascontiguousarray(leaf).tobytes())
print(digest.hexdigest())
"""


def _step_digest(hash_seed: str) -> str:
    env = dict(os.environ, PYTHONHASHSEED=hash_seed, PYTHONPATH=str(REPO))
    result = subprocess.run([sys.executable, "-c", STEP], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=600)  # fmt: skip
    assert result.returncode == 0, result.stderr
    return result.stdout.split()[-1]


def test_a_consistency_step_is_bit_identical_whatever_the_hash_seed():
    assert _step_digest("0") == _step_digest("1")
