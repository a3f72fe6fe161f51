"""model/pixel_generator.pixel_context: what a request shows, pixel-aligned with the clip (issue 18): a first frame
carried along the plan, a reference's cut-out pasted in its box, a context video; a grown model equals the
text-to-video one; the sampler keeps a given first frame exactly; the pipeline routes pixel families to it."""

import numpy as np
import torch

from model.layout import LayoutPlan, PlannedSubject, subject_cutout
from model.mvl import MVLRequest
from model.pixel_generator import (CONTEXT_CHANNELS, PixelGenerator, PixelGeneratorConfig, grow_context,
                                   pixel_conditions, pixel_context, sample_pixels)


def _frame(colour=(220, 30, 30), at=(4, 4), size=8, bg=(40, 90, 40)):
    img = np.zeros((32, 32, 3), np.uint8)
    img[:] = bg
    y, x = at
    img[y:y + size, x:x + size] = colour
    return img


def _track(x0: float, x1: float, y: float = 4, size: float = 8, frames: int = 16) -> np.ndarray:
    xs = np.linspace(x0, x1, frames)
    return (np.stack([xs, np.full(frames, y), xs + size, np.full(frames, y + size)], 1) / 32).astype(np.float32)


def test_a_first_frame_is_frame_zero_and_its_subject_follows_the_planned_boxes():
    img = _frame()
    plan = LayoutPlan([PlannedSubject("the red square", "red", (0.86, 0.12, 0.12), _track(4, 20), "image", "right")])
    c, keep = pixel_context([img], None, plan, "i2v")
    assert keep and c.shape == (CONTEXT_CHANNELS, 16, 32, 32)
    first = ((c[:3, 0].transpose(1, 2, 0) + 1) * 127.5).round().astype(np.uint8)
    assert np.array_equal(first, img) and c[3, 0].min() == 1 and c[3, 5].max() == 0.5  # given, then a still copy
    red = lambda t: (c[4, t] > 0.5) & (c[5, t] < -0.5) & (c[7, t] > 0.5)  # noqa: E731  the guide's red pixels
    assert red(0)[4:12, 4:12].all() and red(15)[4:12, 20:28].all() and not red(15)[4:12, 4:12].any()
    # a subject only the words name (not in the frame) has no guide; a request without pixels has no context
    words = LayoutPlan([PlannedSubject("a blue circle", "blue", (0.1, 0.1, 0.9), _track(4, 20), "text")])
    assert pixel_context([img], None, words, "i2v")[0][7].max() == 0
    empty, keep = pixel_context([], None, plan, "t2v")
    assert not keep and np.abs(empty).max() == 0


def test_a_reference_cutout_is_pasted_in_its_box_and_a_context_video_is_read_on_every_frame():
    ref = _frame(colour=(30, 30, 220), at=(10, 12), size=6, bg=(200, 200, 200))
    cut = subject_cutout(ref)
    assert cut is not None and cut[0].shape[:2] == (6, 6) and cut[1].min() == 1
    plan = LayoutPlan([PlannedSubject("@Image_1", None, (0.5, 0.5, 0.5), _track(2, 14, y=20, size=6), "text")])
    place = _frame(colour=(40, 90, 40), size=1)
    c, keep = pixel_context([ref, place], None, plan, "image_ref")
    assert not keep and c[3].max() == 0.5  # the place's image as a still copy
    assert c[7, 0][20:26, 2:8].min() == 1 and c[6, 0][20:26, 2:8].min() > 0.5  # blue cut-out, not the plate
    assert c[7, 0].sum() == 36 and c[7, 15][20:26, 14:20].min() == 1
    video = np.stack([_frame(at=(4, 2 + t)) for t in range(16)])
    c, keep = pixel_context([], video, LayoutPlan([]), "edit_remove")
    assert not keep and c[3].min() == 1
    back = ((c[:3].transpose(1, 2, 3, 0) + 1) * 127.5).round().astype(np.uint8)
    assert np.array_equal(back, video)


def test_a_grown_model_is_the_t2v_model_and_keeps_a_given_first_frame():
    from model.text_encoder import TextEncoderConfig, TinyTextEncoder

    torch.manual_seed(0)
    small = dict(width=8, ground=4, text_dim=32, temb=16)
    t2v = PixelGenerator(PixelGeneratorConfig(**small)).eval()
    with torch.no_grad():
        for name, p in t2v.named_parameters():
            if name.startswith("out.") or ".c2." in name:
                p.normal_(0, 0.05)
    ctx = PixelGenerator(PixelGeneratorConfig(**small, context=CONTEXT_CHANNELS)).eval()
    ctx.load_state_dict(grow_context(t2v.state_dict()))
    te = TinyTextEncoder(TextEncoderConfig(kind="tiny", dim=32))
    img = _frame()
    plan = LayoutPlan([PlannedSubject("the red square", "red", (0.86, 0.12, 0.12), _track(4, 20), "image", "right")])
    c = pixel_conditions(te, ["the red square moves right"], [plan], [False],
                         contexts=[pixel_context([img], None, plan, "i2v")[0]])
    x, s = torch.randn(1, 3, 16, 32, 32), torch.full((1,), 0.6)
    with torch.no_grad():
        a = t2v(x, s, **{k: v for k, v in c.items() if k != "context"})
        b = ctx(x, s, **c)
    assert torch.allclose(a, b, atol=1e-6)  # zero-initialised new inputs: the same model until trained
    context, keep = pixel_context([img], None, plan, "i2v")
    clip = sample_pixels(ctx, te, "the red square moves right", plan, seed=3, steps=3, context=context, keep=keep)
    assert np.array_equal(clip[0], img) and not np.array_equal(clip[5], img)  # frame 0 given, the rest generated


def test_the_pipeline_sends_first_frame_and_edit_requests_to_a_context_model_only():
    from tests.test_model import tiny_pipeline

    plain = tiny_pipeline()
    pipe = tiny_pipeline()
    torch.manual_seed(1)
    gen = PixelGenerator(PixelGeneratorConfig(width=8, ground=4, text_dim=32, temb=16, context=CONTEXT_CHANNELS,
                                              tasks=("t2v", "i2v", "edit_remove")))
    with torch.no_grad():
        for name, p in gen.named_parameters():
            if name.startswith("out.") or ".c2." in name:
                p.normal_(0, 0.05)
    pipe.pixel = gen.eval()
    img = _frame(colour=(220, 30, 30), at=(8, 8), size=10)
    i2v = MVLRequest(prompt="@Image_1: the red square moves right.", images=[img], task="i2v", steps=3, seed=2)
    out = pipe(i2v).frames
    assert np.array_equal(out[0], img) and not np.array_equal(out, plain(i2v).frames)
    from training.world.families import sample

    edit = sample("edit_remove", 3, "train").request
    edit.steps, video = 3, edit.video
    assert pipe._pixel_serves(edit, pipe.enhancer.enhance(edit))  # the plan: the video's subjects, less one
    assert pipe(edit).frames.shape == (16, 32, 32, 3)
    from model.conditioning import _fit_video
    from model.pipeline import preserve_unchanged

    pipe.config.preserve_grow = 0
    raw = pipe(edit, preserve=0).frames  # 0: no paste-back
    kept = pipe(edit, preserve=0.6).frames  # the source's pixels where the output stayed within the level
    src = _fit_video(video, 16)
    assert np.array_equal(kept, preserve_unchanged(raw, src, src, 0.6, 0)) and (kept == src).mean() > (raw == src).mean()
    gen.config.context = 0  # a text-to-video-only model leaves requests with pixels to the latent generator
    gen.inp = torch.nn.Conv2d(3 + 4 + 4, 8, 3, padding=1)
    assert np.array_equal(pipe(i2v).frames, plain(i2v).frames)


def test_a_library_subject_is_drawn_from_its_first_view():
    view = _frame(colour=(230, 200, 30), at=(9, 9), size=14, bg=(200, 200, 200))
    plan = LayoutPlan([PlannedSubject("@Subject_1", "yellow", (0.9, 0.8, 0.1), _track(2, 18, y=10, size=12), "text")])
    c, _ = pixel_context([], None, plan, "subject_ref", subjects=[[view]])
    assert c[7, 0][10:22, 2:14].min() == 1 and c[7, 0].sum() == 144 and c[7, 15][10:22, 18:30].min() == 1
    assert pixel_context([], None, plan, "subject_ref")[0][7].max() == 0  # no library: nothing to paste


def test_guidance_only_inside_its_interval():
    """guidance_interval (lo, hi]: guided passes only at those noise levels; an empty interval is guidance 1."""
    from model.text_encoder import TextEncoderConfig, TinyTextEncoder

    torch.manual_seed(2)
    gen = PixelGenerator(PixelGeneratorConfig(width=8, ground=4, text_dim=32, temb=16)).eval()
    with torch.no_grad():
        for name, p in gen.named_parameters():
            if name.startswith("out.") or ".c2." in name:
                p.normal_(0, 0.05)
    te = TinyTextEncoder(TextEncoderConfig(kind="tiny", dim=32))
    plan = LayoutPlan([PlannedSubject("the red square", "red", (0.86, 0.12, 0.12), _track(4, 20), "text", "right")])
    calls = []
    gen.register_forward_hook(lambda m, a, out: calls.append(a[0].shape[0]))
    run = lambda g, gi=(0.0, 1.0): sample_pixels(gen, te, "the red square moves right", plan, 4, 4, g,  # noqa: E731
                                                 guidance_interval=gi)
    full = run(3.0)
    assert calls == [2, 2, 2, 2]
    calls.clear()
    none = run(3.0, (0.0, 0.0))
    assert calls == [1, 1, 1, 1] and np.array_equal(none, run(1.0))
    calls.clear()
    part = run(3.0, (0.9, 1.0))  # the shifted schedule's first steps are above 0.9
    assert calls[0] == 2 and calls[-1] == 1
    assert not np.array_equal(part, full) and not np.array_equal(part, none)


def test_an_edit_reference_no_subject_takes_is_the_guide_at_half_weight():
    """"Replace the background of @Video with @Image_1": the new place in the guide (weight 0.5), the video in
    the context (weight 1)."""
    from training.world.families import sample

    from model.prompt_enhancer import RuleEnhancer
    from training.world.vocab import enhancer_vocabulary

    enh = RuleEnhancer(enhancer_vocabulary())
    smp = next(s for s in (sample("background", k, "train") for k in range(40)) if s.request.images)
    e = enh.enhance(smp.request)
    c, keep = pixel_context(list(smp.request.images), smp.request.video, e.layout, e.task)
    assert not keep and c[3].min() == 1 and np.allclose(c[7], 0.5)
    plate = ((c[4:7, 3].transpose(1, 2, 0) + 1) * 127.5).round().astype(np.uint8)
    assert np.array_equal(plate, smp.request.images[0])
