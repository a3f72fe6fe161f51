"""The README's screenshots: the top of each tab's browser-test screenshot (test-artifacts/flow_*.png),
640 px wide, 64 colours, into assets/screens/ (about 20 KB each).

    OMNI_UI_TEST_MODEL=assets/models/omni-world .venv/bin/python -m pytest -q tests/test_ui_flows.py -k "as_a_person or arena_is_filled"
    .venv/bin/python scripts/readme_screens.py
"""

from __future__ import annotations

import os
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
CROPS = {  # README name: (test artifact, source pixels from the top)
    "create": ("flow_create", 1200), "subjects": ("flow_subjects", 900), "storyboard": ("flow_storyboard", 1300),
    "sketch": ("flow_sketch", 1100), "edit": ("flow_edit", 1300), "arena": ("flow_arena_next", 1566),
    "leaderboard": ("flow_leaderboard", 600), "training": ("flow_training", 1150), "jobs": ("flow_jobs", 700),
    "world": ("flow_world", 1000)}


def main() -> int:
    out_dir = ROOT / "assets" / "screens"
    out_dir.mkdir(parents=True, exist_ok=True)
    total = 0
    for name, (src, h) in CROPS.items():
        im = Image.open(ROOT / "test-artifacts" / f"{src}.png").convert("RGB")
        im = im.crop((0, 0, im.width, min(h, im.height)))
        im = im.resize((640, round(im.height * 640 / im.width)), Image.LANCZOS)
        out = out_dir / f"{name}.png"
        im.quantize(colors=64, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(out, optimize=True)
        total += os.path.getsize(out)
        print(f"{out.relative_to(ROOT)}  {os.path.getsize(out) // 1024} KB")
    print(f"total {total // 1024} KB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
