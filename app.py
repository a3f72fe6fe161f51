"""Omni Studio entry point: settings -> services -> Gradio UI -> launch.

    python app.py [--home DIR] [--port P] [--backend embedded]

Today the studio serves the World explorer (OmniWorld families, targets and requests);
the creation, arena and training tabs arrive with their issues.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

for _k, _v in {"GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1"}.items():
    os.environ.setdefault(_k, _v)


def build_ui(home: Path):
    import gradio as gr

    from app.world_tab import build_world_tab, wire_world_tab

    with gr.Blocks(title="Omni Studio") as demo:
        gr.Markdown("# Omni Studio\nAn open implementation of the Kling-Omni workflow. "
                    "**World**: the procedural universe the embedded model is trained and benchmarked in.")
        with gr.Tab("World"):
            tab = build_world_tab()
            wire_world_tab(tab, home / "previews")
    return demo


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Run the Omni Studio web app.")
    ap.add_argument("--home", default=os.environ.get("OMNI_HOME", "studio_data"), help="studio data folder")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=int(os.environ.get("PORT", 7860)))
    ap.add_argument("--backend", choices=("embedded",), default="embedded",
                    help="model backend (the diffusers/Wan backend arrives with its issue)")
    args = ap.parse_args(argv)
    home = Path(args.home).resolve()
    home.mkdir(parents=True, exist_ok=True)
    demo = build_ui(home)
    demo.queue(default_concurrency_limit=1)
    demo.launch(server_name=args.host, server_port=args.port, allowed_paths=[str(home)], show_error=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
