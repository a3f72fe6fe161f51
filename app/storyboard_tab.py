"""The Storyboard tab: a shot list (add with its own reference images and library subjects,
reorder, delete), takes per shot with one chosen, the next / previous shot from a neighbour,
a comic grid to one shot, assemble and download."""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

from model.mvl import MVLRequest, MVLValidationError
from studio_backend.services import ServiceError

from .context import AppContext, UIError
from .create_tab import build_request, subject_choices


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
    d = request or build_request(ctx, user, prompt, image_files or [], subject_names or [], None, 16, 10, 3.0, 0)
    try:
        sh = ctx.studio.storyboards.add_shot(user, _board(ctx, user).id, d, float(duration))
    except ServiceError as e:
        raise UIError(str(e)) from e
    return f"Added shot {sh.position + 1} (id {sh.id})."


def generate_take(ctx: AppContext, user_state, shot_id, progress=None) -> str:
    user = ctx.user(user_state)
    sb = _board(ctx, user)
    sh = next((x for x in sb.shots if x.id == int(shot_id or 0)), None)
    if sh is None:
        raise UIError(f"no shot {shot_id} in this storyboard")
    seed = len(sh.takes)
    job = ctx.studio.jobs.submit(user, "generate", sh.request, seed=seed, project_id=sb.project_id)
    take = ctx.studio.storyboards.add_take(user, sh.id, job.id)
    done = ctx.wait(job, progress)
    if done.status != "succeeded":
        raise UIError(f"take {take} {done.status}: {done.message.splitlines()[0] if done.message else ''}")
    return f"Take {take} of shot {sh.position + 1} is ready (seed {seed})."


def generate_all(ctx: AppContext, user_state, progress=None) -> str:
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
        job = ctx.studio.jobs.submit(user, "generate", sh.request, seed=0, project_id=sb.project_id)
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
    info = ctx.studio.media.put_image_array(grid[..., :3], "grid.png")
    try:
        d = ctx.studio.storyboards.grid_request(info, int(rows or 2), int(cols or 2))
        MVLRequest.from_dict(d).validate()
    except (ServiceError, MVLValidationError) as e:
        raise UIError(str(e)) from e
    return add_shot(ctx, user_state, "", 2.0, request=d)


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
    status = gr.Markdown("Shots play in order; `*` marks the chosen take.")
    shots = gr.Dataframe(headers=["#", "shot id", "prompt", "references", "seconds", "takes"], interactive=False)
    with gr.Row():
        prompt = gr.Textbox(label="New shot prompt", scale=3, elem_id="shot-prompt",
                            placeholder="@Blip moves right on a meadow while @Image_1 stays still.")
        duration = gr.Slider(0.5, 8, value=2, step=0.5, label="Seconds")
    with gr.Row():
        images = gr.File(file_count="multiple", file_types=["image"], label="Shot reference images (@Image_1, @Image_2, …)",
                         elem_id="shot-images")
        subjects = gr.Dropdown([], multiselect=True, label="Shot subjects from the library (@Name)", elem_id="shot-subjects")
        add = gr.Button("Add shot")
    with gr.Row():
        shot_id = gr.Number(label="Shot id", precision=0, minimum=0)
        take = gr.Button("Generate a take", variant="primary")
        take_all = gr.Button("Generate all shots without a take", elem_id="storyboard-take-all")
        take_id = gr.Number(label="Take id", precision=0, minimum=0)
        choose = gr.Button("Choose take")
        delete = gr.Button("Delete shot", variant="stop")
    with gr.Row():
        neighbour_prompt = gr.Textbox(label="Neighbour shot: what happens", placeholder="the subject turns around", scale=3)
        next_shot = gr.Button("Next shot from this one")
        prev_shot = gr.Button("Previous shot from this one")
    with gr.Row():
        grid = gr.Image(label="Comic / storyboard grid image", type="numpy")
        with gr.Column():
            rows = gr.Number(value=2, precision=0, minimum=1, maximum=4, label="Rows")
            cols = gr.Number(value=2, precision=0, minimum=1, maximum=4, label="Columns")
            add_grid = gr.Button("Grid to one continuous shot")
    with gr.Row():
        order = gr.Textbox(label="Order (shot ids, comma-separated)")
        reorder_btn = gr.Button("Reorder")
        assemble_btn = gr.Button("Assemble film", variant="primary")
    film = gr.Video(label="Film", interactive=False)
    return StoryboardTab(gr.State(None), status, shots, prompt, duration, images, subjects, add, shot_id, take,
                         take_all, take_id, choose, neighbour_prompt, next_shot, prev_shot, grid, rows, cols, add_grid, order, reorder_btn, delete,
                         assemble_btn, film)


def wire_storyboard_tab(tab: StoryboardTab, ctx: AppContext, user_state: gr.State):
    def act(fn):
        def run(us, *a, **k):
            try:
                msg = fn(ctx, us, *a, **k)
            except UIError as e:
                raise gr.Error(str(e))
            return msg, shot_rows(ctx, us)
        return run

    outs = [tab.status, tab.shots]
    tab.add.click(act(add_shot), [user_state, tab.prompt, tab.duration, tab.images, tab.subjects], outs,
                  api_name="storyboard_add_shot")
    tab.subjects.focus(lambda us: gr.update(choices=subject_choices(ctx, us)), user_state, tab.subjects)

    def take(us, sid, progress=gr.Progress()):
        return act(generate_take)(us, sid, progress=progress)

    tab.take.click(take, [user_state, tab.shot_id], outs, api_name="storyboard_take")

    def take_all(us, progress=gr.Progress()):
        return act(generate_all)(us, progress=progress)

    tab.take_all.click(take_all, [user_state], outs, api_name="storyboard_take_all")

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
    tab.add_grid.click(act(grid_shot), [user_state, tab.grid, tab.rows, tab.cols], outs)
    tab.reorder.click(act(reorder), [user_state, tab.order], outs)

    def on_assemble(us):
        try:
            msg, path = assemble(ctx, us)
        except UIError as e:
            raise gr.Error(str(e))
        return msg, path

    tab.assemble.click(on_assemble, [user_state], [tab.status, tab.film], api_name="storyboard_assemble")
    return lambda us: (shot_rows(ctx, us), gr.update(choices=subject_choices(ctx, us)))
