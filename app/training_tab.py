"""The Training tab (admin): model versions with promote / roll back (versions picked from a list),
filling the arena (a collection round of world requests x seeds on the active version; a switch
that turns creators' generations into pairs), the votes available for DPO with a warning below a
useful minimum, DPO runs as queued train jobs (progress, loss / margin curve, cancel), and
evaluation rounds: both versions generate the same world requests, and the pairs go to the arena
for annotators; and a few-step distillation of the active version (training.distill), a train job too."""

from __future__ import annotations

import time
from dataclasses import dataclass

import gradio as gr

from studio_backend.export import preference_pairs
from studio_backend.services import ServiceError

from .context import AppContext, UIError, refused


@dataclass
class TrainingTab:
    versions: gr.Dataframe
    version_id: gr.Dropdown
    promote: gr.Button
    roll_back: gr.Button
    votes: gr.Markdown
    a: gr.Dropdown
    b: gr.Dropdown
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
    collect_n: gr.Slider = None
    collect_seeds: gr.Slider = None
    collect: gr.Button = None
    pair_creators: gr.Checkbox = None
    arena_info: gr.Markdown = None
    dpo_info: gr.Markdown = None
    refresh: gr.Button = None
    distill_steps: gr.Radio = None
    distill_run: gr.Button = None
    dpo_segments: gr.Checkbox = None


def is_admin(ctx: AppContext, user_state) -> bool:
    """True for a signed-in admin (or the one person of a trusted / open studio when they hold the role); a visitor
    with no session, or an expired one, is not: what only admins may read is refused to them too."""
    u = ctx.signed_in(user_state)
    return u is not None and u.role == "admin"


def version_rows(ctx: AppContext, user_state=None) -> list[list]:
    """Admins only: model names never reach an annotator's page (the arena is blind), nor a visitor's."""
    if not is_admin(ctx, user_state):
        return []
    return [[v.id, v.name, v.status, v.parent_id or "", v.path, ", ".join(f"{k}={v.metrics[k]}" for k in list(v.metrics)[:3])]
            for v in ctx.studio.registry.list()]


def version_choices(ctx: AppContext, user_state=None) -> list[tuple[str, int]]:
    """(label, id) of every registered version, for the pickers; none for non-admins."""
    if not is_admin(ctx, user_state):
        return []
    return [(f"{v.name} (id {v.id}, {v.status})", v.id) for v in ctx.studio.registry.list()]


def votes_summary(ctx: AppContext) -> str:
    votes = ctx.studio.arena.votes()
    pairs = preference_pairs(votes)
    dpo = sum(1 for v in votes if v["purpose"] == "dpo")
    return (f"**{len(votes)} votes** collected: {dpo} on DPO pairs (two seeds of one version), "
            f"{len(votes) - dpo} on evaluation pairs (two versions, the Leaderboard's); **{len(pairs)} preference "
            "pairs** usable for DPO (Same verdicts are kept out of DPO and counted in GSB).")


def dpo_readiness(ctx: AppContext, consistent: bool = False, segments: bool = False) -> str:
    """The pair count a DPO run would train on, with a warning below the useful minimum."""
    from studio_backend.rounds import MIN_DPO_PAIRS
    from studio_backend.train_jobs import training_pairs

    n = len(training_pairs(ctx.studio, int(bool(consistent)), int(bool(segments))))
    which = "consistent preference pairs" if consistent else "preference pairs"
    if n == 0:
        return (f"**0 {which}**: nothing to train on. Fill the arena (collection round above) and let "
                "annotators vote; Run DPO is refused until then.")
    if n < MIN_DPO_PAIRS:
        return (f"⚠ **Only {n} {which}** (a useful run needs at least {MIN_DPO_PAIRS}): DPO will fit these few "
                "pairs in a few steps (loss to ~0) and learn little else. Collect more votes first, or run it as a "
                "smoke test.")
    return f"**{n} {which}** for DPO."


def arena_info(ctx: AppContext) -> str:
    from studio_backend.rounds import arena_counts, arena_settings

    c = arena_counts(ctx.studio)
    on = arena_settings(ctx.studio)["pair_creator_generations"]
    return (f"The arena holds **{c['all']} pairs** ({c['dpo']} DPO pairs, {c['eval']} evaluation pairs). "
            f"Creators' generations {'**become pairs**' if on else 'do not become pairs'}.")


def collect(ctx: AppContext, user_state, n_requests, seeds, progress=None) -> str:
    """Admin: a collection round on the active version (world requests x seeds), pairs for annotators."""
    from studio_backend.rounds import start_collection_round

    user = ctx.user(user_state)
    if user.role != "admin":
        raise UIError("collection rounds need the admin role")
    v = ctx.studio.registry.active()
    try:
        ids = start_collection_round(ctx.studio, user, _generate(ctx), int(n_requests), int(seeds), progress)
    except ServiceError as e:
        raise UIError(str(e)) from e
    return (f"Collection round done: **{len(ids)} new DPO pairs** of {v.name} ({int(n_requests)} requests x "
            f"{int(seeds)} seeds) are in the arena for annotators.")


def set_creator_pairs(ctx: AppContext, user_state, on: bool) -> str:
    from studio_backend.rounds import set_pair_creator_generations

    try:
        set_pair_creator_generations(ctx.studio, ctx.user(user_state), bool(on))
    except ServiceError as e:
        raise UIError(str(e)) from e
    return ("Creators' generations now become arena pairs: each clip gets a second seed rendered in the "
            "background. Annotators will see those prompts." if on else
            "Creators' generations no longer become arena pairs.")


def promote(ctx: AppContext, user_state, version_id) -> str:
    try:
        if version_id in (None, ""):
            raise UIError("pick a version to promote")
        v = ctx.studio.registry.promote(ctx.user(user_state), int(version_id))
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
    if a in (None, "") or b in (None, ""):
        raise UIError("pick version A and version B")
    try:
        va, vb = ctx.studio.registry.get(int(a)), ctx.studio.registry.get(int(b))
    except ServiceError as e:
        raise UIError(str(e)) from e
    if va.id == vb.id:
        raise UIError("pick two different versions")
    ids = evaluation_round(ctx.studio, _generate(ctx), va.id, vb.id, int(cases), progress)
    return f"Queued {len(ids)} pairs of {va.name} against {vb.name} for annotators."


def start_dpo(ctx: AppContext, user_state, steps: int, beta: float, lora_rank: int, consistent: bool = False,
              segments: bool = False):
    """Queue Flow-DPO on the collected preference pairs as a train job (its own worker runs it)."""
    from studio_backend.train_jobs import submit_dpo

    user = ctx.user(user_state)
    if user.role != "admin":
        raise UIError("DPO training needs the admin role")
    try:
        return submit_dpo(ctx.studio, user, steps=int(steps), beta=float(beta), lora_rank=int(lora_rank),
                          consistent=int(bool(consistent)), segments=int(bool(segments)))
    except ServiceError as e:
        raise UIError(str(e)) from e


def start_distill(ctx: AppContext, user_state, steps: int):
    """Queue a few-step distillation of the active version as a train job (the same worker, progress and cancel)."""
    from studio_backend.train_jobs import submit_distill

    user = ctx.user(user_state)
    if user.role != "admin":
        raise UIError("distillation needs the admin role")
    try:
        return submit_distill(ctx.studio, user, steps=int(steps))
    except ServiceError as e:
        raise UIError(str(e)) from e


def dpo_curve(ctx: AppContext, job_id: int):
    import pandas as pd

    from studio_backend.train_jobs import read_log

    log = read_log(ctx.studio, job_id)
    if not log:  # None, not an empty frame: a plot that is first sent no rows draws no bars or lines later (gradio 6)
        return None
    # DPO logs loss and margin; a distillation logs loss, and in its second stage the fake score's loss
    return pd.DataFrame([{"step": r["step"], "value": r[k], "series": k} for r in log
                         for k in ("loss", "margin", "fake_loss") if k in r],
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
    # the files are handed to the page through media/served (the only folder the app serves), under their names
    return msg, [str(ctx.studio.media.serve_download(f)) for f in r["files"]]


ADMIN_ONLY = ("Model versions, evaluation rounds and DPO retraining belong to the admin: sign in with the "
              "admin role to use them. Annotators rate in the Arena; creators and admins see the results on the Leaderboard.")


def build_training_tab() -> TrainingTab:
    notice = gr.Markdown(ADMIN_ONLY, visible=False, elem_id="training-notice")
    with gr.Column(visible=True, elem_id="training-panel") as panel:
        return _build_admin_panel(panel, notice)


def _build_admin_panel(panel: gr.Column, notice: gr.Markdown) -> TrainingTab:
    versions = gr.Dataframe(headers=["id", "name", "status", "parent", "path", "metrics"], interactive=False,
                            label="Model versions", elem_id="training-versions")
    with gr.Row():
        version_id = gr.Dropdown([], label="Version", elem_id="training-version")
        promote_btn = gr.Button("Promote to active", variant="primary")
        roll_back_btn = gr.Button("Roll back", variant="stop")
    with gr.Row():
        votes = gr.Markdown(elem_id="training-votes")
        refresh_btn = gr.Button("Refresh counts", scale=0, elem_id="training-refresh")
    gr.Markdown("### Fill the arena\nA collection round renders world requests with several seeds on the active "
                "version and queues the two most different clips of each as a DPO pair for annotators.")
    arena_md = gr.Markdown(elem_id="training-arena-info")
    with gr.Row():
        collect_n = gr.Slider(1, 100, value=8, step=1, label="Requests", elem_id="training-collect-n")
        collect_seeds = gr.Slider(2, 4, value=2, step=1, label="Seeds per request")
        collect_btn = gr.Button("Start a collection round", variant="primary", elem_id="training-collect")
    pair_creators = gr.Checkbox(False, label="Creators' generations become pairs (a second seed renders in the "
                                             "background; annotators see those prompts)",
                                elem_id="training-pair-creators")
    gr.Markdown("### Evaluation round\nBoth versions generate the same held-out world requests; annotators compare them blind.")
    with gr.Row():
        a = gr.Dropdown([], label="Version A (candidate)", elem_id="training-a")
        b = gr.Dropdown([], label="Version B (parent)", elem_id="training-b")
        cases = gr.Slider(1, 552, value=46, step=1, label="Requests",
                          info="Promotion needs the lower bound of the GSB interval above 100%: a candidate better on "
                               "9% of requests and worse on 3% (GSB 106%) is promoted by 46 requests 1 time in 7, "
                               "by 414 about 4 in 5 (python -m studio_backend.eval_round --power)")
        schedule = gr.Button("Schedule comparisons")
    status = gr.Markdown(elem_id="training-status")
    gr.Markdown("### DPO retraining from the votes")
    dpo_info = gr.Markdown(elem_id="training-dpo-info")
    with gr.Row():
        dpo_steps = gr.Slider(10, 1000, value=60, step=10, label="Steps")
        dpo_beta = gr.Number(value=100.0, label="beta")
        dpo_rank = gr.Slider(0, 32, value=0, step=4, label="LoRA rank (0 = full fine-tuning)")
        dpo_consistent = gr.Checkbox(False, label="Only pairs no vote contradicts on any dimension")
        dpo_segments = gr.Checkbox(False, label="Train on the quarter verdicts where votes give them (DenseDPO)",
                                   elem_id="training-dpo-segments")
        dpo_run = gr.Button("Run DPO", variant="primary", elem_id="training-run-dpo")
        dpo_cancel = gr.Button("Cancel training", variant="stop")
    gr.Markdown("### Few-step distillation\nThe active version as a teacher: a student that samples in K steps "
                "without the guidance pass (trajectory matching, then distribution matching), registered as a "
                "candidate.")
    with gr.Row():
        distill_steps = gr.Radio([2, 4, 8], value=4, label="Student steps K", elem_id="training-distill-steps")
        distill_run = gr.Button("Distil the active version", elem_id="training-run-distill")
    curve = gr.LinePlot(x="step", y="value", color="series", title="Training loss (DPO: and implicit reward margin)",
                        height=260)
    gr.Markdown("### Preference export\nThe DPO pairs (Same verdicts left out, trust-weighted) as JSONL and parquet.")
    with gr.Row():
        export = gr.Button("Export preferences", elem_id="export-preferences")
        export_files = gr.File(label="Export", file_count="multiple", interactive=False)
    return TrainingTab(versions, version_id, promote_btn, roll_back_btn, votes, a, b, cases, schedule, status,
                       dpo_steps, dpo_beta, dpo_rank, dpo_consistent, dpo_run, dpo_cancel, curve, export, export_files,
                       panel, notice, collect_n, collect_seeds, collect_btn, pair_creators, arena_md, dpo_info,
                       refresh_btn, distill_steps, distill_run, dpo_segments)


def wire_training_tab(tab: TrainingTab, ctx: AppContext, user_state: gr.State):
    def act(fn):
        def run(*a, **k):
            try:
                msg = fn(ctx, *a, **k)
            except UIError as e:
                raise refused(str(e))
            us = a[0] if a else None
            return msg, version_rows(ctx, us), votes_summary(ctx) if is_admin(ctx, us) else ""
        return run

    outs = [tab.status, tab.versions, tab.votes]

    def collect_round(us, n, seeds, progress=gr.Progress()):
        msg, rows, votes = act(collect)(us, n, seeds, progress)
        return msg, rows, votes, arena_info(ctx)


    tab.collect.click(collect_round, [user_state, tab.collect_n, tab.collect_seeds], outs + [tab.arena_info],
                      api_name="collection_round")

    def switch(us, on):
        try:
            return set_creator_pairs(ctx, us, on), arena_info(ctx)
        except UIError as e:
            raise refused(str(e))

    tab.pair_creators.input(switch, [user_state, tab.pair_creators], [tab.status, tab.arena_info],
                            api_name="pair_creator_generations")

    # the versions table is refreshed at sign-in and after every action: the pickers and counts follow it
    def on_versions(us, consistent, segments):
        from studio_backend.rounds import arena_settings

        if not is_admin(ctx, us):
            return (gr.update(choices=[]),) * 3 + ("", "", gr.update())
        ch = version_choices(ctx, us)
        active = ctx.studio.registry.active()
        kids = [v.id for v in ctx.studio.registry.list() if active and v.parent_id == active.id]
        return (gr.update(choices=ch), gr.update(choices=ch, value=kids[-1] if kids else None),
                gr.update(choices=ch, value=active.id if active else None), arena_info(ctx), dpo_readiness(ctx, consistent, segments),
                arena_settings(ctx.studio)["pair_creator_generations"])

    tab.versions.change(on_versions, [user_state, tab.dpo_consistent, tab.dpo_segments],
                        [tab.version_id, tab.a, tab.b, tab.arena_info, tab.dpo_info, tab.pair_creators])
    for box in (tab.dpo_consistent, tab.dpo_segments):
        box.change(lambda c, sg: dpo_readiness(ctx, c, sg), [tab.dpo_consistent, tab.dpo_segments], tab.dpo_info)

    def refresh_counts(us, c, sg=False):
        if not is_admin(ctx, us):  # the counts and versions are the admin's: a visitor calling the API gets nothing
            raise refused("the training tab is the admin's: sign in with an admin account")
        return version_rows(ctx, us), votes_summary(ctx), arena_info(ctx), dpo_readiness(ctx, c, sg)

    tab.refresh.click(refresh_counts, [user_state, tab.dpo_consistent, tab.dpo_segments],
                      [tab.versions, tab.votes, tab.arena_info, tab.dpo_info], api_name="refresh_training")
    tab.promote.click(act(promote), [user_state, tab.version_id], outs)
    tab.roll_back.click(act(roll_back), [user_state], outs)

    def sched(us, a, b, n, progress=gr.Progress()):
        return act(schedule_evaluation)(us, a, b, n, progress)

    tab.schedule.click(sched, [user_state, tab.a, tab.b, tab.cases], outs, api_name="schedule_evaluation")

    def dpo(us, steps, beta, rank, consistent, segments=False, progress=gr.Progress()):
        try:
            job = start_dpo(ctx, us, steps, beta, rank, consistent, segments)
        except UIError as e:
            raise refused(str(e))
        ready = dpo_readiness(ctx, consistent, segments)
        warn = ready if ready.startswith("⚠") else ""
        if warn:
            gr.Warning(warn.replace("**", ""))
        for msg, curve in follow_dpo(ctx, job, progress):
            yield msg + (f"\n\n{warn}" if warn else ""), version_rows(ctx, us), votes_summary(ctx), curve

    tab.dpo_run.click(dpo, [user_state, tab.dpo_steps, tab.dpo_beta, tab.dpo_rank, tab.dpo_consistent, tab.dpo_segments],
                      outs + [tab.curve], api_name="run_dpo")

    def run_distill(us, steps, progress=gr.Progress()):
        try:
            job = start_distill(ctx, us, steps)
        except UIError as e:
            raise refused(str(e))
        for msg, curve in follow_dpo(ctx, job, progress):
            yield msg, version_rows(ctx, us), votes_summary(ctx), curve

    tab.distill_run.click(run_distill, [user_state, tab.distill_steps], outs + [tab.curve], api_name="run_distill")
    # its own queue slot: a cancel must not wait behind the run it cancels
    tab.dpo_cancel.click(act(cancel_training), [user_state], outs, api_name="cancel_training",
                         concurrency_id="cancel", concurrency_limit=None)

    def do_export(us):
        try:
            return export_preferences(ctx, us)
        except UIError as e:
            raise refused(str(e))

    tab.export.click(do_export, [user_state], [tab.status, tab.export_files], api_name="export_preferences")
    def refresh(us):
        admin = is_admin(ctx, us)
        return (version_rows(ctx, us), votes_summary(ctx) if admin else "", gr.update(visible=admin),
                gr.update(visible=not admin))

    return refresh
