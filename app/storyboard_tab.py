"""The Storyboard tab: a shot list (add with its own reference images and library subjects,
reorder, delete) shown as thumbnails, picked by clicking; takes per shot as playable previews, the
one clicked is chosen; the next / previous shot from a neighbour, a comic grid to one shot,
assemble and download (the film at its natural size)."""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr
import numpy as np

from model.mvl import MVLRequest, MVLValidationError
from studio_backend.services import ServiceError

from .context import AppContext, UIError
from .components import uploaded_image
from .create_tab import GALLERY_CSS, build_request, subject_choices, upscale_checkbox


SHOT_EXAMPLES = ["@Tigo moves right on a meadow.", "@Tigo jumps up and down on a meadow.",
                 "A red circle moves left by the ocean."]


@dataclass
class StoryboardTab:
    board: gr.State
    status: gr.Markdown
    shots: gr.Dataframe
    prompt: gr.Textbox
    duration: gr.Slider
    images: gr.File
    subjects: gr.Dropdown
    add: gr.Button
    shot_id: gr.Number
    take: gr.Button
    take_all: gr.Button
    take_id: gr.Number
    choose: gr.Button
    neighbour_prompt: gr.Textbox
    next_shot: gr.Button
    prev_shot: gr.Button
    grid: gr.Image
    rows: gr.Number
    cols: gr.Number
    add_grid: gr.Button
    order: gr.Textbox
    reorder: gr.Button
    delete: gr.Button
    assemble: gr.Button
    film: gr.Video
    gallery: gr.Gallery = None  # the shots as thumbnails: click one to select it
    takes: gr.Gallery = None  # the selected shot's takes: click one to choose it
    take_ids: gr.State = None
    shot_ids: gr.State = None
    selected: gr.Markdown = None
    earlier: gr.Button = None
    later: gr.Button = None
    upscale: gr.Checkbox = None  # takes rendered with the SR stage (128x128)


def _board(ctx: AppContext, user):
    pid = ctx.project(user)
    boards = ctx.studio.storyboards.list(user, pid)
    return boards[0] if boards else ctx.studio.storyboards.create(user, pid, "Storyboard 1")


def shot_rows(ctx: AppContext, user_state) -> list[list]:
    user = ctx.user(user_state)
    if user.role == "annotator":
        return []
    sb = _board(ctx, user)
    return [[sh.position + 1, sh.id, sh.request.get("prompt", "")[:70], _refs(sh.request), sh.duration,
             ", ".join(f"{t[0]}{'*' if t[0] == sh.chosen_take_id else ''}{'' if t[2] else ' (running)'}" for t in sh.takes)]
            for sh in sorted(sb.shots, key=lambda x: x.position)]


def _thumb(ctx: AppContext, sh) -> str | None:
    """A still for a shot: the first frame of its chosen (or latest finished) take, else its first reference."""
    done = [t for t in sh.takes if t[2]]
    chosen = next((t for t in done if t[0] == sh.chosen_take_id), done[-1] if done else None)
    try:
        if chosen:
            frame = ctx.studio.media.load_video(chosen[2])[0]
            return ctx.image_path(ctx.studio.media.put_image_array(
                np.ascontiguousarray(frame.repeat(4, 0).repeat(4, 1)), "shot.png").id)
        imgs = [x for x in (sh.request.get("images") or []) if isinstance(x, str) and not x.startswith("data:")]
        if imgs:
            return ctx.image_path(imgs[0])
    except Exception:  # a missing asset: the shot still shows, without a picture
        pass
    return None


def shot_gallery(ctx: AppContext, user_state) -> tuple[list, list[int]]:
    """(thumbnail, 'Shot k: prompt') per shot in order, and the shot ids in the same order."""
    user = ctx.user(user_state)
    if user.role == "annotator":
        return [], []
    items, ids = [], []
    blank = None
    for sh in sorted(_board(ctx, user).shots, key=lambda x: x.position):
        img = _thumb(ctx, sh)
        if img is None:
            if blank is None:
                blank = ctx.image_path(ctx.studio.media.put_image_array(np.full((128, 128, 3), 60, np.uint8),
                                                                        "no-take.png").id)
            img = blank
        n = len([t for t in sh.takes if t[2]])
        items.append((img, f"Shot {sh.position + 1}: {sh.request.get('prompt', '')[:50]} · "
                           f"{n} take{'s' if n != 1 else ''}"))
        ids.append(sh.id)
    return items, ids


def take_gallery(ctx: AppContext, user_state, shot_id) -> tuple[list, list[int]]:
    """The shot's finished takes as playable clips, the chosen one marked."""
    user = ctx.user(user_state)
    sh = next((x for x in _board(ctx, user).shots if x.id == int(shot_id or 0)), None)
    if sh is None:
        return [], []
    items, ids = [], []
    for k, (tid, jid, asset) in enumerate(sh.takes, 1):
        if asset:
            items.append((ctx.video_path(asset), f"Take {k}{' ✓ chosen' if tid == sh.chosen_take_id else ''}"))
            ids.append(tid)
    return items, ids


def _refs(request: dict) -> str:
    """What a shot refers to: its images, library subjects, context video and storyboard panels."""
    parts = [f"@Image_{k}" for k in range(1, len(request.get("images") or []) + 1)]
    parts += [f"@{n}" for n in (request.get("subjects") or {})]
    if request.get("video"):
        parts.append("@Video")
    sb = request.get("storyboard") or {}
    if sb.get("grid"):
        parts.append(f"grid {sb.get('rows')}x{sb.get('cols')}")
    return ", ".join(parts)


def add_shot(ctx: AppContext, user_state, prompt: str, duration: float, image_files=None, subject_names=None,
             request: dict | None = None) -> str:
    """A new shot from a prompt with its own references (`@Image_k` for the k-th image, `@Name` for
    a library subject), checked like a Create request before anything is stored."""
    user = ctx.user(user_state)
    d = request or build_request(ctx, user, prompt, image_files or [], subject_names or [], None, 16,
                                      ctx.default_steps(), 3.0, 0)
    try:
        sh = ctx.studio.storyboards.add_shot(user, _board(ctx, user).id, d, float(duration))
    except ServiceError as e:
        raise UIError(str(e)) from e
    return f"Added shot {sh.position + 1} (id {sh.id})."


def _take_request(sh, upscale: bool) -> dict:
    """The shot's request as its take is rendered: with the SR stage when Upscale 4x is ticked."""
    return {**sh.request, "upscale": True} if upscale else dict(sh.request)


def generate_take(ctx: AppContext, user_state, shot_id, progress=None, upscale: bool = False) -> str:
    user = ctx.user(user_state)
    sb = _board(ctx, user)
    if not shot_id:
        raise UIError("select a shot first: click its thumbnail")
    sh = next((x for x in sb.shots if x.id == int(shot_id or 0)), None)
    if sh is None:
        raise UIError(f"no shot {shot_id} in this storyboard")
    seed = len(sh.takes)
    try:
        job = ctx.studio.jobs.submit(user, "generate", _take_request(sh, upscale), seed=seed, project_id=sb.project_id)
    except ServiceError as e:
        raise UIError(str(e)) from e
    take = ctx.studio.storyboards.add_take(user, sh.id, job.id)
    done = ctx.wait(job, progress)
    if done.status != "succeeded":
        raise UIError(f"take {take} {done.status}: {done.message.splitlines()[0] if done.message else ''}")
    return f"Take {take} of shot {sh.position + 1} is ready (seed {seed})."


def generate_all(ctx: AppContext, user_state, progress=None, upscale: bool = False) -> str:
    """A take for every shot that has none yet, in shot order (each one a queued job)."""
    user = ctx.user(user_state)
    sb = _board(ctx, user)
    todo = [sh for sh in sorted(sb.shots, key=lambda x: x.position) if not sh.takes]
    if not sb.shots:
        raise UIError("the storyboard has no shots yet: add one first")
    if not todo:
        return "Every shot has a take already; generate more takes shot by shot."
    failed = []
    for k, sh in enumerate(todo):
        try:
            job = ctx.studio.jobs.submit(user, "generate", _take_request(sh, upscale), seed=0,
                                         project_id=sb.project_id)
        except ServiceError as e:
            raise UIError(str(e)) from e
        ctx.studio.storyboards.add_take(user, sh.id, job.id)

        def part(frac, desc=""):
            if progress is not None:
                progress((k + frac) / len(todo), desc=f"shot {sh.position + 1} ({k + 1}/{len(todo)}): {desc}")

        done = ctx.wait(job, part)
        if done.status != "succeeded":
            failed.append(f"shot {sh.position + 1} {done.status}")
    ok = len(todo) - len(failed)
    return f"Generated {ok} take{'s' if ok != 1 else ''}" + (f"; {', '.join(failed)}." if failed else ".")


def neighbour(ctx: AppContext, user_state, shot_id, prompt: str, direction: str) -> str:
    user = ctx.user(user_state)
    try:
        d = ctx.studio.storyboards.neighbour_request(user, int(shot_id or 0), direction, prompt or "")
    except ServiceError as e:
        raise UIError(str(e)) from e
    return add_shot(ctx, user_state, "", 2.0, request=d)


def grid_shot(ctx: AppContext, user_state, grid, rows, cols) -> str:
    if grid is None:
        raise UIError("upload a comic / storyboard grid image first")
    with ctx.studio.media.staged():  # a refused grid leaves nothing in the media store
        if isinstance(grid, str):  # the page's upload: decoded here, so a bad file gets the studio's own words
            grid_id = ctx.upload_image(grid)
        else:
            grid_id = ctx.studio.media.put_image_array(np.ascontiguousarray(np.asarray(grid)[..., :3]), "grid.png").id
        try:
            d = ctx.studio.storyboards.grid_request(grid_id, int(rows or 2), int(cols or 2))
            MVLRequest.from_dict(d).validate()
        except (ServiceError, MVLValidationError) as e:
            raise UIError(str(e)) from e
        return add_shot(ctx, user_state, "", 2.0, request=d)


def move_shot(ctx: AppContext, user_state, shot_id, delta: int) -> str:
    """Move the selected shot one place earlier (-1) or later (+1) in the film."""
    user = ctx.user(user_state)
    if not shot_id:
        raise UIError("select a shot first: click its thumbnail")
    sb = _board(ctx, user)
    ids = [sh.id for sh in sorted(sb.shots, key=lambda x: x.position)]
    if int(shot_id) not in ids:
        raise UIError(f"no shot {shot_id} in this storyboard")
    k = ids.index(int(shot_id))
    j = min(max(k + delta, 0), len(ids) - 1)
    if j == k:
        return f"Shot {k + 1} is already the {'first' if delta < 0 else 'last'}."
    ids[k], ids[j] = ids[j], ids[k]
    try:
        ctx.studio.storyboards.reorder(user, sb.id, ids)
    except ServiceError as e:
        raise UIError(str(e)) from e
    return f"Moved: it is shot {j + 1} now."


def reorder(ctx: AppContext, user_state, order: str) -> str:
    user = ctx.user(user_state)
    try:
        ids = [int(x) for x in (order or "").replace(" ", "").split(",") if x]
        ctx.studio.storyboards.reorder(user, _board(ctx, user).id, ids)
    except (ValueError, ServiceError) as e:
        raise UIError(f"order: give every shot id once, comma-separated ({e})") from e
    return "Reordered."


def assemble(ctx: AppContext, user_state) -> tuple[str, str]:
    user = ctx.user(user_state)
    try:
        film = ctx.studio.storyboards.assemble(user, _board(ctx, user).id)
    except ServiceError as e:
        raise UIError(str(e)) from e
    return "Film assembled: play it or download it.", ctx.video_path(film.id)


def build_storyboard_tab() -> StoryboardTab:
    status = gr.Markdown("Add shots, click one to select it, generate takes, click the take you want; then assemble.",
                         elem_id="storyboard-status")
    gr.HTML(GALLERY_CSS, padding=False)
    gallery = gr.Gallery(label="Shots (click one to select it)", elem_classes=["omni-grid"], columns=6, height=200, allow_preview=False, object_fit="contain",
                         elem_id="storyboard-shots")
    with gr.Accordion("Shot list as a table", open=False):
        shots = gr.Dataframe(headers=["#", "shot id", "prompt", "references", "seconds", "takes"], interactive=False)
    with gr.Row():
        prompt = gr.Textbox(label="New shot prompt", scale=3, elem_id="shot-prompt",
                            placeholder="@Tigo moves right on a meadow. (@Image_1 for an uploaded image, @Name for a subject)")
        duration = gr.Slider(0.5, 8, value=2, step=0.5, label="Seconds")
    gr.Examples(SHOT_EXAMPLES, inputs=[prompt], label="Examples")
    with gr.Row():
        images = gr.File(file_count="multiple", file_types=["image"], label="Shot reference images (@Image_1, @Image_2, …)",
                         elem_id="shot-images")
        subjects = gr.Dropdown([], multiselect=True, label="Shot subjects from the library (@Name)", elem_id="shot-subjects")
        add = gr.Button("Add shot")
    selected = gr.Markdown("No shot selected: click one above.", elem_id="storyboard-selected")
    with gr.Row():
        shot_id = gr.Number(label="Selected shot id", precision=0, minimum=0, visible=False)
        take = gr.Button("Generate a take of the selected shot", variant="primary", elem_id="storyboard-take")
        take_all = gr.Button("Generate all shots without a take", elem_id="storyboard-take-all")
        upscale = upscale_checkbox("storyboard-upscale")
        take_id = gr.Number(label="Take id", precision=0, minimum=0, visible=False)
        choose = gr.Button("Choose take", visible=False)
        delete = gr.Button("Delete the selected shot", variant="stop")
    takes = gr.Gallery(label="Takes of the selected shot (click one to use it in the film)", elem_classes=["omni-grid"], columns=6, height=220, object_fit="contain",
                       allow_preview=True, elem_id="storyboard-takes")
    with gr.Row():
        neighbour_prompt = gr.Textbox(label="Neighbour shot: what happens", placeholder="the subject turns around", scale=3)
        next_shot = gr.Button("Next shot from this one")
        prev_shot = gr.Button("Previous shot from this one")
    with gr.Row():
        grid = uploaded_image(label="Comic / storyboard grid image")
        with gr.Column():
            rows = gr.Number(value=2, precision=0, minimum=1, maximum=4, label="Rows")
            cols = gr.Number(value=2, precision=0, minimum=1, maximum=4, label="Columns")
            add_grid = gr.Button("Grid to one continuous shot")
    with gr.Row():
        earlier = gr.Button("◀ Move the selected shot earlier", elem_id="storyboard-earlier")
        later = gr.Button("Move it later ▶", elem_id="storyboard-later")
        assemble_btn = gr.Button("Assemble film", variant="primary", elem_id="storyboard-assemble")
    with gr.Accordion("Order by shot ids", open=False):
        with gr.Row():
            order = gr.Textbox(label="Order (shot ids, comma-separated)")
            reorder_btn = gr.Button("Reorder")
    film = gr.Video(label="Film", interactive=False, width=256, height=256, elem_id="storyboard-film")
    return StoryboardTab(gr.State(None), status, shots, prompt, duration, images, subjects, add, shot_id, take,
                         take_all, take_id, choose, neighbour_prompt, next_shot, prev_shot, grid, rows, cols, add_grid, order, reorder_btn, delete,
                         assemble_btn, film, gallery, takes, gr.State([]), gr.State([]), selected, earlier, later,
                         upscale)


def wire_storyboard_tab(tab: StoryboardTab, ctx: AppContext, user_state: gr.State):
    def act(fn):
        """An error goes to the status line; the shots stay as they were."""
        def run(us, *a, **k):
            try:
                msg = fn(ctx, us, *a, **k)
            except (UIError, ServiceError) as e:
                return f"⚠ {e}", gr.update()
            return msg, shot_rows(ctx, us)
        return run

    outs = [tab.status, tab.shots]
    tab.add.click(act(add_shot), [user_state, tab.prompt, tab.duration, tab.images, tab.subjects], outs,
                  api_name="storyboard_add_shot")
    tab.subjects.focus(lambda us: gr.update(choices=subject_choices(ctx, us)), user_state, tab.subjects)

    def take(us, sid, up=False, progress=gr.Progress()):
        return act(generate_take)(us, sid, progress=progress, upscale=bool(up))

    tab.take.click(take, [user_state, tab.shot_id, tab.upscale], outs, api_name="storyboard_take")

    def take_all(us, up=False, progress=gr.Progress()):
        return act(generate_all)(us, progress=progress, upscale=bool(up))

    tab.take_all.click(take_all, [user_state, tab.upscale], outs, api_name="storyboard_take_all")

    def choose(c, us, sid, tid):
        c.studio.storyboards.choose_take(c.user(us), int(sid or 0), int(tid or 0))
        return f"Shot {int(sid or 0)} uses take {int(tid or 0)}."

    def delete(c, us, sid):
        c.studio.storyboards.delete_shot(c.user(us), int(sid or 0))
        return "Deleted."

    def guard(fn):
        def run(c, us, *a):
            try:
                return fn(c, us, *a)
            except ServiceError as e:
                raise UIError(str(e)) from e
        return run

    tab.choose.click(act(guard(choose)), [user_state, tab.shot_id, tab.take_id], outs)
    tab.delete.click(act(guard(delete)), [user_state, tab.shot_id], outs)
    tab.next_shot.click(act(lambda c, us, s, p: neighbour(c, us, s, p, "next")), [user_state, tab.shot_id,
                                                                                 tab.neighbour_prompt], outs)
    tab.prev_shot.click(act(lambda c, us, s, p: neighbour(c, us, s, p, "previous")), [user_state, tab.shot_id,
                                                                                     tab.neighbour_prompt], outs)
    tab.add_grid.click(act(grid_shot), [user_state, tab.grid, tab.rows, tab.cols], outs, api_name="storyboard_add_grid")
    tab.reorder.click(act(reorder), [user_state, tab.order], outs)
    tab.earlier.click(act(lambda c, us, sid: move_shot(c, us, sid, -1)), [user_state, tab.shot_id], outs)
    tab.later.click(act(lambda c, us, sid: move_shot(c, us, sid, +1)), [user_state, tab.shot_id], outs)

    def on_assemble(us):
        try:
            msg, path = assemble(ctx, us)
        except UIError as e:
            return f"⚠ {e}", gr.update()
        return msg, path

    tab.assemble.click(on_assemble, [user_state], [tab.status, tab.film], api_name="storyboard_assemble")

    # the table is refreshed after every action and at sign-in: the thumbnails and takes follow it
    def on_rows(us, sid):
        try:
            items, ids = shot_gallery(ctx, us)
            t_items, t_ids = take_gallery(ctx, us, sid) if sid else ([], [])
        except UIError:
            return [], [], [], []
        return items, ids, t_items, t_ids

    tab.shots.change(on_rows, [user_state, tab.shot_id], [tab.gallery, tab.shot_ids, tab.takes, tab.take_ids])

    def on_pick_shot(us, ids, evt: gr.SelectData):
        k = evt.index if isinstance(evt.index, int) else (evt.index or [0])[0]
        if not ids or not 0 <= k < len(ids):
            return gr.update(), gr.update(), gr.update(), gr.update()
        items, t_ids = take_gallery(ctx, us, ids[k])
        return ids[k], f"**Shot {k + 1}** selected (id {ids[k]}): generate a take, pick one, or make its neighbour.", \
            items, t_ids

    tab.gallery.select(on_pick_shot, [user_state, tab.shot_ids], [tab.shot_id, tab.selected, tab.takes, tab.take_ids])

    def on_pick_take(us, sid, t_ids, evt: gr.SelectData):
        k = evt.index if isinstance(evt.index, int) else (evt.index or [0])[0]
        if not t_ids or not 0 <= k < len(t_ids) or not sid:
            return gr.update(), gr.update()
        try:
            ctx.studio.storyboards.choose_take(ctx.user(us), int(sid), int(t_ids[k]))
        except ServiceError as e:
            return f"⚠ {e}", gr.update()
        return f"Shot {int(sid)} uses take {k + 1} in the film.", shot_rows(ctx, us)

    tab.takes.select(on_pick_take, [user_state, tab.shot_id, tab.take_ids], [tab.status, tab.shots])
    return lambda us: (shot_rows(ctx, us), gr.update(choices=subject_choices(ctx, us)))
