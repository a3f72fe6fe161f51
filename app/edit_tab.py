"""The Edit tab: a video plus an instruction (add / remove / replace / background / style /
weather / material / effect), an optional reference image; the result beside the original."""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

from .context import AppContext, UIError
from .create_tab import build_request, generate

KINDS = ["(let the enhancer decide)", "edit_add", "edit_remove", "edit_replace", "background", "stylize", "weather",
         "material", "effects", "combined"]


@dataclass
class EditTab:
    video: gr.Video
    example: gr.Button
    instruction: gr.Textbox
    kind: gr.Dropdown
    reference: gr.Image
    run: gr.Button
    original: gr.Video
    result: gr.Video


def example_video(ctx: AppContext) -> str:
    from training.world import sample

    s = sample("weather", 3)
    return ctx.video_path(ctx.studio.media.put_video_array(s.request.video).id)


def edit(ctx: AppContext, user_state, video, instruction, kind, reference, progress=None):
    if not video:
        raise UIError("upload the video to edit (or press 'Use a world clip')")
    if instruction and "@Video" not in instruction:
        instruction = f"In @Video, {instruction[0].lower() + instruction[1:]}"
    user = ctx.user(user_state)
    d = build_request(ctx, user, instruction, [], [], video, 16, 10, 3.0, 0,
                      task=None if kind == KINDS[0] else kind)
    if reference is not None:
        d["images"] = [ctx.image_asset(reference)]
        if "@Image_1" not in d["prompt"]:
            d["prompt"] += " Use @Image_1 as the reference."
    return video, generate(ctx, user_state, d, 0, progress)[0]


def build_edit_tab() -> EditTab:
    with gr.Row():
        with gr.Column():
            video = gr.Video(label="Video to edit (@Video)", sources=["upload"])
            example = gr.Button("Use a world clip")
            instruction = gr.Textbox(label="Instruction", value="Make it snow in @Video.")
            kind = gr.Dropdown(KINDS, value=KINDS[0], label="Edit kind")
            reference = gr.Image(label="Reference image (optional, @Image_1)", type="numpy")
            run = gr.Button("Edit", variant="primary")
        with gr.Column():
            original = gr.Video(label="Original", interactive=False, loop=True, autoplay=True)
            result = gr.Video(label="Edited", interactive=False, loop=True, autoplay=True)
    return EditTab(video, example, instruction, kind, reference, run, original, result)


def wire_edit_tab(tab: EditTab, ctx: AppContext, user_state: gr.State) -> None:
    def on_edit(us, v, ins, k, ref, progress=gr.Progress()):
        try:
            return edit(ctx, us, v, ins, k, ref, progress)
        except UIError as e:
            raise gr.Error(str(e))

    tab.example.click(lambda: example_video(ctx), None, tab.video)
    tab.run.click(on_edit, [user_state, tab.video, tab.instruction, tab.kind, tab.reference],
                  [tab.original, tab.result], api_name="edit")
