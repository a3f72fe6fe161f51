"""The Arena tab: a blind side-by-side pair with synchronised playback; Good / Same / Bad per
dimension (left against right) and overall, keyboard shortcuts (1 / 2 / 3 for the overall
verdict, Enter to submit); nothing on the page names a model, a version or a seed.

Each pair shown gets an opaque handle (random, on the page) and its clips fresh served links
(random names, different for every annotator and every showing). A vote names the handle of
the pair it was cast on and uses it as its idempotency key, so a resubmitted vote is stored
once, against the pair the annotator saw, never against the pair loaded after it."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

import gradio as gr

from studio_backend.services import DIMENSIONS, VOTE_SEGMENTS, ServiceError

from .context import AppContext, UIError, refused

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
    pair: gr.State  # server-side: handle -> (sealed token, when it was shown) of the pairs shown lately
    handle: gr.Textbox  # hidden: the handle of the pair on the page, sent back with the vote
    refs: gr.Gallery = None  # the request's @Image_N / @Subject references
    segments: list = None  # optional: a verdict per quarter of the clips (DenseDPO's segment-level preferences)


KEEP = 16  # pairs a page remembers (a late resubmit of one of them is still recognised)


def next_pair(ctx: AppContext, user_state, shown: dict | None = None) -> tuple[dict | None, str, str | None,
                                                                              str | None, str, str]:
    """(page state, prompt, left clip, right clip, count, handle) of the next pair for this annotator."""
    user = ctx.user(user_state)
    try:
        p = ctx.studio.arena.next_pair(user)
    except ServiceError as e:
        raise UIError(str(e)) from e
    n = ctx.studio.arena.annotator_count(user)
    state = {"pairs": dict((shown or {}).get("pairs", {}))}
    if p is None:
        from studio_backend.rounds import empty_arena_message  # why there is nothing, and what would fill it

        return state, empty_arena_message(ctx.studio, n), None, None, f"You have rated {n} pairs.", ""
    handle = uuid.uuid4().hex  # opaque, and the vote's idempotency key
    state["pairs"][handle] = {"token": p.left_is_a_token, "shown": time.time(), "cid": p.comparison_id}
    while len(state["pairs"]) > KEEP:
        state["pairs"].pop(next(iter(state["pairs"])))
    return (state, f"**Request:** {p.prompt}", ctx.video_path(p.left_asset), ctx.video_path(p.right_asset),
            f"You have rated {n} pairs.", handle)


def references(ctx: AppContext, state: dict | None, handle: str) -> tuple[list, bool]:
    """The references behind the pair's @Image_N / @Subject as (served image, caption), and whether it is an
    edit (video consistency is asked about edits only)."""
    from studio_backend.rounds import pair_references

    seen = ((state or {}).get("pairs") or {}).get(handle)
    if not seen or "cid" not in seen:
        return [], False
    r = pair_references(ctx.studio, seen["cid"])
    items = [(ctx.image_path(a), f"@Image_{k}") for k, a in enumerate(r["images"], 1)]
    items += [(ctx.image_path(a), f"@{n} view {k}") for n, v in r["subjects"].items() for k, a in enumerate(v, 1)]
    return items, r["edit"]


def segment_verdicts(chosen) -> list[str] | None:
    """The page's quarter verdicts, one per quarter (an unset one counts as Same, as the row's label says); None when
    no quarter prefers a clip (the vote is on whole clips, as it is from an API client that leaves them out)."""
    chosen = list(chosen or [])[:VOTE_SEGMENTS]
    chosen += [None] * (VOTE_SEGMENTS - len(chosen))
    out = [v if v in ("G", "B") else "S" for v in chosen]
    return out if any(v != "S" for v in out) else None


def submit_vote(ctx: AppContext, user_state, pair: dict | None, overall: str | None, *dims, handle: str = "",
                segments=None) -> str:
    shown = (pair or {}).get("pairs", {})
    if not shown:
        raise UIError("load a pair first")
    if not handle:  # an in-process caller without the page: the pair shown last
        handle = next(reversed(shown))
    if handle not in shown:
        raise UIError("that pair is no longer on this page: load the next pair")
    if overall not in ("G", "S", "B"):
        raise UIError("choose an overall verdict (keys 1, 2, 3)")
    verdicts = {d: v for d, v in zip(DIMENSIONS, dims) if v in ("G", "S", "B")}
    seen = shown[handle]
    try:
        rec = ctx.studio.arena.vote(ctx.user(user_state), seen["token"], verdicts, overall, handle,
                                    seconds=time.time() - seen["shown"], segments=segment_verdicts(segments))
    except ServiceError as e:
        raise UIError(str(e)) from e
    return "Vote stored." if rec.created else "Already stored (one vote per pair)."


def build_arena_tab() -> ArenaTab:
    prompt = gr.Markdown("Press **Next pair** to start. Keys: 1 = left better, 2 = same, 3 = right better, Enter = submit.")
    from .create_tab import GALLERY_CSS

    gr.HTML(GALLERY_CSS, padding=False)
    refs = gr.Gallery(label="References the request names", visible=False, columns=8, height=120,
                      object_fit="contain", allow_preview=False, elem_id="arena-refs", elem_classes=["omni-strip"])
    with gr.Row():
        left = gr.Video(label="Left", elem_id="arena-left", interactive=False, loop=True, autoplay=True)
        right = gr.Video(label="Right", elem_id="arena-right", interactive=False, loop=True, autoplay=True)
    dims = [gr.Radio(CHOICES, label=LABELS[d]) for d in DIMENSIONS]
    overall = gr.Radio(CHOICES, label="Overall", elem_id="arena-overall")
    with gr.Accordion("By quarter of the clips (optional): where do they differ?", open=False,
                      elem_id="arena-segments"):
        gr.Markdown("Where the two clips differ only in part, say which is better in each quarter (each starts at "
                    "Same). These votes train on the frames they name.")
        with gr.Row():
            segments = [gr.Radio(CHOICES, value="S", label=f"Quarter {k + 1} of the clips", elem_id=f"arena-seg-{k}")
                        for k in range(VOTE_SEGMENTS)]
    with gr.Row():
        submit = gr.Button("Submit and next", variant="primary", elem_id="arena-submit")
        skip = gr.Button("Next pair", elem_id="arena-next")
    count = gr.Markdown(elem_id="arena-count")
    handle = gr.Textbox(visible=False, elem_id="arena-handle")
    return ArenaTab(prompt, left, right, dims, overall, submit, skip, count, gr.State(None), handle, refs, segments)



def wire_arena_tab(tab: ArenaTab, ctx: AppContext, user_state: gr.State) -> None:
    def load(us, shown=None):
        try:
            state, prompt, l, r, count, handle = next_pair(ctx, us, shown)
        except UIError as e:
            raise refused(str(e))
        items, is_edit = references(ctx, state, handle)
        dims = [None for _ in tab.dims[:-1]] + [gr.update(value=None, visible=is_edit)]  # video consistency: edits
        return (state, handle, prompt, l, r, count, *dims, None, gr.update(value=items, visible=bool(items)),
                *["S" for _ in tab.segments])

    outs = ([tab.pair, tab.handle, tab.prompt, tab.left, tab.right, tab.count] + tab.dims + [tab.overall, tab.refs]
            + tab.segments)
    n_dims = len(tab.dims)

    def vote_then_next(us, pair, handle, overall, *rest):
        dims, segments = rest[:n_dims], rest[n_dims:]
        try:
            msg = submit_vote(ctx, us, pair, overall, *dims, handle=handle or "", segments=segments)
        except UIError as e:
            raise refused(str(e))
        gr.Info(msg)
        return load(us, pair)

    tab.skip.click(load, [user_state, tab.pair], outs, api_name="arena_next")
    tab.submit.click(vote_then_next, [user_state, tab.pair, tab.handle, tab.overall] + tab.dims + tab.segments, outs,
                     api_name="arena_vote")
