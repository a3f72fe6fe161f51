"""Planning from a request's pixels for the families the pixel generator took over in session 32 (issue 18):
motion transfer (a track read off @Video, carried by @Image_1's subject), camera transfer (a camera read off
@Video, the first frame warped through it), storyboards (panels as keyframes, tracks fitted through them), the
shots before and after @Video (its subjects continued); the context they give the pixel generator and the sampler
keeping every given keyframe exactly."""

import numpy as np
import torch

from model.layout import LayoutPlan, PlannedSubject, camera_warp, centres_of, keyframes
from model.mvl import MVLRequest, Storyboard
from model.pixel_generator import CONTEXT_CHANNELS, PixelGenerator, PixelGeneratorConfig, pixel_context, sample_pixels
from model.prompt_enhancer import RuleEnhancer
from training.world import sample
from training.world.vocab import enhancer_vocabulary

ENH = RuleEnhancer(enhancer_vocabulary())
RED, BLUE, GRASS = (220, 40, 40), (40, 60, 220), (40, 110, 40)


def _scene(at: dict, frames: int = 16, bg=GRASS, size: int = 8) -> np.ndarray:
    """A clip (frames, 32, 32, 3): each colour's square at its (x, y) top-left corner per frame."""
    clip = np.zeros((frames, 32, 32, 3), np.uint8)
    clip[:] = bg
    for colour, xy in at.items():
        for t in range(frames):
            x, y = (int(round(v)) for v in xy[t])
            clip[t, y:y + size, x:x + size] = colour
    return clip


def _user(request: MVLRequest) -> MVLRequest:
    return MVLRequest.from_json(request.to_json())  # as a user sends it: nothing of a world sample rides along


def test_motion_transfer_carries_the_videos_track_to_the_images_subject():
    t = np.arange(16)
    video = _scene({BLUE: np.stack([4 + 0.8 * t, np.full(16, 20.0)], 1)})  # the blue square moves right
    image = _scene({RED: np.tile([10.0, 4.0], (16, 1))}, frames=1)[0]
    req = MVLRequest(prompt="@Image_1: the red square moves like the subject in @Video.", images=[image], video=video,
                     task="motion_transfer")
    e = ENH.enhance(_user(req))
    assert e.prompt == "@Image_1: the red square moves right."  # the motion read off @Video, in the world's words
    mover = e.layout.subjects[0]
    assert mover.color == "red" and mover.motion == "right" and mover.source == "image"
    c = centres_of(mover.boxes) * 32
    assert np.allclose(c[0], [14, 8], atol=0.6) and np.allclose(c[:, 0] - c[0, 0], 0.8 * t, atol=0.01)
    assert np.allclose(c[:, 1], c[0, 1])
    # a free path no world motion fits: the measured track
    wavy = _scene({BLUE: np.stack([4 + 1.2 * t, 12 + 4 * (t % 4 > 1)], 1)})
    e = ENH.enhance(_user(MVLRequest(prompt=req.prompt, images=[image], video=wavy, task="motion_transfer")))
    assert e.layout.subjects[0].motion == "path" and "moves like" in e.prompt
    dy = np.ptp(centres_of(e.layout.subjects[0].boxes)[:, 1] * 32)
    assert 3 < dy < 5
    # the video is a motion source, not the clip's content: the context is the first frame
    ctx, kept = pixel_context([image], video, e.layout, "motion_transfer")
    assert kept == (0,) and np.array_equal(((ctx[:3, 0].transpose(1, 2, 0) + 1) * 127.5).round(), image)
    assert ctx[3, 1:].max() == 0.5


def test_motion_transfer_plans_the_world_cases_from_their_pixels():
    for seed in range(8):
        smp = sample("motion_transfer", seed, "train")
        e = ENH.enhance(_user(smp.request))
        truth = smp.truth.subjects[0]
        plan = next(p for p in e.layout.subjects if p.color == truth.color)
        assert plan.motion == truth.motion and np.abs(centres_of(plan.boxes) * 32 - truth.centers).max() < 1.0


def test_camera_transfer_reads_the_camera_and_warps_the_first_frame_through_it():
    rng = np.random.default_rng(0)
    world = rng.integers(0, 255, (32, 32, 3)).astype(np.uint8)  # a textured world: every pan shows
    for camera in ("static", "pan_left", "pan_right", "zoom_in", "zoom_out"):
        video, seen = camera_warp(world, camera, 16)
        assert seen[0].all() and np.array_equal(video[0], world)
        image = _scene({RED: np.tile([12.0, 12.0], (16, 1))}, frames=1)[0]
        req = MVLRequest(prompt="@Image_1 filmed with the camera motion of @Video.", images=[image], video=video,
                         task="camera_transfer")
        e = ENH.enhance(_user(req))
        assert e.layout.camera == camera, camera
        assert e.prompt.startswith("@Image_1: the red subject stays still")
        assert ("camera" in e.prompt) == (camera != "static")
        box = e.layout.subjects[0].boxes
        if camera == "pan_left":  # the camera moves left: the scene slides right
            assert box[-1, 0] > box[0, 0] + 0.15
        if camera == "zoom_in":
            assert box[-1, 2] - box[-1, 0] > 1.2 * (box[0, 2] - box[0, 0])
        ctx, kept = pixel_context([image], video, e.layout, "camera_transfer")
        assert kept == (0,)
        if camera == "pan_right":  # the context is the image seen through the camera; what it reveals: weight 0
            warped, seen = camera_warp(image, camera, 16)
            assert np.array_equal(((ctx[:3, 15].transpose(1, 2, 0) + 1) * 127.5).round() * seen[15][..., None],
                                  warped[15] * seen[15][..., None])
            assert ctx[3, 15].min() == 0 and ctx[3, 15].max() == 1
    assert LayoutPlan.from_dict(e.layout.to_dict()).camera == "zoom_out"  # stored with the job and read back


def test_camera_transfer_world_cases_get_their_camera():
    for seed in range(8):
        smp = sample("camera_transfer", seed, "train")
        assert ENH.enhance(_user(smp.request)).layout.camera == smp.truth.info["camera"]


def test_storyboard_panels_are_keyframes_and_tracks_fit_through_them():
    assert keyframes(4, 16) == [0, 5, 10, 15] and keyframes(2, 16) == [0, 15] and keyframes(1, 16) == [0]
    t = np.arange(16)
    clip = _scene({RED: np.stack([2 + 0.8 * t, np.full(16, 4.0)], 1), BLUE: np.tile([20.0, 20.0], (16, 1))})
    panels = [clip[k] for k in keyframes(4, 16)]
    for board in (Storyboard(panels=panels), Storyboard(grid=np.concatenate(
            [np.concatenate(panels[:2], 1), np.concatenate(panels[2:], 1)], 0), rows=2, cols=2)):
        req = MVLRequest(prompt="Turn the storyboard panels into one continuous shot.", storyboard=board)
        e = ENH.enhance(_user(req))
        assert e.task == "storyboard"
        red = next(s for s in e.layout.subjects if s.color == "red")
        blue = next(s for s in e.layout.subjects if s.color == "blue")
        assert red.motion == "right" and blue.motion == "still"
        assert np.allclose(centres_of(red.boxes)[:, 0] * 32, 6 + 0.8 * t, atol=0.6)
    # panels no world motion fits: straight lines from panel to panel
    zig = _scene({RED: np.stack([np.array([2, 2, 2, 2, 2, 20, 20, 20, 20, 20, 2, 2, 2, 2, 2, 20.0]), np.full(16, 4.0)], 1)})
    e = ENH.enhance(_user(MVLRequest(prompt="Turn the storyboard panels into one continuous shot.",
                                     storyboard=Storyboard(panels=[zig[k] for k in keyframes(4, 16)]))))
    red = e.layout.subjects[0]
    assert red.motion == "path" and np.allclose(centres_of(red.boxes)[[0, 5, 10, 15], 0] * 32, [6, 24, 6, 24], atol=0.6)
    # the context: each panel on its keyframe (weight 1), a still copy until the next (0.5); all of them kept
    ctx, kept = pixel_context([], None, e.layout, "storyboard", panels=[zig[k] for k in keyframes(4, 16)])
    assert kept == (0, 5, 10, 15)
    assert [float(ctx[3, k].min()) for k in range(16)] == [1.0 if k in kept else 0.5 for k in range(16)]
    assert np.array_equal(((ctx[:3, 7].transpose(1, 2, 0) + 1) * 127.5).round(), zig[5])


def test_storyboard_world_cases_are_planned_from_their_panels():
    for seed in range(8):
        smp = sample("storyboard", seed, "train")
        e = ENH.enhance(_user(smp.request))
        for truth in smp.truth.subjects:
            plan = next(p for p in e.layout.subjects if p.color == truth.color)
            assert np.abs(centres_of(plan.boxes) * 32 - truth.centers).max() < 1.5, (seed, truth.motion, plan.motion)


def test_the_sampler_keeps_every_given_keyframe_and_the_pipeline_serves_storyboards():
    from tests.test_model import tiny_pipeline

    torch.manual_seed(0)
    gen = PixelGenerator(PixelGeneratorConfig(width=8, ground=4, text_dim=32, temb=16, context=CONTEXT_CHANNELS,
                                              tasks=("t2v", "storyboard")))
    with torch.no_grad():
        for name, p in gen.named_parameters():
            if name.startswith("out.") or ".c2." in name:
                p.normal_(0, 0.05)
    t = np.arange(16)
    clip = _scene({RED: np.stack([2 + 0.8 * t, np.full(16, 4.0)], 1)})
    panels = [clip[k] for k in keyframes(4, 16)]
    pipe = tiny_pipeline()
    pipe.pixel = gen.eval()
    req = MVLRequest(prompt="Turn the storyboard panels into one continuous shot.",
                     storyboard=Storyboard(panels=panels), steps=3)
    e = pipe.enhancer.enhance(req)
    assert pipe._pixel_serves(req, e)
    out = pipe(req).frames
    for k, panel in zip(keyframes(4, 16), panels):
        assert np.array_equal(out[k], panel)
    assert not np.array_equal(out[7], panels[1]) and not np.array_equal(out[7], panels[2])  # the rest generated
    ctx, kept = pixel_context([], None, e.layout, "storyboard", panels=panels)
    direct = sample_pixels(gen, pipe.text_encoder, e.prompt, e.layout, seed=0, steps=3, context=ctx, keep=kept)
    assert np.array_equal(direct, out)


def test_shots_before_and_after_continue_the_videos_subject_from_its_pixels():
    t = np.arange(16)
    video = _scene({RED: np.stack([2 + 0.8 * t, np.full(16, 6.0)], 1)})  # the red square moves right: x 6 -> 18
    start, end = np.float32([6, 10]), np.float32([18, 10])

    def plan(prompt: str, task: str):
        e = ENH.enhance(_user(MVLRequest(prompt=prompt, video=video, task=task)))
        s = e.layout.subjects[0]
        return s, centres_of(s.boxes) * 32, (s.boxes[:, 2] - s.boxes[:, 0]) * 32, e.layout

    s, c, size, _ = plan("The next shot after @Video: the subject goes back the way it came.", "next_shot")
    assert s.color == "red" and np.allclose(c[0], end, atol=0.6) and np.allclose(c[:, 0], end[0] - 0.8 * t, atol=0.6)
    s, c, size, lay = plan("The next shot after @Video: a close-up of the subject, centred and still.", "next_shot")
    assert np.allclose(c, 16) and np.allclose(size, max(ENH.planner.sizes.values()))
    s, c, _, _ = plan("The next shot after @Video: the subject stops and turns its back to us.", "next_shot")
    assert s.motion == "still" and np.allclose(c, end, atol=0.6)
    s, c, _, _ = plan("The shot before @Video: the subject arriving at where @Video begins.", "previous_shot")
    assert s.motion == "right" and np.allclose(c[:, 0], start[0] + 0.8 * (t - 16), atol=0.6)  # arrives where it begins
    s, c, _, _ = plan("The shot before @Video: the subject standing at its starting point, seen from behind.",
                      "previous_shot")
    assert s.motion == "still" and np.allclose(c, start, atol=0.6)
    # the context: the video's last frame as a still copy (nothing kept exactly); the subject's look cut where
    # that frame shows its colour, pasted into the close-up's large centred box
    ctx, kept = pixel_context([], video, lay, "next_shot")
    assert kept == () and float(ctx[3].min()) == 0.5
    assert np.array_equal(((ctx[:3, 9].transpose(1, 2, 0) + 1) * 127.5).round(), video[-1])
    red = (ctx[4, 0] > 0.5) & (ctx[5, 0] < -0.5) & (ctx[7, 0] > 0.5)
    assert red[10:22, 10:22].all() and not red[:6].any()  # pasted big and centred, not where the video left it


def test_shots_plan_the_world_cases_from_the_video():
    for family in ("next_shot", "previous_shot"):
        for seed in range(8):
            smp = sample(family, seed, "train")
            e = ENH.enhance(_user(smp.request))
            truth = smp.truth.subjects[0]
            plan = next(p for p in e.layout.subjects if p.color == truth.color)
            assert np.abs(centres_of(plan.boxes) * 32 - truth.centers).max() < 1.5, (family, seed)
            assert abs((plan.boxes[0, 2] - plan.boxes[0, 0]) * 32 - truth.sizes[0]) < 1.5, (family, seed)


def test_the_create_tabs_plan_picture_sits_on_the_frame_the_plan_was_read_from():
    """Enhance on Create draws the plan over the picture it came from: the video's last frame for the next shot."""
    from types import SimpleNamespace

    from app.create_tab import plan_picture

    t = np.arange(16)
    video = _scene({RED: np.stack([2 + 0.8 * t, np.full(16, 6.0)], 1)}, bg=(200, 200, 40))
    ctx = SimpleNamespace(studio=SimpleNamespace(media=SimpleNamespace(resolve=lambda r: r)),
                          active_enhancer=lambda: ENH)
    req = MVLRequest(prompt="The next shot after @Video: the subject stops and turns its back to us.", video=video,
                     task="next_shot")
    img = plan_picture(ctx, req.to_dict())
    assert img is not None and img.shape == (256, 256, 3)
    yellow = (img[..., 0] > 150) & (img[..., 1] > 150) & (img[..., 2] < 90)
    assert yellow.mean() > 0.5  # the video's place behind the boxes
    red = (img[..., 0] > 180) & (img[..., 1] < 80) & (img[..., 2] < 80)
    ys, xs = np.nonzero(red)
    assert xs.min() > 0.4 * 256  # the subject where the video leaves it (x 14-22 of 32), not where it began


def test_a_one_panel_storyboard_or_a_subject_seen_once_stays_still():
    clip = _scene({RED: np.tile([10.0, 10.0], (16, 1))})
    e = ENH.enhance(_user(MVLRequest(prompt="Turn the storyboard panels into one continuous shot.",
                                     storyboard=Storyboard(panels=[clip[0]]))))
    s = e.layout.subjects[0]
    assert s.motion == "still" and np.allclose(s.boxes, s.boxes[0])
    ctx, kept = pixel_context([], None, e.layout, "storyboard", panels=[clip[0]])
    assert kept == (0,) and float(ctx[3, 0].min()) == 1.0 and float(ctx[3, 1:].max()) == 0.5
