"""Command line of OmniWorld.

    python -m training.world preview --family F --out sheet.png [--n 4] [--seed 0] [--split train|bench]
    python -m training.world preview --family all --out DIR      (one sheet per family)
    python -m training.world export --family F --n 50 --out DIR  (clips + captions + truth, for the data filter)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .families import FAMILIES


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m training.world", description="OmniWorld tools")
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("preview", help="write a contact sheet of a family's requests and targets")
    p.add_argument("--family", required=True, help=f"one of {', '.join(FAMILIES)}, or 'all'")
    p.add_argument("--out", required=True, help="PNG file (or a folder with --family all)")
    p.add_argument("--n", type=int, default=4, help="samples (rows)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--split", choices=("train", "bench"), default="train")
    e = sub.add_parser("export", help="write world clips as mp4 + caption + truth JSON")
    e.add_argument("--family", default="t2v", choices=FAMILIES)
    e.add_argument("--n", type=int, default=20)
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--scale", type=int, default=4, help="render scale (4 = 128x128)")
    e.add_argument("--out", required=True)
    args = ap.parse_args(argv)

    if args.cmd == "preview":
        from .preview import preview

        if args.family == "all":
            out = Path(args.out)
            out.mkdir(parents=True, exist_ok=True)
            for fam in FAMILIES:
                preview(fam, args.n, args.seed, args.split).save(out / f"{fam}.png")
                print(out / f"{fam}.png")
        else:
            if args.family not in FAMILIES:
                ap.error(f"unknown family {args.family!r}; known: {', '.join(FAMILIES)}, all")
            preview(args.family, args.n, args.seed, args.split).save(args.out)
            print(args.out)
    elif args.cmd == "export":
        from .export import export_samples

        for path in export_samples(args.family, args.n, args.out, seed=args.seed, scale=args.scale):
            print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
