"""The Edit tab: a video plus an instruction (add / remove / replace / background / style /
weather / material / effect), an optional reference image and an optional mask painted on
the first frame (only the painted region may change: every other pixel stays the source's);
the result beside the original."""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr
import numpy as np
from PIL import Image

from .context import AppContext, UIError, refused
from .components import uploaded_image
from .create_tab import build_request, generate, stop, submit, upscale_checkbox

KINDS = ["(let the enhancer decide)", "edit_add", "edit_remove", "edit_replace", "background", "stylize", "weather",
         "material", "effects", "combined"]
KIND_WORDS = {"(let the enhancer decide)": "let the studio decide from the instruction", "edit_add": "add a subject",
              "edit_remove": "remove a subject", "edit_replace": "replace a subject", "background": "new background",
              "stylize": "change the style", "weather": "change the weather", "material": "change a material",
              "effects": "add an effect", "combined": "several edits at once"}
KIND_CHOICES = [(KIND_WORDS[k], k) for k in KINDS]  # words on the page, task ids in the request
EXAMPLES = ["Make it snow in @Video.", "Make it rain.", "Turn it into a sunset.", "Make it look like pixel art.",
            "Remove the subject.", "The subject catches fire."]


@dataclass
class EditTab:
    video: gr.Video
    example: gr.Button
    instruction: gr.Textbox
    kind: gr.Dropdown
    reference: gr.Image
    mask: gr.ImageEditor
    run: gr.Button
    original: gr.Video
    result: gr.Video
    strength: gr.Slider
    preserve: gr.Dropdown
    status: gr.Markdown = None
    stop: gr.Button = None
    upscale: gr.Checkbox = None
    api_edit: gr.Button = None  # hidden: the /edit API endpoint of before


def example_video(ctx: AppContext) -> str:
    from training.world import sample

    s = sample("weather", 3)
    return ctx.video_path(ctx.studio.media.put_video_array(s.request.video).id)


MASK_CANVAS = 256
# paste-back levels (MVL `preserve`): a pixel changed by less than this stays the video's own
PRESERVE_LEVELS = {"the model's choice": None, "off": 0.0, "small changes (under 10%)": 0.1,
                   "moderate changes (under 20%)": 0.2, "large changes (under 30%)": 0.3}
PRESERVE_CHOICES = list(PRESERVE_LEVELS)


def first_frame(ctx: AppContext, video) -> dict | None:
    """The video's first frame as the mask canvas's background (nothing painted yet)."""
    if not video:
        return None
    try:
        frame = ctx.studio.media.load_video(ctx.upload_video(video))[0]
    except Exception as e:  # a file the media store refuses: say so where the person looks
        raise UIError(f"the video could not be read: {e}") from e
    big = np.asarray(Image.fromarray(frame).resize((MASK_CANVAS, MASK_CANVAS), Image.NEAREST))
    return {"background": big, "layers": [], "composite": big}


def painted_mask(value) -> np.ndarray | None:
    """The union of everything painted on the mask canvas as a white-on-black RGB image, or None."""
    if not value:
        return None
    layers = [np.asarray(x) for x in (value.get("layers") or []) if x is not None]
    painted = None
    for layer in layers:
        if layer.ndim != 3 or layer.shape[-1] != 4:
            continue
        ink = layer[..., 3] > 40
        painted = ink if painted is None else painted | ink
    if painted is None or not painted.any():
        return None
    return np.repeat((painted * 255).astype(np.uint8)[..., None], 3, axis=2)


def edit(ctx: AppContext, user_state, video, instruction, kind, reference, progress=None, mask_value=None,
         strength: float = 0.0, preserve: str = PRESERVE_CHOICES[0], upscale: bool = False):
    if not video:
        raise UIError("upload the video to edit (or press 'Use a world clip')")
    if instruction and "@Video" not in instruction:
        instruction = f"In @Video, {instruction[0].lower() + instruction[1:]}"
    user = ctx.user(user_state)
    with ctx.studio.media.staged():  # refused anywhere up to the queue: none of its uploads stay
        d, job = _edit_request(ctx, user_state, user, video, instruction, kind, reference, mask_value, strength,
                               preserve, upscale)
    return video, generate(ctx, user_state, d, 0, progress, job=job)[0]


def _edit_request(ctx, user_state, user, video, instruction, kind, reference, mask_value, strength, preserve,
                  upscale):
    d = build_request(ctx, user, instruction, [], [], video, 16, ctx.default_steps(), 3.0, 0, upscale=upscale,
                      task=None if kind == KINDS[0] else kind)
    if reference is not None:
        # the page hands a file path (decoded here, so a bad file gets the studio's own words); code may pass pixels
        d["images"] = [ctx.upload_image(reference) if isinstance(reference, str) else ctx.image_asset(reference)]
        if "@Image_1" not in d["prompt"]:
            d["prompt"] += " Use @Image_1 as the reference."
    mask = painted_mask(mask_value)
    if mask is not None:
        d["mask"] = ctx.image_asset(mask, "mask.png")
    if strength:  # 0 = the model's own choice for this kind of edit
        d["strength"] = float(strength)
    if preserve not in PRESERVE_LEVELS:
        raise UIError(f"'Keep the original' must be one of {', '.join(PRESERVE_CHOICES)}; got {preserve!r}")
    if PRESERVE_LEVELS[preserve] is not None:  # None: the model's own choice for this kind of edit
        d["preserve"] = PRESERVE_LEVELS[preserve]
    return d, submit(ctx, user_state, d, 0)


def build_edit_tab() -> EditTab:
    with gr.Row():
        with gr.Column():
            video = gr.Video(label="Video to edit (@Video)", sources=["upload"], elem_id="edit-video")
            example = gr.Button("Use a world clip", elem_id="edit-example")
            instruction = gr.Textbox(label="Instruction", value="Make it snow in @Video.", elem_id="edit-instruction")
            gr.Examples(EXAMPLES, inputs=[instruction], label="Examples")
            kind = gr.Dropdown(KIND_CHOICES, value=KINDS[0], label="Edit kind", elem_id="edit-kind")
            reference = uploaded_image(label="Reference image (optional, @Image_1)")
            mask = gr.ImageEditor(label="Edit region (optional): paint where the edit may change; "
                                        "everything unpainted stays exactly as in the video",
                                  type="numpy", canvas_size=(MASK_CANVAS, MASK_CANVAS), elem_id="edit-mask",
                                  sources=(), brush=gr.Brush(colors=["#FFFFFF"], default_color="#FFFFFF",
                                                             color_mode="fixed", default_size=24))
            strength = gr.Slider(0.0, 1.0, value=0.0, step=0.05, elem_id="edit-strength",
                                 label="Strength: how much of the video may be redrawn (1 = all of it, lower keeps "
                                       "more of the original; 0 = the model's choice for this kind of edit)")
            preserve = gr.Dropdown(PRESERVE_CHOICES, value=PRESERVE_CHOICES[0], elem_id="edit-preserve",
                                   label="Keep the original where the edit changed little (without a painted "
                                         "region): those pixels are the video's own, exactly")
            upscale = upscale_checkbox("edit-upscale")
            with gr.Row():
                run = gr.Button("Edit", variant="primary", elem_id="edit-run")
                stop_btn = gr.Button("Stop", variant="stop", elem_id="edit-stop")
            status = gr.Markdown(elem_id="edit-status")
        with gr.Column():
            original = gr.Video(label="Original", interactive=False, loop=True, autoplay=True)
            result = gr.Video(label="Edited", interactive=False, loop=True, autoplay=True, elem_id="edit-result")
    return EditTab(video, example, instruction, kind, reference, mask, run, original, result, strength, preserve,
                   status, stop_btn, upscale, gr.Button(visible=False))


def wire_edit_tab(tab: EditTab, ctx: AppContext, user_state: gr.State) -> None:
    def on_edit(us, v, ins, k, ref, m, st, pr, up=False, progress=gr.Progress()):
        try:
            out = edit(ctx, us, v, ins, k, ref, progress, mask_value=m, strength=st, preserve=pr, upscale=bool(up))
            return (*out, "Done (128x128, upscaled 4x)." if up else "Done.")
        except UIError as e:  # beside the button; the clips stay as they were
            return gr.update(), gr.update(), f"⚠ {e}"

    def on_video(us, v):
        if not v:  # cleared (also by the refusal below): the status line keeps what it says
            return None, gr.update(), gr.update()
        try:
            ctx.creator(us)  # the preview writes to the media store: a signed-in creator only
            return first_frame(ctx, v), gr.update(), ""
        except UIError as e:  # a refused file leaves the slot empty and ready for another, and says why
            return None, None, f"⚠ {e}"

    def on_example(us):
        try:
            ctx.creator(us)  # a world clip goes into the media store: a signed-in creator only
        except UIError as e:
            raise refused(str(e))
        return example_video(ctx)

    tab.example.click(on_example, [user_state], tab.video)
    tab.video.change(on_video, [user_state, tab.video], [tab.mask, tab.video, tab.status], api_name="on_video")
    inputs = [user_state, tab.video, tab.instruction, tab.kind, tab.reference, tab.mask, tab.strength, tab.preserve]
    tab.run.click(on_edit, inputs + [tab.upscale], [tab.original, tab.result, tab.status], api_name="edit_run")
    # the /edit API of before keeps its inputs (no upscale), as Create's /generate does
    tab.api_edit.click(on_edit, inputs, [tab.original, tab.result, tab.status], api_name="edit")
    # its own queue slot, outside the generations' (a stop must not wait behind what it stops)
    tab.stop.click(lambda us: stop(ctx, us), [user_state], tab.status, api_name=False,
                   concurrency_id="stop-edit", concurrency_limit=None)
