"""The Create tab: an MVL prompt with reference images, library subjects and a context video;
Enhance shows the prompt enhancer's plan; Generate runs a job with a progress bar and shows the plan
beside the clip."""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

from model.mvl import MVLRequest, MVLValidationError
from studio_backend.media import MediaError
from studio_backend.services import ServiceError

from .context import AppContext, UIError


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


def build_request(ctx: AppContext, user, prompt: str, image_files, subject_names, video_file, frames, steps,
                  guidance, seed, task: str | None = None, annotations: dict | None = None) -> dict:
    """Uploads go to the media store; the request refers to them by asset id. Raises UIError on bad input."""
    try:
        images = [ctx.upload_image(f if isinstance(f, str) else getattr(f, "name", None)) for f in (image_files or [])]
        pid = ctx.project(user)
        subjects = ctx.studio.subjects.resolve(user, pid, list(subject_names or []))
        req = MVLRequest(prompt=prompt or "", images=images, subjects=subjects, task=task,
                         video=ctx.upload_video(video_file) if video_file else None,
                         frames=int(frames), steps=int(steps), guidance=float(guidance), seed=int(seed or 0))
        d = req.to_dict()
        if annotations:
            d["annotations"] = annotations
        MVLRequest.from_dict(d).validate()
        return d
    except (MediaError, ServiceError, MVLValidationError) as e:
        raise UIError(str(e)) from e


def enhance(ctx: AppContext, user_state, prompt, image_files, subject_names, video_file, frames, steps, guidance,
            seed) -> str:
    user = ctx.user(user_state)
    d = build_request(ctx, user, prompt, image_files, subject_names, video_file, frames, steps, guidance, seed)
    return plan_text(ctx, d)


def plan_text(ctx: AppContext, request: dict) -> str:
    """What the active version's prompt enhancer makes of a request: the task, the generator's prompt, the plan."""
    e = ctx.active_enhancer().enhance(MVLRequest.from_dict(request))
    return "\n\n".join([f"**Task:** {e.task.replace('_', ' ')}", f"**Generator prompt:** {e.prompt}",
                       "\n".join(f"- {line}" for line in e.plan[2:])])


def generate(ctx: AppContext, user_state, request: dict, seed: int, progress=None) -> tuple[str, list]:
    user = ctx.user(user_state)
    try:
        job = ctx.studio.jobs.submit(user, "generate", request, seed=int(seed or 0), project_id=ctx.project(user))
    except ServiceError as e:
        raise UIError(str(e)) from e
    done = ctx.wait(job, progress)
    if done.status != "succeeded":
        raise UIError(f"job {done.id} {done.status}: {done.message.splitlines()[0] if done.message else ''}")
    return ctx.video_path(done.result_asset_id), history(ctx, user_state)


def history(ctx: AppContext, user_state) -> list[list]:
    user = ctx.user(user_state)
    if user.role == "annotator":
        return []
    rows = []
    for j in ctx.studio.jobs.list(project_id=ctx.project(user), limit=30):
        rows.append([j.id, j.status, round(100 * j.progress), j.request.get("prompt", "")[:80], j.seed,
                     j.model_version_id or "", j.created_at.strftime("%H:%M:%S")])
    return rows


def references_text(ctx: AppContext, user_state, image_files, subject_names, video_file) -> str:
    parts = [f"`@Image_{k}`" for k in range(1, len(image_files or []) + 1)]
    parts += [f"`@{n}`" for n in (subject_names or [])]
    if video_file:
        parts.append("`@Video`")
    return "**References you can use:** " + (", ".join(parts) if parts else "none yet (upload images, pick subjects)")


def subject_choices(ctx: AppContext, user_state) -> list[str]:
    user = ctx.user(user_state)
    if user.role == "annotator":
        return []
    return [s.name for s in ctx.studio.subjects.list(user, ctx.project(user))]


def build_create_tab() -> CreateTab:
    with gr.Row():
        with gr.Column(scale=3):
            prompt = gr.Textbox(label="MVL prompt", lines=3, elem_id="create-prompt",
                                placeholder="@Image_1 moves left on a meadow, @Tigo jumps. Try: A crimson ball hops on the grass.")
            refs = gr.Markdown()
            with gr.Row():
                images = gr.File(label="Reference images (@Image_1, @Image_2, ...)", file_count="multiple",
                                 file_types=["image"], type="filepath")
                video = gr.Video(label="Context video (@Video), optional", sources=["upload"])
            subjects = gr.CheckboxGroup(label="Subjects from your library", choices=[])
            with gr.Row():
                frames = gr.Slider(1, 16, value=16, step=1, label="Frames")
                steps = gr.Slider(1, 150, value=10, step=1, label="Steps")
                guidance = gr.Slider(1.0, 8.0, value=3.0, step=0.5, label="Guidance")
                seed = gr.Number(value=0, precision=0, minimum=0, label="Seed")
            with gr.Row():
                enhance_btn = gr.Button("Enhance")
                generate_btn = gr.Button("Generate", variant="primary", elem_id="create-generate")
        with gr.Column(scale=2):
            plan = gr.Markdown("The prompt enhancer's plan appears here.", elem_id="create-plan")
            result = gr.Video(label="Result", autoplay=True, loop=True, interactive=False, elem_id="create-result")
    history_df = gr.Dataframe(headers=["job", "status", "%", "prompt", "seed", "model", "time"], label="History",
                              interactive=False)
    return CreateTab(prompt, images, subjects, video, frames, steps, guidance, seed, refs, enhance_btn, generate_btn,
                     plan, result, history_df)


def wire_create_tab(tab: CreateTab, ctx: AppContext, user_state: gr.State) -> None:
    def safe(fn):
        def run(*a, **k):
            try:
                return fn(*a, **k)
            except UIError as e:
                raise gr.Error(str(e))
        return run

    inputs = [user_state, tab.prompt, tab.images, tab.subjects, tab.video, tab.frames, tab.steps, tab.guidance, tab.seed]

    @safe
    def on_generate(us, prompt, images, subjects, video, frames, steps, guidance, seed, progress=gr.Progress()):
        d = build_request(ctx, ctx.user(us), prompt, images, subjects, video, frames, steps, guidance, seed)
        plan = plan_text(ctx, d)  # the clip comes with what the studio understood of the prompt
        return (*generate(ctx, us, d, seed, progress), plan)

    tab.enhance.click(safe(lambda *a: enhance(ctx, *a)), inputs, tab.plan, api_name="enhance")
    tab.generate.click(on_generate, inputs, [tab.result, tab.history, tab.plan], api_name="generate")
    for comp in (tab.images, tab.subjects, tab.video):
        comp.change(safe(lambda us, i, s, v: references_text(ctx, us, i, s, v)),
                    [user_state, tab.images, tab.subjects, tab.video], tab.refs)
