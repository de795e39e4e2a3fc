"""Building the web demo from a workdir or models folder, and serving it on a local port."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable


def build_app(workdir: str | None, models_dir: str | None, taxonomy_dir: str | None = None,
              config=None, queue: int = 8, log: Callable[[str], None] = print):  # fmt: skip
    """The Starlette app, its models loaded and compiled first, so the first upload is quick
    and a bad workdir fails here, not on the page."""
    from xtc_jax.apps.web import examples, server
    from xtc_jax.apps.web.engine import Engine

    taxonomy = None
    taxonomy_dir = taxonomy_dir or (workdir if workdir and _is_taxonomy_run(workdir) else None)
    if taxonomy_dir:
        from xtc_jax.apps.web.taxonomy_viewer import TaxonomyViewer

        taxonomy = TaxonomyViewer(taxonomy_dir, log=log)
        log(f"taxonomy run: {taxonomy_dir} ({len(taxonomy.tasks)} tasks)")
    engine = Engine(workdir, models_dir, config=config, max_waiting=queue, log=log,
                    required=taxonomy is None)  # a taxonomy run alone: the /taxonomy page only
    start = time.perf_counter()
    for task in engine.tasks[:1]:
        resolution = engine.resolution(task)  # an int, or (height, width) for mtl
        result = engine.predict(task, examples.examples(resolution)[0].rgb)  # compiles the step
        log(f"{task}: models loaded and compiled in {time.perf_counter() - start:.1f} s "
            f"({resolution} px" + (f", energy through {', '.join(result['paths'])})"
                                   if result["paths"] else ")"))
    return server.make_app(engine, taxonomy)


def _is_taxonomy_run(workdir: str) -> bool:
    return os.path.isdir(os.path.join(workdir, "taxonomy", "transfers")) or os.path.isdir(
        os.path.join(workdir, "tasks"))


def serve(app, host: str, port: int) -> None:
    """Serves `app` until interrupted; prints the address (port 0 takes any free port)."""
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)  # connections wait in the backlog until the server accepts them
    address = f"http://{host}:{sock.getsockname()[1]}/"
    print(f"serving the web demo on {address} (Ctrl-C stops it)", flush=True)
    config = uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=2)
    uvicorn.Server(config).run(sockets=[sock])
