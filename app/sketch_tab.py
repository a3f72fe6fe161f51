"""The Sketch tab: draw arrows (red) and boxes (yellow) on a frame; the studio shows what it
understood (paths with direction, boxes, the subject each is bound to) before generating; Generate
makes a clip from the frame (@Image_1) and the drawing as it is on the canvas."""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr
import numpy as np
from PIL import Image, ImageDraw

from studio_backend.sketch import describe, parse_sketch

from .context import AppContext, UIError, refused
from .create_tab import _error, build_request, generate, stop

EXAMPLES = ["@Image_1: the subject follows the arrow.", "@Image_1: the subject moves along the arrow on a meadow.",
            "@Image_1: the subject goes into the box."]

CANVAS = 256


@dataclass
class SketchTab:
    editor: gr.ImageEditor
    example: gr.Button
    understand: gr.Button
    understood: gr.Markdown
    overlay: gr.Image
    prompt: gr.Textbox
    generate: gr.Button
    result: gr.Video
    parsed: gr.State
    status: gr.Markdown = None
    stop: gr.Button = None


def example_frame(seed: int = 0) -> np.ndarray:
    from training.world import sample

    s = sample("arrows", seed)
    return np.asarray(Image.fromarray(s.request.images[0]).resize((CANVAS, CANVAS), Image.NEAREST))


def understand(value) -> tuple[str, np.ndarray | None, dict]:
    if not value or value.get("background") is None:
        raise UIError("put a frame on the canvas first (upload one or press 'Use a world frame')")
    frame = np.asarray(value["background"])[..., :3].astype(np.uint8)
    layers = [np.asarray(x) for x in (value.get("layers") or []) if x is not None]
    arrows, boxes = parse_sketch(frame, layers)
    img = Image.fromarray(frame).convert("RGB")
    d = ImageDraw.Draw(img)
    W, H = img.size
    for a in arrows:
        pts = [(x * W, y * H) for x, y in a.points]
        d.line(pts, fill=(255, 60, 60), width=4)
        d.ellipse([pts[-1][0] - 6, pts[-1][1] - 6, pts[-1][0] + 6, pts[-1][1] + 6], fill=(255, 60, 60))
        d.ellipse([pts[0][0] - 4, pts[0][1] - 4, pts[0][0] + 4, pts[0][1] + 4], outline=(255, 255, 255), width=2)
    for b in boxes:
        x0, y0, x1, y1 = b.box
        d.rectangle([x0 * W, y0 * H, x1 * W, y1 * H], outline=(255, 230, 0), width=3)
    ann = {"arrows": [{"points": a.points, "ref": f"the {a.bound_to} subject" if a.bound_to else None} for a in arrows],
           "boxes": [{"box": b.box, "ref": f"the {b.bound_to} subject" if b.bound_to else None, "label": None}
                     for b in boxes]}
    return "\n".join(f"- {line}" for line in describe(arrows, boxes)), np.asarray(img), {"frame": frame, "ann": ann}


def build_sketch_tab() -> SketchTab:
    with gr.Row():
        with gr.Column():
            editor = gr.ImageEditor(label="Frame: draw arrows in red (the head marks where to go), boxes in yellow",
                                    type="numpy", canvas_size=(CANVAS, CANVAS), elem_id="sketch-editor",
                                    brush=gr.Brush(colors=["#E61E1E", "#F0DC14"], default_color="#E61E1E",
                                                   color_mode="fixed", default_size=6))
            example = gr.Button("Use a world frame", elem_id="sketch-example")
            understand_btn = gr.Button("Show what the studio understood", variant="secondary", elem_id="sketch-understand")
        with gr.Column():
            understood = gr.Markdown(elem_id="sketch-understood")
            overlay = gr.Image(label="Understood", interactive=False)
    prompt = gr.Textbox(label="Prompt (@Image_1 is the frame you drew on)", value=EXAMPLES[0], elem_id="sketch-prompt")
    gr.Examples(EXAMPLES, inputs=[prompt], label="Examples")
    with gr.Row():
        gen = gr.Button("Generate", variant="primary", elem_id="sketch-generate")
        stop_btn = gr.Button("Stop", variant="stop", elem_id="sketch-stop")
    status = gr.Markdown(elem_id="sketch-status")
    result = gr.Video(label="Result", autoplay=True, loop=True, interactive=False, elem_id="sketch-result", height=320)
    return SketchTab(editor, example, understand_btn, understood, overlay, prompt, gen, result, gr.State(None), status,
                     stop_btn)


def sketch_generate(ctx: AppContext, user_state, value, prompt: str, progress=None, seed: int = 0,
                    overlay: list | None = None) -> tuple[str, str]:
    """A clip from the frame on the canvas (as @Image_1) and what is drawn on it (arrows, boxes):
    returns (video path, what was understood); `overlay` (a list) receives the drawing as understood."""
    understood, picture, parsed = understand(value)
    if overlay is not None:
        overlay.append(picture)
    if not parsed["ann"]["arrows"] and not parsed["ann"]["boxes"]:
        raise UIError("nothing is drawn yet: draw an arrow in red (its head where the subject goes) or a box in yellow")
    frame = np.asarray(Image.fromarray(parsed["frame"]).resize((32, 32), Image.BILINEAR))
    user = ctx.user(user_state)
    d = build_request(ctx, user, prompt, [], [], None, 16, ctx.default_steps(), 3.0, seed, annotations=parsed["ann"],
                      image_assets=[ctx.image_asset(frame, "sketch-frame.png")])
    return generate(ctx, user_state, d, seed, progress)[0], understood


def wire_sketch_tab(tab: SketchTab, ctx: AppContext, user_state: gr.State) -> None:
    def on_understand(value):
        try:
            return understand(value)
        except UIError as e:
            raise refused(str(e))

    def on_generate(us, value, prompt, progress=gr.Progress()):
        seen: list = []
        try:
            clip, understood = sketch_generate(ctx, us, value, prompt, progress, overlay=seen)
        except UIError as e:
            return gr.update(), gr.update(), gr.update(), _error(str(e))
        return clip, understood, seen[0], "Done."

    tab.example.click(lambda: {"background": example_frame(), "layers": [], "composite": None}, None, tab.editor)
    tab.understand.click(on_understand, tab.editor, [tab.understood, tab.overlay, tab.parsed], api_name="sketch_understand")
    tab.generate.click(on_generate, [user_state, tab.editor, tab.prompt], [tab.result, tab.understood, tab.overlay, tab.status],
                       api_name="sketch_generate")
    # its own queue slot, outside the generations' (a stop must not wait behind what it stops)
    tab.stop.click(lambda us: stop(ctx, us), [user_state], tab.status, api_name=False,
                   concurrency_id="stop-sketch", concurrency_limit=None)
