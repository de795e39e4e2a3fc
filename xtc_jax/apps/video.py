"""`python -m xtc_jax.apps.video --input CLIP --task normal --output OUT.mp4 --workdir=DIR`.

Runs the baseline and the consistency model frame by frame (in batches) on a
video and writes, at the input's frame rate (divided by --stride), an H.264
video browsers play: input | baseline | consistency | energy, labelled. Beside
it, with OUT's stem:
  OUT.csv   one row per frame: time, the image energy of both models (on the
            consistency model's statistics, one scale), the temporal flicker of
            both (mean |prediction_t - prediction_t-1|) and the input's own
            change; for the fly-through also each model's error against the
            ground truth
  OUT.png   those figures over time
  OUT.json  their means: the consistency model is expected to flicker less
--input is any file ffmpeg reads (ffmpeg comes with the imageio-ffmpeg package),
or `flythrough` (or flythrough:FOLDER): a smooth camera path through one room
of the built-in synthetic data with ground truth (`data/synthetic/flythrough.py`),
rendered at the models' resolution. Frames are preprocessed as the demo's
images (shorter side to the models' resolution, centre crop). Missing energy
statistics are fitted first, once (`energy/first_use.py`).
"""

from __future__ import annotations

import dataclasses
import os
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator

import numpy as np
from absl import flags

from xtc_jax.errors import DataError

LABEL_HEIGHT = 24
PANELS = ("input", "baseline", "consistency", "energy")
FLYTHROUGH = "flythrough"


@dataclasses.dataclass
class Clip:
    """Frames to run on: an iterator of (R, R, 3) float32 in [0, 1], and what is known."""

    frames: Iterator[np.ndarray]
    fps: float
    count: int | None  # frames that will come (None: unknown)
    truth: np.ndarray | None = None  # (F, R, R, C) ground truth of the task, or None


def _ffmpeg():
    """imageio_ffmpeg, with JAX's warning about fork silenced: ffmpeg is started by
    fork + exec at once, which is safe beside JAX's threads."""
    try:
        import imageio_ffmpeg
    except ImportError:
        raise DataError("the video tool needs imageio-ffmpeg (it ships ffmpeg): pip install "
                        "-r requirements-web.txt") from None  # fmt: skip
    warnings.filterwarnings("ignore", message=r"os\.fork\(\) was called", category=RuntimeWarning)
    return imageio_ffmpeg


def _square(frame: np.ndarray, resolution: int) -> np.ndarray:
    from PIL import Image

    from xtc_jax.data import images

    image = images.resize_center_crop(Image.fromarray(frame), resolution)
    return np.asarray(image, np.float32) / 255.0


def read_clip(path: str, resolution: int, max_frames: int = 0, stride: int = 1) -> Clip:
    """The frames of a video file; DataError naming `path` when ffmpeg cannot read it or it
    holds no frames."""
    ffmpeg = _ffmpeg()
    if not os.path.isfile(path):
        raise DataError(f"--input {path} does not exist: give a video file, or `flythrough`.")
    try:
        reader = ffmpeg.read_frames(path)
        meta = next(reader)
    except (OSError, RuntimeError, StopIteration) as error:
        raise DataError(f"{path}: not a video ffmpeg can read ({str(error).strip()[-300:]})."
                        ) from None  # fmt: skip
    width, height = meta["size"]
    fps = float(meta.get("fps") or 25.0)
    frame_bytes = width * height * 3
    try:
        total = int(ffmpeg.count_frames_and_secs(path)[0])  # for the progress bar only
    except (OSError, RuntimeError, ValueError):
        total = 0
    count = -(-total // stride) if total else None
    if count and max_frames:
        count = min(count, max_frames)

    def frames() -> Iterator[np.ndarray]:
        kept = 0
        try:
            for index, raw in enumerate(reader):
                if len(raw) != frame_bytes:
                    break  # a truncated last frame
                if index % stride:
                    continue
                yield _square(np.frombuffer(raw, np.uint8).reshape(height, width, 3), resolution)
                kept += 1
                if max_frames and kept >= max_frames:
                    break
        except (OSError, RuntimeError) as error:
            raise DataError(f"{path}: ffmpeg stopped reading after {kept} frames "
                            f"({str(error).strip()[-300:]}).") from None  # fmt: skip
        finally:
            reader.close()
        if kept == 0:
            raise DataError(f"{path} holds no video frames: give a video with at least one.")

    return Clip(frames(), fps / stride, count)


def flythrough_clip(spec: str, resolution: int, domain: str, max_frames: int = 0,
                    stride: int = 1) -> Clip:  # fmt: skip
    """The built-in fly-through (rendered at `resolution`, or loaded from flythrough:FOLDER)."""
    from xtc_jax.data.synthetic import flythrough

    folder = spec.partition(":")[2]
    if folder:
        fly = flythrough.load(folder)
        if fly.rgb.shape[1] != resolution:
            raise DataError(f"{folder}: rendered at {fly.rgb.shape[1]} px, but the models take "
                            f"{resolution} px; render it again with --size {resolution}.")
    else:  # a room no model trained on (the web demo's examples come from the same ones)
        from xtc_jax.apps.web.examples import FIRST_BUILDING

        fly = flythrough.render_flythrough(building=FIRST_BUILDING,
                                           frames=max_frames * stride if max_frames else 96,
                                           size=resolution)  # fmt: skip
    rgb = fly.rgb[::stride][: max_frames or None]
    truth = fly.truth.get(domain)
    truth = truth[::stride][: max_frames or None] if truth is not None else None
    frames = (np.asarray(f, np.float32) / 255.0 for f in rgb)
    return Clip(frames, float(fly.fps) / stride, len(rgb), truth)


def _batches(frames: Iterator[np.ndarray], size: int) -> Iterator[np.ndarray]:
    batch: list[np.ndarray] = []
    for frame in frames:
        batch.append(frame)
        if len(batch) == size:
            yield np.stack(batch)
            batch = []
    if batch:
        yield np.stack(batch)


def _label(width: int, text: str):
    from PIL import Image, ImageDraw, ImageFont

    band = Image.new("RGB", (width, LABEL_HEIGHT), (20, 24, 32))
    draw = ImageDraw.Draw(band)
    try:
        font = ImageFont.load_default(size=14)
    except TypeError:  # Pillow < 10.1
        font = ImageFont.load_default()
    draw.text((6, 4), text, fill=(255, 255, 255), font=font)
    return np.asarray(band)


def compose(panels: list[np.ndarray], labels: list[str], size: int) -> np.ndarray:
    """One output frame: the (R, R, 3) uint8 panels scaled to `size`, labelled, side by side."""
    from PIL import Image

    columns = []
    for panel, text in zip(panels, labels, strict=True):
        scaled = np.asarray(Image.fromarray(panel).resize((size, size), Image.NEAREST))
        columns.append(np.concatenate([_label(size, text), scaled], axis=0))
    return np.concatenate(columns, axis=1)


def _panel(values: np.ndarray, domain: str) -> np.ndarray:
    from xtc_jax.apps.demo import prediction_image

    return np.asarray(prediction_image(values, domain).convert("RGB"))


def _energy_panel(energy: np.ndarray | None, low: float, high: float, size: int) -> np.ndarray:
    from xtc_jax.apps.web.pictures import coloured

    if energy is None:
        return np.zeros((size, size, 3), np.uint8)
    return coloured(energy, low, high)


def _errors(pred: np.ndarray, truth: np.ndarray, domain: str) -> dict[str, np.ndarray]:
    from xtc_jax.training import metrics

    out = metrics.target_metrics(pred, truth, domain)
    name = "angular_error_deg" if "angular_error_deg" in out else "l1"
    return {name: np.asarray(out[name], np.float64)}


class _Writer:
    """H.264 (yuv420p) frames into a temporary file renamed to `path` when complete."""

    def __init__(self, path: str, fps: float, frame_shape: tuple[int, ...]):
        ffmpeg = _ffmpeg()
        self.path = path
        folder = os.path.dirname(os.path.abspath(path))
        os.makedirs(folder, exist_ok=True)
        handle, self.tmp = tempfile.mkstemp(suffix=".mp4", dir=folder, prefix=".partial_")
        os.close(handle)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(self.tmp, 0o666 & ~umask)  # as any other file written here, not mkstemp's 0600
        height, width = frame_shape[:2]
        self._gen = ffmpeg.write_frames(self.tmp, (width, height), fps=fps, codec="libx264",
                                        pix_fmt_out="yuv420p", macro_block_size=2,
                                        output_params=["-movflags", "+faststart"])  # fmt: skip
        self._gen.send(None)

    def write(self, frame: np.ndarray) -> None:
        self._gen.send(np.ascontiguousarray(frame))

    def close(self, keep: bool = True) -> None:
        self._gen.close()
        if keep:
            os.replace(self.tmp, self.path)
        elif os.path.exists(self.tmp):
            os.remove(self.tmp)


def run(predictor, clip: Clip, output: str, size: int = 256, batch: int = 8,
        log: Callable[[str], None] = print, progress: bool = True) -> dict:  # fmt: skip
    """Writes the video, CSV, plot and summary for `clip`; returns the summary."""
    from xtc_jax.infra.writers import Progress

    domain = predictor.domain
    low, high = predictor.energy_range
    size = max(16, size // 2 * 2)
    rows: list[dict] = []
    previous: dict[str, np.ndarray] = {}
    writer = None
    bar = (Progress(clip.count, every_seconds=5.0, unit="frame", enabled=progress)
           if clip.count else None)  # fmt: skip
    start = time.perf_counter()
    try:
        for frames in _batches(clip.frames, batch):
            count = len(frames)
            padded = np.concatenate([frames, np.zeros((batch - count, *frames.shape[1:]),
                                                       frames.dtype)]) if count < batch else frames
            out = predictor(padded)
            for i in range(count):
                index = len(rows)
                preds = {"baseline": out.baseline[i], "consistency": out.consistency[i]}
                row = {"frame": index, "time_s": round(index / clip.fps, 4)}
                if out.image_energy is not None:
                    row["energy_baseline"] = float(out.baseline_energy[i])
                    row["energy_consistency"] = float(out.image_energy[i])
                current = {"input": frames[i], **preds}
                for name, value in current.items():
                    key = "change_input" if name == "input" else f"flicker_{name}"
                    row[key] = (float(np.mean(np.abs(value - previous[name])))
                                if previous else float("nan"))  # fmt: skip
                previous = current
                if clip.truth is not None and index < len(clip.truth):
                    for name, value in preds.items():
                        for metric, v in _errors(value[None], clip.truth[index][None],
                                                 domain).items():  # fmt: skip
                            row[f"{metric}_{name}"] = float(v[0])
                rows.append(row)
                picture = compose(
                    [(frames[i] * 255 + 0.5).astype(np.uint8), _panel(preds["baseline"], domain),
                     _panel(preds["consistency"], domain),
                     _energy_panel(None if out.energy is None else out.energy[i], low, high,
                                   predictor.resolution)],
                    ["input", "baseline", "consistency",
                     f"energy {row.get('energy_consistency', float('nan')):.2f}"], size)
                if writer is None:
                    writer = _Writer(output, clip.fps, picture.shape)
                writer.write(picture)
            if bar is not None:
                bar.update(len(rows))
            elif progress:
                log(f"{len(rows)} frames, {len(rows) / (time.perf_counter() - start):.1f} "
                    "frames/s")  # fmt: skip
    except BaseException:
        if writer is not None:
            writer.close(keep=False)
        raise
    if writer is None:
        raise DataError("the input held no frames: nothing to write.")
    writer.close()
    seconds = time.perf_counter() - start
    summary = write_figures(rows, output, clip.fps, seconds)
    log(summary_line(summary))
    return summary


def summary_line(summary: dict) -> str:
    line = (f"wrote {summary['video']} ({summary['frames']} frames at {summary['fps']:.2f} "
            f"fps, {summary['frames_per_second']:.1f} frames/s)")  # fmt: skip
    means = summary["means"]
    if "flicker_baseline" in means:
        line += (f"; flicker baseline {means['flicker_baseline']:.4f}, consistency "
                 f"{means['flicker_consistency']:.4f} (input change {means['change_input']:.4f})")
    return line


def write_figures(rows: list[dict], output: str, fps: float, seconds: float) -> dict:
    """OUT.csv, OUT.png and OUT.json beside the video; returns the summary."""
    from xtc_jax.energy import report
    from xtc_jax.infra import atomic

    stem = os.path.splitext(output)[0]
    report.write_csv(f"{stem}.csv", rows)
    names = [k for k in rows[0] if k not in ("frame", "time_s")]
    means = {k: float(np.nanmean([r[k] for r in rows])) if len(rows) > 1 or not
             k.startswith(("flicker", "change")) else float("nan") for k in names}  # fmt: skip
    summary = {"video": output, "csv": f"{stem}.csv", "plot": f"{stem}.png", "frames": len(rows),
               "fps": fps, "seconds": seconds, "frames_per_second": len(rows) / max(seconds, 1e-9),
               "means": means}  # fmt: skip
    if "flicker_baseline" in means and means["flicker_baseline"] > 0:
        summary["flicker_ratio_consistency_to_baseline"] = (
            means["flicker_consistency"] / means["flicker_baseline"])
    _plot(rows, f"{stem}.png")
    atomic.write_json(f"{stem}.json", summary)
    return summary


def _plot(rows: list[dict], path: str) -> None:
    from xtc_jax.energy.report import pyplot, save_figure

    plt = pyplot()
    groups = [("energy", "image energy (MADs)"), ("flicker", "mean |change| per frame"),
              ("error", "error against ground truth")]  # fmt: skip
    present = [(g, label) for g, label in groups
               if any(k.startswith(g) or (g == "error" and k.startswith(("l1_", "angular")))
                      for k in rows[0])]  # fmt: skip
    figure, axes = plt.subplots(len(present), 1, figsize=(7, 2.4 * len(present)), squeeze=False)
    t = [r["time_s"] for r in rows]
    for axis, (group, label) in zip(axes[:, 0], present, strict=True):
        keys = [k for k in rows[0] if k.startswith(group) or (group == "flicker" and
                k == "change_input") or (group == "error" and k.startswith(("l1_", "angular")))]
        for key in keys:  # one colour per model in every panel
            colour = {"baseline": "C0", "consistency": "C1"}.get(key.rsplit("_", 1)[-1], "0.5")
            axis.plot(t, [r[key] for r in rows], label=key.replace("_", " "), color=colour,
                      linestyle="--" if key == "change_input" else "-")  # fmt: skip
        axis.set_ylabel(label, fontsize=8)
        axis.legend(fontsize=7)
        axis.grid(alpha=0.3)
    axes[-1, 0].set_xlabel("time (s)")
    figure.tight_layout()
    save_figure(figure, path[: -len(".png")], suffixes=("png",))


def side_by_side_bytes(predictor, data: bytes, name: str, max_frames: int) -> bytes:
    """The web demo's video: `data` (an uploaded clip) in, the side-by-side MP4's bytes out."""
    with tempfile.TemporaryDirectory() as folder:
        source = os.path.join(folder, "input" + (os.path.splitext(name)[1] or ".mp4"))
        with open(source, "wb") as f:
            f.write(data)
        clip = read_clip(source, predictor.resolution, max_frames=max_frames)
        output = os.path.join(folder, "side_by_side.mp4")
        run(predictor, clip, output, log=lambda _: None, progress=False)
        with open(output, "rb") as f:
            return f.read()


def define_flags() -> None:
    global _INPUT, _TASK, _OUTPUT, _WORKDIR, _MODELS_DIR, _MAX_FRAMES, _STRIDE, _SIZE, _BATCH
    global _CONFIG
    from xtc_jax.apps.options import define_config_for_energy
    from xtc_jax.apps.predictor import DEFAULT_MODELS_DIR, TASKS

    _INPUT = flags.DEFINE_string("input", None, "A video file (anything ffmpeg reads), or "
                                 "`flythrough` / flythrough:FOLDER (the built-in data's "
                                 "fly-through, with ground truth).")  # fmt: skip
    _TASK = flags.DEFINE_enum("task", "normal", list(TASKS), "What the models predict.")
    _OUTPUT = flags.DEFINE_string("output", None, "The side-by-side video (.mp4); OUT.csv, "
                                  ".png and .json go beside it.")  # fmt: skip
    _WORKDIR = flags.DEFINE_string("workdir", None, "A main run's workdir (its models).")
    _MODELS_DIR = flags.DEFINE_string("models_dir", DEFAULT_MODELS_DIR, "Without --workdir: the "
                                      "published models, converted.")  # fmt: skip
    _MAX_FRAMES = flags.DEFINE_integer("max_frames", 0, "Use at most this many frames (0: all).")
    _STRIDE = flags.DEFINE_integer("stride", 1, "Use every STRIDE-th frame (the output's frame "
                                   "rate is the input's divided by it).")  # fmt: skip
    _SIZE = flags.DEFINE_integer("size", 256, "Each panel's side in the output video, pixels.")
    _BATCH = flags.DEFINE_integer("batch", 8, "Frames per model call.")
    _CONFIG = define_config_for_energy()


def main(argv: list[str]) -> None:
    from xtc_jax.infra import cli

    if len(argv) > 1:
        cli.fail(f"unexpected arguments: {' '.join(argv[1:])} (flags are --name=value; "
                 "--help lists them).")
    if not _INPUT.value or not _OUTPUT.value:
        cli.fail("--input and --output are required (--help lists every flag).")
    if not _OUTPUT.value.lower().endswith(".mp4"):
        cli.fail(f"--output {_OUTPUT.value}: name an .mp4 file (H.264, which browsers play).")
    if _STRIDE.value < 1 or _MAX_FRAMES.value < 0 or _BATCH.value < 1 or _SIZE.value < 16:
        cli.fail("--stride and --batch must be at least 1, --max_frames at least 0, --size at "
                 "least 16.")
    from xtc_jax.apps.predictor import Predictor
    from xtc_jax.errors import XtcError
    from xtc_jax.infra.runtime import enable_compilation_cache, quiet_library_logs

    quiet_library_logs()
    enable_compilation_cache()
    try:
        predictor = Predictor.load(_TASK.value, _WORKDIR.value, _MODELS_DIR.value,
                                   config=_CONFIG.value)  # fmt: skip
        if _INPUT.value.split(":")[0] == FLYTHROUGH and not os.path.isfile(_INPUT.value):
            clip = flythrough_clip(_INPUT.value, predictor.resolution, predictor.domain,
                                   _MAX_FRAMES.value, _STRIDE.value)  # fmt: skip
        else:
            clip = read_clip(_INPUT.value, predictor.resolution, _MAX_FRAMES.value, _STRIDE.value)
        run(predictor, clip, _OUTPUT.value, _SIZE.value, _BATCH.value)
    except XtcError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    from xtc_jax.apps import options
    from xtc_jax.infra import cli

    define_flags()
    flags.adopt_module_key_flags(options)  # --help lists --config too
    cli.run(main)
