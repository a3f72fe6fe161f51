"""Gradio components with the studio's own behaviour."""

from __future__ import annotations

import gradio as gr


class UploadedImage(gr.Image):
    """An image slot whose upload reaches the handler as a file path even when Gradio cannot open it, so a
    damaged or forged file gets the studio's own message (AppContext.upload_image) instead of Gradio's
    generic error with a temporary path in it."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("type", "filepath")
        kwargs.setdefault("image_mode", None)  # the file as uploaded: the studio converts it
        super().__init__(*args, **kwargs)

    def get_block_name(self) -> str:  # the frontend is Gradio's own image component
        return "image"

    def preprocess(self, payload):
        try:
            return super().preprocess(payload)
        except Exception:
            path = getattr(payload, "path", None)
            return str(path) if path else None
