"""The local web demo: `python -m xtc_jax.apps.web --workdir=DIR | --models_dir=DIR`."""
