"""Whole tasks as a person does them, tab by tab (issue 21).

The first tests call the tabs' plain handlers with a tiny random-weight model and a real job worker
(fast, no browser). `test_studio_as_a_person_uses_it` then does the same tasks in Debian Chromium
against a launched `python app.py`: it types, uploads, draws and clicks, checks that videos play,
files download under readable names and errors appear beside the button, and screenshots every tab
into test-artifacts/ (tab_*.png)."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import numpy as np
import pytest

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
