"""The Leaderboard tab: GSB per model pair, dimension and family with 95% intervals, a
Bradley-Terry-with-ties ranking, vote counts and inter-annotator agreement; plotted. The summary
says which votes each view counts: the board counts votes on version pairs (evaluation rounds);
votes on DPO pairs (two seeds of one version) are training data, listed per version."""

from __future__ import annotations

import math
from dataclasses import dataclass

import gradio as gr
import pandas as pd

from studio_backend import stats

from .context import AppContext, SIGN_IN_FIRST, refused


@dataclass
class LeaderboardTab:
    refresh: gr.Button
    summary: gr.Markdown
    plot: gr.BarPlot
    gsb: gr.Dataframe
    ranking: gr.Dataframe


def _pct(x: float) -> str:
    return "inf" if math.isinf(x) else "-" if math.isnan(x) else f"{100 * x:.0f}%"


def dpo_vote_rows(all_votes: list[dict], names: dict) -> list[list]:
    """Votes on DPO pairs (two seeds of one version) per version: votes, one seed preferred, Same, and the
    pairs rated."""
    by: dict = {}
    for v in all_votes:
        if v["purpose"] != "dpo":
            continue
        r = by.setdefault(v["version_a"], {"votes": 0, "pref": 0, "same": 0, "pairs": set()})
        r["votes"] += 1
        r["same" if v["overall"] == "S" else "pref"] += 1
        r["pairs"].add(v["comparison_id"])
    return [[names.get(vid, vid), r["votes"], len(r["pairs"]), r["pref"], r["same"]] for vid, r in by.items()]


def leaderboard(ctx: AppContext, user_state=None):
    who = ctx.signed_in(user_state)
    if who is None:  # a visitor with no session (the page's own controls are hidden; the API is not)
        raise refused(SIGN_IN_FIRST)
    if who.role == "annotator":
        raise refused("the leaderboard is for creators and admins: annotators rate blind")
    every = ctx.studio.arena.votes()
    votes = [v for v in every  # comparisons of two different versions
             if v["version_a"] and v["version_b"] and v["version_a"] != v["version_b"]]
    names = {v.id: v.name for v in ctx.studio.registry.list()}
    dpo_rows = dpo_vote_rows(every, names)
    weights = {a: r["weight"] for a, r in stats.gold_accuracy(votes).items()}
    rows = stats.gsb_table(votes, weights=weights, reps=400)
    table = [[names.get(r["a"], r["a"]), names.get(r["b"], r["b"]), r["dimension"], r["family"], _pct(r["gsb"]),
              f"{_pct(r['ci_low'])} - {_pct(r['ci_high'])}", r["counts"]["G"], r["counts"]["S"], r["counts"]["B"]]
             for r in rows]
    plot_df = pd.DataFrame([{"dimension": r["dimension"], "GSB %": min(400.0, 100 * r["gsb"]),
                             "pair": f"{names.get(r['a'], r['a'])} vs {names.get(r['b'], r['b'])}"}
                            for r in rows if r["family"] == "all"]) if rows else None  # see app.training_tab.dpo_curve
    matches = [(v["version_a"], v["version_b"], v["overall"]) for v in votes]
    bt = stats.bradley_terry_ties(matches)
    ranking = sorted(([names.get(i, i), round(bt["elo"][i], 1), sum(1 for m in matches if i in m[:2])]
                      for i in bt["strength"]), key=lambda r: -r[1])
    alpha = stats.agreement(votes)
    n_dpo = sum(r[1] for r in dpo_rows)
    summary = (f"**{len(votes)} votes on version pairs** (evaluation rounds: two model versions on the same request) "
               f"from {len({v['annotator_id'] for v in votes})} annotators: the GSB table, plot and ranking count these. "
               f"Agreement (Krippendorff's alpha, ordinal): {'n/a (no pair has two votes yet)' if math.isnan(alpha) else f'{alpha:.2f}'}. "
               "GSB = (G+S)/(B+S) of the first model against the second; above 100% the first is preferred.\n\n"
               f"**{n_dpo} votes on DPO pairs** (collection rounds: two seeds of one version; training data for "
               "DPO, not a comparison of models; the Training tab counts all "
               f"{len(every)} votes)" + (":" if dpo_rows else "."))
    if dpo_rows:
        summary += ("\n\n| version | votes | pairs rated | one seed preferred | Same |\n|---|---|---|---|---|\n"
                    + "\n".join(f"| {r[0]} | {r[1]} | {r[2]} | {r[3]} | {r[4]} |" for r in dpo_rows))
    return summary, plot_df, table, ranking


def build_leaderboard_tab() -> LeaderboardTab:
    refresh = gr.Button("Refresh")
    summary = gr.Markdown()
    plot = gr.BarPlot(x="dimension", y="GSB %", color="pair", title="GSB by dimension", height=300,
                      elem_id="leaderboard-plot")
    gsb = gr.Dataframe(headers=["A", "B", "dimension", "family", "GSB", "95% interval", "G", "S", "B"],
                       interactive=False, label="GSB")
    ranking = gr.Dataframe(headers=["model", "Bradley-Terry (Elo scale)", "votes"], interactive=False,
                           label="Ranking")
    return LeaderboardTab(refresh, summary, plot, gsb, ranking)


BLIND = "The leaderboard is for creators and admins: annotators rate blind, so it stays hidden from them."


def on_open(ctx: AppContext, user_state):
    """What the tab shows when it is opened: the leaderboard, or for an annotator why there is none."""
    who = ctx.signed_in(user_state)
    if who is None:
        return "Sign in to see the leaderboard.", None, [], []
    if who.role == "annotator":
        return BLIND, None, [], []
    return leaderboard(ctx, user_state)


def wire_leaderboard_tab(tab: LeaderboardTab, ctx: AppContext, user_state: gr.State, page: gr.Tab | None = None) -> None:
    outs = [tab.summary, tab.plot, tab.gsb, tab.ranking]
    tab.refresh.click(lambda us: leaderboard(ctx, us), [user_state], outs, api_name="leaderboard")
    if page is not None:  # opening the tab shows the current board without a click
        page.select(lambda us: on_open(ctx, us), [user_state], outs, api_name=False)
