"""The Jobs view: the queue with progress, and cancel. Each person sees their own jobs (an admin
sees all); an annotator, who has none, sees none: no job ids, prompts or version names of anyone."""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

from studio_backend.services import ServiceError

from .context import AppContext, UIError, refused


@dataclass
class JobsTab:
    table: gr.Dataframe
    job_id: gr.Number
    cancel: gr.Button
    refresh: gr.Button
    status: gr.Markdown


def job_rows(ctx: AppContext, user_state=None) -> list[list]:
    try:
        user = ctx.maybe_user(user_state)
    except UIError:
        user = None
    if user is None or user.role == "annotator":
        return []
    jobs = ctx.studio.jobs.list(limit=50, user=user)
    return [[j.id, j.kind, j.status, round(100 * j.progress), (j.message or "").splitlines()[0][:60] if j.message else "",
             j.request.get("prompt", "")[:60], j.created_at.strftime("%H:%M:%S")] for j in jobs]


def cancel_job(ctx: AppContext, user_state, job_id) -> str:
    try:
        j = ctx.studio.jobs.cancel(ctx.user(user_state), int(job_id or 0))
    except (ServiceError, UIError) as e:
        raise refused(str(e))
    return f"Job {j.id}: {j.status}" + (" (stopping at the next step)" if j.status == "running" else "")


def build_jobs_tab() -> JobsTab:
    table = gr.Dataframe(headers=["job", "kind", "status", "%", "message", "prompt", "created"], interactive=False)
    with gr.Row():
        job_id = gr.Number(label="Job id", precision=0, minimum=0)
        cancel = gr.Button("Cancel job", variant="stop")
        refresh = gr.Button("Refresh")
    status = gr.Markdown()
    return JobsTab(table, job_id, cancel, refresh, status)


def wire_jobs_tab(tab: JobsTab, ctx: AppContext, user_state: gr.State) -> None:
    rows = lambda us: job_rows(ctx, us)  # noqa: E731
    tab.refresh.click(rows, [user_state], tab.table, api_name="jobs")
    tab.cancel.click(lambda us, j: cancel_job(ctx, us, j), [user_state, tab.job_id], tab.status).then(
        rows, [user_state], tab.table)
    gr.Timer(2.0).tick(rows, [user_state], tab.table, show_progress="hidden")
