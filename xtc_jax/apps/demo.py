"""`python -m xtc_jax.demo --task normal --img_path PATH --output_path DIR [--workdir WD]`.

For every image (anything PIL reads: grayscale, RGBA, palette, 16-bit),
preprocessed as the original demo (xtconsistency.md §7: shorter side to the
model's resolution, centre crop, [0, 1], no normalisation), writes
  {stem}_{task}_baseline.png     the baseline model's prediction
  {stem}_{task}_consistency.png  the consistency model's prediction
  {stem}_{task}_energy.png       the per-pixel consistency energy, coloured,
                                 with a scale bar (standardised units)
Normals are RGB; depth is 8-bit gray, brighter = farther (255 = 15.6 m or
more); reshading is gray. The models are the exports of the main command's
--workdir, or else, as in the original demo, the published models converted
into --models_dir (default ./models: rgb2{task}_{baseline,consistency}; see
`python -m xtc_jax.convert`). The energy uses the statistics saved next to
the consistency model (the main command fits them when it trains it); when
they are missing they are fitted first, once (`energy/first_use.py`: with
the workdir's saved config or --config, or, for published models, on 32
synthetic reference images). An unreadable file is reported and skipped.

--task mtl shows a multi-task model instead (configs/mtl_*.py runs; `apps/demo_mtl.py`):
its segmentation with a legend, its depth and its consistency energy.
"""

from __future__ import annotations

import io
import os
import sys
from collections.abc import Callable

import numpy as np
from absl import flags
from PIL import Image

from xtc_jax.apps.predictor import DEFAULT_MODELS_DIR, TASKS


def prediction_image(values: np.ndarray, domain: str) -> Image.Image:
    """A (H, W, C) prediction clamped to [0, 1] as the original demo saves it."""
    pixels = np.clip(np.asarray(values, np.float32), 0.0, 1.0)
    pixels = (pixels * 255.0 + 0.5).astype(np.uint8)
    if domain == "normal":
        return Image.fromarray(pixels[..., :3], "RGB")
    return Image.fromarray(pixels[..., 0], "L")


def _save_image(image: Image.Image, path: str) -> str:
    from xtc_jax.infra import atomic

    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return atomic.write_bytes(path, buffer.getvalue())


def energy_figure(energy: np.ndarray, path: str, low: float, high: float) -> str:
    """The energy map coloured (magma) with a labelled colour bar, written as PNG."""
    from xtc_jax.energy.report import pyplot, save_figure

    plt = pyplot()
    figure, axes = plt.subplots(figsize=(4.2, 3.4))
    shown = axes.imshow(energy, cmap="magma", vmin=low, vmax=high, interpolation="nearest")
    axes.set_axis_off()
    axes.set_title(f"consistency energy (image mean {float(np.mean(energy)):.2f})", fontsize=9)
    bar = figure.colorbar(shown, ax=axes, fraction=0.046, pad=0.04)
    bar.set_label("MADs from the reference mean", fontsize=8)
    save_figure(figure, path[: -len(".png")], suffixes=("png",))
    return path


def run(
    task: str,
    img_path: str,
    output_path: str,
    workdir: str | None = None,
    baseline: str | None = None,
    consistency: str | None = None,
    energy_stats: str | None = None,
    energy_range: tuple[float, float] | None = None,
    log: Callable[[str], None] = print,
    models_dir: str | None = None,
    config=None,
) -> dict:
    """Writes the demo outputs; returns {"written": [paths], "skipped": [(file, reason)]}.

    Missing energy statistics are fitted first (`energy/first_use.py`), unless `energy_stats`
    names a file that does not exist."""
    from xtc_jax.apps.predictor import Predictor
    from xtc_jax.data import images
    from xtc_jax.errors import DataError

    predictor = Predictor.load(task, workdir, models_dir, baseline, consistency, energy_stats,
                               config=config, log=log)  # fmt: skip
    energy_range = energy_range or predictor.energy_range
    domain = predictor.domain
    os.makedirs(output_path, exist_ok=True)
    written, skipped = [], []
    files = images.list_images(img_path)
    for index, path in enumerate(files, 1):
        stem = os.path.splitext(os.path.basename(path))[0]
        try:
            image = images.load_image(path, predictor.resolution)
        except DataError as error:  # unreadable: reported and skipped, the rest go on
            skipped.append((path, str(error)))
            log(f"[{index}/{len(files)}] skipped {path}: {error}")
            continue
        out = predictor(image[None])
        for name in ("baseline", "consistency"):
            file = os.path.join(output_path, f"{stem}_{task}_{name}.png")
            written.append(_save_image(prediction_image(getattr(out, name)[0], domain), file))
        if out.energy is not None:
            file = os.path.join(output_path, f"{stem}_{task}_energy.png")
            written.append(energy_figure(out.energy[0], file, *energy_range))
        log(f"[{index}/{len(files)}] {path}")
    log(f"wrote {len(written)} images to {output_path}"
        + (f"; skipped {len(skipped)} unreadable: {', '.join(p for p, _ in skipped)}"
           if skipped else ""))  # fmt: skip
    return {"written": written, "skipped": skipped}


def _parse_range(text: str) -> tuple[float, float] | None:
    from xtc_jax.errors import ConfigError

    if not text:
        return None
    try:
        low, high = (float(v) for v in text.split(","))
    except ValueError:
        raise ConfigError(f"--energy_range={text!r}: write LOW,HIGH, e.g. -2,6.") from None
    if not low < high:
        raise ConfigError(f"--energy_range={text!r}: LOW must be below HIGH.")
    return low, high


def define_flags() -> None:
    """The command-line flags (defined only when run as a program, so importing is free)."""
    global _TASK, _IMG_PATH, _OUTPUT_PATH, _WORKDIR, _BASELINE, _CONSISTENCY, _ENERGY_STATS
    global _ENERGY_RANGE, _MODELS_DIR
    global _MULTITASK, _CONFIG
    from xtc_jax.apps.options import define_config_for_energy

    _CONFIG = define_config_for_energy()
    _TASK = flags.DEFINE_enum("task", "normal", [*TASKS, "mtl"],
                              "What to predict; mtl: a multi-task model's segmentation, depth "
                              "and energy (apps/demo_mtl.py).")  # fmt: skip
    _MULTITASK = flags.DEFINE_string(
        "multitask", None, "--task mtl: a multi-task export (default WORKDIR/xtask/export).")
    _IMG_PATH = flags.DEFINE_string("img_path", None, "An image file or a folder of images.")
    _OUTPUT_PATH = flags.DEFINE_string("output_path", None, "Folder for the output images.")
    _WORKDIR = flags.DEFINE_string(
        "workdir", None, "The main command's workdir (models default to its exports)."
    )
    _MODELS_DIR = flags.DEFINE_string(
        "models_dir", DEFAULT_MODELS_DIR, "Without --workdir: the original's published models, "
        "converted (python -m xtc_jax.convert --models_dir DOWNLOADS --out models).",
    )  # fmt: skip
    _BASELINE = flags.DEFINE_string(
        "baseline", None, "Baseline export (default WORKDIR/baseline/export, else "
        "MODELS_DIR/rgb2TASK_baseline)."
    )  # fmt: skip
    _CONSISTENCY = flags.DEFINE_string(
        "consistency", None, "Consistency export (default WORKDIR/consistency/export, else "
        "MODELS_DIR/rgb2TASK_consistency)."
    )  # fmt: skip
    _ENERGY_STATS = flags.DEFINE_string(
        "energy_stats",
        None,
        "Energy statistics (default: energy_stats.json next to the consistency export).",
    )
    _ENERGY_RANGE = flags.DEFINE_string(
        "energy_range",
        "",
        "Colour scale LOW,HIGH of the energy maps in standardised units (default: the 1st and "
        "99th percentiles of the reference set's pixel energies, saved with the statistics).",
    )


def main(argv: list[str]) -> None:
    from xtc_jax.infra import cli

    if len(argv) > 1:
        cli.fail(f"unexpected arguments: {' '.join(argv[1:])} (flags are --name=value; "
                 "--help lists them).")
    if not _IMG_PATH.value or not _OUTPUT_PATH.value:
        cli.fail("--img_path and --output_path are required (--help lists every flag).")
    from xtc_jax.errors import XtcError
    from xtc_jax.infra.runtime import enable_compilation_cache, quiet_library_logs

    quiet_library_logs()
    enable_compilation_cache()
    try:
        if _TASK.value == "mtl":
            from xtc_jax.apps import demo_mtl

            result = demo_mtl.run(_IMG_PATH.value, _OUTPUT_PATH.value, _WORKDIR.value,
                                  _MULTITASK.value)  # fmt: skip
        else:
            result = run(_TASK.value, _IMG_PATH.value, _OUTPUT_PATH.value, _WORKDIR.value,
                         _BASELINE.value, _CONSISTENCY.value, _ENERGY_STATS.value,
                         _parse_range(_ENERGY_RANGE.value),
                         models_dir=_MODELS_DIR.value, config=_CONFIG.value)  # fmt: skip
    except XtcError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    if not result["written"]:
        sys.exit(1)


if __name__ == "__main__":
    from xtc_jax.infra import cli

    define_flags()
    cli.run(main)
