"""Whole tasks as a person does them, tab by tab (issue 21).

The first tests call the tabs' plain handlers with a tiny random-weight model and a real job worker
(fast, no browser). The `test_*_as_a_person` tests and `test_an_empty_arena_is_filled_from_the_page` then
do the same tasks in Debian Chromium
against a launched `python app.py`: it types, uploads, draws and clicks, checks that videos play,
files download under readable names and errors appear beside the button, and screenshots every tab
into test-artifacts/ (flow_*.png)."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import text

from app.context import AppContext, UIError
from studio_backend.studio import Studio
from tests.test_model import tiny_pipeline

CREATOR = {"name": "cleo", "role": "creator"}
ADMIN = {"name": "boss", "role": "admin"}
ANNOTATOR = {"name": "ann", "role": "annotator"}


def _loader(path):
    from model.pipeline import OmniPipeline

    p = OmniPipeline.from_pretrained(path)
    p.set_progress_bar_config(disable=True)
    return p


@pytest.fixture()
def studio_ctx(tmp_path):
    """A studio home with an active tiny model and a running generation worker."""
    from functools import lru_cache

    from studio_backend.worker import Worker

    tiny_pipeline().save_pretrained(tmp_path / "m")
    st = Studio.open(tmp_path / "h")
    v = st.registry.register("tiny", str(tmp_path / "m"))
    st.registry.promote(st.users.ensure("root", "admin"), v.id)
    load = lru_cache(maxsize=4)(_loader)
    ctx = AppContext(st, load, job_timeout=120)
    worker = Worker(st, load, kinds=("generate",))
    worker.start()
    yield ctx
    worker.stop()


def _stroke_layer(side=256, y=128, x0=60, x1=200, head=True):
    """A red arrow drawn left to right on an RGBA layer, with a head (more ink) at the right end."""
    layer = np.zeros((side, side, 4), np.uint8)
    layer[y - 3:y + 3, x0:x1] = (230, 30, 30, 255)
    if head:
        for k in range(20):
            layer[y - k - 3:y - k + 3, x1 - k - 6:x1 - k] = (230, 30, 30, 255)
            layer[y + k - 3:y + k + 3, x1 - k - 6:x1 - k] = (230, 30, 30, 255)
    return layer


def test_sketch_then_generate_makes_a_clip(studio_ctx):
    """Sketch -> Generate used to fail on the default prompt (@Image_1 checked before the frame was attached)
    and on any drawn arrow (numpy coordinates refused)."""
    from app.sketch_tab import EXAMPLES, example_frame, sketch_generate

    ctx = studio_ctx
    value = {"background": example_frame(), "layers": [_stroke_layer()], "composite": None}
    for prompt in (EXAMPLES[0], "the subject follows the arrow"):
        clip, understood = sketch_generate(ctx, CREATOR, value, prompt)
        assert Path(clip).is_file() and Path(clip).stat().st_size > 1000
        assert "Arrow 1" in understood and "heading right" in understood
    job = ctx.studio.jobs.list(limit=1)[0]
    assert job.status == "succeeded" and len(job.request["images"]) == 1
    (x0, y0), (x1, y1) = job.request["annotations"]["arrows"][0]["points"][0], \
        job.request["annotations"]["arrows"][0]["points"][-1]
    assert all(type(v) is float for v in (x0, y0, x1, y1)) and x1 > x0
    with pytest.raises(UIError, match="nothing is drawn yet"):
        sketch_generate(ctx, CREATOR, {"background": example_frame(), "layers": [], "composite": None}, EXAMPLES[0])
    with pytest.raises(UIError, match="put a frame on the canvas first"):
        sketch_generate(ctx, CREATOR, {"background": None, "layers": []}, EXAMPLES[0])


def test_every_example_on_the_page_runs(studio_ctx):
    """The placeholder's own example and every Examples row prompt generate (world characters need no upload)."""
    from app.create_tab import EXAMPLES, PLACEHOLDER, build_request, generate, plan_text

    ctx = studio_ctx
    user = ctx.user(CREATOR)
    assert "@Tigo runs left on the beach" in PLACEHOLDER
    for prompt in EXAMPLES:
        d = build_request(ctx, user, prompt, [], [], None, 16, 2, 3.0, 1)
        assert "Generator prompt" in plan_text(ctx, d)
    d = build_request(ctx, user, "@Tigo runs left on the beach.", [], [], None, 16, 2, 3.0, 1)
    assert list(d["subjects"]) == ["Tigo"] and len(d["subjects"]["Tigo"]) == 3  # the character's views
    clip, rows = generate(ctx, CREATOR, d, 1)
    assert Path(clip).name == "tigo-runs-left-on-the-beach-seed1.mp4"  # a readable download name
    assert rows[0][1] == "succeeded"
    with pytest.raises(UIError, match="@Ghost is not in this project's subject library nor one of the world"):
        build_request(ctx, user, "@Ghost runs", [], [], None, 16, 2, 3.0, 0)


def test_a_library_subject_named_in_the_prompt_is_used_without_ticking(studio_ctx, tmp_path):
    from PIL import Image

    from app.create_tab import build_request
    from app.subjects_tab import create_subject

    ctx = studio_ctx
    img = tmp_path / "rocky.png"
    Image.fromarray(np.full((32, 32, 3), 120, np.uint8)).save(img)
    assert "Created @Rocky" in create_subject(ctx, CREATOR, "Rocky", [str(img)])
    d = build_request(ctx, ctx.user(CREATOR), "@Rocky moves left on a meadow.", [], [], None, 16, 2, 3.0, 0)
    assert list(d["subjects"]) == ["Rocky"]
    # a library subject called like a character wins over the character
    assert "Created @Tigo" in create_subject(ctx, CREATOR, "Tigo", [str(img)])
    lib_tigo = build_request(ctx, ctx.user(CREATOR), "@Tigo jumps.", [], [], None, 16, 2, 3.0, 0)["subjects"]["Tigo"]
    assert len(lib_tigo) == 1


def test_create_errors_stop_random_seed_history_and_settings_again(studio_ctx):
    from app.create_tab import (history_gallery, plan_text, random_seed, settings_of, stop, submit,
                                unknown_words, build_request, generate)

    ctx = studio_ctx
    user = ctx.user(CREATOR)
    seeds = {random_seed() for _ in range(5)}
    assert len(seeds) > 1 and all(0 <= s < 2**31 for s in seeds)
    # the enhancer's note: mapped words and words the model does not know
    d = build_request(ctx, user, "A white dog with a crimson ball hops on the grass.", [], [], None, 16, 2, 3.0, 0)
    text = plan_text(ctx, d)
    assert "'crimson' → 'red'" in text and "'dog'" in text and "'white'" in text and "ignored" in text
    # a prompt's tags and Markdown marks are shown as typed, never as HTML that hides the rest of the line
    d = build_request(ctx, user, "A red circle <<image_9>> <b>hops</b> left [[[ on *the* meadow.", [], [], None, 16, 2,
                      3.0, 0)
    text = plan_text(ctx, d)
    assert "<" not in text.replace("\n", " ") and "&lt;" in text and "**Generator prompt:**" in text
    assert unknown_words(ctx.active_enhancer(), "A red circle moves left on a meadow.", {}) == []
    # Stop: a queued job is canceled at once and the page says so
    assert stop(ctx, CREATOR) == "Nothing is generating."
    clip, _ = generate(ctx, CREATOR, build_request(ctx, user, "A red circle moves left.", [], [], None, 16, 2, 3.0, 4), 4)
    items, ids = history_gallery(ctx, CREATOR)
    assert items and "seed 4" in items[0][1] and "tiny" in items[0][1] and Path(items[0][0]).name.endswith("-seed4.mp4")
    s = settings_of(ctx, CREATOR, ids[0])
    assert s["prompt"] == "A red circle moves left." and s["seed"] == 4 and s["steps"] == 2
    with pytest.raises(UIError, match="not in your project"):
        settings_of(ctx, {"name": "other", "role": "creator"}, ids[0])
    job = submit(ctx, CREATOR, build_request(ctx, user, "A red circle moves up.", [], [], None, 16, 150, 3.0, 5), 5)
    msg = stop(ctx, CREATOR)
    assert msg.startswith("Stopping job") and str(job.id) in msg
    t0 = time.time()
    while ctx.studio.jobs.get(job.id).status not in ("canceled", "succeeded", "failed") and time.time() - t0 < 60:
        time.sleep(0.1)
    assert ctx.studio.jobs.get(job.id).status == "canceled"


def test_the_arena_fills_from_the_page(studio_ctx):
    """An empty arena says why; an admin starts a collection round; the switch pairs creators' generations."""
    from app.arena_tab import next_pair
    from app.create_tab import build_request, generate
    from app.training_tab import arena_info, collect, dpo_readiness, set_creator_pairs, version_choices

    ctx = studio_ctx
    state, msg, left, right, count, handle = next_pair(ctx, ANNOTATOR)
    assert not handle and "The arena is empty" in msg and "collection round" in msg
    with pytest.raises(UIError, match="admin"):
        collect(ctx, CREATOR, 2, 2)
    out = collect(ctx, ADMIN, 2, 2)
    assert "2 new DPO pairs" in out and "2 pairs" in arena_info(ctx)
    state, msg, left, right, count, handle = next_pair(ctx, ANNOTATOR)
    assert handle and Path(left).is_file() and Path(right).is_file()
    assert "0 preference pairs" in dpo_readiness(ctx)
    ctx.studio.arena.vote(ctx.user(ANNOTATOR), state["pairs"][handle]["token"], {}, "G", uuid.uuid4().hex)
    assert "Only 1 preference pairs" in dpo_readiness(ctx) and "at least 32" in dpo_readiness(ctx)
    # the admin's switch: a creator's clip gets a second seed and becomes a pair
    with pytest.raises(UIError, match="admin"):
        set_creator_pairs(ctx, CREATOR, True)
    assert "now become arena pairs" in set_creator_pairs(ctx, ADMIN, True)
    from studio_backend import rounds

    before = rounds.arena_counts(ctx.studio)["dpo"]
    generate(ctx, CREATOR, build_request(ctx, ctx.user(CREATOR), "A red circle moves left.", [], [], None, 16, 2,
                                         3.0, 7), 7)
    t0 = time.time()
    while rounds.arena_counts(ctx.studio)["dpo"] == before and time.time() - t0 < 60:
        time.sleep(0.2)
    assert rounds.arena_counts(ctx.studio)["dpo"] == before + 1
    set_creator_pairs(ctx, ADMIN, False)
    assert version_choices(ctx, ADMIN)[0][1] == ctx.studio.registry.list()[0].id
    assert version_choices(ctx, ANNOTATOR) == []


def test_leaderboard_says_which_votes_it_counts(studio_ctx):
    from app.leaderboard_tab import leaderboard

    ctx = studio_ctx
    from app.training_tab import collect

    collect(ctx, ADMIN, 2, 2)
    ann = ctx.user(ANNOTATOR)
    for _ in range(2):
        p = ctx.studio.arena.next_pair(ann)
        ctx.studio.arena.vote(ann, p.left_is_a_token, {}, "G", uuid.uuid4().hex)
    summary, plot, table, ranking = leaderboard(ctx, ADMIN)
    assert "0 votes on version pairs" in summary and "2 votes on DPO pairs" in summary
    assert "| tiny | 2 | 2 | 2 | 0 |" in summary and "counts all 2 votes" in summary and table == []


# ==================================================================== in Chromium, as a person
import os
import shutil
import socket
import subprocess
import sys

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts"
PASSWORD = "correct horse battery"
GEN_WAIT = 240_000  # ms for one generation seen from the page: about 1 s on a quiet machine, minutes on a loaded one
VIDEO_PLAYS = ("(sel) => { const v = document.querySelector(sel); "
               "return !!v && v.readyState >= 2 && v.duration > 0 && v.currentTime > 0; }")


def _accounts_mode() -> bool:
    return (ROOT / "studio_backend" / "accounts.py").is_file()


def _launch(base: Path, home: Path, env: dict, extra: list, tries: int = 3):
    """`python app.py` until it serves. gradio's launch() checks its own URL with a 3 s timeout and exits
    ("When localhost is not accessible ...") when a loaded machine answers slower: then it is started again."""
    for attempt in range(1, tries + 1):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        log_path = base / f"app-{attempt}.log"
        with open(log_path, "w") as log:
            proc = subprocess.Popen([sys.executable, "app.py", "--home", str(home), "--port", str(port), "--model",
                                     str(base / "model"), *extra], cwd=ROOT, env=env, stdout=log,
                                    stderr=subprocess.STDOUT)
        t0 = time.time()
        while time.time() - t0 < 300:  # seconds on a quiet machine; minutes beside a training run
            text = log_path.read_text(errors="replace")
            if proc.poll() is not None:
                break
            if "To create a public link" in text:  # printed once launch()'s own check has passed
                return proc, port
            time.sleep(0.3)
        else:
            proc.kill()
        if "localhost is not accessible" not in log_path.read_text(errors="replace"):
            break
    pytest.fail("app.py did not serve: " + log_path.read_text(errors="replace")[-3000:])


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    """A fresh studio home served by `python app.py` on a tiny model: accounts for an admin, a creator
    and an annotator (made on the command line, as a host does)."""
    base = tmp_path_factory.mktemp("people")
    model = os.environ.get("OMNI_UI_TEST_MODEL")  # e.g. assets/models/omni-world, for the README's screenshots
    if model:
        shutil.copytree(ROOT / model, base / "model")
    else:
        tiny_pipeline(sr=True).save_pretrained(base / "model")  # with a tiny SR stage: Upscale 4x works
    home = base / "home"
    env = dict(os.environ, GRADIO_ANALYTICS_ENABLED="False", HF_HUB_OFFLINE="1", OMNI_DATABASE_URL="")
    extra = []
    if _accounts_mode():
        for args in (["create-admin", "boss"], ["add", "cleo", "--role", "creator"], ["add", "ann", "--role", "annotator"]):
            subprocess.run([sys.executable, "-m", "studio_backend.accounts", "--home", str(home), *args,
                            "--password-stdin"], cwd=ROOT, input=PASSWORD + "\n", text=True, check=True, env=env,
                           capture_output=True, timeout=120)
    proc, port = _launch(base, home, env, extra)
    yield {"url": f"http://127.0.0.1:{port}/", "home": home, "base": base}
    proc.terminate()
    proc.wait(15)


@pytest.fixture(scope="module")
def chromium():
    from playwright.sync_api import sync_playwright

    assert shutil.which("chromium"), "Debian chromium is missing: run bash scripts/setup.sh --test"
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=shutil.which("chromium"), args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--autoplay-policy=no-user-gesture-required"])
        yield b
        b.close()


def _screens_on_failure(fn):
    """On a failure, a screenshot of every open window (test-artifacts/fail_<test>_<k>.png) and its status lines."""
    import functools

    @functools.wraps(fn)
    def run(*a, **kw):
        try:
            return fn(*a, **kw)
        except Exception as e:
            notes = []
            for k, page in enumerate(p for c in kw["chromium"].contexts for p in c.pages):
                try:
                    page.screenshot(path=str(ARTIFACTS / f"fail_{fn.__name__}_{k}.png"), full_page=True)
                    notes += [page.locator(f"[id$='-status']").all_inner_texts()]
                except Exception:
                    pass
            raise AssertionError(f"{e}\nstatus lines: {notes}") from e
    return run


def _page(b, app, who: str):
    """A new browser window, signed in as `who` (boss: admin, cleo: creator, ann: annotator)."""
    role = {"boss": "admin", "cleo": "creator", "ann": "annotator"}[who]
    page = b.new_page(viewport={"width": 1300, "height": 1100}, accept_downloads=True)
    page.goto(app["url"])
    page.get_by_role("tab", name="Create").wait_for()
    if page.locator("#sign-in-password").count():
        page.locator("#sign-in-name input, #sign-in-name textarea").first.fill(who)
        page.locator("#sign-in-password input").first.fill(PASSWORD)
        page.locator("#sign-in").click()
    else:  # an open studio: a name and a role
        page.locator("input[aria-label='Name'], label:has-text('Name') textarea").first.fill(who)
        page.get_by_label("Role").click()
        page.get_by_role("option", name=role).click()
        page.get_by_role("button", name="Sign in").click()
    page.get_by_text(f"Signed in as {who}").wait_for(timeout=15_000)
    page.wait_for_timeout(500)
    return page


def _tab(page, name: str):
    page.get_by_role("tab", name=name).click()
    page.wait_for_timeout(600)


def _shot(page, name: str):
    page.screenshot(path=str(ARTIFACTS / f"flow_{name}.png"), full_page=True)  # tab_*.png are test_app.py's


def _close_preview(page, gallery: str):
    close = page.locator(f"#{gallery} button[aria-label='Close']")
    if close.count():
        close.first.click()
        page.wait_for_timeout(300)


def _no_error_pills(page, *ids: str):
    """Gradio paints an output red ('Error') when its handler raised; a handled error never does that."""
    for i in ids:
        assert page.locator(f"#{i} .error").count() == 0, f"#{i} shows an error pill"


def _draw(page, editor: str, points: list[tuple[float, float]], pick_brush: bool = True):
    """One stroke through the points (fractions of the canvas), with the brush picked first."""
    if pick_brush:
        btn = page.locator(f"#{editor} button[aria-label='Brush']")
        if btn.count() and "highlight" not in (btn.first.get_attribute("class") or ""):
            btn.first.click()
    canvas = page.locator(f"#{editor} canvas").first
    canvas.scroll_into_view_if_needed()
    box = canvas.bounding_box()
    xy = [(box["x"] + box["width"] * x, box["y"] + box["height"] * y) for x, y in points]
    page.mouse.move(*xy[0])
    page.mouse.down()
    for p in xy[1:]:
        page.mouse.move(*p, steps=4)
    page.mouse.up()
    page.wait_for_timeout(400)


@_screens_on_failure
def test_create_as_a_person(app, chromium, tmp_path):
    from PIL import Image

    page = _page(chromium, app, "cleo")
    _tab(page, "Create")
    # an example from the row: a world character, no upload needed
    page.locator("button.gallery-item", has_text="@Tigo runs left on the beach.").click()
    page.wait_for_function("() => document.querySelector('#create-prompt textarea').value === "
                           "'@Tigo runs left on the beach.'", timeout=10_000)
    seed_box = page.locator("#create-seed input")
    page.locator("#create-random-seed").click()
    page.wait_for_function("() => document.querySelector('#create-seed input').value !== '0'", timeout=10_000)
    page.locator("#create-generate").click()
    page.locator("#create-status").get_by_text("Loading the model").wait_for(timeout=20_000)  # the first generation
    page.wait_for_function(VIDEO_PLAYS, arg="#create-result video", timeout=GEN_WAIT)
    page.locator("#create-status").get_by_text("Done").wait_for(timeout=20_000)
    page.locator("#create-plan").get_by_text("Generator prompt").wait_for()
    seed = int(seed_box.input_value())
    # the history gallery: the clip with its prompt and seed; downloaded under a readable name
    page.locator("#create-gallery").get_by_text(f"seed {seed}").first.wait_for(timeout=20_000)
    page.locator("#create-gallery .thumbnail-item, #create-gallery button.thumbnail-item").first.click()
    page.locator("#create-picked").get_by_text("Picked job").wait_for(timeout=10_000)
    with page.expect_download(timeout=20_000) as dl:
        page.locator("#create-gallery button[aria-label*='Download' i], #create-gallery a[download]").first.click()
    assert dl.value.suggested_filename == f"tigo-runs-left-on-the-beach-seed{seed}.mp4"
    dl.value.save_as(tmp_path / "clip.mp4")
    assert (tmp_path / "clip.mp4").stat().st_size > 1000
    _close_preview(page, "create-gallery")
    # an error shows once beside the button; the clip, plan and history stay
    page.locator("#create-prompt textarea").fill("@Image_3 jumps on a meadow.")
    page.locator("#create-generate").click()
    page.locator("#create-status").get_by_text("@Image_3 is used but only 0 images").wait_for(timeout=20_000)
    _no_error_pills(page, "create-result", "create-plan", "create-gallery")
    assert page.locator("#create-result video").count() == 1
    page.locator("#create-plan").get_by_text("Generator prompt").wait_for()
    page.locator("#create-gallery").get_by_text(f"seed {seed}").first.wait_for()
    # use these settings again
    page.locator("#create-reuse").click()
    page.wait_for_function("() => document.querySelector('#create-prompt textarea').value.startsWith('@Tigo')",
                           timeout=10_000)
    assert int(seed_box.input_value()) == seed
    # a text file named .png: refused at once beside the references, with no broken thumbnail; then removed
    fake = tmp_path / "notes.png"
    fake.write_text("not an image at all")
    page.locator("#create-images input[type=file]").set_input_files(str(fake))
    page.locator("#create-refs").get_by_text("notes.png").wait_for(timeout=20_000)
    page.locator("#create-refs").get_by_text("remove it from the list").wait_for()
    assert page.locator("#create-thumbs img").count() == 0
    page.locator("#create-images button[aria-label*='Clear' i], #create-images button[aria-label*='Remove' i]").first.click()
    page.wait_for_function("() => !document.querySelector('#create-refs').innerText.includes('notes.png')",
                           timeout=20_000)
    # a reference image shows as a thumbnail; Enhance says what the model does not know
    img = tmp_path / "ref.png"
    Image.fromarray(np.full((32, 32, 3), (200, 40, 40), np.uint8)).save(img)
    page.locator("#create-images input[type=file]").set_input_files(str(img))
    page.locator("#create-thumbs img").first.wait_for(timeout=20_000)
    page.locator("#create-refs").get_by_text("@Image_1").wait_for()
    page.locator("#create-prompt textarea").fill("A white dog with a crimson ball hops on the grass.")
    page.locator("#create-enhance").click()
    page.locator("#create-plan").get_by_text("Not in the model's vocabulary").wait_for(timeout=20_000)
    page.locator("#create-plan").get_by_text("'crimson' → 'red'").wait_for()
    page.locator("#create-vocabulary").get_by_text("What the model understands").click()
    page.locator("#create-vocabulary").get_by_text("Shapes:").wait_for(timeout=5_000)
    _shot(page, "create")
    # Stop: a long generation is canceled from the page
    page.locator("#create-images button[aria-label*='Clear' i], #create-images button[aria-label*='Remove' i]").first.click()
    page.locator("#create-prompt textarea").fill("A red circle moves up on a meadow.")
    steps = page.locator("input[aria-label='number input for Steps']")
    steps.fill("150")
    steps.press("Enter")
    page.locator("#create-generate").click()
    page.locator("#create-status").get_by_text("Generating").wait_for(timeout=20_000)
    page.locator("#create-stop").click()
    page.locator("#create-status").get_by_text("Stopped").wait_for(timeout=60_000)
    st = Studio.open(app["home"])
    assert any(j.status == "canceled" for j in st.jobs.list(limit=20))
    page.close()


@_screens_on_failure
def test_subjects_typed_by_name_as_a_person(app, chromium, tmp_path):
    from PIL import Image

    page = _page(chromium, app, "cleo")
    _tab(page, "Subjects")
    img = tmp_path / "rocky.png"
    Image.fromarray(np.full((32, 32, 3), (120, 90, 200), np.uint8)).save(img)
    page.locator("#subject-name textarea, #subject-name input").first.fill("Rocky")
    page.locator("#subject-views input[type=file]").set_input_files(str(img))
    page.wait_for_timeout(800)
    page.locator("#subject-create").click()
    page.locator("#subject-status").get_by_text("Created @Rocky").wait_for(timeout=20_000)
    page.locator("#subject-library img").first.wait_for(timeout=10_000)
    page.get_by_role("button", name="Insert into prompt").click()
    _shot(page, "subjects")
    _tab(page, "Create")
    page.wait_for_function("() => document.querySelector('#create-prompt textarea').value.includes('@Rocky')",
                           timeout=10_000)
    page.locator("#create-prompt textarea").fill("@Rocky moves left on a meadow.")  # not ticked: named is enough
    page.locator("#create-generate").click()
    page.locator("#create-status").get_by_text("Done").wait_for(timeout=GEN_WAIT)
    page.wait_for_function(VIDEO_PLAYS, arg="#create-result video", timeout=30_000)
    page.close()


@_screens_on_failure
def test_sketch_as_a_person(app, chromium):
    page = _page(chromium, app, "cleo")
    _tab(page, "Sketch")
    page.locator("#sketch-example").click()
    page.wait_for_timeout(1500)
    _draw(page, "sketch-editor", [(0.34 + 0.03 * k, 0.5) for k in range(11)])  # the shaft, left to right
    _draw(page, "sketch-editor", [(0.64, 0.5), (0.6, 0.43)], pick_brush=False)  # the head, at the right end
    _draw(page, "sketch-editor", [(0.64, 0.5), (0.6, 0.57)], pick_brush=False)
    page.locator("#sketch-generate").click()  # with the default prompt, which names @Image_1 (the frame)
    page.wait_for_function(VIDEO_PLAYS, arg="#sketch-result video", timeout=GEN_WAIT)
    page.locator("#sketch-understood").get_by_text("Arrow 1").wait_for(timeout=10_000)
    assert "heading right" in page.locator("#sketch-understood").inner_text()
    _no_error_pills(page, "sketch-result")
    _shot(page, "sketch")
    page.close()


@_screens_on_failure
def test_storyboard_as_a_person(app, chromium):
    page = _page(chromium, app, "cleo")
    _tab(page, "Storyboard")
    for text in ("@Tigo moves right on a meadow.", "A red circle moves left by the ocean."):
        page.locator("#shot-prompt textarea").fill(text)
        page.get_by_role("button", name="Add shot").click()
        page.locator("#storyboard-status").get_by_text("Added shot").wait_for(timeout=20_000)
        page.wait_for_timeout(500)
    page.locator("#storyboard-shots").get_by_text("Shot 2:").wait_for(timeout=20_000)
    page.locator("#storyboard-take-all").click()
    page.locator("#storyboard-status").get_by_text("Generated 2 takes").wait_for(timeout=GEN_WAIT * 2)
    page.locator("#storyboard-shots .thumbnail-item").first.click()  # click the first shot's thumbnail
    page.locator("#storyboard-selected").get_by_text("Shot 1").wait_for(timeout=10_000)
    page.locator("#storyboard-upscale input[type=checkbox]").check()  # the second take at 128x128
    page.locator("#storyboard-take").click()  # a second take of it
    page.locator("#storyboard-status").get_by_text("is ready").wait_for(timeout=GEN_WAIT)
    st = Studio.open(app["home"])
    last = st.jobs.list(limit=1)[0]
    assert last.request["upscale"] and st.media.load_video(last.result_asset_id).shape[1:3] == (128, 128)
    page.locator("#storyboard-takes").get_by_text("Take 2").wait_for(timeout=20_000)
    page.locator("#storyboard-takes .thumbnail-item").nth(1).click()  # the second take goes into the film
    page.locator("#storyboard-status").get_by_text("uses take 2").wait_for(timeout=10_000)
    _close_preview(page, "storyboard-takes")
    page.locator("#storyboard-later").click()  # shot 1 moves after shot 2: no ids typed
    page.locator("#storyboard-status").get_by_text("it is shot 2 now").wait_for(timeout=20_000)
    page.locator("#storyboard-shots").get_by_text("Shot 1: A red circle").wait_for(timeout=20_000)
    page.get_by_role("button", name="Assemble film").click()
    page.locator("#storyboard-status").get_by_text("Film assembled").wait_for(timeout=60_000)
    page.locator("#storyboard-film video").click()  # press play
    page.wait_for_function(VIDEO_PLAYS, arg="#storyboard-film video", timeout=30_000)
    w = page.eval_on_selector("#storyboard-film video", "v => [v.videoWidth, v.getBoundingClientRect().width]")
    assert w[0] == 256 and w[1] <= 300, w  # the film at its natural size, not stretched across the page
    _shot(page, "storyboard")
    page.close()


@_screens_on_failure
def test_edit_as_a_person(app, chromium, tmp_path):
    page = _page(chromium, app, "cleo")
    _tab(page, "Edit")
    # a text file named .mp4: the studio says why below the buttons and the slot is empty and ready again
    fake = tmp_path / "holiday.mp4"
    fake.write_text("this is not a video")
    page.locator("#edit-video input[type=file]").set_input_files(str(fake))
    page.locator("#edit-status").get_by_text("holiday.mp4").wait_for(timeout=30_000)
    page.wait_for_function("() => !!document.querySelector('#edit-video input[type=file]')", timeout=10_000)
    page.locator("#edit-example").click()
    page.wait_for_function("() => { const v = document.querySelector('#edit-video video'); return v && v.readyState >= 1; }",
                           timeout=30_000)
    page.locator("#edit-kind input").click()
    page.get_by_role("option", name="change the weather").click()  # kinds are words, not ids
    page.locator("button.gallery-item", has_text="Turn it into a sunset.").click()
    page.locator("#edit-run").click()
    page.wait_for_function(VIDEO_PLAYS, arg="#edit-result video", timeout=GEN_WAIT)
    page.locator("#edit-status").get_by_text("Done").wait_for(timeout=10_000)
    _shot(page, "edit")
    # the same edit upscaled 4x: the player shows the 128x128 clip
    page.locator("#edit-upscale input[type=checkbox]").check()
    page.locator("#edit-run").click()
    page.locator("#edit-status").get_by_text("upscaled 4x").wait_for(timeout=GEN_WAIT)
    page.wait_for_function(VIDEO_PLAYS, arg="#edit-result video", timeout=GEN_WAIT)
    st = Studio.open(app["home"])
    last = st.jobs.list(limit=1)[0]
    assert last.request["upscale"] and st.media.load_video(last.result_asset_id).shape == (16, 128, 128, 3)
    page.close()


@_screens_on_failure
def test_upscale_as_a_person(app, chromium):
    """Create with Upscale 4x ticked: the job's progress covers both stages and the clip plays at 128x128."""
    page = _page(chromium, app, "cleo")
    _tab(page, "Create")
    page.locator("#create-prompt textarea").fill("A red circle moves left on a meadow.")
    page.locator("#create-upscale input[type=checkbox]").check()
    page.locator("#create-generate").click()
    page.locator("#create-status").get_by_text("128x128 (upscaled 4x)").wait_for(timeout=GEN_WAIT)
    page.wait_for_function(VIDEO_PLAYS, arg="#create-result video", timeout=30_000)
    st = Studio.open(app["home"])
    last = st.jobs.list(limit=1)[0]
    assert last.status == "succeeded" and last.message == "done"
    assert st.media.load_video(last.result_asset_id).shape == (16, 128, 128, 3)
    # Use these settings again puts the choice back
    page.locator("#create-upscale input[type=checkbox]").uncheck()
    page.locator("#create-gallery .thumbnail-item, #create-gallery button.thumbnail-item").first.click()
    page.locator("#create-picked").get_by_text("Picked job").wait_for(timeout=10_000)
    _close_preview(page, "create-gallery")
    page.locator("#create-reuse").click()
    page.wait_for_function("() => document.querySelector('#create-upscale input[type=checkbox]').checked",
                           timeout=10_000)
    page.close()


@_screens_on_failure
def test_an_empty_arena_is_filled_from_the_page(app, chromium):
    # a fresh studio: the annotator is told why there is nothing and what fills it
    ann = _page(chromium, app, "ann")
    _tab(ann, "Arena")
    ann.locator("#arena-next").click()
    ann.get_by_text("The arena is empty").wait_for(timeout=20_000)
    _shot(ann, "arena_empty")
    # the admin starts a collection round and turns on creator pairs
    boss = _page(chromium, app, "boss")
    _tab(boss, "Training")
    slider = boss.locator("#training-collect-n input[type=number]")
    slider.fill("3")
    slider.press("Enter")
    boss.locator("#training-collect").click()
    boss.locator("#training-status").get_by_text("3 new DPO pairs").wait_for(timeout=GEN_WAIT * 2)
    boss.locator("#training-arena-info").get_by_text("3 pairs").wait_for(timeout=10_000)
    boss.locator("#training-pair-creators input").check()
    boss.locator("#training-status").get_by_text("now become arena pairs").wait_for(timeout=10_000)
    # the annotator rates one
    ann.locator("#arena-next").click()
    ann.wait_for_function("() => document.querySelectorAll('#arena-left video, #arena-right video').length == 2",
                          timeout=20_000)
    ann.wait_for_function(VIDEO_PLAYS, arg="#arena-left video", timeout=20_000)
    _shot(ann, "arena")
    ann.keyboard.press("1")
    ann.locator("#arena-submit").click()
    ann.locator("#arena-count").get_by_text("You have rated 1 pairs").wait_for(timeout=20_000)
    _shot(ann, "arena_next")  # the next pair comes at once (here an image-to-video request, its reference shown)
    # ... and the next one by quarter (DenseDPO): the clips are alike overall, the right one better in the third
    ann.get_by_text("By quarter of the clips").click()
    ann.locator("#arena-seg-2").get_by_text("Right better").click()
    _shot(ann, "arena_quarters")
    ann.locator("#arena-overall").get_by_text("Same").click()  # (the keys act when no radio has the focus)
    ann.locator("#arena-submit").click()
    ann.locator("#arena-count").get_by_text("You have rated 2 pairs").wait_for(timeout=20_000)
    assert ann.locator("#arena-seg-2 input[value=S]").is_checked()  # the next pair starts at Same again
    with Studio.open(app["home"]).db.engine.connect() as conn:
        seg, left_is_a = conn.execute(text("select segments, left_is_a from votes order by id desc limit 1")).one()
    assert json.loads(seg) == ["S", "S", "B" if left_is_a else "G", "S"]  # stored for A against B
    # a creator's generation becomes a pair too (second seed in the background)
    cleo = _page(chromium, app, "cleo")
    _tab(cleo, "Create")
    cleo.locator("#create-prompt textarea").fill("A blue square moves right in the desert.")
    cleo.locator("#create-generate").click()
    cleo.locator("#create-status").get_by_text("Done").wait_for(timeout=GEN_WAIT)
    from studio_backend.rounds import arena_counts

    t0 = time.time()
    while arena_counts(Studio.open(app["home"]))["dpo"] < 4 and time.time() - t0 < 60:
        time.sleep(0.5)
    assert arena_counts(Studio.open(app["home"]))["dpo"] == 4
    # the Training tab: the pair count with its warning, versions picked from a list
    boss.locator("#training-refresh").click()
    boss.locator("#training-dpo-info").get_by_text("Only 1 preference pairs").wait_for(timeout=20_000)
    boss.locator("#training-version input").click()
    assert boss.get_by_role("option").count() >= 1 and "id 1" in boss.get_by_role("option").first.inner_text()
    boss.keyboard.press("Escape")
    _shot(boss, "training")
    # the Leaderboard says which votes it counts
    _tab(boss, "Leaderboard")
    boss.get_by_text("votes on DPO pairs").first.wait_for(timeout=20_000)
    assert "0 votes on version pairs" in boss.content() and "2 votes on DPO pairs" in boss.inner_text("body")
    _shot(boss, "leaderboard")
    _tab(boss, "Jobs")
    boss.get_by_role("button", name="Refresh", exact=True).locator("visible=true").first.click()
    boss.get_by_text("A blue square moves right in the desert.").locator("visible=true").first.wait_for(timeout=20_000)
    _shot(boss, "jobs")
    _tab(boss, "World")  # the explorer: a sample of a task family, its inputs and the clip
    boss.locator("#world-show").click()
    boss.wait_for_function(VIDEO_PLAYS, arg="#world-video video", timeout=30_000)
    _shot(boss, "world")
    for p in (ann, boss, cleo):
        p.close()


def test_the_arena_shows_references_and_asks_video_consistency_for_edits_only(studio_ctx):
    from app.arena_tab import next_pair, references
    from studio_backend.rounds import collection_round
    from app.training_tab import _generate

    ctx = studio_ctx
    ids = collection_round(ctx.studio, _generate(ctx), 3, seed=5, families=("t2v", "i2v", "weather"))
    assert len(ids) == 3
    seen, shown = {}, None
    for _ in range(3):
        shown, prompt, left, right, count, handle = next_pair(ctx, ANNOTATOR, shown)
        items, is_edit = references(ctx, shown, handle)
        seen[shown["pairs"][handle]["cid"]] = ([c for _, c in items], is_edit)
        ctx.studio.arena.vote(ctx.user(ANNOTATOR), shown["pairs"][handle]["token"], {}, "S", uuid.uuid4().hex)
    assert seen[ids[0]] == ([], False)  # text to video: nothing to show, no video consistency
    assert seen[ids[1]] == (["@Image_1"], False) and all(Path(p).is_file() for p, _ in items or [])
    assert seen[ids[2]][1] is True  # a weather edit of @Video: video consistency is asked


def test_storyboard_shots_move_without_ids(studio_ctx):
    from app.storyboard_tab import _board, add_shot, move_shot, shot_gallery

    ctx = studio_ctx
    for p in ("@Tigo moves right on a meadow.", "A red circle moves left by the ocean."):
        add_shot(ctx, CREATOR, p, 2.0)
    first, second = [sh.id for sh in sorted(_board(ctx, ctx.user(CREATOR)).shots, key=lambda x: x.position)]
    with pytest.raises(UIError, match="select a shot first"):
        move_shot(ctx, CREATOR, None, 1)
    assert move_shot(ctx, CREATOR, first, -1) == "Shot 1 is already the first."
    assert move_shot(ctx, CREATOR, first, +1) == "Moved: it is shot 2 now."
    items, ids = shot_gallery(ctx, CREATOR)
    assert ids == [second, first] and items[0][1].startswith("Shot 1: A red circle")


def test_the_edit_and_storyboard_examples_are_valid_requests(studio_ctx):
    """Every example shown on the Edit and Storyboard tabs makes a valid request the enhancer reads as meant."""
    from app.create_tab import build_request, plan_text
    from app.edit_tab import EXAMPLES as EDITS
    from app.edit_tab import example_video
    from app.storyboard_tab import SHOT_EXAMPLES, add_shot

    ctx = studio_ctx
    user = ctx.user(CREATOR)
    video = example_video(ctx)
    want = {"snow": "weather", "rain": "weather", "sunset": "weather", "pixel": "stylize", "Remove": "edit_remove",
            "fire": "effects"}
    for text in EDITS:
        prompt = text if "@Video" in text else f"In @Video, {text[0].lower() + text[1:]}"
        d = build_request(ctx, user, prompt, [], [], video, 16, 2, 3.0, 0)
        task = plan_text(ctx, d).split("**Task:** ")[1].split("\n")[0].replace(" ", "_")
        assert task == next(v for k, v in want.items() if k in text), (text, task)
    for text in SHOT_EXAMPLES:
        assert add_shot(ctx, CREATOR, text, 2.0).startswith("Added shot")


def test_a_comic_grid_becomes_a_storyboard_shot(studio_ctx, tmp_path):
    """Storyboard -> Grid to one continuous shot: from the page's upload (a file path) or from pixels."""
    from PIL import Image

    from app.storyboard_tab import grid_shot

    ctx = studio_ctx
    grid = np.zeros((64, 64, 3), np.uint8)
    grid[:32, :32], grid[32:, 32:] = (200, 40, 40), (40, 40, 200)
    Image.fromarray(grid).save(tmp_path / "grid.png")
    assert "Added shot 1" in grid_shot(ctx, CREATOR, str(tmp_path / "grid.png"), 2, 2)
    assert "Added shot 2" in grid_shot(ctx, CREATOR, grid, 2, 2)
    sb = ctx.studio.storyboards.list(ctx.user(CREATOR), ctx.project(ctx.user(CREATOR)))[0]
    boards = [sh.request["storyboard"] for sh in sorted(sb.shots, key=lambda x: x.position)]
    assert boards[0]["grid"] == boards[1]["grid"] and boards[0]["rows"] == 2  # the same pixels, one asset
    assert np.array_equal(ctx.studio.media.load_image(boards[0]["grid"]), grid)
    (tmp_path / "bad.png").write_bytes(b"not an image at all")
    with pytest.raises(UIError, match="bad.png"):
        grid_shot(ctx, CREATOR, str(tmp_path / "bad.png"), 2, 2)
    with pytest.raises(UIError, match="upload a comic"):
        grid_shot(ctx, CREATOR, None, 2, 2)


@_screens_on_failure
def test_a_reloaded_page_follows_its_running_generation_again(app, chromium):
    """Generations still queued or running when a page is reloaded (or the app restarted): after the sign-in
    the Create tab follows the newest one again with its progress bar and plays the clip when it is done."""
    from model.mvl import MVLRequest

    page = _page(chromium, app, "cleo")  # makes cleo's project
    page.close()
    st = Studio.open(app["home"])
    cleo = st.users.get("cleo")
    pid = next(p.id for p in st.projects.list(cleo) if p.owner_id == cleo.id)
    # enough queued work that the newest is still waiting when the page has signed in: one 150-step job on
    # the tiny model takes 0.4 s on a quiet machine (three were all done before the sign-in: a flaky test)
    jobs = [st.jobs.submit(cleo, "generate", MVLRequest(f"A red circle moves left, take {k}.", steps=150).to_dict(),
                           seed=k, project_id=pid) for k in range(30)]
    page = _page(chromium, app, "cleo")
    _tab(page, "Create")
    page.locator("#create-status").get_by_text("following it again").wait_for(timeout=30_000)
    page.locator("#create-status").get_by_text("followed again").wait_for(timeout=GEN_WAIT * 2)
    page.wait_for_function(VIDEO_PLAYS, arg="#create-result video", timeout=30_000)
    followed = int(page.locator("#create-status").inner_text().split("job ")[1].split(",")[0])
    assert followed in {j.id for j in jobs}
    assert st.jobs.get(followed).status == "succeeded"
    page.close()


def test_pages_sample_with_the_active_versions_own_step_count(studio_ctx):
    """A distilled student (default_steps = K in its pipeline config) is sampled in K steps from the pages."""
    import json

    from app.edit_tab import edit, example_video
    from app.storyboard_tab import add_shot

    ctx = studio_ctx
    assert ctx.default_steps() == 10
    index = Path(ctx.studio.registry.active().path) / "model_index.json"
    raw = json.loads(index.read_text())
    raw["config"]["default_steps"] = 4
    index.write_text(json.dumps(raw))
    assert ctx.default_steps() == 4
    edit(ctx, CREATOR, example_video(ctx), "Make it snow in @Video.", "weather", None)
    assert ctx.studio.jobs.list(limit=1)[0].request["steps"] == 4
    add_shot(ctx, CREATOR, "A red circle moves left on a meadow.", 2.0)
    sb = ctx.studio.storyboards.list(ctx.user(CREATOR), ctx.project(ctx.user(CREATOR)))[0]
    assert sb.shots[0].request["steps"] == 4
