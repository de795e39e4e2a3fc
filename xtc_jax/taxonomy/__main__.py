"""`python -m xtc_jax.taxonomy --config=configs/taxonomy.py[:cpu] --workdir=DIR`.

Runs Taskonomy's four stages on the config's data (the built-in synthetic Taskonomy
by default): task-specific networks, transfers of orders 1..max_order, the win-rate
tournament with AHP, and the supervision BIP; writes every table and figure to
DIR/taxonomy/ (`taxonomy/outputs.py`). Rerun the same command to resume. --rebuild
writes the tables and figures again from the saved transfers (e.g. with another
--config.solver.budget). Same as `python -m xtc_jax.main` with this config.
"""

from __future__ import annotations

from absl import flags
from ml_collections import config_flags

from xtc_jax.infra import cli

_CONFIG = config_flags.DEFINE_config_file("config", None, "configs/taxonomy.py[:cpu]")
_WORKDIR = flags.DEFINE_string("workdir", None, "Folder for data, networks and outputs.")
_REBUILD = flags.DEFINE_bool("rebuild", False, "Only redo Stages III-IV from saved transfers.")


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        cli.fail(f"unexpected arguments: {' '.join(argv[1:])} (flags are --name=value).")
    config, workdir = _CONFIG.value, _WORKDIR.value
    if config is None or workdir is None:
        cli.fail("--config and --workdir are required, e.g. --config=configs/taxonomy.py:cpu "
                 "--workdir=/tmp/taxonomy.")
    if config.get("method") != "taxonomy":
        cli.fail(f"{config.get('method', 'consistency')!r} config: use configs/taxonomy.py here, "
                 "or python -m xtc_jax.main for the other methods.")
    from xtc_jax.errors import XtcError
    from xtc_jax.infra import runtime
    from xtc_jax.taxonomy import experiment

    runtime.quiet_library_logs()
    runtime.enable_compilation_cache()
    try:
        (experiment.rebuild if _REBUILD.value else experiment.run)(config, workdir)
    except XtcError as error:
        cli.fail(str(error))


if __name__ == "__main__":
    cli.run(main)
