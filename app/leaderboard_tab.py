"""The Leaderboard tab: GSB per model pair, dimension and family with 95% intervals, a
Bradley-Terry-with-ties ranking, vote counts and inter-annotator agreement; plotted."""

from __future__ import annotations

import math
from dataclasses import dataclass

import gradio as gr
import pandas as pd

from studio_backend import stats

from .context import AppContext


@dataclass
class LeaderboardTab:
    refresh: gr.Button
    summary: gr.Markdown
    plot: gr.BarPlot
    gsb: gr.Dataframe
    ranking: gr.Dataframe


def _pct(x: float) -> str:
    return "inf" if math.isinf(x) else "-" if math.isnan(x) else f"{100 * x:.0f}%"


def leaderboard(ctx: AppContext, user_state=None):
    if user_state is not None and ctx.user(user_state).role == "annotator":
        raise gr.Error("the leaderboard is for creators and admins: annotators rate blind")
    votes = [v for v in ctx.studio.arena.votes()  # comparisons of two different versions
             if v["version_a"] and v["version_b"] and v["version_a"] != v["version_b"]]
    names = {v.id: v.name for v in ctx.studio.registry.list()}
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
    summary = (f"**{len(votes)} votes** on version pairs from {len({v['annotator_id'] for v in votes})} annotators; "
               f"agreement (Krippendorff's alpha, ordinal): {'n/a (no pair has two votes yet)' if math.isnan(alpha) else f'{alpha:.2f}'}. "
               "GSB = (G+S)/(B+S) of the first model against the second; above 100% the first is preferred.")
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
    if ctx.user(user_state).role == "annotator":
        return BLIND, None, [], []
    return leaderboard(ctx, user_state)


def wire_leaderboard_tab(tab: LeaderboardTab, ctx: AppContext, user_state: gr.State, page: gr.Tab | None = None) -> None:
    outs = [tab.summary, tab.plot, tab.gsb, tab.ranking]
    tab.refresh.click(lambda us: leaderboard(ctx, us), [user_state], outs, api_name="leaderboard")
    if page is not None:  # opening the tab shows the current board without a click
        page.select(lambda us: on_open(ctx, us), [user_state], outs, api_name=False)
