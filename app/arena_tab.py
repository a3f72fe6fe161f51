"""The Arena tab: a blind side-by-side pair with synchronised playback; Good / Same / Bad per
dimension (left against right) and overall, keyboard shortcuts (1 / 2 / 3 for the overall
verdict, Enter to submit); nothing on the page names a model, a version or a seed."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

import gradio as gr

from studio_backend.services import DIMENSIONS, ServiceError

from .context import AppContext, UIError

CHOICES = [("Left better", "G"), ("Same", "S"), ("Right better", "B")]
LABELS = {"dynamic_quality": "Dynamic quality", "visual_quality": "Visual quality",
          "prompt_following": "Prompt following", "identity_consistency": "Identity consistency",
          "video_consistency": "Video consistency (edits)"}

# synchronised playback and keyboard shortcuts (runs in the page; ids are set below)
ARENA_JS = """
<script>
(() => {
  const vids = () => [...document.querySelectorAll('#arena-left video, #arena-right video')];
  let syncing = false;
  document.addEventListener('play', e => { if (syncing || !e.target.closest('#arena-left,#arena-right')) return;
    syncing = true; vids().forEach(v => { if (v !== e.target) { v.currentTime = e.target.currentTime; v.play(); } }); syncing = false; }, true);
  document.addEventListener('pause', e => { if (syncing || !e.target.closest('#arena-left,#arena-right')) return;
    syncing = true; vids().forEach(v => { if (v !== e.target) v.pause(); }); syncing = false; }, true);
  document.addEventListener('keydown', e => {
    if (!document.querySelector('#arena-overall') || ['INPUT', 'TEXTAREA'].includes(e.target.tagName)) return;
    const box = document.querySelector('#arena-overall'); if (!box || box.offsetParent === null) return;
    const i = {'1': 0, '2': 1, '3': 2}[e.key];
    if (i !== undefined) { const inputs = box.querySelectorAll('input[type=radio]'); if (inputs[i]) inputs[i].click(); }
    if (e.key === 'Enter') { const b = document.querySelector('#arena-submit'); if (b) b.click(); }
  });
})();
</script>
"""


@dataclass
class ArenaTab:
    prompt: gr.Markdown
    left: gr.Video
    right: gr.Video
    dims: list[gr.Radio]
    overall: gr.Radio
    submit: gr.Button
    skip: gr.Button
    count: gr.Markdown
    pair: gr.State  # server-side: the sealed token, the idempotency key, when it was shown


def next_pair(ctx: AppContext, user_state) -> tuple[dict | None, str, str | None, str | None, str]:
    user = ctx.user(user_state)
    try:
        p = ctx.studio.arena.next_pair(user)
    except ServiceError as e:
        raise UIError(str(e)) from e
    n = ctx.studio.arena.annotator_count(user)
    if p is None:
        return None, "**No pairs left for you.** Thank you!", None, None, f"You have rated {n} pairs."
    state = {"token": p.left_is_a_token, "key": uuid.uuid4().hex, "shown": time.time()}
    return (state, f"**Request:** {p.prompt}", ctx.video_path(p.left_asset),
            ctx.video_path(p.right_asset), f"You have rated {n} pairs.")


def submit_vote(ctx: AppContext, user_state, pair: dict | None, overall: str | None, *dims) -> str:
    if not pair:
        raise UIError("load a pair first")
    if overall not in ("G", "S", "B"):
        raise UIError("choose an overall verdict (keys 1, 2, 3)")
    verdicts = {d: v for d, v in zip(DIMENSIONS, dims) if v in ("G", "S", "B")}
    try:
        rec = ctx.studio.arena.vote(ctx.user(user_state), pair["token"], verdicts, overall, pair["key"],
                                    seconds=time.time() - pair["shown"])
    except ServiceError as e:
        raise UIError(str(e)) from e
    return "Vote stored." if rec.created else "Already stored (one vote per pair)."


def build_arena_tab() -> ArenaTab:
    prompt = gr.Markdown("Press **Next pair** to start. Keys: 1 = left better, 2 = same, 3 = right better, Enter = submit.")
    with gr.Row():
        left = gr.Video(label="Left", elem_id="arena-left", interactive=False, loop=True, autoplay=True)
        right = gr.Video(label="Right", elem_id="arena-right", interactive=False, loop=True, autoplay=True)
    dims = [gr.Radio(CHOICES, label=LABELS[d]) for d in DIMENSIONS]
    overall = gr.Radio(CHOICES, label="Overall", elem_id="arena-overall")
    with gr.Row():
        submit = gr.Button("Submit and next", variant="primary", elem_id="arena-submit")
        skip = gr.Button("Next pair", elem_id="arena-next")
    count = gr.Markdown(elem_id="arena-count")
    return ArenaTab(prompt, left, right, dims, overall, submit, skip, count, gr.State(None))


def wire_arena_tab(tab: ArenaTab, ctx: AppContext, user_state: gr.State) -> None:
    def load(us):
        try:
            state, prompt, l, r, count = next_pair(ctx, us)
        except UIError as e:
            raise gr.Error(str(e))
        return (state, prompt, l, r, count) + tuple(None for _ in tab.dims) + (None,)

    outs = [tab.pair, tab.prompt, tab.left, tab.right, tab.count] + tab.dims + [tab.overall]

    def vote_then_next(us, pair, overall, *dims):
        try:
            msg = submit_vote(ctx, us, pair, overall, *dims)
        except UIError as e:
            raise gr.Error(str(e))
        gr.Info(msg)
        return load(us)

    tab.skip.click(load, [user_state], outs, api_name="arena_next")
    tab.submit.click(vote_then_next, [user_state, tab.pair, tab.overall] + tab.dims, outs, api_name="arena_vote")
