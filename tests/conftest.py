"""Test session setup: a persistent XLA compilation cache shared by the session's processes.

Compiling a UNet step on CPU takes longer than running it; tests that build
the same shapes in several processes (subprocess runs of the main command)
reuse each other's compiled code through this cache.
"""

from __future__ import annotations

import os
import tempfile

import jax
import pytest

_CACHE = os.environ.setdefault(
    "XTC_COMPILATION_CACHE", os.path.join(tempfile.gettempdir(), "xtc_jax_test_compilation_cache")
)
jax.config.update("jax_compilation_cache_dir", _CACHE)
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)


@pytest.fixture(scope="session")
def viewer_workdir(tmp_path_factory):
    """A tiny main-run workdir whose energy statistics the viewers fitted on first use."""
    import viewer_fixtures

    from xtc_jax.apps.predictor import Predictor

    root = viewer_fixtures.make_workdir(str(tmp_path_factory.mktemp("viewer_workdir")))
    messages: list[str] = []
    Predictor.load("normal", workdir=root, log=messages.append)
    assert any("fitting them with the workdir's config" in m for m in messages), messages
    return root
