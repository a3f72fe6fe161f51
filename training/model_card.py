"""Ship a trained model: copy its directory into assets/ and write its model card.

    python -m training.model_card --model runs/sft/model --bench bench.json --out assets/models/omni-world \
        [--logs runs/pretrain/log.jsonl runs/sft/log.jsonl] [--vae-log runs/vae/log.jsonl] [--notes notes.md]

The card holds the recipe (every stage's config as stored with the model), the hours and
hardware, the training curve, and the OmniBench table per family from `--bench`.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import sys
from pathlib import Path

from training.evaluate import format_table


def curve(log: Path, points: int = 8) -> str:
    rows = [json.loads(x) for x in log.read_text().splitlines() if x.strip()]
    if not rows:
        return ""
    pick = rows[:: max(1, len(rows) // points)] + ([rows[-1]] if len(rows) % max(1, len(rows) // points) else [])
    keys = [k for k in ("step", "loss", "psnr", "samples_per_s", "hours") if k in rows[0]]
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(str(r.get(k, "")) for k in keys) + " |" for r in pick]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m training.model_card")
    ap.add_argument("--model", required=True)
    ap.add_argument("--bench", required=True, help="OmniBench JSON of this model")
    ap.add_argument("--out", default="assets/models/omni-world")
    ap.add_argument("--logs", nargs="*", default=[])
    ap.add_argument("--vae-log", default=None)
    ap.add_argument("--notes", default=None, help="a markdown file appended to the card (per-family notes, changes)")
    ap.add_argument("--hardware", default=f"{platform.processor() or platform.machine()}, 2 CPU cores, no GPU")
    args = ap.parse_args(argv)
    src, out = Path(args.model), Path(args.out)
    index = json.loads((src / "model_index.json").read_text())
    notes = index["config"]["notes"]
    bench = json.loads(Path(args.bench).read_text())
    if out.exists():
        shutil.rmtree(out)
    shutil.copytree(src, out)
    shutil.copy(args.bench, out / "omnibench.json")
    fam = bench["families"]
    t2v = fam.get("t2v", {})
    lines = [
        f"# omni-world ({index['config']['version']})", "",
        "The embedded Omni model of Omni Studio: a causal video VAE, the Omni-Generator (a diffusion transformer "
        "with asymmetric condition attention) and the rule-based prompt enhancer, trained only on OmniWorld "
        "(procedural, generated on the fly; held-out compositions never seen). 16 frames at 32x32.", "",
        "## Recipe", "",
        "- generator: " + ", ".join(f"{k}={v}" for k, v in json.loads((src / "generator" / "config.json").read_text()).items()
                                    if k in ("dim", "depth", "heads", "patch", "latent_channels"))
        + " (the SFT config below lists defaults for these; SFT starts from the pretrained model's own)",
        f"- stages: see `generator/config.json` and the training config below; last stage `{notes.get('stage')}` "
        f"at step {notes.get('step')}",
        f"- generator training hours (all stages): {notes.get('hours_total', notes.get('hours'))}",
        f"- hardware: {args.hardware}",
        "- reproduce: `python -m training.train_vae`, `python -m training.pretrain`, `python -m training.sft` with the "
        "configs below (see the README's training section)", "",
        "```json", json.dumps(notes.get("train_config", {}), indent=1), "```", "",
        "## OmniBench (held-out cases)", "",
        "```", format_table(bench), "```", "",
        f"Text-to-video attribute accuracy: colour {t2v.get('color_acc', 0):.3f}, shape {t2v.get('shape_acc', 0):.3f}, "
        f"background {t2v.get('background_acc', 0):.3f}, motion {t2v.get('motion_acc', 0):.3f}; "
        f"all at once (success) {t2v.get('success', 0):.3f}.", "",
    ]
    if args.notes:
        lines += [Path(args.notes).read_text().rstrip(), ""]
    for log in ([args.vae_log] if args.vae_log else []) + args.logs:
        p = Path(log)
        if p.is_file():
            lines += [f"## Training curve: {p.parent.name}", "", curve(p), ""]
    (out / "README.md").write_text("\n".join(lines))
    print(out / "README.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
