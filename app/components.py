"""Gradio components with the studio's own behaviour."""

from __future__ import annotations

import gradio as gr


def uploaded_image(**kwargs) -> gr.Image:
    """An image slot whose upload reaches the handler as a file path even when Gradio cannot open it, so a
    damaged or forged file gets the studio's own message (AppContext.upload_image) instead of Gradio's
    generic error with a temporary path in it. Gradio's own image component (a subclass would need a
    frontend of its own): only this instance's preprocessing is wrapped."""
    img = gr.Image(type="filepath", image_mode=None, **kwargs)
    gradio_preprocess = img.preprocess

    def preprocess(payload):
        try:
            return gradio_preprocess(payload)
        except Exception:
            path = getattr(payload, "path", None)
            return str(path) if path else None

    img.preprocess = preprocess
    return img
