"""The web demo in a real browser: headless Chromium from the system's packages (Playwright).

The server runs as the user starts it (`python -m xtc_jax.apps.web --workdir=W --port=0`);
the test uploads an image, waits for the outputs and checks they appear and differ, then
uploads a broken file and checks the page's message, then runs an example again (the server
kept serving). Nothing downloads a browser: Playwright drives the system's Chromium
($XTC_CHROMIUM, else chromium on PATH). Without one the test is skipped, unless
$XTC_REQUIRE_BROWSER=1 (CI), where that is a failure.
$XTC_WEB_WORKDIR serves another workdir (e.g. the quick start's) and $XTC_SCREENSHOT saves
a screenshot of the page there (the README's).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import queue
import shutil
import subprocess
import sys
import threading
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from PIL import Image

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync"]  # fmt: skip
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _chromium() -> str | None:
    found = os.environ.get("XTC_CHROMIUM") or next(
        (shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome")
         if shutil.which(n)), None)  # fmt: skip
    return found


def _need(condition: bool, why: str) -> None:
    if not condition:
        if os.environ.get("XTC_REQUIRE_BROWSER") == "1":
            pytest.fail(f"XTC_REQUIRE_BROWSER=1 but {why}")
        pytest.skip(why)


@contextlib.contextmanager
def start_server(workdir: str):
    """The web demo on a free local port, as a user starts it: yields its address."""
    process = subprocess.Popen(
        [sys.executable, "-m", "xtc_jax.apps.web", f"--workdir={workdir}", "--port=0"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env=dict(os.environ, PYTHONPATH=REPO),
    )  # fmt: skip
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(x) for x in process.stdout], daemon=True).start()
    address, seen = None, []
    while address is None:
        try:
            line = lines.get(timeout=300)
        except queue.Empty:
            break
        seen.append(line)
        if "serving the web demo on " in line:
            address = line.split(" on ")[1].split()[0]
        if process.poll() is not None and lines.empty():
            break
    try:
        if address is None:
            pytest.fail("the web demo did not start:\n" + "".join(seen))
        yield address
    finally:
        process.terminate()
        process.wait(10)


@pytest.fixture(scope="module")
def server(request):
    """The web demo on the tiny workdir (or $XTC_WEB_WORKDIR)."""
    workdir = os.environ.get("XTC_WEB_WORKDIR") or request.getfixturevalue("viewer_workdir")
    with start_server(workdir) as address:
        yield address


def _post(url: str, fields: dict, file: tuple[str, bytes] | None = None) -> tuple[int, dict]:
    boundary = "xtcboundary"
    body = b""
    for name, value in fields.items():
        body += (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n"
                 f"{value}\r\n").encode()
    if file:
        body += (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; "
                 f"filename=\"{file[0]}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
                 ).encode() + file[1] + b"\r\n"
    body += f"--{boundary}--\r\n".encode()
    request = urllib.request.Request(url, body, {"Content-Type":
                                                 f"multipart/form-data; boundary={boundary}"})
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_several_uploads_at_once_are_queued_not_crashed(server):
    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda i: _post(server + "api/predict", {"example": i % 3}),
                                range(6)))  # fmt: skip
    assert [status for status, _ in answers] == [200] * 6
    assert {a["name"] for _, a in answers} == {"room 900", "room 901", "room 902"}
    status, answer = _post(server + "api/predict", {}, ("x.txt", b"not an image"))
    assert status == 400 and "not an image" in answer["error"]


def _post_bytes(url: str, name: str, data: bytes) -> tuple[int, bytes]:
    boundary = "xtcboundary"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; "
            f"filename=\"{name}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
            ).encode() + data + f"\r\n--{boundary}--\r\n".encode()
    request = urllib.request.Request(url, body, {"Content-Type":
                                                 f"multipart/form-data; boundary={boundary}"})
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


@pytest.mark.filterwarnings(r"ignore:os\.fork\(\) was called:RuntimeWarning")
def test_a_short_video_comes_back_side_by_side(server, tmp_path):
    pytest.importorskip("imageio_ffmpeg")
    from test_video import read_back, write_clip

    clip = write_clip(str(tmp_path / "clip.mp4"), frames=5, fps=8.0)
    with open(clip, "rb") as f:
        status, mp4 = _post_bytes(server + "api/video", "clip.mp4", f.read())
    assert status == 200, mp4[:300]
    (tmp_path / "back.mp4").write_bytes(mp4)
    meta, frames = read_back(str(tmp_path / "back.mp4"))
    assert frames == 5 and meta["fps"] == 8.0 and meta["codec"] == "h264"
    status, answer = _post_bytes(server + "api/video", "junk.mp4", os.urandom(1000))
    assert status == 400 and "not a video ffmpeg can read" in json.loads(answer)["error"]


def test_the_page_in_a_browser(server, tmp_path):
    chromium = _chromium()
    _need(chromium is not None, "no Chromium here (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _need(False, "playwright is not installed (pip install playwright)")
    image = np.zeros((96, 128, 3), np.uint8)
    image[:, :64] = (200, 120, 40)
    image[40:, 64:] = (30, 90, 220)
    Image.fromarray(image).save(tmp_path / "photo.png")
    good = (tmp_path / "photo.png").read_bytes()
    (tmp_path / "broken.png").write_bytes(good[: len(good) // 3])
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": 1500, "height": 1000})
        offsite: list[str] = []
        page.on("request", lambda r: None if r.url.startswith((server, "data:", "blob:"))
                else offsite.append(r.url))  # fmt: skip
        page.goto(server)
        page.wait_for_selector("body[data-ready='1']", timeout=60_000)
        assert page.locator("#task option").all_inner_texts()[0] in ("normal", "depth",
                                                                     "reshading")
        page.set_input_files("#file", str(tmp_path / "photo.png"))
        page.click("#run")
        page.wait_for_selector("body[data-shown='1']", timeout=120_000)
        cards = page.locator("#outputs .card")
        names = [cards.nth(i).get_attribute("data-name") for i in range(cards.count())]
        assert [n.split("_", 1)[1] for n in names[:3]] == ["input", "normal_baseline",
                                                          "normal_consistency"]
        sources = {}
        for i, name in enumerate(names):
            img = cards.nth(i).locator("img").first
            width = img.evaluate("i => i.complete ? i.naturalWidth : 0")
            assert width > 0, f"{name} did not load"
            sources[name.split("_", 1)[1]] = img.get_attribute("src")
        assert sources["normal_baseline"] != sources["normal_consistency"]
        assert sources["input"] != sources["normal_baseline"]
        assert "normal_energy" in sources and "normal_reference" in sources
        assert page.locator("#paths .card").count() >= 1
        assert page.locator("#outputs .card a[download]").count() == len(names)
        # A broken upload: a message on the page, and the server keeps serving.
        page.set_input_files("#file", str(tmp_path / "broken.png"))
        page.click("#run")
        page.wait_for_selector("#message.error", timeout=60_000)
        assert "broken.png" in page.inner_text("#message")
        assert "truncated or corrupt" in page.inner_text("#message")
        page.set_input_files("#file", [])
        page.click(".examples img >> nth=1")
        page.click("#run")
        page.wait_for_selector("body[data-shown='2']", timeout=60_000)
        assert page.locator("#outputs .card").count() == len(names) + 1  # + ground truth
        if os.environ.get("XTC_SCREENSHOT"):
            page.screenshot(path=os.environ["XTC_SCREENSHOT"], full_page=True)
        browser.close()
    assert offsite == [], f"the page asked other hosts: {offsite}"


def test_the_page_loads_nothing_from_other_hosts(server):
    with urllib.request.urlopen(server, timeout=30) as response:
        html = response.read().decode()
    for asset in ("/static/app.js", "/static/style.css"):
        assert asset in html
    with urllib.request.urlopen(server + "static/app.js", timeout=30) as response:
        script = response.read().decode()
    for text in (html, script):
        assert "http://" not in text and "https://" not in text and "//cdn" not in text
    png = urllib.request.urlopen(server + "api/example/0", timeout=30).read()
    assert Image.open(io.BytesIO(png)).size[0] >= 16
