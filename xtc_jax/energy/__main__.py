"""`python -m xtc_jax.energy --config=configs/normal.py:cpu --workdir=DIR [options]`.

Scores images by consistency energy with the model a main run trained in
DIR, and writes to --output (default DIR/energy/MODEL):
  data.csv           one row per image: energy (standardised), raw_energy,
                     error_l1 / error_angular_error_deg where ground truth
                     exists, and every path term percep__K / percep_K1_K2
  energy_vs_error.{png,pdf}  scatter with Pearson and Spearman r
  roc.{png,pdf}      with --ood, --corrupt or --style_shift: telling in-distribution images
                     from shifted ones by energy, AUC per shift
  summary.json       the figures above
The standardisation statistics are fitted once on the reference split and
saved next to the model's checkpoints (DIR/consistency/energy_stats.json);
missing rgb->K and K->target networks are trained into DIR/networks first.
With --models_dir MODELS (the published models, converted by `python -m
xtc_jax.convert`), every network comes from there instead and nothing is
trained; the middle domains K are those whose rgb->K and K->target files are
there, and the statistics go beside the model (MODELS/rgb2normal_consistency_
energy_stats.json). Use --config.data.resolution=256 (the paper preset).

Multi-task configs (configs/mtl_*.py) get xtask_mt's energy of their "xtask"
model instead (`mtl/energy.py`): energy against segmentation and depth error on
the test split, and --corrupt (default noise:5,blur:5) detected by energy.
"""

from __future__ import annotations

from absl import flags
from ml_collections import config_flags

from xtc_jax.infra import cli

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "The config the workdir was trained with, e.g. configs/normal.py:cpu."
)
_WORKDIR = flags.DEFINE_string("workdir", None, "The main command's workdir.")
_MODEL = flags.DEFINE_string(
    "model", "consistency",
    "n(x): consistency | baseline (the main run's models) | direct (the plain rgb->target "
    "network of the cache, trained if missing) | an export folder.",
)  # fmt: skip
_DATA = flags.DEFINE_string(
    "data", None, "A split of the config's data (default: data.val_split) or a folder of images."
)
_OOD = flags.DEFINE_string("ood", None, "A folder of shifted images to tell apart by energy.")
_CORRUPT = flags.DEFINE_string(
    "corrupt", None, "Corrupted copies of --data to detect: e.g. blur,noise,jpeg,contrast:3 "
    "(all at severity 3) or blur:3,noise:5 (a severity applies to the names before it).",
)
_STYLE_SHIFT = flags.DEFINE_bool(
    "style_shift", False, "Also score --data rendered in the built-in data's shifted style "
    "(held-out textures, lighting and shapes; with ground truth), the set 'style'.",
)
_OUTPUT = flags.DEFINE_string("output", None, "Output folder (default WORKDIR/energy/MODEL).")
_MAX_IMAGES = flags.DEFINE_integer("max_images", 0, "Score at most this many images (0: all).")
_REFIT = flags.DEFINE_bool("refit", False, "Fit the standardisation statistics again.")
_MODELS_DIR = flags.DEFINE_string(
    "models_dir", "", "The published networks, converted (python -m xtc_jax.convert "
    "--models_dir DOWNLOADS --out MODELS): n(x) is MODELS/rgb2TASK_{consistency,baseline}.",
)  # fmt: skip


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        cli.fail(f"unexpected arguments: {' '.join(argv[1:])} (flags are --name=value; "
                 "--help lists them).")
    if _CONFIG.value is None or _WORKDIR.value is None:
        cli.fail("--config and --workdir are required (--help lists every flag).")
    from xtc_jax.energy import command
    from xtc_jax.errors import XtcError
    from xtc_jax.infra.runtime import enable_compilation_cache, quiet_library_logs

    quiet_library_logs()
    enable_compilation_cache()
    try:
        from xtc_jax.data import prepare

        prepare.check_room(_CONFIG.value.data, _WORKDIR.value)
        if _CONFIG.value.get("method") == "mtl":  # xtask_mt's energy of a multi-task model
            from xtc_jax.mtl import energy as mtl_energy

            mtl_energy.run(_CONFIG.value, _WORKDIR.value,
                           model_name="xtask" if _MODEL.value == "consistency" else _MODEL.value,
                           corruptions=_CORRUPT.value if _CORRUPT.value is not None
                           else "noise:5,blur:5",
                           output=_OUTPUT.value or "", max_images=_MAX_IMAGES.value)
            return
        command.run(
            _CONFIG.value,
            _WORKDIR.value,
            model_name=_MODEL.value,
            data=_DATA.value or "",
            ood=_OOD.value or "",
            corruptions=_CORRUPT.value or "",
            output=_OUTPUT.value or "",
            max_images=_MAX_IMAGES.value,
            refit=_REFIT.value,
            models_dir=_MODELS_DIR.value,
            style_shift=_STYLE_SHIFT.value,
        )
    except XtcError as error:
        cli.fail(str(error))


if __name__ == "__main__":
    cli.run(main)
