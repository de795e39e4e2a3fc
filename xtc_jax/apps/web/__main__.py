"""`python -m xtc_jax.apps.web --workdir=DIR | --models_dir=DIR [--port 8000]`.

Serves the web demo on this machine (http://127.0.0.1:PORT/): upload an image
or pick an example, choose the task, and see the input, the baseline, the
consistency model, the ground truth (examples), the energy map on its colour
scale, the image's energy against the reference images, and the path
predictions rgb -> K -> target, each downloadable as PNG; a short video gives
the side-by-side video. When the workdir holds a taxonomy run
(`python -m xtc_jax.taxonomy`), /taxonomy shows its transfers. The models are
a main run's (--workdir) or the published ones converted into --models_dir.
Needs the optional extra: pip install -r requirements-web.txt. Everything is
served from here: the pages load nothing from the internet.
"""

from __future__ import annotations

import sys

from absl import flags

from xtc_jax.apps import options
from xtc_jax.apps.options import define_config_for_energy
from xtc_jax.infra import cli

_WORKDIR = flags.DEFINE_string("workdir", None, "A main run's workdir (its baseline and "
                               "consistency models), or a taxonomy run's.")  # fmt: skip
_MODELS_DIR = flags.DEFINE_string(
    "models_dir", None, "Without --workdir: the published models, converted (python -m "
    "xtc_jax.convert --models_dir DOWNLOADS --out models).")  # fmt: skip
_TAXONOMY = flags.DEFINE_string(
    "taxonomy", None, "A taxonomy run's workdir for the /taxonomy page (default: --workdir when "
    "it holds one).")  # fmt: skip
_HOST = flags.DEFINE_string("host", "127.0.0.1", "Address to listen on (0.0.0.0: every one).")
_PORT = flags.DEFINE_integer("port", 8000, "Port to listen on (0: any free port).")
_QUEUE = flags.DEFINE_integer("queue", 8, "Jobs that may wait for the models before new ones "
                              "are refused with 'try again'.")  # fmt: skip
_CONFIG = define_config_for_energy()
flags.adopt_module_key_flags(options)  # --help lists --config too


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        cli.fail(f"unexpected arguments: {' '.join(argv[1:])} (flags are --name=value; "
                 "--help lists them).")
    try:
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as error:
        cli.fail(f"the web demo needs its optional extra ({error.name} is missing): "
                 "pip install -r requirements-web.txt")
    from xtc_jax.apps.web import launch
    from xtc_jax.errors import XtcError
    from xtc_jax.infra.runtime import enable_compilation_cache, quiet_library_logs

    quiet_library_logs()
    enable_compilation_cache()
    try:
        app = launch.build_app(_WORKDIR.value, _MODELS_DIR.value, _TAXONOMY.value, _CONFIG.value,
                               _QUEUE.value)  # fmt: skip
    except XtcError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    launch.serve(app, _HOST.value, _PORT.value)


if __name__ == "__main__":
    cli.run(main)
