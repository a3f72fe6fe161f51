"""One generation on the tiny Wan backend in Debian Chromium: app.py --backend wan --model DIR, the
Create tab refuses 16 frames naming the backend (nothing queued), then makes a 13-frame clip."""

from __future__ import annotations

import shutil

from studio_backend.studio import Studio
from tests.launched import running_app
from tests.wan_tiny import save_tiny_wan


def _set_slider(page, label: str, value: int) -> None:
    box = page.locator(f"label:has-text('{label}')").first.locator("xpath=ancestor::div[contains(@class,'block')][1]")
    num = box.locator("input[type=number]").first
    num.fill(str(value))
    num.press("Enter")


def test_generate_on_the_tiny_wan_backend_in_chromium(tmp_path):
    from playwright.sync_api import sync_playwright

    assert shutil.which("chromium"), "Debian chromium is missing: run bash scripts/setup.sh --browser"
    model = save_tiny_wan(tmp_path / "tiny-wan")
    home = tmp_path / "home"
    env = {"OMNI_WAN_MAX_SEQUENCE_LENGTH": "16", "OMNI_DATABASE_URL": ""}
    with running_app(home, model, "--backend", "wan", "--open-studio", env=env) as app, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=shutil.which("chromium"), args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync"])
        page = browser.new_page(viewport={"width": 1300, "height": 1200})
        page.goto(app.url)
        page.get_by_role("tab", name="Create").wait_for(timeout=60_000)
        page.locator("#create-prompt textarea").fill("a red circle moves left")
        _set_slider(page, "Steps", 2)
        page.locator("#create-generate").click()  # 16 frames: Wan makes 4k+1
        page.locator("#create-status").get_by_text("4k+1").wait_for(timeout=60_000)
        assert "wan" in page.locator("#create-status").inner_text()
        _set_slider(page, "Frames", 13)
        page.wait_for_timeout(300)
        page.locator("#create-generate").click()
        page.wait_for_function("() => { const v = document.querySelector('#create-result video');"
                               " return v && v.readyState >= 2 && v.duration > 0; }", timeout=120_000)
        browser.close()
        studio = Studio.open(home)
        jobs = studio.jobs.list()
        assert [j.status for j in jobs] == ["succeeded"], [(j.status, j.message) for j in jobs]
        v = studio.registry.get(jobs[0].model_version_id)
        assert v.backend == "wan" and studio.media.load_video(jobs[0].result_asset_id).shape == (13, 32, 32, 3)
