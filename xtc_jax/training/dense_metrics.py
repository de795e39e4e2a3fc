"""Dense multi-task metrics, as additive per-batch sums finished over a whole split.

- Segmentation: one C×C confusion matrix over every labelled pixel of the
  split (rows = ground truth, columns = prediction): mIoU = mean over classes
  of diag / (row + col − diag), over the classes that occur in the ground truth
  or the predictions (MTAN's and LibMTL's formula, which average over all C;
  they agree when every class occurs); pixel accuracy = trace / total.
- xtask_mt's legacy numbers beside them (xtask_mt.md §1.10), labelled
  "legacy": per image, the mean IoU over the classes present in its
  prediction or label, and the per-image pixel accuracy; both averaged over
  images. Only these compare with the original's reported tables.
- Depth: mean |pred − gt| and mean |pred − gt| / gt over pixels with gt > 0,
  pooled over the split.
- Normals: `metrics.normal_sums` (mean, median, % under 11.25/22.5/30 degrees).
"""

from __future__ import annotations

from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np

from xtc_jax.training import metrics as metrics_lib

Array = jax.Array


def confusion_matrix(pred: Array, labels: Array, num_classes: int) -> Array:
    """(C, C) float32 counts of (label, prediction) over pixels with 0 <= label < C."""
    valid = (labels >= 0) & (labels < num_classes)
    index = jnp.where(valid, labels * num_classes + pred, 0).ravel()
    counts = jnp.zeros(num_classes * num_classes, jnp.float32).at[index].add(
        valid.ravel().astype(jnp.float32))
    return counts.reshape(num_classes, num_classes)


def legacy_sums(pred: Array, labels: Array, num_classes: int) -> dict[str, Array]:
    """Sums over images of xtask_mt's per-image mIoU and pixel accuracy, and the image count."""
    valid = (labels >= 0) & (labels < num_classes)
    classes = jnp.arange(num_classes)
    p = (pred[..., None] == classes) & valid[..., None]
    g = (labels[..., None] == classes) & valid[..., None]
    axes = tuple(range(1, pred.ndim))
    inter = jnp.sum(p & g, axis=axes).astype(jnp.float32)
    union = jnp.sum(p | g, axis=axes).astype(jnp.float32)
    present = union > 0
    iou = jnp.sum(jnp.where(present, inter / jnp.maximum(union, 1), 0.0), axis=-1)
    image_miou = iou / jnp.maximum(jnp.sum(present, axis=-1), 1)
    labelled = jnp.sum(valid, axis=axes).astype(jnp.float32)
    correct = jnp.sum((pred == labels) & valid, axis=axes).astype(jnp.float32)
    has_labels = labelled > 0
    return {
        "legacy_miou_sum": jnp.sum(jnp.where(has_labels, image_miou, 0.0)),
        "legacy_acc_sum": jnp.sum(jnp.where(has_labels, correct / jnp.maximum(labelled, 1), 0.0)),
        "legacy_images": jnp.sum(has_labels.astype(jnp.float32)),
    }


def depth_error_sums(pred: Array, target: Array) -> dict[str, Array]:
    """Sums of |error| and |error| / gt over pixels with gt > 0, and their count."""
    valid = target > 0
    error = jnp.abs(pred - target)
    return {
        "depth_abs_sum": jnp.sum(jnp.where(valid, error, 0.0)),
        "depth_rel_sum": jnp.sum(jnp.where(valid, error / jnp.where(valid, target, 1.0), 0.0)),
        "depth_pixels": jnp.sum(valid.astype(jnp.float32)),
    }


def unit_normal_sums(pred: Array, target: Array, valid: Array) -> dict[str, Array]:
    """`metrics.normal_sums` for unit normals in [−1, 1] (it takes [0, 1] encodings)."""
    sums = metrics_lib.normal_sums((pred + 1) / 2, (target + 1) / 2, valid[..., None])
    return {f"normal_{k}": v for k, v in sums.items()}


def miou_and_accuracy(confusion: np.ndarray) -> tuple[float, float]:
    """(mIoU over occurring classes, pixel accuracy) of a confusion matrix."""
    confusion = np.asarray(confusion, np.float64)
    diag = np.diag(confusion)
    union = confusion.sum(0) + confusion.sum(1) - diag
    occurring = union > 0
    miou = float(np.mean(diag[occurring] / union[occurring])) if occurring.any() else 0.0
    return miou, float(diag.sum() / max(confusion.sum(), 1.0))


def finish(sums: Mapping[str, np.ndarray]) -> dict[str, float]:
    """Split metrics from the summed per-batch sums (percentages for the seg metrics)."""
    out = {}
    if "confusion" in sums:
        miou, accuracy = miou_and_accuracy(sums["confusion"])
        images = max(float(sums["legacy_images"]), 1.0)
        out.update(miou=100 * miou, pixel_acc=100 * accuracy,
                   miou_legacy=100 * float(sums["legacy_miou_sum"]) / images,
                   pixel_acc_legacy=100 * float(sums["legacy_acc_sum"]) / images)  # fmt: skip
    if "depth_abs_sum" in sums:
        pixels = max(float(sums["depth_pixels"]), 1.0)
        out.update(depth_abs=float(sums["depth_abs_sum"]) / pixels,
                   depth_rel=float(sums["depth_rel_sum"]) / pixels)  # fmt: skip
    if "normal_angle_sum" in sums:
        pixels = max(float(sums["normal_pixels"]), 1.0)
        out["normal_mean_deg"] = float(sums["normal_angle_sum"]) / pixels
        out["normal_median_deg"] = metrics_lib.histogram_median(sums["normal_angle_histogram"])
        for threshold in metrics_lib.NORMAL_THRESHOLDS:
            out[f"normal_pct_under_{threshold}"] = (
                100 * float(sums[f"normal_under_{threshold}"]) / pixels)
    return out
