"""Process setup: the XLA CPU flags set at import, and what they change in compiled code."""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import pytest

from xtc_jax.infra import runtime
from xtc_jax.models.unet import group_norm

YNN = "--xla_cpu_experimental_ynn_fusion_type="


def test_flags_are_appended_to_the_users_flags():
    environ = {"XLA_FLAGS": "--xla_force_host_platform_device_count=4"}
    flags = runtime.set_cpu_xla_flags(environ, jaxlib_version="0.10.2")
    assert flags == f"--xla_force_host_platform_device_count=4 {YNN}"
    assert environ["XLA_FLAGS"] == flags
    assert runtime.set_cpu_xla_flags(environ, "0.10.2") == flags  # idempotent


@pytest.mark.parametrize(
    ("environ", "version"),
    [
        ({"XLA_FLAGS": f"{YNN}LIBRARY_FUSION_TYPE_REDUCE"}, "0.11.0"),  # the user's own choice
        ({"XTC_XLA_DEFAULTS": "0"}, "0.10.2"),  # opted out
        ({}, "0.9.2"),  # a jaxlib that may not know the flag (unknown flags abort XLA)
    ],
)
def test_flags_are_left_alone(environ, version):
    before = dict(environ)
    runtime.set_cpu_xla_flags(environ, jaxlib_version=version)
    assert environ == before


def test_group_norm_reductions_stay_on_xla_kernels_in_this_process():
    if YNN not in os.environ.get("XLA_FLAGS", "").split():
        pytest.skip("XLA_FLAGS leaves YNNPACK on: old jaxlib, XTC_XLA_DEFAULTS=0 or the user's own")
    norm = group_norm(8, jnp.float32, "bn")
    x = jnp.ones((8, 48, 48, 8))  # the `:cpu` UNet's first level; small shapes never use YNNPACK
    params = norm.init(jax.random.key(0), x)
    compiled = jax.jit(norm.apply).lower(params, x).compile().as_text()
    assert "reduce" in compiled and "__ynn" not in compiled
