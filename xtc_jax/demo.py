"""`python -m xtc_jax.demo`: the original demo's command line (the app is `apps/demo.py`).

    python -m xtc_jax.demo --task normal --img_path X --output_path Y

uses the published models converted into ./models, as the original's demo.py does.
"""

from xtc_jax.apps import demo
from xtc_jax.infra import cli

if __name__ == "__main__":
    demo.define_flags()
    cli.run(demo.main)
