"""Preference export for DPO: winner / loser pairs from the arena's votes, as JSONL and parquet.

Votes on one comparison are combined by trust-weighted majority (trust = the annotator's
accuracy on gold pairs); "Same" votes never make a DPO pair but stay in GSB. Each row keeps
the request, both assets and seeds, per-dimension labels and a weight (the winning share of
trust times the agreement among the votes).

    python -m studio_backend.export --home DIR [--out DIR] [--push OWNER/NAME]

`--push` (or OMNI_VOTES_REPO in the studio) uploads the export to a Hugging Face dataset repo
in one commit, with the token of HF_TOKEN (or `huggingface-cli login`); the files stay on disk
whether or not the push works.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

from . import stats

FLIP = {"G": "B", "S": "S", "B": "G"}


def segment_labels(vs: list[dict], trust: dict, a_wins: bool) -> list[int] | None:
    """Each segment's trust-weighted majority over the votes that judged segments, for the pair's winner: +1 (the
    winner better there), 0 (same, or a tie), -1 (the loser better); None when no vote judged segments."""
    judged = [v for v in vs if v.get("segments")]
    if not judged:
        return None
    out = []
    for k in range(len(judged[0]["segments"])):
        score = {"G": 0.0, "S": 0.0, "B": 0.0}
        for v in judged:
            score[v["segments"][k]] += trust.get(v["annotator_id"], 0.5)
        best = max(score.values())
        top = [x for x, w in score.items() if w == best]
        lab = 0 if len(top) > 1 else {"G": 1, "S": 0, "B": -1}[top[0]]
        out.append(lab if a_wins else -lab)
    return out


def preference_pairs(votes: list[dict], purposes: tuple[str, ...] = ("dpo",), segments: bool = False) -> list[dict]:
    """`segments`: each row also carries its segment labels (segment_labels; None where no vote judged segments),
    and a comparison whose clips are Same overall is still a pair where some segment is preferred (DenseDPO: the
    segments carry the preference; A stands as the winner, `overall_preferred` False)."""
    trust = {a: r["weight"] for a, r in stats.gold_accuracy(votes).items()}
    by_comp: dict[int, list[dict]] = defaultdict(list)
    for v in votes:
        if v["purpose"] in purposes and not v.get("gold"):
            by_comp[v["comparison_id"]].append(v)
    rows = []
    for cid, vs in sorted(by_comp.items()):
        score = {"G": 0.0, "S": 0.0, "B": 0.0}
        for v in vs:
            score[v["overall"]] += trust.get(v["annotator_id"], 0.5)
        verdict = max(score, key=score.get)
        total = sum(score.values())
        seg = segment_labels(vs, trust, verdict != "B") if segments else None
        if total == 0 or (verdict == "S" and not any(seg or ())):
            continue  # no preference: counted in GSB, not a DPO pair
        a_wins = verdict != "B"
        first = vs[0]
        dims: dict[str, dict[str, int]] = defaultdict(lambda: {"winner": 0, "same": 0, "loser": 0})
        for v in vs:
            for d, x in v["verdicts"].items():
                x = x if a_wins else FLIP[x]
                dims[d][{"G": "winner", "S": "same", "B": "loser"}[x]] += 1
        agree = sum(1 for v in vs if v["overall"] == verdict) / len(vs)
        rows.append({
            "comparison_id": cid, "request": first["request"], "family": first["family"],
            "winner_asset": first["asset_a"] if a_wins else first["asset_b"],
            "loser_asset": first["asset_b"] if a_wins else first["asset_a"],
            "winner_seed": first["seed_a"] if a_wins else first["seed_b"],
            "loser_seed": first["seed_b"] if a_wins else first["seed_a"],
            "dimensions": {d: dict(c) for d, c in dims.items()},
            "votes": len(vs), "weight": round(score[verdict] / total * agree, 4),
        })
        if segments:
            rows[-1].update(segments=seg, overall_preferred=verdict != "S")
    return rows


def consistent_pairs(rows: list[dict]) -> list[dict]:
    """The pairs whose winner no vote found worse on any dimension."""
    return [r for r in rows if all(c.get("loser", 0) == 0 for c in r["dimensions"].values())]


def export(votes: list[dict], out_dir: str | Path, name: str = "preferences") -> tuple[Path, Path]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = preference_pairs(votes)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    jl = out / f"{name}.jsonl"
    with open(jl, "w") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
    flat = [{**{k: v for k, v in r.items() if k not in ("request", "dimensions")},
             "request": json.dumps(r["request"]), "dimensions": json.dumps(r["dimensions"])} for r in rows]
    table = pa.Table.from_pylist(flat) if flat else pa.table({"comparison_id": pa.array([], pa.int64())})
    pq.write_table(table, out / f"{name}.parquet")
    return jl, out / f"{name}.parquet"


def push_to_hub(paths: list, repo_id: str, token: str | None = None, endpoint: str | None = None) -> str:
    """Upload export files to a Hugging Face dataset repo in one commit (created if missing).
    Returns the commit URL. `endpoint` defaults to HF_ENDPOINT (the Hub)."""
    import os

    from huggingface_hub import CommitOperationAdd, HfApi, constants

    if constants.is_offline_mode():
        raise RuntimeError("HF_HUB_OFFLINE=1: unset it (and give a token) to push votes to the Hub")
    if not isinstance(repo_id, str) or repo_id.count("/") != 1 or not all(repo_id.split("/")):
        raise ValueError(f"dataset repo {repo_id!r}: give it as owner/name")
    files = [Path(p) for p in paths]
    api = HfApi(endpoint=endpoint or os.environ.get("HF_ENDPOINT") or None, token=token)
    api.create_repo(repo_id, repo_type="dataset", exist_ok=True)
    info = api.create_commit(repo_id, [CommitOperationAdd(path_in_repo=f.name, path_or_fileobj=str(f)) for f in files],
                             commit_message=f"Omni Studio preference export ({len(files)} files)", repo_type="dataset")
    return info.commit_url


def export_studio(studio, out_dir: str | Path, push: str | None = None, token: str | None = None) -> dict:
    """Export a studio's votes (a new folder per call under out_dir) and optionally push them."""
    from datetime import datetime, timezone

    out = Path(out_dir) / datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S-%f")
    jl, pq = export(studio.arena.votes(), out)
    with open(jl) as f:
        rows = sum(1 for _ in f)
    result = {"pairs": rows, "files": [str(jl), str(pq)], "pushed": None, "push_error": None}
    if push:
        try:
            result["pushed"] = push_to_hub([jl, pq], push, token=token)
        except Exception as e:  # the export stays on disk; the caller reports the failure
            result["push_error"] = f"{type(e).__name__}: {e}"
    return result


def main(argv: list[str] | None = None) -> int:
    import argparse
    import os
    import sys

    ap = argparse.ArgumentParser(prog="python -m studio_backend.export", description=__doc__.split("\n\n")[0])
    ap.add_argument("--home", required=True, help="the studio home (OMNI_HOME)")
    ap.add_argument("--out", default=None, help="where to write (default HOME/exports)")
    ap.add_argument("--push", default=os.environ.get("OMNI_VOTES_REPO"), help="dataset repo owner/name")
    a = ap.parse_args(argv)
    from .studio import Studio

    studio = Studio.open(a.home)
    r = export_studio(studio, a.out or Path(a.home) / "exports", a.push, os.environ.get("HF_TOKEN"))
    print(json.dumps(r))
    if r["push_error"]:
        print(f"push to {a.push} failed (the export is on disk): {r['push_error']}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
