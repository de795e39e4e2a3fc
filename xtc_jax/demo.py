"""`python -m xtc_jax.demo`: the original demo's command line (the app is `apps/demo.py`).

    python -m xtc_jax.demo --task normal --img_path X --output_path Y

uses the published models converted into ./models, as the original's demo.py does.
"""

from absl import flags

from xtc_jax.apps import demo, options
from xtc_jax.infra import cli

if __name__ == "__main__":
    demo.define_flags()
    flags.adopt_module_key_flags(demo)  # --help lists them
    flags.adopt_module_key_flags(options)
    cli.run(demo.main)
