"""The Training tab (admin): model versions with promote / roll back, the votes available for
DPO, DPO runs as queued train jobs (progress, loss / margin curve, cancel), and evaluation rounds: both versions generate the same world requests, and the pairs
go to the arena for annotators."""

from __future__ import annotations

import time
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
    dpo_steps: gr.Slider
    dpo_beta: gr.Number
    dpo_rank: gr.Slider
    dpo_consistent: gr.Checkbox
    dpo_run: gr.Button
    dpo_cancel: gr.Button
    curve: gr.LinePlot
    export: gr.Button
    export_files: gr.File
    panel: gr.Column  # the admin's controls, shown to admins only
    notice: gr.Markdown  # what everyone else sees instead


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
            "(Same verdicts are kept out of DPO and counted in GSB).")


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


def _generate(ctx: AppContext):
    return lambda path, request, seed: ctx.load_pipeline(path)(request, seed=seed).frames


def schedule_evaluation(ctx: AppContext, user_state, a, b, cases: int, progress=None) -> str:
    """Both versions generate the same held-out world requests (same seed); the pairs go to annotators."""
    from studio_backend.rounds import evaluation_round

    if ctx.user(user_state).role != "admin":
        raise UIError("scheduling evaluations needs the admin role")
    try:
        va, vb = ctx.studio.registry.get(int(a or 0)), ctx.studio.registry.get(int(b or 0))
    except ServiceError as e:
        raise UIError(str(e)) from e
    if va.id == vb.id:
        raise UIError("pick two different versions")
    ids = evaluation_round(ctx.studio, _generate(ctx), va.id, vb.id, int(cases), progress)
    return f"Queued {len(ids)} pairs of {va.name} against {vb.name} for annotators."


def start_dpo(ctx: AppContext, user_state, steps: int, beta: float, lora_rank: int, consistent: bool = False):
    """Queue Flow-DPO on the collected preference pairs as a train job (its own worker runs it)."""
    from studio_backend.train_jobs import submit_dpo

    user = ctx.user(user_state)
    if user.role != "admin":
        raise UIError("DPO training needs the admin role")
    try:
        return submit_dpo(ctx.studio, user, steps=int(steps), beta=float(beta), lora_rank=int(lora_rank),
                          consistent=int(bool(consistent)))
    except ServiceError as e:
        raise UIError(str(e)) from e


def dpo_curve(ctx: AppContext, job_id: int):
    import pandas as pd

    from studio_backend.train_jobs import read_log

    log = read_log(ctx.studio, job_id)
    if not log:  # None, not an empty frame: a plot that is first sent no rows draws no bars or lines later (gradio 6)
        return None
    return pd.DataFrame([{"step": r["step"], "value": r[k], "series": k} for r in log for k in ("loss", "margin")],
                        columns=["step", "value", "series"])


def follow_dpo(ctx: AppContext, job, progress=None, poll: float = 1.0, timeout: float = 6 * 3600):
    """Yields (message, curve) while the train job runs, and once more when it ends."""
    t0 = time.time()
    while True:
        j = ctx.studio.jobs.get(job.id)
        if progress is not None:
            progress(j.progress, desc=j.message or j.status)
        done = j.status in ("succeeded", "failed", "canceled")
        if j.status == "succeeded":
            msg = f"Job {j.id}: {j.message}."
        elif j.status == "queued":
            msg = f"Job {j.id} is queued behind another training run."
        else:
            msg = f"Job {j.id} {j.status}: {j.message}"
        yield msg, dpo_curve(ctx, j.id)
        if done:
            return
        if time.time() - t0 > timeout:
            yield f"Job {j.id} still runs; follow it in the Jobs tab.", dpo_curve(ctx, j.id)
            return
        time.sleep(poll)


def cancel_training(ctx: AppContext, user_state) -> str:
    user = ctx.user(user_state)
    if user.role != "admin":
        raise UIError("cancelling training needs the admin role")
    live = [j for j in ctx.studio.jobs.list(limit=200) if j.kind == "train" and j.status in ("queued", "running")]
    if not live:
        raise UIError("no training run is queued or running")
    for j in live:
        ctx.studio.jobs.cancel(user, j.id)
    return f"Cancel requested for training job{'s' if len(live) > 1 else ''} {', '.join(str(j.id) for j in live)}."


def export_preferences(ctx: AppContext, user_state) -> tuple[str, list[str]]:
    """Admins: the DPO pairs as JSONL + parquet (a new folder under OMNI_HOME/exports), pushed to the
    Hub dataset repo named by OMNI_VOTES_REPO when it is set (token: HF_TOKEN)."""
    import os

    from studio_backend.export import export_studio

    if ctx.user(user_state).role != "admin":
        raise UIError("exporting votes needs the admin role")
    repo = os.environ.get("OMNI_VOTES_REPO") or None
    r = export_studio(ctx.studio, ctx.studio.home / "exports", push=repo, token=os.environ.get("HF_TOKEN"))
    msg = f"Exported **{r['pairs']} preference pairs** ({', '.join(os.path.basename(f) for f in r['files'])})."
    if r["pushed"]:
        msg += f" Pushed to the dataset repo `{repo}`: {r['pushed']}"
    elif r["push_error"]:
        msg += (f" The push to `{repo}` failed, the files are kept here: {r['push_error']}. "
                "Check HF_TOKEN (write access to the repo) and the network, then export again.")
    else:
        msg += " Set OMNI_VOTES_REPO=owner/name (and HF_TOKEN) to push each export to a Hub dataset."
    return msg, r["files"]


ADMIN_ONLY = ("Model versions, evaluation rounds and DPO retraining belong to the admin: sign in with the "
              "admin role to use them. Annotators rate in the Arena; creators and admins see the results on the Leaderboard.")


def build_training_tab() -> TrainingTab:
    notice = gr.Markdown(ADMIN_ONLY, visible=False, elem_id="training-notice")
    with gr.Column(visible=True, elem_id="training-panel") as panel:
        return _build_admin_panel(panel, notice)


def _build_admin_panel(panel: gr.Column, notice: gr.Markdown) -> TrainingTab:
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
    gr.Markdown("### DPO retraining from the votes")
    with gr.Row():
        dpo_steps = gr.Slider(10, 1000, value=60, step=10, label="Steps")
        dpo_beta = gr.Number(value=100.0, label="beta")
        dpo_rank = gr.Slider(0, 32, value=0, step=4, label="LoRA rank (0 = full fine-tuning)")
        dpo_consistent = gr.Checkbox(False, label="Only pairs no vote contradicts on any dimension")
        dpo_run = gr.Button("Run DPO", variant="primary")
        dpo_cancel = gr.Button("Cancel training", variant="stop")
    curve = gr.LinePlot(x="step", y="value", color="series", title="DPO loss and implicit reward margin", height=260)
    gr.Markdown("### Preference export\nThe DPO pairs (Same verdicts left out, trust-weighted) as JSONL and parquet.")
    with gr.Row():
        export = gr.Button("Export preferences", elem_id="export-preferences")
        export_files = gr.File(label="Export", file_count="multiple", interactive=False)
    return TrainingTab(versions, version_id, promote_btn, roll_back_btn, votes, a, b, cases, schedule, status,
                       dpo_steps, dpo_beta, dpo_rank, dpo_consistent, dpo_run, dpo_cancel, curve, export, export_files,
                       panel, notice)


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

    def dpo(us, steps, beta, rank, consistent, progress=gr.Progress()):
        try:
            job = start_dpo(ctx, us, steps, beta, rank, consistent)
        except UIError as e:
            raise gr.Error(str(e))
        for msg, curve in follow_dpo(ctx, job, progress):
            yield msg, version_rows(ctx, us), votes_summary(ctx), curve

    tab.dpo_run.click(dpo, [user_state, tab.dpo_steps, tab.dpo_beta, tab.dpo_rank, tab.dpo_consistent],
                      outs + [tab.curve], api_name="run_dpo")
    # its own queue slot: a cancel must not wait behind the run it cancels
    tab.dpo_cancel.click(act(cancel_training), [user_state], outs, api_name="cancel_training",
                         concurrency_id="cancel", concurrency_limit=None)

    def do_export(us):
        try:
            return export_preferences(ctx, us)
        except UIError as e:
            raise gr.Error(str(e))

    tab.export.click(do_export, [user_state], [tab.status, tab.export_files], api_name="export_preferences")
    def refresh(us):
        admin = ctx.user(us).role == "admin"
        return version_rows(ctx, us), votes_summary(ctx), gr.update(visible=admin), gr.update(visible=not admin)

    return refresh
