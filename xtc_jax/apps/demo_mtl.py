"""The demo for a multi-task (xtask) model: segmentation, depth and the consistency energy.

`python -m xtc_jax.demo --task mtl --img_path PATH --output_path DIR --workdir WD`
(WD: the main command's workdir of a configs/mtl_*.py run; its xtask/export, or
--multitask EXPORT). For every image, resized to cover the model's input frame
and centre-cropped, it writes
  {stem}_seg.png     the segmentation in a fixed palette, with a legend of the classes
  {stem}_depth.png   the depth (or Cityscapes inverse depth) in a colour map, with its scale
  {stem}_energy.png  xtask_mt's per-pixel consistency energy, when the model has its
                     transfer nets: 0.5·KL(softmax(ŝ) ‖ softmax(s̃)) + 0.5·|d̃ − d̂|
The network and its input step compile once for the model's size.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import jax
import numpy as np

#: A fixed palette (Cityscapes-like colours first), one per class, cycled past 20 classes.
PALETTE = np.array([
    (128, 64, 128), (244, 35, 232), (70, 70, 70), (102, 102, 156), (190, 153, 153),
    (153, 153, 153), (250, 170, 30), (220, 220, 0), (107, 142, 35), (152, 251, 152),
    (70, 130, 180), (220, 20, 60), (255, 0, 0), (0, 0, 142), (0, 0, 70), (0, 60, 100),
    (0, 80, 100), (0, 0, 230), (119, 11, 32), (0, 0, 0)], np.uint8)  # fmt: skip


def colour_labels(labels: np.ndarray) -> np.ndarray:
    """(H, W) class ids -> (H, W, 3) uint8 in PALETTE's colours."""
    return PALETTE[np.asarray(labels) % len(PALETTE)]


def seg_figure(labels: np.ndarray, classes: list[str], path: str) -> str:
    """The coloured segmentation with a legend of the classes present (and their share)."""
    from matplotlib.patches import Patch

    from xtc_jax.energy.report import pyplot, save_figure

    plt = pyplot()
    figure, axes = plt.subplots(figsize=(5.6, 3.4))
    axes.imshow(colour_labels(labels), interpolation="nearest")
    axes.set_axis_off()
    ids, counts = np.unique(labels, return_counts=True)
    handles = [Patch(color=PALETTE[i % len(PALETTE)] / 255,
                     label=f"{classes[i] if i < len(classes) else i} "
                           f"({100 * c / labels.size:.0f}%)")
               for i, c in sorted(zip(ids, counts, strict=True), key=lambda p: -p[1])]  # fmt: skip
    axes.legend(handles=handles, loc="center left", bbox_to_anchor=(1.02, 0.5), fontsize=7,
                frameon=False)  # fmt: skip
    axes.set_title("segmentation", fontsize=9)
    save_figure(figure, path[: -len(".png")], suffixes=("png",))
    return path


def map_figure(values: np.ndarray, path: str, title: str, label: str, cmap: str) -> str:
    """A scalar map in a colour map with a labelled colour bar."""
    from xtc_jax.energy.report import pyplot, save_figure

    plt = pyplot()
    figure, axes = plt.subplots(figsize=(4.6, 3.4))
    shown = axes.imshow(values, cmap=cmap, interpolation="nearest")
    axes.set_axis_off()
    axes.set_title(title, fontsize=9)
    figure.colorbar(shown, ax=axes, fraction=0.046, pad=0.04).set_label(label, fontsize=8)
    save_figure(figure, path[: -len(".png")], suffixes=("png",))
    return path


class MultitaskPredictor:
    """A multi-task export, loaded once: `predictor(rgb)` gives its segmentation, depth and
    (with transfer nets) energy for a batch at `size` (the demo and the web demo use it)."""

    def __init__(self, export: str):
        from xtc_jax.mtl import model as model_lib
        from xtc_jax.mtl.evaluate import consistency_energy

        network, variables, info = model_lib.load_export(export)
        self.size = tuple(info["size"])
        self.classes = list(info["classes"])
        self.depth_label = "inverse depth" if info.get("depth_kind") == "inverse" else "depth (m)"
        normalize = info.get("imagenet_normalize", False)

        @jax.jit
        def predict(x):
            out = network.apply(variables, model_lib.preprocess(x, normalize))
            result = {"seg": out["seg"].argmax(-1), "depth": out["depth"][..., 0]}
            if "tseg" in out:
                result["energy"] = consistency_energy(out)[1]
            return result

        self._predict = predict

    @classmethod
    def from_workdir(cls, workdir: str | None, export: str | None = None) -> MultitaskPredictor:
        from xtc_jax.errors import ConfigError
        from xtc_jax.infra import workdir as workdir_lib

        if not export:
            if not workdir:
                raise ConfigError("--task mtl needs --workdir (a configs/mtl_*.py run) or "
                                  "--multitask EXPORT_DIR.")  # fmt: skip
            export = workdir_lib.export(os.path.join(workdir, "xtask"))
        return cls(export)

    def __call__(self, rgb: np.ndarray) -> dict:
        """{"seg": (B, h, w) class ids, "depth": (B, h, w), ["energy": (B, h, w)]} (NumPy)."""
        return jax.device_get(self._predict(np.asarray(rgb, np.float32)))


def run(img_path: str, output_path: str, workdir: str | None = None, export: str | None = None,
        log: Callable[[str], None] = print) -> dict:  # fmt: skip
    """Writes the multi-task demo outputs; returns {"written": [...], "skipped": [...]}."""
    from xtc_jax.data import images

    model = MultitaskPredictor.from_workdir(workdir, export)
    size, depth_label = model.size, model.depth_label
    info = {"classes": model.classes}

    os.makedirs(output_path, exist_ok=True)
    written, skipped = [], []
    files = images.list_images(img_path)

    def unreadable(path: str, error: Exception) -> None:  # reported and skipped
        skipped.append((path, str(error)))
        log(f"skipped {path}: {error}")

    readable = images.iter_images(files, size, on_error=unreadable)
    for done, (path, image) in enumerate(readable, 1):
        stem = os.path.splitext(os.path.basename(path))[0]
        out = model(image[None])
        written.append(seg_figure(out["seg"][0], list(info["classes"]),
                                  os.path.join(output_path, f"{stem}_seg.png")))  # fmt: skip
        written.append(map_figure(out["depth"][0], os.path.join(output_path, f"{stem}_depth.png"),
                                  "depth", depth_label, "viridis"))  # fmt: skip
        if "energy" in out:
            energy = out["energy"][0]
            written.append(map_figure(
                energy, os.path.join(output_path, f"{stem}_energy.png"),
                f"consistency energy (image mean {float(np.mean(energy)):.3f})", "energy",
                "magma"))  # fmt: skip
        log(f"[{done + len(skipped)}/{len(files)}] {path}")
    log(f"wrote {len(written)} images to {output_path}"
        + (f"; skipped {len(skipped)} unreadable" if skipped else ""))
    return {"written": written, "skipped": skipped}
