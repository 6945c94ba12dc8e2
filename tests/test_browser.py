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

from test_inference import bundle, zoo  # noqa: F401  (module-scoped fixtures)

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(),
                                reason="Debian's chromium is not installed (.ci/run installs it with apt)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server(bundle):  # noqa: F811
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "skinlesion", "serve", "--model", str(bundle), "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env={**os.environ, "HF_HUB_OFFLINE": "1"})
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


def test_upload_shows_probability_and_overlay(server, zoo, tmp_path):  # noqa: F811
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync"])
        try:
            page = browser.new_page()
            page.goto(server + "/")
            assert "Research use only" in page.text_content(".notice")
            page.wait_for_function("document.getElementById('model').textContent.includes('simple_cnn')")
            assert page.get_attribute("#metafields", "hidden") is not None  # image-only model: no patient fields
            page.set_input_files("#file", str(zoo / "good.jpg"))
            page.wait_for_selector("#camfig:not([hidden])", timeout=30_000)
            prob = page.text_content("#prob")
            assert prob.endswith("%") and 0 <= float(prob[:-1]) <= 100
            assert "benign" in page.text_content("#decision") or "malignant" in page.text_content("#decision")
            assert page.get_attribute("#cam", "src").startswith("data:image/png;base64,")
            assert page.evaluate("document.getElementById('cam').naturalWidth") == 48
            page.screenshot(path=str(tmp_path / "serve.png"), full_page=True)
            page.set_input_files("#file", str(zoo / "notes.txt"))
            page.wait_for_function("document.getElementById('error').textContent.includes('415')")
        finally:
            browser.close()
    assert (tmp_path / "serve.png").stat().st_size > 5000
