"""The Create tab: an MVL prompt with reference images (shown as thumbnails), subjects (from the
project's library or the world's characters: naming one as `@Name` is enough), a context video;
Enhance shows what the prompt enhancer made of it (words mapped, words it does not know);
Generate runs a job with a progress bar, Stop cancels it; the clip comes with the plan; past
clips are a gallery (play, download under a readable name, use their settings again).

Errors show once, in the status line beside the buttons, and leave the rest of the tab as it was."""

from __future__ import annotations

import html
import os
import random
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import gradio as gr
import numpy as np

from model.mvl import MVLRequest, MVLValidationError
from studio_backend.characters import builtin_names, describe, prompt_subjects
from studio_backend.media import MediaError
from studio_backend.services import ServiceError

from .context import AppContext, UIError, refused

# Prompts that run as they are with the shipped model (tests/test_ui_flows.py runs each one).
EXAMPLES = [
    "A red circle moves left on a meadow.",
    "A crimson ball hops on the grass.",
    "@Tigo runs left on the beach.",
    "A striped blue square moves right in the desert.",
    "@Blip jumps up and down at night.",
    "A checkered yellow triangle moves in a circle in the sky.",
]
PLACEHOLDER = ("Describe the clip: A crimson ball hops on the grass. Name a character (@Tigo runs left on the "
               "beach) or a reference you uploaded (@Image_1 moves left on a meadow).")
MAX_SEED = 2**31 - 1
# gradio 6 stretches a gallery's few items across its width (--grid-cols = number of items): these classes keep
# thumbnails small, whatever their count (a <style> in a gr.HTML applies to the whole page)
GALLERY_CSS = ("<style>.omni-strip .grid-container { --grid-cols: 8 !important; --object-fit: contain !important; }"
               " .omni-grid .grid-container { --grid-cols: 6 !important; }</style>")
LOADING = "⏳ Loading the model (the first generation after start-up takes a few seconds longer)…"


@dataclass
class CreateTab:
    prompt: gr.Textbox
    images: gr.File
    subjects: gr.CheckboxGroup
    video: gr.Video
    frames: gr.Slider
    steps: gr.Slider
    guidance: gr.Slider
    seed: gr.Number
    refs: gr.Markdown
    enhance: gr.Button
    generate: gr.Button
    plan: gr.Markdown
    result: gr.Video
    history: gr.Dataframe
    stop: gr.Button = None
    dice: gr.Button = None
    status: gr.Markdown = None
    thumbs: gr.Gallery = None
    gallery: gr.Gallery = None
    reuse: gr.Button = None
    picked: gr.State = None
    gallery_jobs: gr.State = None
    api_generate: gr.Button = None  # hidden: the /generate and /enhance API endpoints of before (raise on errors)
    api_enhance: gr.Button = None
    picked_md: gr.Markdown = None
    plan_img: gr.Image = None  # the layout plan as a picture (set after construction)
    upscale: gr.Checkbox = None  # Upscale 4x: the SR stage after the generator


# ---------------------------------------------------------------- plain handlers
def build_request(ctx: AppContext, user, prompt: str, image_files, subject_names, video_file, frames, steps,
                  guidance, seed, upscale: bool = False, task: str | None = None, annotations: dict | None = None,
                  image_assets: list[str] | None = None) -> dict:
    """Uploads go to the media store; the request refers to them by asset id. Subjects are the ticked
    ones plus every `@Name` in the prompt (library first, then the world's characters).
    `image_assets` (asset ids) come first among the images: @Image_1 is a sketch's frame. `upscale`: the
    model's super-resolution stage runs after the generator (Upscale 4x), where the active model has one.
    Raises UIError on bad input, naming the problem."""
    try:
        images = list(image_assets or [])
        images += [ctx.upload_image(f if isinstance(f, str) else getattr(f, "name", None)) for f in (image_files or [])]
        pid = ctx.project(user)
        subjects = prompt_subjects(ctx.studio, user, pid, prompt or "", list(subject_names or []))
        req = MVLRequest(prompt=prompt or "", images=images, subjects=subjects, task=task,
                         video=ctx.upload_video(video_file) if video_file else None,
                         frames=int(frames), steps=int(steps), guidance=float(guidance), seed=int(seed or 0),
                         upscale=bool(upscale))
        d = req.to_dict()
        if annotations:
            d["annotations"] = annotations
        MVLRequest.from_dict(d).validate()
        return MVLRequest.from_dict(d).to_dict()  # plain JSON numbers throughout (the queue stores it)
    except (MediaError, ServiceError, MVLValidationError) as e:
        raise UIError(str(e)) from e


def enhance(ctx: AppContext, user_state, prompt, image_files, subject_names, video_file, frames, steps, guidance,
            seed, upscale: bool = False) -> str:
    user = ctx.user(user_state)
    d = build_request(ctx, user, prompt, image_files, subject_names, video_file, frames, steps, guidance, seed,
                      upscale)
    return plan_text(ctx, d)


_FUNCTION_WORDS = set("""a an the and or but of in on at by to into onto from with without while then than as is are
be it its it's this that these those there here over under near next after before around across through along
away toward towards up down left right very slowly quickly fast slow some one two three same other each both
while keeps keep stays stay moves move goes go runs run walks walk jumps jump hops hop who which what where when
let lets make makes made use uses using looks look like seen frame clip video shot scene subject subjects
again still""".split())


def _known_words(enhancer) -> set[str]:
    """The words the active model's vocabulary gives a meaning to: attribute names, synonyms, and the words of
    motion and place phrases ('moves', 'diagonally', 'front', 'wall'); not the words inside style or world
    knowledge phrases ('white' of 'black and white' is no colour)."""
    v = getattr(enhancer, "vocab", None)
    words: set[str] = set(getattr(enhancer, "synonyms", {}) or {})
    if v is not None:
        words.update(v.colors, v.shapes, v.patterns, v.materials, v.motions, v.backgrounds, v.weather, v.styles,
                     v.effects)
        for phrase in list(v.motions.values()) + list(v.backgrounds.values()) + list(v.effects.values()):
            words.update(re.findall(r"[a-z]+", str(phrase).lower()))
    return {w.lower() for w in words}


def unknown_words(enhancer, prompt: str, resolved: dict) -> list[str]:
    """Words of the prompt the model has no meaning for (they are ignored), besides function words."""
    known = _known_words(enhancer)
    if not known:
        return []
    mapped = {w.lower() for w in resolved}
    text = re.sub(r"@[A-Za-z][A-Za-z0-9_]*", " ", prompt or "")
    out = []
    for w in re.findall(r"[A-Za-z]+", text):
        lw = w.lower()
        stem = lw[:-1] if lw.endswith("s") else lw
        if lw in known or stem in known or lw in mapped or lw in _FUNCTION_WORDS or len(lw) < 3 or lw in out:
            continue
        out.append(lw)
    return out


def plan_picture(ctx: AppContext, request: dict):
    """The enhancer's layout plan as a picture (model/layout.draw_layout): each subject's box where it starts
    (solid) and ends (dashed) and its track, over the picture the plan was read from: the first reference
    image, a storyboard's first panel, or the context video's frame the clip starts from (its last frame for
    the next shot); None when the request has no planned layout."""
    from model.conditioning import storyboard_panels
    from model.layout import draw_layout

    req = ctx.studio.media.resolve(MVLRequest.from_dict(request))
    e = ctx.active_enhancer().enhance(req)
    if getattr(e, "layout", None) is None or e.layout.is_empty():
        return None
    frame = None
    if req.images and any(s.source == "image" for s in e.layout.subjects) and e.task != "storyboard":
        frame = req.images[0]
    elif e.task == "storyboard":
        frame = next(iter(storyboard_panels(req)), None)
    elif isinstance(req.video, np.ndarray) and req.video.ndim == 4 and len(req.video):
        frame = req.video[-1 if e.task == "next_shot" else 0]
    return draw_layout(e.layout, background=frame, size=256)


def md_text(s: str) -> str:
    """A person's words (or what the enhancer made of them) shown literally in Markdown: no HTML tag or Markdown
    mark in a prompt ('<<image_9>>', '*', '_') hides or restyles the rest of the line."""
    return re.sub(r"([\\`*_\[\]#|~])", r"\\\1", html.escape(str(s), quote=False))


def plan_text(ctx: AppContext, request: dict) -> str:
    """What the active version's prompt enhancer makes of a request: the task, the generator's prompt, the
    plan, and a note on the words it mapped and the words it does not know."""
    enhancer = ctx.active_enhancer()
    e = enhancer.enhance(ctx.studio.media.resolve(MVLRequest.from_dict(request)))  # the plan reads the pixels
    mapped = [f"'{md_text(k)}' → '{md_text(v)}'" for k, v in e.resolved.items() if not k.startswith("@")]
    ignored = unknown_words(enhancer, request.get("prompt", ""), e.resolved)
    lines = [f"**Task:** {e.task.replace('_', ' ')}", f"**Generator prompt:** {md_text(e.prompt)}"]
    notes = []
    if mapped:
        notes.append("**Mapped:** " + ", ".join(mapped))
    if ignored:
        notes.append("**Not in the model's vocabulary (ignored):** " + ", ".join(f"'{md_text(w)}'" for w in ignored)
                     + ". See *What the model understands* below.")
    lines += notes
    lines.append("\n".join(f"- {md_text(line)}" for line in e.plan[2:] if not line.startswith("Understood '")))
    return "\n\n".join(lines)


def submit(ctx: AppContext, user_state, request: dict, seed: int):
    user = ctx.user(user_state)
    try:
        return ctx.studio.jobs.submit(user, "generate", request, seed=int(seed or 0), project_id=ctx.project(user))
    except ServiceError as e:
        raise UIError(str(e)) from e


def finished(ctx: AppContext, job) -> str:
    """A served link to the clip of a finished job, or UIError saying how it ended."""
    if job.status == "canceled":
        raise UIError(f"Stopped: job {job.id} was canceled.")
    if job.status != "succeeded":
        raise UIError(f"job {job.id} {job.status}: {job.message.splitlines()[0] if job.message else ''}")
    return ctx.video_path(job.result_asset_id)


def generate(ctx: AppContext, user_state, request: dict, seed: int, progress=None, job=None) -> tuple[str, list]:
    """Submit (unless `job` was submitted already), wait with the page's progress bar, return the clip."""
    job = job or submit(ctx, user_state, request, seed)
    done = ctx.wait(job, progress)
    finished(ctx, done)
    _after_generation(ctx, user_state, done)
    return readable_clip(ctx, done.result_asset_id, request.get("prompt", ""), done.seed), history(ctx, user_state)


def _after_generation(ctx: AppContext, user_state, job) -> None:
    """Where the admin turned it on: a second seed renders in the background and the two become an arena pair."""
    import logging

    try:
        from studio_backend.rounds import pair_creator_generation

        pair_creator_generation(ctx.studio, ctx.user(user_state), job)
    except Exception:  # a side job: the person's clip is shown whatever happens to its twin
        logging.getLogger("omni.studio").exception("pairing job %s for the arena failed", job.id)


def running_generation(ctx: AppContext, user_state):
    """The newest of this person's generations in this project still queued or running, or None."""
    try:
        user = ctx.maybe_user(user_state)
    except UIError:
        return None
    if user is None or user.role == "annotator":
        return None
    jobs = ctx.studio.jobs.list(project_id=ctx.project(user), limit=20, user=user)
    return next((j for j in jobs if j.kind == "generate" and j.user_id == user.id
                 and j.status in ("queued", "running")), None)


def reattach(ctx: AppContext, user_state, progress=None):
    """After a reload or a restart: the page follows the person's running generation again, with its
    progress bar, and shows the clip when it is done. Yields (result, status, history); nothing when idle."""
    job = running_generation(ctx, user_state)
    if job is None:
        yield gr.update(), gr.update(), gr.update()
        return
    yield gr.update(), f"⏳ Job {job.id} was still generating when the page was left: following it again…", \
        gr.update()
    try:
        done = ctx.wait(job, progress)
        clip = finished(ctx, done)
    except UIError as e:
        yield gr.update(), _error(str(e)), history(ctx, user_state)
        return
    yield readable_clip(ctx, done.result_asset_id, done.request.get("prompt", ""), done.seed), \
        f"Done: job {done.id}, seed {done.seed} (followed again after the page was reloaded).", history(ctx, user_state)


def stop(ctx: AppContext, user_state) -> str:
    """Cancel this person's queued and running generations."""
    user = ctx.user(user_state)
    live = [j for j in ctx.studio.jobs.list(project_id=ctx.project(user), limit=100)
            if j.kind == "generate" and j.status in ("queued", "running")]
    if not live:
        return "Nothing is generating."
    for j in live:
        ctx.studio.jobs.cancel(user, j.id)
    return f"Stopping job{'s' if len(live) > 1 else ''} {', '.join(str(j.id) for j in live)}…"


def random_seed() -> int:
    return random.randint(0, MAX_SEED)


def slug(text: str, words: int = 6) -> str:
    w = re.findall(r"[A-Za-z0-9]+", text or "")[:words]
    return "-".join(x.lower() for x in w)[:60] or "clip"


def readable_clip(ctx: AppContext, asset_id: str | None, prompt: str, seed: int) -> str | None:
    """A creator's own clip under a name a person can read when they download it (prompt words + seed),
    handed to gradio's file cache from the system temp folder (the media store keeps its own names)."""
    if not asset_id:
        return None
    src = ctx.studio.media.path_of(asset_id, "mp4")
    out = Path(tempfile.gettempdir()) / "omni-studio-clips" / asset_id[:24] / f"{slug(prompt)}-seed{seed}.mp4"
    if not out.is_file():
        out.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(src, out)
        except OSError:
            shutil.copyfile(src, out)
    return str(out)


def history(ctx: AppContext, user_state) -> list[list]:
    user = ctx.user(user_state)
    if user.role == "annotator":
        return []
    rows = []
    for j in ctx.studio.jobs.list(project_id=ctx.project(user), limit=30):
        rows.append([j.id, j.status, round(100 * j.progress), j.request.get("prompt", "")[:80], j.seed,
                     j.model_version_id or "", j.created_at.strftime("%H:%M:%S")])
    return rows


def history_gallery(ctx: AppContext, user_state, limit: int = 24) -> tuple[list, list[int]]:
    """Past clips of this person's project: (video, caption) with prompt, seed and version, newest first,
    and the job id of each item (for 'use these settings again')."""
    user = ctx.user(user_state)
    if user.role == "annotator":
        return [], []
    names = {v.id: v.name for v in ctx.studio.registry.list()}
    items, ids = [], []
    for j in ctx.studio.jobs.list(project_id=ctx.project(user), limit=200):
        if j.kind != "generate" or j.status != "succeeded" or not j.result_asset_id:
            continue
        try:
            path = readable_clip(ctx, j.result_asset_id, j.request.get("prompt", ""), j.seed)
        except (MediaError, OSError):
            continue
        prompt = j.request.get("prompt", "")
        items.append((path, f"{prompt[:60]}{'…' if len(prompt) > 60 else ''} · seed {j.seed} · "
                            f"{names.get(j.model_version_id, 'version ?')}"))
        ids.append(j.id)
        if len(items) >= limit:
            break
    return items, ids


def settings_of(ctx: AppContext, user_state, job_id: int | None) -> dict:
    """The settings a past clip was made with, to put back into the form."""
    if job_id is None:
        raise UIError("pick a clip in the history first")
    user = ctx.user(user_state)
    try:
        j = ctx.studio.jobs.get(int(job_id))
    except ServiceError as e:
        raise UIError(str(e)) from e
    if j.project_id != ctx.project(user):
        raise UIError(f"job {job_id} is not in your project")
    r = j.request
    images = [ctx.image_path(x) for x in r.get("images", []) if isinstance(x, str) and not x.startswith("data:")]
    library = set(subject_choices(ctx, user_state))  # ticks only for subjects still in the library
    video = r.get("video")
    return {"prompt": r.get("prompt", ""), "images": images or None, "frames": r.get("frames", 16),
            "steps": r.get("steps", 10), "guidance": r.get("guidance", 3.0), "seed": j.seed,
            "subjects": [n for n in (r.get("subjects") or {}) if n in library],
            "video": ctx.video_path(video) if isinstance(video, str) and not video.startswith("data:") else None,
            "upscale": bool(r.get("upscale", False))}


def references_text(ctx: AppContext, user_state, image_files, subject_names, video_file, prompt: str = "") -> str:
    parts = [f"`@Image_{k}`" for k in range(1, len(image_files or []) + 1)]
    parts += [f"`@{n}`" for n in (subject_names or [])]
    if video_file:
        parts.append("`@Video`")
    return ("**References you can use:** " + (", ".join(parts) if parts else "none uploaded yet")
            + " — and any library subject or world character by name, e.g. `@Tigo`.")


def thumbnails(image_files) -> list:
    """The uploaded reference images as (path, '@Image_k') for a thumbnail strip."""
    out = []
    for k, f in enumerate(image_files or [], 1):
        p = f if isinstance(f, str) else getattr(f, "name", None)
        if p:
            out.append((p, f"@Image_{k}"))
    return out


def subject_choices(ctx: AppContext, user_state) -> list[str]:
    user = ctx.user(user_state)
    if user.role == "annotator":
        return []
    return [s.name for s in ctx.studio.subjects.list(user, ctx.project(user))]


def vocabulary_help() -> str:
    """What the embedded model understands, in words a person can put in a prompt."""
    from training.world import vocab as V

    chars = ", ".join(f"`@{n}` ({describe(n)})" for n in builtin_names())
    motions = ", ".join(f"*{w}*" for w in V.MOTION_WORDS.values())
    places = ", ".join(f"*{w}*" for w in V.BACKGROUND_WORDS.values() if "green screen" not in w)
    return "\n\n".join([
        "The embedded model knows a small world (OmniWorld): one to three subjects on a background. "
        "Words outside it are ignored (Enhance shows which); near words are mapped (*crimson* → red, *ball* → circle, "
        "*beach* → ocean).",
        f"**Colours:** {', '.join(V.COLORS)} (no white or black). **Shapes:** {', '.join(V.SHAPES)}. "
        f"**Patterns:** {', '.join(V.PATTERNS)}.",
        f"**Motions:** {motions}.", f"**Places:** {places}.",
        f"**Camera:** {', '.join(w for w in V.CAMERA_WORDS.values() if w)}.",
        f"**Characters** (no upload needed, name them): {chars}.",
        "**References:** `@Image_1` ... the images you upload, `@Name` a subject of your library (Subjects tab), "
        "`@Video` the context video. **Edits** (Edit tab): weather (" + ", ".join(V.WEATHER) + "), styles ("
        + ", ".join(V.STYLES) + "), materials (" + ", ".join(V.MATERIALS) + "), effects (" + ", ".join(V.EFFECTS)
        + "), add / remove / replace a subject, a new background.",
        "Clips are 16 frames of 32x32 pixels at 8 fps: the model draws coloured shapes, not photographs.",
    ])


# ---------------------------------------------------------------- layout
def build_create_tab() -> CreateTab:
    with gr.Row():
        with gr.Column(scale=3):
            gr.HTML(GALLERY_CSS, padding=False)
            prompt = gr.Textbox(label="MVL prompt", lines=3, elem_id="create-prompt", placeholder=PLACEHOLDER)
            gr.Examples(EXAMPLES, inputs=[prompt], label="Examples (click one)", examples_per_page=len(EXAMPLES))
            refs = gr.Markdown(elem_id="create-refs")
            with gr.Row():
                with gr.Column():
                    images = gr.File(label="Reference images (@Image_1, @Image_2, ...)", file_count="multiple",
                                     file_types=["image"], type="filepath", elem_id="create-images")
                    thumbs = gr.Gallery(label="Your references", columns=8, height=120, allow_preview=False, object_fit="contain",
                                        elem_id="create-thumbs", visible=False, elem_classes=["omni-strip"])
                video = gr.Video(label="Context video (@Video), optional", sources=["upload"])
            subjects = gr.CheckboxGroup(label="Subjects from your library (ticking is optional: a subject named "
                                              "in the prompt as @Name is used)", choices=[])
            with gr.Row():
                frames = gr.Slider(1, 16, value=16, step=1, label="Frames")
                steps = gr.Slider(1, 150, value=10, step=1, label="Steps")
                guidance = gr.Slider(1.0, 8.0, value=3.0, step=0.5, label="Guidance")
                seed = gr.Number(value=0, precision=0, minimum=0, maximum=MAX_SEED, label="Seed", elem_id="create-seed")
                dice = gr.Button("Random seed", scale=0, elem_id="create-random-seed")
            upscale = upscale_checkbox("create-upscale")
            with gr.Row():
                enhance_btn = gr.Button("Enhance", elem_id="create-enhance")
                generate_btn = gr.Button("Generate", variant="primary", elem_id="create-generate")
                stop_btn = gr.Button("Stop", variant="stop", elem_id="create-stop")
            status = gr.Markdown(elem_id="create-status")
            with gr.Accordion("What the model understands", open=False, elem_id="create-vocabulary"):
                gr.Markdown(vocabulary_help())
        with gr.Column(scale=2):
            plan = gr.Markdown("The prompt enhancer's plan appears here (press Enhance to see it before generating).",
                               elem_id="create-plan")
            plan_img = gr.Image(label="The plan: where each subject starts (solid box), ends (dashed) and its track",
                                interactive=False, height=220, visible=True, elem_id="create-plan-picture")
            result = gr.Video(label="Result", autoplay=True, loop=True, interactive=False, elem_id="create-result")
    gallery = gr.Gallery(label="History: your clips (click one to play or download it)", columns=6, height=240,
                         allow_preview=True, elem_id="create-gallery", buttons=["download", "fullscreen"],
                         elem_classes=["omni-grid"])
    with gr.Row():
        reuse = gr.Button("Use these settings again", elem_id="create-reuse")
        picked_md = gr.Markdown(elem_id="create-picked")
    with gr.Accordion("Jobs of this project", open=False):
        history_df = gr.Dataframe(headers=["job", "status", "%", "prompt", "seed", "model", "time"], label="History",
                                  interactive=False, elem_id="create-history")
    api_generate, api_enhance = gr.Button(visible=False), gr.Button(visible=False)
    tab = CreateTab(prompt, images, subjects, video, frames, steps, guidance, seed, refs, enhance_btn, generate_btn,
                    plan, result, history_df, stop_btn, dice, status, thumbs, gallery, reuse, gr.State(None),
                    gr.State([]), api_generate, api_enhance, picked_md)
    tab.plan_img = plan_img
    tab.upscale = upscale
    return tab


def upscale_checkbox(elem_id: str) -> gr.Checkbox:
    """The Upscale 4x choice (Create, Edit, Storyboard): the model's super-resolution stage after the generator."""
    return gr.Checkbox(value=False, label="Upscale 4x (128x128: the super-resolution stage after the generator; "
                                          "about twice the time)", elem_id=elem_id)


def _error(message: str) -> str:
    """A message in the error style; its text (which may hold a file name or a prompt) shown as typed."""
    return f"<span class='omni-error'>⚠ {html.escape(str(message), quote=False)}</span>"


def wire_create_tab(tab: CreateTab, ctx: AppContext, user_state: gr.State) -> None:
    def safe(fn):
        def run(*a, **k):
            try:
                return fn(*a, **k)
            except UIError as e:
                raise refused(str(e))
        return run

    inputs = [user_state, tab.prompt, tab.images, tab.subjects, tab.video, tab.frames, tab.steps, tab.guidance, tab.seed]
    page_inputs = inputs + [tab.upscale]  # the page's buttons; the /generate and /enhance API of before keep theirs
    loaded: set[str] = set()
    keep = gr.update()

    def on_generate(us, prompt, images, subjects, video, frames, steps, guidance, seed, upscale=False,
                    progress=gr.Progress()):
        """Yields (result, history, plan, status, gallery, gallery job ids); on an error only the status changes."""
        try:
            with ctx.studio.media.staged():  # a request refused here or at submit leaves no uploads behind
                d = build_request(ctx, ctx.user(us), prompt, images, subjects, video, frames, steps, guidance, seed,
                                  upscale)
                job = submit(ctx, us, d, seed)
            v = ctx.studio.registry.active()
            if v is not None and v.path not in loaded:
                yield keep, keep, keep, LOADING, keep, keep
            plan = plan_text(ctx, d)  # the clip comes with what the studio understood of the prompt
            if v is not None:
                loaded.add(v.path)
            yield keep, keep, plan, "⏳ Generating… (Stop cancels it)", keep, keep
            clip, rows = generate(ctx, us, d, seed, progress, job=job)
        except UIError as e:
            yield keep, keep, keep, _error(str(e)), keep, keep
            return
        items, ids = history_gallery(ctx, us)
        size = " 128x128 (upscaled 4x)" if upscale else ""
        yield clip, rows, plan, f"Done: seed {int(seed or 0)}{size}.", items, ids

    def on_enhance(*a):
        try:
            text = enhance(ctx, *a)
            user = ctx.user(a[0])
            return text, "", plan_picture(ctx, build_request(ctx, user, *a[1:]))
        except UIError as e:
            return keep, _error(str(e)), keep

    tab.enhance.click(on_enhance, page_inputs, [tab.plan, tab.status, tab.plan_img], api_name="create_enhance")
    tab.api_enhance.click(safe(lambda *a: enhance(ctx, *a)), inputs, tab.plan, api_name="enhance")
    gen_outs = [tab.result, tab.history, tab.plan, tab.status, tab.gallery, tab.gallery_jobs]
    tab.generate.click(on_generate, page_inputs, gen_outs, api_name="create_generate")

    @safe
    def api_generate(us, prompt, images, subjects, video, frames, steps, guidance, seed, progress=gr.Progress()):
        with ctx.studio.media.staged():
            d = build_request(ctx, ctx.user(us), prompt, images, subjects, video, frames, steps, guidance, seed)
            job = submit(ctx, us, d, seed)
        plan = plan_text(ctx, d)
        return (*generate(ctx, us, d, seed, progress, job=job), plan)

    tab.api_generate.click(api_generate, inputs, [tab.result, tab.history, tab.plan], api_name="generate")
    tab.stop.click(lambda us: stop(ctx, us), [user_state], tab.status, api_name="create_stop",
                   concurrency_id="create-stop", concurrency_limit=None)
    tab.dice.click(random_seed, None, tab.seed, api_name=False)

    def on_refs(us, i, s, v):
        try:
            # a file the studio will refuse gets no (broken) thumbnail, and the reason shows at once
            th, refused = [], []
            for thumb in thumbnails(i):
                why = ctx.image_refusal(thumb[0])
                if why:
                    refused.append(why)
                else:
                    th.append(thumb)
            text = references_text(ctx, us, i, s, v)
            if refused:
                text = _error("; ".join(refused) + ": remove it from the list (its @Image number stays taken)") \
                    + "\n\n" + text
            return text, gr.update(value=th, visible=bool(th))
        except UIError as e:
            return _error(str(e)), keep

    for comp in (tab.images, tab.subjects, tab.video):
        comp.change(on_refs, [user_state, tab.images, tab.subjects, tab.video], [tab.refs, tab.thumbs])

    # the history table is refreshed at sign-in and after each clip; the gallery follows it
    def on_history(us):
        try:
            return history_gallery(ctx, us)
        except UIError:
            return [], []

    tab.history.change(on_history, [user_state], [tab.gallery, tab.gallery_jobs])

    def on_select(ids, evt: gr.SelectData):
        k = evt.index if isinstance(evt.index, int) else (evt.index or [0])[0]
        jid = ids[k] if ids and 0 <= k < len(ids) else None
        return jid, (f"Picked job {jid}: press *Use these settings again* to put its prompt, images and seed "
                     "back in the form." if jid else "")

    tab.gallery.select(on_select, [tab.gallery_jobs], [tab.picked, tab.picked_md])

    def on_reuse(us, jid):
        try:
            s = settings_of(ctx, us, jid)
        except UIError as e:
            return keep, keep, keep, keep, keep, keep, keep, keep, keep, _error(str(e))
        return s["prompt"], s["images"], s["frames"], s["steps"], s["guidance"], s["seed"], s["subjects"], \
            s["video"], s["upscale"], f"Settings of job {jid} are back in the form."

    tab.reuse.click(on_reuse, [user_state, tab.picked],
                    [tab.prompt, tab.images, tab.frames, tab.steps, tab.guidance, tab.seed, tab.subjects, tab.video,
                     tab.upscale, tab.status])
