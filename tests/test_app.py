"""The launched studio: a real `python app.py` process, driven by gradio_client and by Chromium."""

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def studio(tmp_path_factory):
    home = tmp_path_factory.mktemp("home")
    port = _free_port()
    env = dict(os.environ, GRADIO_ANALYTICS_ENABLED="False", HF_HUB_OFFLINE="1")
    proc = subprocess.Popen([sys.executable, "app.py", "--home", str(home), "--port", str(port)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}/"
    t0 = time.time()
    while time.time() - t0 < 60:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if proc.poll() is not None:
                pytest.fail("app.py exited: " + proc.stdout.read())
            time.sleep(0.3)
    else:
        proc.kill()
        pytest.fail("app.py did not start serving within 60 s")
    yield url, home
    proc.terminate()
    proc.wait(10)


def test_world_sample_through_the_api(studio):
    from gradio_client import Client

    url, home = studio
    client = Client(url, verbose=False)
    sheet, video, request = client.predict("boxes", 2, "bench", api_name="/world_sample")
    assert Path(sheet).is_file() and Path(video["video"] if isinstance(video, dict) else video).is_file()
    assert request["prompt"].endswith("moves into the box.") and request["task"] == "boxes"
    assert request["images"] == ["<image/png>"]
    assert list((home / "previews").glob("boxes-bench-2.mp4"))
    with pytest.raises(Exception, match="less than minimum value 0"):
        client.predict("t2v", -3, "train", api_name="/world_sample")


def test_world_tab_in_chromium(studio):
    from playwright.sync_api import sync_playwright

    url, _ = studio
    assert shutil.which("chromium"), "Debian chromium is missing: run bash scripts/setup.sh --browser"
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=shutil.which("chromium"), args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync"])
        page = browser.new_page(viewport={"width": 1280, "height": 1100})
        page.goto(url)
        page.get_by_role("button", name="Show sample").click()
        page.locator("video").first.wait_for(timeout=30_000)
        page.wait_for_function("() => { const v = document.querySelector('video'); return v && v.readyState >= 2; }",
                               timeout=30_000)
        assert page.locator("img").count() >= 1
        page.screenshot(path=str(ARTIFACTS / "world_tab.png"), full_page=True)
        browser.close()
