"""The launched studio: a real `python app.py` process on a tiny model, driven by gradio_client
and by Debian Chromium (screenshots of every tab go to test-artifacts/)."""

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import text
from PIL import Image

from app.context import AppContext
from studio_backend.studio import Studio
from tests.test_model import tiny_pipeline

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts"
TABS = ["Create", "Subjects", "Storyboard", "Sketch", "Edit", "Arena", "Leaderboard", "Training", "Jobs", "World"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


PASSWORD = "studio-test-password"


@pytest.fixture(scope="module")
def studio(tmp_path_factory):
    """app.py as a host runs it: accounts made on the command line (an admin, a creator, two annotators)."""
    from tests.launched import accounts_cli, start_app, stop_app

    base = tmp_path_factory.mktemp("studio")
    tiny_pipeline().save_pretrained(base / "secret-model-a")
    home = base / "home"
    accounts_cli(home, "create-admin", "boss", password=PASSWORD)
    for name, role in (("you", "creator"), ("ann", "annotator"), ("rater", "annotator")):
        accounts_cli(home, "add", name, "--role", role, password=PASSWORD)
    try:
        app = start_app(home, base / "secret-model-a")
    except RuntimeError as e:
        pytest.fail(str(e))
    yield {"url": app.url, "home": home, "base": base}
    stop_app(app)


def _add_pairs(home: Path, n: int = 3) -> None:
    """Comparisons between two registered versions, written straight into the app's database."""
    st = Studio.open(home)
    vs = st.registry.list()
    b = st.registry.register(f"secret-model-b-{time.time_ns()}", "/elsewhere")
    for k in range(n):
        clip_a = np.full((16, 32, 32, 3), 40 * k, np.uint8)
        clip_b = np.full((16, 32, 32, 3), 255 - 40 * k, np.uint8)
        st.arena.add_comparison("eval", {"prompt": f"a red circle, case {k}"}, st.media.put_video_array(clip_a),
                                st.media.put_video_array(clip_b), family="t2v", version_a=vs[0].id, version_b=b.id)


def test_generate_subject_and_vote_through_the_api(studio):
    from gradio_client import Client, handle_file

    c = Client(studio["url"], verbose=False)
    c.predict("you", PASSWORD, api_name="/sign_in")
    plan = c.predict("A crimson ball hops on the grass.", [], [], None, 16, 3, 3.0, 1, api_name="/enhance")
    assert "A red circle jumps up and down on a meadow." in plan and "crimson" in plan
    video, hist, plan = c.predict("A red circle moves left on a meadow.", [], [], None, 16, 3, 3.0, 1, api_name="/generate")
    assert "**Task:** t2v" in plan and "A red circle moves left on a meadow." in plan  # the plan comes with the clip
    path = video["video"] if isinstance(video, dict) else video
    assert Path(path).stat().st_size > 1000
    rows = hist["data"] if isinstance(hist, dict) else hist
    assert rows[0][1] == "succeeded"
    img = studio["base"] / "view.png"
    Image.fromarray(np.full((32, 32, 3), 200, np.uint8)).save(img)
    status = c.predict("Tigo", [handle_file(str(img))], api_name="/create_subject")[0]
    assert status == "Created @Tigo with 1 view(s)."
    with pytest.raises(Exception, match="already exists"):
        c.predict("Tigo", [handle_file(str(img))], api_name="/create_subject")
    with pytest.raises(Exception, match="@Image_3 is used but only 0 images"):
        c.predict("@Image_3 jumps", [], [], None, 16, 3, 3.0, 1, api_name="/generate")
    # the arena: an annotator rates a blind pair; nothing in the response names a model
    _add_pairs(studio["home"], 2)
    c.predict("ann", PASSWORD, api_name="/sign_in")
    out = c.predict(api_name="/arena_next")
    assert "secret-model" not in repr(out)
    out = c.predict(out[0], "G", "S", "G", "S", "S", "G", api_name="/arena_vote")  # out[0]: the pair's handle
    st = Studio.open(studio["home"])
    assert len(st.arena.votes()) == 1 and st.arena.votes()[0]["segments"] is None  # no quarter chosen
    # the optional quarter verdicts (DenseDPO): an unset quarter counts as Same; stored for A against B
    c.predict(out[0], "G", "S", "G", "S", "S", "G", None, "B", "S", None, api_name="/arena_vote")
    v = Studio.open(studio["home"]).arena.votes()[1]
    with Studio.open(studio["home"]).db.engine.connect() as conn:
        left_is_a = conn.execute(text("select left_is_a from votes where id = :i"), {"i": v["vote_id"]}).scalar()
    assert v["segments"] == (["S", "B", "S", "S"] if left_is_a else ["S", "G", "S", "S"])


def test_handlers_without_a_browser(studio, tmp_path):
    from app.create_tab import build_request
    from app.context import UIError

    st = Studio.open(tmp_path / "h")
    ctx = AppContext(st, lambda p: None)
    user = ctx.user({"name": "cleo", "role": "creator"})
    with pytest.raises(UIError, match="@Ghost is not in this project's subject library"):
        build_request(ctx, user, "@Ghost runs", [], ["Ghost"], None, 16, 10, 3.0, 0)
    bad = tmp_path / "evil.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    with pytest.raises(UIError, match="damaged or truncated"):
        build_request(ctx, user, "@Image_1 jumps", [str(bad)], [], None, 16, 10, 3.0, 0)
    with pytest.raises(UIError, match="annotators have no projects"):
        ctx.project(ctx.user({"name": "ann", "role": "annotator"}))


def _sign_in(page, name: str) -> None:
    """Name and password; the role is the account's (made on the command line in the fixture)."""
    page.locator("#sign-in-name input, #sign-in-name textarea").first.fill(name)
    page.locator("#sign-in-password input").first.fill(PASSWORD)
    page.locator("#sign-in").click()
    page.get_by_text(f"Signed in as {name}").wait_for(timeout=10_000)


def test_every_tab_in_chromium(studio):
    from playwright.sync_api import sync_playwright

    assert shutil.which("chromium"), "Debian chromium is missing: run bash scripts/setup.sh --browser"
    ARTIFACTS.mkdir(exist_ok=True)
    _add_pairs(studio["home"], 2)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=shutil.which("chromium"), args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync"])
        page = browser.new_page(viewport={"width": 1300, "height": 1200})
        page.goto(studio["url"])
        page.get_by_role("tab", name="Create").wait_for()
        page.get_by_text("Not signed in").wait_for(timeout=10_000)
        _sign_in(page, "you")
        page.reload()  # the session survives a reload
        page.get_by_text("Signed in as you (creator)").wait_for(timeout=10_000)
        # create a subject
        page.get_by_role("tab", name="Subjects").click()
        img = studio["base"] / "blip.png"
        Image.fromarray(np.full((32, 32, 3), 90, np.uint8)).save(img)
        page.locator("#subject-name textarea, #subject-name input").first.fill("Blip")
        page.locator("#subject-views input[type=file]").set_input_files(str(img))
        page.wait_for_timeout(800)
        page.locator("#subject-create").click()
        page.locator("#subject-status").get_by_text("Created @Blip").wait_for(timeout=20_000)
        page.screenshot(path=str(ARTIFACTS / "tab_subjects.png"), full_page=True)
        # generate and see it play
        page.get_by_role("tab", name="Create").click()
        page.locator("#create-prompt textarea").fill("A striped red circle moves right on a meadow.")
        page.locator("#create-generate").click()
        page.wait_for_function("() => { const v = document.querySelector('#create-result video');"
                               " return v && v.readyState >= 2 && v.duration > 0; }", timeout=60_000)
        page.locator("#create-plan").get_by_text("Generator prompt").wait_for(timeout=10_000)
        # Enhance: the layout plan as a picture beside the plan's words
        page.locator("#create-enhance").click()
        page.wait_for_function("() => { const i = document.querySelector('#create-plan-picture img');"
                               " return i && i.complete && i.naturalWidth >= 200; }", timeout=30_000)
        page.locator("#create-plan").get_by_text("Layout: striped red circle").wait_for(timeout=10_000)
        page.screenshot(path=str(ARTIFACTS / "tab_create.png"), full_page=True)
        # sketch: a world frame, a red stroke, and what the studio understood
        page.get_by_role("tab", name="Sketch").click()
        page.locator("#sketch-example").click()
        page.wait_for_timeout(1500)
        canvas = page.locator("#sketch-editor canvas").first
        box = canvas.bounding_box()
        for name in ("Brush", "Draw"):
            btn = page.locator(f"#sketch-editor button[aria-label*='{name}' i]")
            if btn.count():
                btn.first.click()
                break
        x0, y0 = box["x"] + box["width"] * 0.3, box["y"] + box["height"] * 0.5
        page.mouse.move(x0, y0)
        page.mouse.down()
        for k in range(1, 11):
            page.mouse.move(x0 + k * box["width"] * 0.04, y0 - k * box["height"] * 0.01)
        page.mouse.up()
        page.wait_for_timeout(500)
        page.locator("#sketch-understand").click()
        page.locator("#sketch-understood").get_by_text("Arrow 1").wait_for(timeout=20_000)
        page.screenshot(path=str(ARTIFACTS / "tab_sketch.png"), full_page=True)
        # edit: a world clip, a painted region on its first frame, the edit plays beside the original
        page.get_by_role("tab", name="Edit").click()
        page.locator("#edit-example").click()
        page.wait_for_function("() => { const v = document.querySelector('#edit-video video'); return v && v.readyState >= 1; }",
                               timeout=30_000)
        page.wait_for_timeout(1500)  # the first frame goes onto the mask canvas
        canvas = page.locator("#edit-mask canvas").first
        for name in ("Brush", "Draw"):
            btn = page.locator(f"#edit-mask button[aria-label*='{name}' i]")
            if btn.count():
                btn.first.click()
                break
        canvas.scroll_into_view_if_needed()
        box = canvas.bounding_box()  # viewport coordinates, taken once the canvas is in view
        x0, y0 = box["x"] + box["width"] * 0.3, box["y"] + box["height"] * 0.4
        page.mouse.move(x0, y0)
        page.mouse.down()
        for k in range(1, 11):
            page.mouse.move(x0 + k * box["width"] * 0.03, y0 + k * box["height"] * 0.02)
        page.mouse.up()
        page.wait_for_timeout(500)
        page.locator("#edit-run").click()
        page.wait_for_function("() => { const v = document.querySelector('#edit-result video');"
                               " return v && v.readyState >= 2 && v.duration > 0; }", timeout=60_000)
        page.screenshot(path=str(ARTIFACTS / "tab_edit.png"), full_page=True)
        # the arena: sign in as an annotator, load a pair, vote with the keyboard
        _sign_in(page, "rater")
        page.get_by_role("tab", name="Arena").click()
        page.locator("#arena-next").click()
        page.wait_for_function("() => document.querySelectorAll('#arena-left video, #arena-right video').length == 2",
                               timeout=20_000)
        page.screenshot(path=str(ARTIFACTS / "tab_arena.png"), full_page=True)
        assert "secret-model" not in page.content()  # no model or version name anywhere in the page
        page.keyboard.press("1")
        page.locator("#arena-submit").click()
        page.locator("#arena-count").get_by_text("You have rated 1 pairs").wait_for(timeout=20_000)
        for tab in TABS:
            if tab in ("Subjects", "Create", "Sketch", "Edit", "Arena"):
                continue
            page.get_by_role("tab", name=tab).click()
            page.wait_for_timeout(700)
            page.screenshot(path=str(ARTIFACTS / f"tab_{tab.lower()}.png"), full_page=True)
            if tab == "Storyboard":  # annotators make nothing: the tab says so and where to go
                page.locator(".creators-only:visible").get_by_text("Annotators rate pairs in the Arena").wait_for(timeout=5_000)
                assert not page.get_by_role("button", name="Add shot").is_visible()
            if tab == "Leaderboard":  # hidden from annotators, with the reason
                page.get_by_text("annotators rate blind").first.wait_for(timeout=5_000)
            if tab == "Training":  # an annotator sees what the tab is for, not the admin's buttons
                page.locator("#training-notice").get_by_text("sign in with the admin role").wait_for(timeout=5_000)
                assert not page.get_by_role("button", name="Run DPO").is_visible()
        _sign_in(page, "boss")
        page.get_by_role("tab", name="Training").click()
        page.get_by_role("button", name="Run DPO").wait_for(timeout=10_000)
        assert not page.locator("#training-notice").is_visible()
        page.screenshot(path=str(ARTIFACTS / "tab_training_admin.png"), full_page=True)
        page.get_by_role("tab", name="Leaderboard").click()  # opening it shows the board, no click needed
        page.get_by_text("votes on version pairs").wait_for(timeout=20_000)
        # bars drawn and coloured, although an annotator's visit sent the plot nothing before (a gradio plot first
        # sent an empty frame later draws its bars without fill: the app sends None instead)
        bars = "#leaderboard-plot svg path[aria-roledescription='bar']"
        page.wait_for_function(f"() => document.querySelectorAll(\"{bars}\").length > 0", timeout=20_000)
        fills = page.eval_on_selector_all(bars, "ps => ps.map(p => p.getAttribute('fill'))")
        assert fills and all(f and f != "null" for f in fills), fills
        page.screenshot(path=str(ARTIFACTS / "tab_leaderboard_admin.png"), full_page=True)
        browser.close()
    st = Studio.open(studio["home"])
    edits = [j for j in st.jobs.list(limit=200) if j.request.get("mask")]
    assert edits and edits[0].status == "succeeded"  # the painted region reached the model as a mask
    assert any(s.name == "Blip" for u in [st.users.ensure("you", "creator")] for s in
               st.subjects.list(u, st.projects.list(u)[0].id))
    assert any(v["overall"] in "GSB" for v in st.arena.votes())


def test_leaderboard_and_dpo_handlers(tmp_path):
    import uuid

    from app.leaderboard_tab import leaderboard
    from app.training_tab import cancel_training, dpo_curve, follow_dpo, start_dpo, version_rows
    from studio_backend.worker import Worker

    tiny_pipeline().save_pretrained(tmp_path / "m")
    st = Studio.open(tmp_path / "h")
    admin = {"name": "root", "role": "admin"}
    from model.pipeline import OmniPipeline

    def loader(path):
        p = OmniPipeline.from_pretrained(path)
        p.set_progress_bar_config(disable=True)
        return p

    ctx = AppContext(st, loader)
    root = ctx.user(admin)
    base = st.registry.register("base", str(tmp_path / "m"))
    st.registry.promote(root, base.id)
    other = st.registry.register("other", "/x")
    ann = st.users.ensure("ann", "annotator")
    for k, purpose in enumerate(["eval", "eval", "dpo", "dpo"]):
        s = __import__("training.world", fromlist=["sample"]).sample("t2v", k)
        a = st.media.put_video_array(s.target)
        b = st.media.put_video_array(np.zeros_like(s.target))
        st.arena.add_comparison(purpose, s.request.to_dict(), a, b, family="t2v", version_a=base.id,
                                version_b=other.id if purpose == "eval" else base.id)
    for _ in range(4):
        pair = st.arena.next_pair(ann)
        a_left = st.arena._unseal(pair.left_is_a_token)[1]
        st.arena.vote(ann, pair.left_is_a_token, {}, "G" if a_left else "B", uuid.uuid4().hex)
    summary, plot, table, ranking = leaderboard(ctx, admin)
    assert "2 votes" in summary and table[0][0] == "base" and table[0][4] == "inf"
    assert ranking[0][0] == "base"
    with pytest.raises(Exception, match="annotators rate blind"):
        leaderboard(ctx, {"name": "ann", "role": "annotator"})
    from app.leaderboard_tab import on_open

    blind = on_open(ctx, {"name": "ann", "role": "annotator"})
    assert "annotators rate blind" in blind[0] and blind[1] is None and blind[2] == []
    with pytest.raises(Exception, match="admin"):
        start_dpo(ctx, {"name": "ann", "role": "annotator"}, 3, 500.0, 0)
    with pytest.raises(Exception, match="steps=0 is outside"):
        start_dpo(ctx, admin, 0, 500.0, 0)
    with pytest.raises(Exception, match="no training run"):
        cancel_training(ctx, admin)
    job = start_dpo(ctx, admin, 3, 500.0, 0)  # queued: the page returns at once
    assert st.jobs.get(job.id).status == "queued" and job.kind == "train"
    assert dpo_curve(ctx, job.id) is None  # nothing logged yet: no empty frame for the plot (it would stay blank)
    trainer = Worker(st, loader, "trainer", kinds=("train",))
    trainer.start()
    try:
        updates = list(follow_dpo(ctx, job, poll=0.05, timeout=300))
    finally:
        trainer.stop()
    msg, curve = updates[-1]
    assert "on 2 pairs" in msg and len(curve) == 6, msg
    rows = version_rows(ctx, admin)
    assert rows[-1][1].startswith("base+dpo") and rows[-1][3] == base.id
    assert version_rows(ctx, {"name": "cleo", "role": "creator"}) == []
    # the 'consistent pairs only' box reaches the job's settings
    job2 = start_dpo(ctx, admin, 3, 500.0, 0, True)
    assert job2.request["config"]["consistent"] == 1 and job.request["config"]["consistent"] == 0
    st.jobs.cancel(ctx.user(admin), job2.id)
    # ... and the 'quarter verdicts' box: a pair voted Same overall but better in a quarter then counts
    from app.training_tab import dpo_readiness

    cid = st.arena.add_comparison("dpo", s.request.to_dict(), a, b, family="t2v", version_a=base.id, version_b=base.id)
    pair = st.arena.next_pair(ann)
    assert pair.comparison_id == cid
    st.arena.vote(ann, pair.left_is_a_token, {}, "S", uuid.uuid4().hex, segments=["G", "S", "S", "S"])
    assert "2 preference pairs" in dpo_readiness(ctx) and "3 preference pairs" in dpo_readiness(ctx, False, True)
    job3 = start_dpo(ctx, admin, 3, 500.0, 0, False, True)
    assert job3.request["config"]["segments"] == 1 and job.request["config"]["segments"] == 0
    st.jobs.cancel(ctx.user(admin), job3.id)
    # the preference export: files for download, and a push when OMNI_VOTES_REPO names a dataset repo
    import huggingface_hub.constants as hub_constants

    from app.training_tab import export_preferences
    from tests.fake_hub import fake_hub

    with pytest.raises(Exception, match="admin role"):
        export_preferences(ctx, {"name": "ann", "role": "annotator"})
    msg, files = export_preferences(ctx, admin)
    assert "2 preference pairs" in msg and "Set OMNI_VOTES_REPO" in msg and all(Path(f).is_file() for f in files)
    # handed out through media/served (the one folder the app serves), under their own names
    served = (st.home / "media" / "served").resolve()
    assert all(Path(f).resolve().parent.parent == served for f in files)
    assert Path(files[0]).name == "preferences.jsonl" and len({Path(f).parent for f in files}) == len(files)
    with fake_hub() as (url, hub), pytest.MonkeyPatch.context() as mp:
        mp.setattr(hub_constants, "HF_HUB_OFFLINE", False)
        mp.setenv("HF_ENDPOINT", url)
        mp.setenv("OMNI_VOTES_REPO", "team/votes")
        mp.setenv("HF_TOKEN", hub.token)
        msg, files = export_preferences(ctx, admin)
        assert "Pushed to the dataset repo `team/votes`" in msg
        assert hub.repos["datasets/team/votes"]["preferences.jsonl"] == Path(files[0]).read_bytes()
        mp.setenv("HF_TOKEN", "hf_not_allowed")
        msg, files = export_preferences(ctx, admin)
        assert "failed, the files are kept here" in msg and "Check HF_TOKEN" in msg and Path(files[1]).is_file()


def test_edit_with_a_painted_mask_changes_only_the_painted_region(tmp_path):
    from app.context import UIError
    from app.edit_tab import MASK_CANVAS, edit, first_frame, painted_mask
    from model.pipeline import OmniPipeline
    from studio_backend.worker import Worker
    from training.world import sample

    tiny_pipeline().save_pretrained(tmp_path / "m")
    st = Studio.open(tmp_path / "h")
    st.registry.register("tiny", str(tmp_path / "m"))
    st.registry.promote(st.users.ensure("root", "admin"), st.registry.list()[0].id)

    def loader(path):
        p = OmniPipeline.from_pretrained(path)
        p.set_progress_bar_config(disable=True)
        return p

    ctx = AppContext(st, loader, job_timeout=120)
    src = sample("weather", 5).request.video
    video = ctx.video_path(st.media.put_video_array(src).id)
    canvas = first_frame(ctx, video)
    assert canvas["background"].shape[:2] == (MASK_CANVAS, MASK_CANVAS) and canvas["layers"] == []
    assert painted_mask(canvas) is None  # nothing painted: no mask, the whole clip may change
    layer = np.zeros((MASK_CANVAS, MASK_CANVAS, 4), np.uint8)
    layer[64:160, 80:208] = (255, 255, 255, 255)  # a painted rectangle = pixels 8..20 x 10..26 at 32 px
    worker = Worker(st, loader, kinds=("generate",))
    worker.start()
    try:
        original, result = edit(ctx, {"name": "cleo", "role": "creator"}, video, "Make it snow", "weather", None,
                                mask_value={"background": canvas["background"], "layers": [layer], "composite": None})
        # the strength slider: a low strength keeps more of the video than redrawing it all
        for strength in (0.05, 1.0):
            edit(ctx, {"name": "cleo", "role": "creator"}, video, "Make it snow", "weather", None, strength=strength)
        # 'keep the original': pixels the edit changed by less than the level are the upload's own
        edit(ctx, {"name": "cleo", "role": "creator"}, video, "Make it snow", "weather", None, strength=0.5,
             preserve="large changes (under 30%)")
        with pytest.raises(UIError, match="'Keep the original' must be one of"):
            edit(ctx, {"name": "cleo", "role": "creator"}, video, "Make it snow", "weather", None, preserve="most")
    finally:
        worker.stop()
    jobs = st.jobs.list()
    kept = next(j for j in jobs if j.request.get("preserve") == 0.3)
    by_strength = {j.request.get("strength"): j for j in jobs if j is not kept}
    job, low, full = by_strength[None], by_strength[0.05], by_strength[1.0]  # None: the slider left at 0
    assert kept.status == "succeeded" and all(j.request.get("preserve") is None for j in (job, low, full))
    from model.conditioning import _fit_video as fit

    kept_out = st.media.load_video(kept.result_asset_id)
    source_px = fit(st.media.load_video(kept.request["video"]), 16)
    same = (kept_out == source_px).all(-1)
    assert same.mean() > 0.2  # an untrained model's edit changes much of the clip by less than 30%
    assert low.status == full.status == "succeeded"
    from model.conditioning import _fit_video
    from model.vae import to_model_range, to_uint8

    import torch

    vae = loader(tmp_path / "m").vae  # the source as this (untrained) model's VAE gives it back
    with torch.no_grad():
        x = to_model_range(torch.from_numpy(_fit_video(src, 16)[None]))
        rec = to_uint8(vae.decode(vae.encode(x), 16))[0].numpy().astype(int)
    assert (np.abs(st.media.load_video(low.result_asset_id).astype(int) - rec).mean()
            < np.abs(st.media.load_video(full.result_asset_id).astype(int) - rec).mean())
    assert job.status == "succeeded" and job.request["mask"]
    out = st.media.load_video(job.result_asset_id)  # the exact frames the model made
    seen = _fit_video(st.media.load_video(job.request["video"]), 16)  # the upload, as the model saw it
    inside = np.zeros((32, 32), bool)
    inside[8:20, 10:26] = True
    assert out.shape == seen.shape
    assert np.array_equal(out[:, ~inside], seen[:, ~inside])  # outside the painted region: the source exactly
    assert not np.array_equal(out[:, inside], seen[:, inside])
    with pytest.raises(UIError, match="could not be read"):
        bad = tmp_path / "fake.mp4"
        bad.write_text("not a video")
        first_frame(ctx, str(bad))


def test_storyboard_shots_take_their_own_references(tmp_path):
    from app.context import UIError
    from app.storyboard_tab import _board, add_shot, generate_all, generate_take, neighbour, shot_rows
    from model.mvl import MVLRequest
    from model.pipeline import OmniPipeline
    from studio_backend.worker import Worker

    tiny_pipeline().save_pretrained(tmp_path / "m")
    st = Studio.open(tmp_path / "h")
    st.registry.promote(st.users.ensure("root", "admin"), st.registry.register("tiny", str(tmp_path / "m")).id)

    def loader(path):
        p = OmniPipeline.from_pretrained(path)
        p.set_progress_bar_config(disable=True)
        return p

    ctx = AppContext(st, loader, job_timeout=120)
    us = {"name": "cleo", "role": "creator"}
    user = ctx.user(us)
    view = np.zeros((32, 32, 3), np.uint8)
    view[10:22, 10:22] = (230, 40, 40)
    st.subjects.create(user, ctx.project(user), "Blip", [st.media.put_image_array(view)])
    ref = tmp_path / "ref.png"
    Image.fromarray(np.full((32, 32, 3), 70, np.uint8)).save(ref)
    with pytest.raises(UIError, match="@Ghost is not in this project's subject library"):
        add_shot(ctx, us, "@Ghost runs", 2.0, [], ["Ghost"])
    with pytest.raises(UIError, match="@Image_2 is used but only 1 image"):
        add_shot(ctx, us, "@Image_2 waits", 2.0, [str(ref)], [])
    assert shot_rows(ctx, us) == []  # refused shots change nothing
    add_shot(ctx, us, "@Blip moves right while @Image_1 stays still on a meadow.", 2.0, [str(ref)], ["Blip"])
    (row,) = shot_rows(ctx, us)
    assert row[3] == "@Image_1, @Blip"
    shot = _board(ctx, user).shots[0]
    req = st.media.resolve(MVLRequest.from_dict(shot.request))
    assert req.subjects["Blip"][0].shape == (32, 32, 3) and req.images[0].shape == (32, 32, 3)
    # a take, then the next shot keeps the shot's references: @Blip still means the same subject
    worker = Worker(st, loader, kinds=("generate",))
    worker.start()
    try:
        shot_req = dict(shot.request, steps=2)
        with st.db.session() as s:
            from studio_backend.models import Shot

            s.get(Shot, shot.id).request = shot_req
        assert "is ready" in generate_take(ctx, us, shot.id)
    finally:
        worker.stop()
    st.storyboards.choose_take(user, shot.id, _board(ctx, user).shots[0].takes[0][0])
    neighbour(ctx, us, shot.id, "@Blip turns around", "next")
    rows = shot_rows(ctx, us)
    assert len(rows) == 2 and rows[1][3] == "@Image_1, @Blip, @Video"
    # "generate all": only the shots without a take get one
    add_shot(ctx, us, "A red circle moves left on a meadow.", 1.0)
    worker = Worker(st, loader, kinds=("generate",))
    worker.start()
    try:
        seen = []
        assert generate_all(ctx, us, lambda f, desc="": seen.append(f)) == "Generated 2 takes."
    finally:
        worker.stop()
    assert seen and max(seen) <= 1.0 and seen[-1] > 0.5
    assert all(r[5] for r in shot_rows(ctx, us))  # every shot has a take now
    assert generate_all(ctx, us).startswith("Every shot has a take already")


def test_an_upgraded_shipped_model_directory_becomes_the_active_version(tmp_path):
    """A new shipped model replaces the old one in place: the version that named the directory
    before no longer has its weights, so the new name is registered and made active on start."""
    import importlib.util
    import json

    spec = importlib.util.spec_from_file_location("studio_app_main", ROOT / "app.py")
    main_module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(main_module)  # app.py, not the app/ package
    register_model = main_module.register_model
    model_dir = tmp_path / "omni-world"
    tiny_pipeline().save_pretrained(model_dir)
    st = Studio.open(tmp_path / "h")
    register_model(st, model_dir)
    first = st.registry.active()
    assert first.name == "omni-world:tiny"
    index = json.loads((model_dir / "model_index.json").read_text())
    index["config"]["version"] = "tiny-2"
    (model_dir / "model_index.json").write_text(json.dumps(index))
    register_model(st, model_dir)
    assert st.registry.active().name == "omni-world:tiny-2"
    assert {v.name: v.status for v in st.registry.list()} == {"omni-world:tiny": "retired", "omni-world:tiny-2": "active"}
    # a version the admin promoted from elsewhere stays active across restarts
    other = st.registry.register("elsewhere", str(tmp_path / "x"))
    st.registry.promote(st.users.ensure("studio", "admin"), other.id)
    register_model(st, model_dir)
    assert st.registry.active().name == "elsewhere"


def test_first_loads_at_once_share_one_pipeline():
    """The page's plan and the job worker load the active version together on a studio's first generation;
    in a fresh process (transformers not imported yet) four threads at once all get the one pipeline
    (before the lock, three of four failed with "cannot import name 'AutoModel' from 'transformers'")."""
    script = (
        "import importlib.util as u, threading\n"
        "sp = u.spec_from_file_location('app_main', 'app.py'); m = u.module_from_spec(sp); sp.loader.exec_module(m)\n"
        "errors, got = [], []\n"
        "def go():\n"
        "    try: got.append(m.load_pipeline('assets/models/omni-world'))\n"
        "    except Exception as e: errors.append(repr(e))\n"
        "ts = [threading.Thread(target=go) for _ in range(4)]\n"
        "[t.start() for t in ts]; [t.join() for t in ts]\n"
        "print('RESULT', len(errors), len(got), len({id(p) for p in got}), errors[:1])\n")
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=300,
                         env=dict(os.environ, HF_HUB_OFFLINE="1"))
    line = [x for x in out.stdout.splitlines() if x.startswith("RESULT")]
    assert line, out.stdout[-2000:] + out.stderr[-2000:]
    assert line[0].split()[1:4] == ["0", "4", "1"], line[0]
