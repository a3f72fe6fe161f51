"""The Training tab (admin): model versions with promote / roll back, the votes available for
DPO, and evaluation rounds: both versions generate the same world requests, and the pairs
go to the arena for annotators."""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

from studio_backend.export import preference_pairs
from studio_backend.services import ServiceError

from .context import AppContext, UIError


@dataclass
class TrainingTab:
    versions: gr.Dataframe
    version_id: gr.Number
    promote: gr.Button
    roll_back: gr.Button
    votes: gr.Markdown
    a: gr.Number
    b: gr.Number
    cases: gr.Slider
    schedule: gr.Button
    status: gr.Markdown


def version_rows(ctx: AppContext, user_state=None) -> list[list]:
    """Admins only: model names never reach an annotator's page (the arena is blind)."""
    if user_state is not None and ctx.user(user_state).role != "admin":
        return []
    return [[v.id, v.name, v.status, v.parent_id or "", v.path, ", ".join(f"{k}={v.metrics[k]}" for k in list(v.metrics)[:3])]
            for v in ctx.studio.registry.list()]


def votes_summary(ctx: AppContext) -> str:
    votes = ctx.studio.arena.votes()
    pairs = preference_pairs(votes)
    return (f"**{len(votes)} votes** collected; **{len(pairs)} preference pairs** usable for DPO "
            "(Same verdicts are kept out of DPO and counted in GSB). DPO retraining itself is not built yet.")


def promote(ctx: AppContext, user_state, version_id) -> str:
    try:
        v = ctx.studio.registry.promote(ctx.user(user_state), int(version_id or 0))
    except ServiceError as e:
        raise UIError(str(e)) from e
    return f"{v.name} is now the active model; new jobs use it."


def roll_back(ctx: AppContext, user_state) -> str:
    try:
        v = ctx.studio.registry.roll_back(ctx.user(user_state))
    except ServiceError as e:
        raise UIError(str(e)) from e
    return f"Rolled back: {v.name} is active again."


def schedule_evaluation(ctx: AppContext, user_state, a, b, cases: int, progress=None) -> str:
    """Generate `cases` bench requests with versions A and B (same seed) and queue the pairs for annotators."""
    from training.world import FAMILIES, sample

    user = ctx.user(user_state)
    if user.role != "admin":
        raise UIError("scheduling evaluations needs the admin role")
    reg = ctx.studio.registry
    try:
        va, vb = reg.get(int(a or 0)), reg.get(int(b or 0))
    except ServiceError as e:
        raise UIError(str(e)) from e
    if va.id == vb.id:
        raise UIError("pick two different versions")
    made = 0
    for k in range(int(cases)):
        fam = FAMILIES[k % len(FAMILIES)]
        req = sample(fam, 900_000 + k, "bench").request
        d = req.to_dict()
        # media of world requests go to the store, so the stored request carries asset ids only
        d["images"] = [ctx.image_asset(x) for x in req.images]
        d["subjects"] = {n: [ctx.image_asset(x) for x in v] for n, v in req.subjects.items()}
        d["video"] = ctx.studio.media.put_video_array(req.video).id if req.video is not None else None
        if req.storyboard is not None:
            d["storyboard"]["panels"] = [ctx.image_asset(x) for x in req.storyboard.panels]
            d["storyboard"]["grid"] = ctx.image_asset(req.storyboard.grid) if req.storyboard.grid is not None else None
        jobs = [ctx.studio.jobs.submit(user, "generate", d, seed=k, model_version_id=v.id) for v in (va, vb)]
        done = [ctx.wait(j) for j in jobs]
        if progress is not None:
            progress((k + 1) / cases, desc=f"case {k + 1}/{cases} ({fam})")
        if any(j.status != "succeeded" for j in done):
            continue
        assets = [ctx.studio.media.put_video_array(ctx.studio.media.load_video(j.result_asset_id)) for j in done]
        ctx.studio.arena.add_comparison("eval", {"prompt": req.prompt, "task": fam}, assets[0], assets[1], family=fam,
                                        version_a=va.id, version_b=vb.id, seed_a=k, seed_b=k)
        made += 1
    return f"Queued {made} pairs of {va.name} against {vb.name} for annotators."


def build_training_tab() -> TrainingTab:
    versions = gr.Dataframe(headers=["id", "name", "status", "parent", "path", "metrics"], interactive=False,
                            label="Model versions")
    with gr.Row():
        version_id = gr.Number(label="Version id", precision=0, minimum=0)
        promote_btn = gr.Button("Promote to active", variant="primary")
        roll_back_btn = gr.Button("Roll back", variant="stop")
    votes = gr.Markdown()
    gr.Markdown("### Evaluation round\nBoth versions generate the same held-out world requests; annotators compare them blind.")
    with gr.Row():
        a = gr.Number(label="Version A id", precision=0, minimum=0)
        b = gr.Number(label="Version B id", precision=0, minimum=0)
        cases = gr.Slider(1, 46, value=8, step=1, label="Requests")
        schedule = gr.Button("Schedule comparisons")
    status = gr.Markdown()
    return TrainingTab(versions, version_id, promote_btn, roll_back_btn, votes, a, b, cases, schedule, status)


def wire_training_tab(tab: TrainingTab, ctx: AppContext, user_state: gr.State):
    def act(fn):
        def run(*a, **k):
            try:
                msg = fn(ctx, *a, **k)
            except UIError as e:
                raise gr.Error(str(e))
            return msg, version_rows(ctx, a[0] if a else None), votes_summary(ctx)
        return run

    outs = [tab.status, tab.versions, tab.votes]
    tab.promote.click(act(promote), [user_state, tab.version_id], outs)
    tab.roll_back.click(act(roll_back), [user_state], outs)

    def sched(us, a, b, n, progress=gr.Progress()):
        return act(schedule_evaluation)(us, a, b, n, progress)

    tab.schedule.click(sched, [user_state, tab.a, tab.b, tab.cases], outs, api_name="schedule_evaluation")
    return lambda us: (version_rows(ctx, us), votes_summary(ctx))
