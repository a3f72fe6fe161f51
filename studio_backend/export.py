"""Preference export for DPO: winner / loser pairs from the arena's votes, as JSONL and parquet.

Votes on one comparison are combined by trust-weighted majority (trust = the annotator's
accuracy on gold pairs); "Same" votes never make a DPO pair but stay in GSB. Each row keeps
the request, both assets and seeds, per-dimension labels and a weight (the winning share of
trust times the agreement among the votes).
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

from . import stats

FLIP = {"G": "B", "S": "S", "B": "G"}


def preference_pairs(votes: list[dict], purposes: tuple[str, ...] = ("dpo",)) -> list[dict]:
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
        if verdict == "S" or total == 0:
            continue  # no preference: counted in GSB, not a DPO pair
        a_wins = verdict == "G"
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
    return rows


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


def push_to_hub(path: Path, repo_id: str, token: str | None = None) -> str:
    """Upload an export to a Hugging Face dataset repo (only when a repo is configured)."""
    import os

    if os.environ.get("HF_HUB_OFFLINE") == "1":
        raise RuntimeError("HF_HUB_OFFLINE=1: unset it (and give a token) to push votes to the Hub")
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    api.create_repo(repo_id, repo_type="dataset", exist_ok=True)
    api.upload_file(path_or_fileobj=str(path), path_in_repo=path.name, repo_id=repo_id, repo_type="dataset")
    return f"{repo_id}/{path.name}"
