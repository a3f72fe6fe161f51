"""Omni Studio entry point: settings -> services -> Gradio UI -> launch.

    python app.py [--home DIR] [--port P] [--backend embedded] [--model DIR]
    python app.py --backend wan --model PATH_OR_HUB_ID [--adapter LORA_DIR] [--enhancer CHAT_MODEL_DIR]

Opens the studio home (SQLite + media store), registers the embedded model
(assets/models/omni-world) as the active version when none is, starts the job worker
(one generation at a time per device), and serves the studio on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
from functools import lru_cache
from pathlib import Path

for _k, _v in {"GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1"}.items():
    if not (_k == "HF_HUB_OFFLINE" and os.environ.get("OMNI_VOTES_REPO")):  # pushing votes needs the Hub
        os.environ.setdefault(_k, _v)

ROOT = Path(__file__).resolve().parent
DEFAULT_MODEL = ROOT / "assets" / "models" / "omni-world"
UPLOAD_CACHE_AGE_S = 24 * 3600  # seconds an upload stays in gradio's cache (hourly clean-up)


_LOAD_LOCK = threading.Lock()


def load_pipeline(path: str):
    """One loaded pipeline per model directory, however many threads ask at once (the page's plan and the
    job worker both load the active version on the first generation: unlocked, both loaded it, and
    transformers' lazy imports, racing, failed the job with "cannot import name 'AutoModel'")."""
    with _LOAD_LOCK:
        return _load_pipeline(path)


@lru_cache(maxsize=4)
def _load_pipeline(path: str):
    import torch

    from model.pipeline import OmniPipeline

    # one core is left to the web server (votes, pages) while a generation runs
    torch.set_num_threads(max(1, min(4, (os.cpu_count() or 2) - 1)))
    pipe = OmniPipeline.from_pretrained(path)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def register_model(studio, model_dir: Path) -> None:
    """Make the given model directory a registered version; active if nothing else is."""
    index = model_dir / "model_index.json"
    if not index.is_file():
        return
    version = json.loads(index.read_text()).get("config", {}).get("version", model_dir.name)
    name = f"{model_dir.name}:{version}"
    known = {v.name: v for v in studio.registry.list()}
    if name not in known:
        studio.registry.register(name, str(model_dir.resolve()), status="candidate")
    active = studio.registry.active()
    # Also when the active version is this directory under an older name: the directory was
    # upgraded in place (a new shipped model), so that entry's weights are gone; the new one serves.
    if active is None or (active.name != name and Path(active.path) == model_dir.resolve()):
        admin = studio.users.sync("studio", "admin")  # the host's own start-up, not a sign-in
        studio.registry.promote(admin, {v.name: v for v in studio.registry.list()}[name].id)


GENERATING = ("generate", "edit", "storyboard_take", "collection_round", "schedule_evaluation")


def limit_generations(demo) -> list[str]:
    """Put every event that waits on a generation job into one concurrency group of size 1."""
    names = []
    for fn in demo.fns.values():
        label = f"{fn.api_name or ''} {getattr(fn.fn, '__name__', '')}"
        if any(g in label for g in GENERATING):
            fn.concurrency_limit, fn.concurrency_id = 1, "generation"
            names.append(fn.api_name or fn.fn.__name__)
    return names


def build_ui(ctx, home: Path):
    import gradio as gr

    from app.arena_tab import build_arena_tab, wire_arena_tab
    from app.context import DEFAULT_USER, UIError, space_user
    from studio_backend.services import ServiceError
    from app.create_tab import build_create_tab, history, reattach, subject_choices, wire_create_tab
    from app.edit_tab import build_edit_tab, wire_edit_tab
    from app.jobs_tab import build_jobs_tab, job_rows, wire_jobs_tab
    from app.leaderboard_tab import build_leaderboard_tab, leaderboard, wire_leaderboard_tab
    from app.sketch_tab import build_sketch_tab, wire_sketch_tab
    from app.storyboard_tab import build_storyboard_tab, wire_storyboard_tab
    from app.subjects_tab import build_subjects_tab, wire_subjects_tab
    from app.training_tab import build_training_tab, wire_training_tab
    from app.world_tab import build_world_tab, wire_world_tab

    from app.accounts_tab import account_rows, build_accounts_tab, wire_accounts_tab

    mode = ctx.mode
    CREATORS_ONLY = ("This tab is for creators and admins. Annotators rate pairs in the Arena tab, blind to "
                     "which model made which clip; an admin can give your account another role.")
    first = dict(DEFAULT_USER) if mode in ("open", "trusted") else None

    def who_text(us) -> str:
        try:
            u = ctx.maybe_user(us)
        except UIError:
            u = None
        if u is None:
            hint = "" if mode != "accounts" or ctx.studio.accounts.any_admin() else (
                " No accounts yet: the host makes the first admin with "
                "`python -m studio_backend.accounts --home HOME create-admin NAME`.")
            return "Not signed in." + hint
        return f"Signed in as **{u.name}** ({u.role})"

    # gradio's upload cache (what anyone may POST to /gradio_api/upload before signing in: the page's upload slots
    # send no session) is emptied of files older than a day, every hour
    with gr.Blocks(title="Omni Studio", delete_cache=(3600, UPLOAD_CACHE_AGE_S)) as demo:
        user_state = gr.State(first)
        with gr.Row():
            gr.Markdown("# Omni Studio\nCreate with MVL prompts, rate in the arena, retrain from the votes.")
            who = gr.Markdown(who_text(first), elem_id="who")
            if mode == "space":  # the Hub login gives the name; OMNI_ADMINS / OMNI_ANNOTATORS give the role
                gr.LoginButton()
            elif mode == "open":  # the host's own machine, asked for with --open-studio: pick a name and role
                name = gr.Textbox(label="Name", value=DEFAULT_USER["name"], scale=1)
                role = gr.Dropdown(["creator", "annotator", "admin"], value=DEFAULT_USER["role"], label="Role", scale=1)
                sign_in = gr.Button("Sign in", scale=0)
            else:  # accounts: a name and a password; the role is the account's, granted by an admin
                name = gr.Textbox(label="Name", scale=1, elem_id="sign-in-name")
                password = gr.Textbox(label="Password", type="password", scale=1, elem_id="sign-in-password")
                sign_in = gr.Button("Sign in", scale=0, elem_id="sign-in")
                sign_out = gr.Button("Sign out", scale=0, elem_id="sign-out")
                session = gr.BrowserState(None, storage_key="omni-studio-session")
        creator_views = []  # (panel, notice) of the tabs that make things: annotators get a notice there instead

        def creators_only():
            notice = gr.Markdown(CREATORS_ONLY, visible=False, elem_classes=["creators-only"])
            panel = gr.Column()
            creator_views.append((panel, notice))
            return panel

        with gr.Tab("Create"), creators_only():
            create = build_create_tab()
            wire_create_tab(create, ctx, user_state)
        with gr.Tab("Subjects"), creators_only():
            subjects = build_subjects_tab()
            refresh_subjects = wire_subjects_tab(subjects, ctx, user_state, create.prompt, create.subjects)
        with gr.Tab("Storyboard"), creators_only():
            board = build_storyboard_tab()
            refresh_board = wire_storyboard_tab(board, ctx, user_state)
        with gr.Tab("Sketch"), creators_only():
            sketch = build_sketch_tab()
            wire_sketch_tab(sketch, ctx, user_state)
        with gr.Tab("Edit"), creators_only():
            edit = build_edit_tab()
            wire_edit_tab(edit, ctx, user_state)
        with gr.Tab("Arena"):
            arena = build_arena_tab()
            wire_arena_tab(arena, ctx, user_state)
        with gr.Tab("Leaderboard") as lb_page:
            lb = build_leaderboard_tab()
            wire_leaderboard_tab(lb, ctx, user_state, lb_page)
        with gr.Tab("Training"):
            training = build_training_tab()
            refresh_training = wire_training_tab(training, ctx, user_state)
        with gr.Tab("Jobs"):
            jobs = build_jobs_tab()
            wire_jobs_tab(jobs, ctx, user_state)
        with gr.Tab("World"):
            world = build_world_tab()
            wire_world_tab(world, ctx.studio.media.root / "previews")  # world renders: public, served
        if mode == "accounts":
            with gr.Tab("Accounts"):
                accounts = build_accounts_tab()
                wire_accounts_tab(accounts, ctx, user_state)

        def refresh_all(us):
            try:
                u = ctx.maybe_user(us)
            except UIError:
                u = None
            if u is None:  # not signed in: nothing of anyone's to show
                return tuple(gr.update() for _ in refresh_outs)
            g, sel, choices = refresh_subjects(us)
            maker = u.role != "annotator"
            views = [gr.update(visible=v) for _ in creator_views for v in (maker, not maker)]
            extra = (account_rows(ctx, us),) if mode == "accounts" else ()  # (an admin's list; empty for others)
            return (g, sel, choices, history(ctx, us), *refresh_board(us), *refresh_training(us), job_rows(ctx, us),
                    *views, gr.update(value=ctx.default_steps()), *extra)

        refresh_outs = [subjects.gallery, subjects.pick, create.subjects, create.history, board.shots, board.subjects,
                        training.versions, training.votes, training.panel, training.notice, jobs.table]
        refresh_outs += [c for view in creator_views for c in view]
        refresh_outs.append(create.steps)  # the active version's own step count (a distilled student's K)
        if mode == "accounts":
            refresh_outs.append(accounts.table)

        def follow_running(us, progress=gr.Progress()):  # a generation left running by a reload or a restart
            yield from reattach(ctx, us, progress)

        follow_outs = [create.result, create.status, create.history]

        if mode == "space":
            def from_profile(profile: gr.OAuthProfile | None):  # every page load is a sign-in: the lists are read
                us = space_user(profile)
                return (us, who_text(us)) + refresh_all(us)

            demo.load(from_profile, None, [user_state, who] + refresh_outs).then(
                follow_running, [user_state], follow_outs, api_name=False)
        elif mode == "open":
            def do_sign_in(n, r):
                try:
                    u = ctx.studio.users.sync((n or "you").strip(), r)  # open studio: the page's pick is the role
                except ServiceError as e:
                    raise gr.Error(str(e))
                us = {"name": u.name, "role": u.role}
                return (us, who_text(us)) + refresh_all(us)

            sign_in.click(do_sign_in, [name, role], [user_state, who] + refresh_outs, api_name="sign_in").then(
                follow_running, [user_state], follow_outs, api_name=False)
            demo.load(refresh_all, [user_state], refresh_outs)
        else:
            def do_sign_in(n, pw):
                try:
                    _, token = ctx.studio.accounts.sign_in(n, pw)
                except ServiceError as e:
                    raise gr.Error(str(e))
                us = {"token": token}
                return (us, token, who_text(us), "") + refresh_all(us)

            def do_sign_out(us):
                ctx.studio.accounts.sign_out((us or {}).get("token"))
                return None, None, who_text(None)

            def resume(token):  # a reload (or a restart): the browser's session token, if still valid
                us = {"token": token} if ctx.studio.accounts.user_for(token) else None
                return (us, who_text(us)) + refresh_all(us)

            sign_in.click(do_sign_in, [name, password], [user_state, session, who, password] + refresh_outs,
                          api_name="sign_in").then(follow_running, [user_state], follow_outs, api_name=False)
            sign_out.click(do_sign_out, [user_state], [user_state, session, who], api_name="sign_out").then(
                None, None, None, js="() => { window.location.reload(); }")
            demo.load(resume, [session], [user_state, who] + refresh_outs, api_name=False).then(
                follow_running, [user_state], follow_outs, api_name=False)
    return demo


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Run the Omni Studio web app.")
    ap.add_argument("--home", default=os.environ.get("OMNI_HOME", "studio_data"), help="studio data folder")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=int(os.environ.get("PORT", 7860)))
    ap.add_argument("--backend", choices=("embedded", "wan"), default=os.environ.get("OMNI_BACKEND", "embedded"),
                    help="model backend: the embedded Omni model, or Wan VACE through diffusers (OMNI_BACKEND)")
    ap.add_argument("--model", default=os.environ.get("OMNI_MODEL"),
                    help="model directory (embedded: default assets/models/omni-world), or for wan a diffusers "
                         "WanVACEPipeline directory or Hub id (OMNI_MODEL)")
    ap.add_argument("--adapter", default=os.environ.get("OMNI_ADAPTER"), help="wan: a LoRA adapter directory")
    ap.add_argument("--enhancer", default=os.environ.get("OMNI_ENHANCER"),
                    help="wan: a local chat model directory for the LLM prompt enhancer (OMNI_ENHANCER)")
    ap.add_argument("--external-workers", action="store_true", default=bool(os.environ.get("OMNI_EXTERNAL_WORKERS")),
                    help="run no job worker here: worker processes (python -m studio_backend.worker) on the "
                         "same database take the jobs (OMNI_EXTERNAL_WORKERS=1)")
    ap.add_argument("--open-studio", action="store_true",
                    help="no accounts: everyone who reaches the page picks a name and a role (only with a "
                         "loopback --host, for one person on their own machine)")
    args = ap.parse_args(argv)
    if args.backend != "embedded" and not args.model:
        ap.error(f"--backend {args.backend} needs --model: a diffusers model directory or a Hub id")
    args.model = args.model or str(DEFAULT_MODEL)
    on_space = bool(os.environ.get("SPACE_ID"))
    if args.open_studio and (on_space or args.host not in ("127.0.0.1", "localhost", "::1")):
        ap.error("--open-studio lets anyone choose any role: it is only allowed on a loopback --host, not on a Space")
    mode = "space" if on_space else "open" if args.open_studio else "accounts"
    from app.arena_tab import ARENA_JS
    from app.context import AppContext
    from studio_backend.db import guard_database_files
    from studio_backend.studio import Studio
    from studio_backend.worker import Worker

    home = Path(args.home).resolve()
    studio = Studio.open(home)
    guard_database_files(studio.db)  # nothing in this process but SQLite may open the database file
    from studio_backend.backend_versions import VersionLoader, register_version

    if args.backend == "embedded":
        register_model(studio, Path(args.model))
    else:  # DESIGN 3.5: the version records its backend; the worker and the UI load it through `loader`
        register_version(studio, args.backend, args.model, args.adapter)
    loader = VersionLoader(studio, load_pipeline, enhancer=args.enhancer)
    worker = Worker(studio, loader, "generator-1", kinds=("generate",), load_backend=loader.load_backend)
    trainer = Worker(studio, loader, "trainer-1", kinds=("train",),  # a DPO run never blocks generations
                     load_backend=loader.load_backend)
    if not args.external_workers:
        worker.start()
        trainer.start()
    ctx = AppContext(studio, loader, worker, mode=mode)
    if mode == "accounts" and not studio.accounts.any_admin():
        print(f"No admin account yet: make one with\n  {sys.executable} -m studio_backend.accounts --home {home} "
              "create-admin NAME", flush=True)
    demo = build_ui(ctx, home)
    limit_generations(demo)
    # Events run side by side (votes, pairs, refreshes never wait behind a generation); the events that
    # run a generation share one slot (one generation at a time per device; the worker runs jobs in turn).
    demo.queue(default_concurrency_limit=64)
    import gradio as gr

    # Served: media/served (a fresh random-named link per clip or image handed to one person) and
    # the public world previews; nothing else of the home (DESIGN 3.6). Uploads and outputs that are
    # not media links go through gradio's own cache as usual.
    media = studio.media
    media.served_root.mkdir(parents=True, exist_ok=True)
    media.prune_served()
    served = [str(media.served_root), str(media.root / "previews")]
    gr.set_static_paths(served)
    from studio_backend.media import MAX_VIDEO_BYTES

    demo.launch(server_name=args.host, server_port=args.port, show_error=True, allowed_paths=served,
                max_file_size=MAX_VIDEO_BYTES,  # no upload larger than the largest file a slot takes (a video)
                head=ARENA_JS, run_history=False, footer_links=["api", "settings"], prevent_thread_lock=True,
                # gradio's own start-up self-check (HEAD / with a 3 s timeout, made for Colab) kills a
                # healthy server on a loaded host: seen 9 times at load average 10 on 2 cores (gradio 6.31)
                _frontend=False)
    from app.api import install, secure_headers

    install(demo.server_app, ctx)  # the JSON arena API (app/api.py), before Gradio's routes
    secure_headers(demo.server_app)  # nosniff, same-origin referrers, framed only by itself and Hugging Face
    demo.block_thread()
    return 0


if __name__ == "__main__":
    sys.exit(main())
