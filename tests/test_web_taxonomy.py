"""The web demo's /taxonomy page: a transfer's prediction beside the target's own network."""

from __future__ import annotations

import os

import numpy as np
import pytest
import viewer_fixtures
from test_web_browser import CHROMIUM_FLAGS, _chromium, _need, _post, start_server

from xtc_jax.apps.web import examples
from xtc_jax.apps.web.taxonomy_viewer import TaxonomyViewer
from xtc_jax.errors import ConfigError

RES = viewer_fixtures.RES


@pytest.fixture(scope="module")
def taxonomy_workdir(tmp_path_factory):
    return viewer_fixtures.make_taxonomy_workdir(str(tmp_path_factory.mktemp("taxonomy_run")))


def test_a_transfer_is_trained_once_then_reused(taxonomy_workdir):
    lines: list[str] = []
    viewer = TaxonomyViewer(taxonomy_workdir, log=lines.append)
    described = viewer.describe()
    assert described["tasks"] == viewer_fixtures.TAXONOMY_TASKS
    assert described["affinities"]["normal"] == {"reshading": 0.6, "autoencoder": 0.1}
    example = examples.examples(RES)[0]
    first = viewer.predict(["reshading"], "normal", example.rgb, example.truth)
    assert first["trained_now"] and first["affinity"] == 0.6
    assert set(first["pngs"]) == {"input", "transfer", "own", "truth"}
    assert first["pngs"]["transfer"] != first["pngs"]["own"]
    assert any("training the readout reshading -> normal" in line for line in lines)
    saved = os.path.join(taxonomy_workdir, "taxonomy", "web_readouts", "reshading__normal")
    assert os.path.isfile(os.path.join(saved, "model.json"))
    again = TaxonomyViewer(taxonomy_workdir, log=lines.append)  # a restart: from disk
    second = again.predict(["reshading"], "normal", example.rgb, example.truth)
    assert not second["trained_now"] and second["pngs"] == first["pngs"]
    two = viewer.predict(["autoencoder", "reshading"], "normal", example.rgb)
    assert two["sources"] == ["reshading", "autoencoder"] and two["affinity"] is None
    assert "truth" not in two["pngs"]  # an upload has no ground truth


def test_bad_choices_are_named(taxonomy_workdir, tmp_path):
    viewer = TaxonomyViewer(taxonomy_workdir, log=lambda _: None)
    rgb = np.zeros((RES, RES, 3), np.float32)
    with pytest.raises(ConfigError, match="at least one source"):
        viewer.predict([], "normal", rgb)
    with pytest.raises(ConfigError, match="normal cannot be its own source"):
        viewer.predict(["normal"], "normal", rgb)
    with pytest.raises(ConfigError, match="target 'depth'"):
        viewer.predict(["normal"], "depth", rgb)
    with pytest.raises(ConfigError, match=r"holds no config\.json"):
        TaxonomyViewer(str(tmp_path))


def test_the_taxonomy_page_in_a_browser(taxonomy_workdir):
    chromium = _chromium()
    _need(chromium is not None, "no Chromium here (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _need(False, "playwright is not installed (pip install playwright)")
    with start_server(taxonomy_workdir) as server:
        status, answer = _post(server + "api/taxonomy", {"target": "normal", "sources": "",
                                                         "example": 0})  # fmt: skip
        assert status == 400 and "at least one source" in answer["error"]
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_FLAGS)
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.goto(server)  # no consistency models here: the root sends to /taxonomy
            page.wait_for_selector("body[data-ready='1']", timeout=60_000)
            assert page.url.endswith("/taxonomy")
            assert "reshading → normal: 0.600" in page.inner_text("#table")
            page.check("#sources input[value='reshading']")
            page.select_option("#target", "normal")
            page.click(".examples img >> nth=0")
            page.click("#run")
            page.wait_for_selector("body[data-shown='1']", timeout=120_000)
            names = page.locator("#outputs .card").evaluate_all(
                "cards => cards.map(c => c.dataset.name)")
            assert names == ["input", "transfer reshading → normal", "normal's own network",
                             "ground truth"]  # fmt: skip
            loaded = page.locator("#outputs img").evaluate_all(
                "imgs => imgs.map(i => i.complete ? i.naturalWidth : 0)")
            assert min(loaded) > 0
            assert "affinity 0.600" in page.inner_text("#message")
            if os.environ.get("XTC_TAXONOMY_SCREENSHOT"):
                page.screenshot(path=os.environ["XTC_TAXONOMY_SCREENSHOT"], full_page=True)
            page.uncheck("#sources input[value='reshading']")
            page.click("#run")
            page.wait_for_selector("#message.error", timeout=30_000)
            assert "at least one source" in page.inner_text("#message")
            browser.close()
