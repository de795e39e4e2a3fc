"""Edge networks by name: the registry (`registry.py`), the UNets, Dense1by1Net and Sobel."""

from xtc_jax.models.registry import (
    MODELS,
    ModelError,
    build,
    count_params,
    model_fields,
    param_shapes,
)

__all__ = ["MODELS", "ModelError", "build", "count_params", "model_fields", "param_shapes"]
