"""The web demo's Starlette app: two pages and a small JSON API, all served locally.

  GET  /                 the consistency page (static/index.html)
  GET  /taxonomy         Taskonomy's transfer page, when the workdir holds a taxonomy run
  GET  /static/...       the pages' script and style (nothing comes from another host)
  GET  /api/info         tasks, examples, limits, whether the taxonomy page is on
  GET  /api/example/{i}  an example image as PNG; /api/colour_bar.png the energy's scale
  POST /api/predict      multipart: task, and file (an upload) or example (an index)
  POST /api/video        multipart: task, file (a short clip): the side-by-side video
  POST /api/taxonomy     multipart: target, sources (comma-separated), file or example

Every failure the user can cause answers 4xx with {"error": message}, which the
page shows; the server keeps serving. Model work goes through `Engine.run`
(one job at a time, a bounded queue) in a worker thread, so the event loop
stays free to answer other requests while a job runs.
"""

from __future__ import annotations

import functools
import os
from importlib import resources

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.formparsers import MultiPartException
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from xtc_jax.apps.web import examples as examples_lib
from xtc_jax.apps.web import pictures, uploads
from xtc_jax.apps.web.engine import MULTITASK, Busy, Engine
from xtc_jax.errors import XtcError

STATIC = str(resources.files("xtc_jax.apps.web") / "static")
MAX_VIDEO_BYTES = 50 * 1024 * 1024
MAX_VIDEO_FRAMES = 96


def _error(message: str, status: int = 400) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def _encode(result: dict) -> dict:
    """`Engine.predict`'s result with every PNG as a data URL."""
    out = {k: v for k, v in result.items() if k not in ("pngs", "paths")}
    out["images"] = {k: pictures.data_url(v) for k, v in result["pngs"].items()}
    out["paths"] = {k: pictures.data_url(v) for k, v in result["paths"].items()}
    return out


async def _read_input(request: Request, form, resolution: int):
    """(rgb, truth or None, name, note) of the form's file or example; UploadError if bad."""
    example = form.get("example")
    upload = form.get("file")
    if upload is not None and getattr(upload, "filename", None):
        data = await upload.read()
        image = uploads.read_upload(data, upload.filename, resolution)
        return image.rgb, None, upload.filename, image.note
    if example not in (None, ""):
        shown = examples_lib.examples(resolution)
        try:
            chosen = shown[int(example)]
        except (ValueError, IndexError):
            raise uploads.UploadError(
                f"example {example!r}: choose 0 to {len(shown) - 1}.") from None
        return chosen.rgb, chosen.truth, chosen.name, ""
    raise uploads.UploadError("choose an image file to upload, or one of the examples.")


def _answering_errors(handler):
    """`handler` with every error a user can cause answered as {"error": message}: bad input
    400, a full queue 503 ("try again"); the server keeps serving."""

    @functools.wraps(handler)
    async def answer(request: Request) -> Response:
        try:
            return await handler(request)
        except Busy as error:
            return _error(str(error), 503)
        except (uploads.UploadError, XtcError, MultiPartException) as error:
            return _error(str(error))

    return answer


def _too_large(request: Request, limit: int) -> bool:
    try:
        return int(request.headers.get("content-length", "0")) > limit + 1024 * 1024
    except ValueError:
        return False


def make_app(engine: Engine, taxonomy=None) -> Starlette:
    """The app over `engine` (and a `taxonomy_page.TaxonomyViewer`, or None)."""

    def default_resolution() -> int:
        if engine.tasks:
            return engine.run(lambda: engine.resolution(engine.tasks[0]))
        return taxonomy.resolution

    async def index(request: Request) -> Response:
        if not engine.tasks:  # a taxonomy run alone
            return RedirectResponse("/taxonomy")
        return FileResponse(os.path.join(STATIC, "index.html"))

    async def taxonomy_page(request: Request) -> Response:
        if taxonomy is None:
            return Response("This workdir holds no taxonomy run (python -m xtc_jax.taxonomy).",
                            status_code=404, media_type="text/plain")  # fmt: skip
        return FileResponse(os.path.join(STATIC, "taxonomy.html"))

    async def info(request: Request) -> Response:
        resolution = await run_in_threadpool(default_resolution)
        shown = examples_lib.examples(resolution)
        return JSONResponse({
            "tasks": engine.tasks, "examples": [e.name for e in shown],
            "resolution": resolution, "max_upload_mb": uploads.MAX_UPLOAD_BYTES // 2**20,
            "max_side": uploads.MAX_SIDE, "min_side": uploads.MIN_SIDE,
            "max_video_frames": MAX_VIDEO_FRAMES,
            "taxonomy": taxonomy.describe() if taxonomy is not None else None,
        })  # fmt: skip

    async def example(request: Request) -> Response:
        resolution = await run_in_threadpool(default_resolution)
        shown = examples_lib.examples(resolution)
        try:
            chosen = shown[int(request.path_params["index"])]
        except (ValueError, IndexError):
            return _error("no such example", 404)
        png = pictures.png_bytes(pictures.rgb_image(chosen.rgb))
        return Response(png, media_type="image/png")

    async def colour_bar(request: Request) -> Response:
        return Response(pictures.colour_bar_png(), media_type="image/png")

    @_answering_errors
    async def predict(request: Request) -> Response:
        if _too_large(request, uploads.MAX_UPLOAD_BYTES):
            return _error(f"the upload is over the {uploads.MAX_UPLOAD_BYTES // 2**20} MB limit; "
                          "send a smaller image.", 413)  # fmt: skip
        form = await request.form(max_files=2, max_fields=8)
        task = str(form.get("task") or engine.tasks[0])
        resolution = await run_in_threadpool(engine.run, lambda: engine.resolution(task))
        rgb, truth, name, note = await _read_input(request, form, resolution)
        result = await run_in_threadpool(engine.run, lambda: engine.predict(task, rgb, truth))
        result = _encode(result)
        result.update(name=name, note=note)
        return JSONResponse(result)

    @_answering_errors
    async def video(request: Request) -> Response:
        from xtc_jax.apps import video as video_lib

        if _too_large(request, MAX_VIDEO_BYTES):
            return _error(f"the clip is over the {MAX_VIDEO_BYTES // 2**20} MB limit.", 413)
        form = await request.form(max_files=1, max_fields=8)
        task = str(form.get("task") or engine.tasks[0])
        if task == MULTITASK:
            raise uploads.UploadError("the video shows the normal, depth or reshading models; "
                                      "choose one of those tasks.")  # fmt: skip
        upload = form.get("file")
        if upload is None or not getattr(upload, "filename", None):
            raise uploads.UploadError("choose a video file to upload.")
        data = await upload.read()
        mp4 = await run_in_threadpool(engine.run, lambda: video_lib.side_by_side_bytes(
            engine.predictor(task), data, upload.filename, MAX_VIDEO_FRAMES))
        return Response(mp4, media_type="video/mp4")

    @_answering_errors
    async def transfer(request: Request) -> Response:
        if taxonomy is None:
            return _error("this workdir holds no taxonomy run.", 404)
        form = await request.form(max_files=2, max_fields=8)
        target = str(form.get("target") or "")
        sources = [s for s in str(form.get("sources") or "").split(",") if s]
        rgb, truth, name, note = await _read_input(request, form, taxonomy.resolution)
        result = await run_in_threadpool(engine.run,
                                         lambda: taxonomy.predict(sources, target, rgb, truth))
        result["images"] = {k: pictures.data_url(v) for k, v in result.pop("pngs").items()}
        result.update(name=name, note=note)
        return JSONResponse(result)

    routes = [
        Route("/", index), Route("/taxonomy", taxonomy_page), Route("/api/info", info),
        Route("/api/example/{index}", example), Route("/api/colour_bar.png", colour_bar),
        Route("/api/predict", predict, methods=["POST"]),
        Route("/api/video", video, methods=["POST"]),
        Route("/api/taxonomy", transfer, methods=["POST"]),
        Mount("/static", app=StaticFiles(directory=STATIC), name="static"),
    ]  # fmt: skip
    return Starlette(routes=routes)
