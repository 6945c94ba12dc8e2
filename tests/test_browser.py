"""End to end: a real `skinlesion serve` on localhost, driven by Playwright in headless Chromium."""
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest


CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(),
                                reason="Debian's chromium is not installed (.ci/run installs it with apt)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


ARTIFACTS = Path(os.environ.get("SKINLESION_TEST_ARTIFACTS", Path(__file__).resolve().parents[1] / "test-artifacts"))


@pytest.fixture
def evaluated_bundle(bundle, tmp_path):  # noqa: F811
    """A copy of the tiny run, evaluated, so its bundle carries test metrics with CIs for the model panel."""
    from skinlesion.evaluation.evaluate import evaluate_run
    from skinlesion.evaluation.site_data import EvalOptions
    run = tmp_path / "run"
    shutil.copytree(Path(bundle).parent, run)
    evaluate_run(run, opts=EvalOptions(n_boot=50, num_workers=0, progress=False))
    return run / "bundle"


@pytest.fixture
def server(evaluated_bundle):
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "skinlesion", "serve", "--model", str(evaluated_bundle), "--port",
                             str(port)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            env={**os.environ, "HF_HUB_OFFLINE": "1"})
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(360):  # a loaded 2-core machine can take a minute or more to import torch
            try:
                urllib.request.urlopen(url + "/api/health", timeout=1)
                break
            except OSError:
                if proc.poll() is not None:
                    raise RuntimeError(proc.stdout.read().decode())
                time.sleep(0.5)
        else:
            raise RuntimeError("server did not start within 180 s")
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.mark.slow
def test_page_model_panel_several_images_and_overlays(server, zoo):
    from playwright.sync_api import sync_playwright
    from skinlesion.evaluation.report import LIMITATIONS
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync"])
        try:
            page = browser.new_page()
            page.goto(server + "/")
            assert "Research use only" in page.text_content(".notice")
            page.wait_for_selector("#modeltable")
            panel = page.text_content("#panel")
            assert "simple_cnn" in panel and "decision threshold" in panel and "intended use" in panel
            assert page.locator("#panel li").count() == len(LIMITATIONS)
            # test metrics with their CIs, as stored in the bundle by evaluate
            assert page.locator("#panel td", has_text="ROC-AUC").first.text_content().count("[") >= 2
            assert page.get_attribute("#metafields", "hidden") is not None  # image-only model: no patient fields
            # before the first upload: no image elements (so none broken), no bar, no empty table
            assert page.locator("img").count() == 0 and page.locator(".bar").count() == 0
            assert page.get_attribute("#results", "hidden") is not None and page.is_visible("#hint")
            page.screenshot(path=str(ARTIFACTS / "serve_page_empty.png"), full_page=True)
            # several images at once: one row each, the bad file an error row
            page.set_input_files("#file", [str(zoo / "good.jpg"), str(zoo / "rgba.png"), str(zoo / "notes.txt")])
            page.wait_for_function("document.querySelectorAll('#rows tr.item').length === 3 && "
                                   "![...document.querySelectorAll('#rows .p')].some(c => c.textContent.includes('waiting'))",
                                   timeout=60_000)
            probs = page.locator("#rows .prob").all_text_contents()
            assert len(probs) == 2 and all(0 <= float(x[:-1]) <= 100 for x in probs)
            assert "415" in page.locator("#rows tr.item").nth(2).text_content()
            assert page.locator("#rows tr.item").nth(0).get_attribute("data-decision") in ("benign", "malignant")
            assert page.is_hidden("#hint")
            # a row expands to its overlay
            page.locator("#rows tr.item").nth(0).click()
            page.wait_for_selector("#rows tr.detail img.cam", timeout=30_000)
            assert page.evaluate("document.querySelector('#rows img.cam').naturalWidth") == 48
            broken = page.evaluate("[...document.images].filter(i => i.complete && i.naturalWidth === 0).length")
            assert broken == 0
            page.screenshot(path=str(ARTIFACTS / "serve_page.png"), full_page=True)
        finally:
            browser.close()
    assert (ARTIFACTS / "serve_page.png").stat().st_size > 5000
