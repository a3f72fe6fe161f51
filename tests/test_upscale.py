"""Upscale 4x (issue 22): the SR stage as the Omni stack's third stage, through the pipeline, a real job
and the studio's refusal where a model has none. The Chromium test of the page's choice is in
tests/test_ui_flows.py (test_upscale_as_a_person)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from model.mvl import MVLRequest, MVLValidationError
from model.pipeline import OmniPipeline
from model.sr import SRStage, downsample
from studio_backend.services import ServiceError
from studio_backend.studio import Studio
from tests.test_model import tiny_pipeline


def _req(prompt: str = "A red circle moves left on a meadow.", **kw) -> MVLRequest:
    return MVLRequest(prompt, steps=2, **kw)


def test_upscale_runs_the_sr_stage_after_the_generator_and_reports_it():
    pipe = tiny_pipeline(sr=True)
    base = pipe(_req(), seed=3).frames
    calls = []
    out = pipe(_req(upscale=True), seed=3, callback_on_step_end=lambda p, i, t, x: calls.append((i, x.get("stage"))))
    assert base.shape == (16, 32, 32, 3) and out.frames.shape == (16, 128, 128, 3) and out.frames.dtype == np.uint8
    assert calls == [(0, None), (1, None), (2, "super-resolution")] and pipe.progress_steps(_req(upscale=True)) == 3
    # the same scene: the upscaled clip, averaged back over 4x4 pixels, stays near the generator's clip
    down = downsample(torch.from_numpy(out.frames).permute(3, 0, 1, 2)[None].float(), 4)[0].permute(1, 2, 3, 0)
    assert np.abs(down.numpy() - base.astype(np.float32)).mean() < 12
    # deterministic, and fewer frames than the model makes come back as asked
    assert np.array_equal(out.frames, pipe(_req(upscale=True), seed=3).frames)
    short = pipe(_req(upscale=True, frames=5), seed=3).frames
    assert short.shape == (5, 128, 128, 3)
    # the degradation level the stage is told: the config's by default (the generator's clips), or the caller's
    # (benchmarks.sr tells it 0 for the world's clean renders)
    assert pipe.config.sr_level == 0.0 and np.array_equal(pipe.upscale(base, _req(), level=0.0), out.frames)
    assert not np.array_equal(pipe.upscale(base, _req(), level=1.0), out.frames)


def test_an_untrained_sr_stage_is_bicubic_and_a_model_without_one_refuses(tmp_path):
    from model.sr import SRConfig

    pipe = tiny_pipeline()
    with pytest.raises(MVLValidationError, match="no super-resolution stage: set upscale to false"):
        pipe(_req(upscale=True))
    pipe.sr = SRStage(SRConfig(dim=32, depth=1, heads=2, rope_split=(4, 6, 6), window=(4, 4, 4), text_dim=0,
                               cond_side=32)).eval()
    base = pipe(_req(), seed=1).frames
    up = pipe(_req(upscale=True), seed=1).frames
    t = torch.from_numpy(base).permute(0, 3, 1, 2).float() / 127.5 - 1
    bicubic = torch.nn.functional.interpolate(t, scale_factor=4, mode="bicubic", align_corners=False)
    expect = ((bicubic.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    assert np.abs(up.astype(int) - expect.astype(int)).max() <= 1


def test_the_sr_stage_saves_and_loads_with_its_model_directory(tmp_path):
    pipe = tiny_pipeline(sr=True)
    pipe.save_pretrained(tmp_path / "m")
    assert (tmp_path / "m" / "sr" / "model.safetensors").is_file()
    again = OmniPipeline.from_pretrained(tmp_path / "m")
    again.set_progress_bar_config(disable=True)
    assert again.sr is not None
    req = _req(upscale=True, images=[np.full((48, 48, 3), (200, 30, 30), np.uint8)],
               prompt="@Image_1 moves left on a meadow.")
    assert np.array_equal(pipe(req, seed=2).frames, again(req, seed=2).frames)
    # without sr/ the loaded model has no stage
    tiny_pipeline().save_pretrained(tmp_path / "plain")
    assert OmniPipeline.from_pretrained(tmp_path / "plain").sr is None


def test_an_upscaled_job_runs_through_the_worker_and_stores_128px_frames(tmp_path):
    from studio_backend.worker import Worker

    tiny_pipeline(sr=True).save_pretrained(tmp_path / "m")
    tiny_pipeline().save_pretrained(tmp_path / "plain")
    st = Studio.open(tmp_path / "h")
    root = st.users.ensure("root", "admin")
    v = st.registry.register("tiny-sr", str(tmp_path / "m"))
    st.registry.promote(root, v.id)
    user = st.users.ensure("maker", "creator")
    job = st.jobs.submit(user, "generate", _req(upscale=True).to_dict(), seed=1)
    seen = []
    progress = st.jobs.progress

    def spy(job_id, fraction, message=""):
        seen.append((round(fraction, 3), message))
        return progress(job_id, fraction, message)

    st.jobs.progress = spy
    done = Worker(st, lambda p: _load(p), kinds=("generate",)).run_one()
    assert done.status == "succeeded", done.message
    frames = st.media.load_video(done.result_asset_id)
    assert frames.shape == (16, 128, 128, 3)
    assert seen[0] == (0.0, "step 0/2, then super-resolution 4x") and seen[-1] == (1.0, "super-resolution 4x done")
    assert [f for f, _ in seen] == sorted(f for f, _ in seen)  # the bar only moves forward, over both stages
    # a version without the stage refuses before anything is queued, naming the fix
    plain = st.registry.register("tiny-plain", str(tmp_path / "plain"))
    n = len(st.jobs.list())
    with pytest.raises(ServiceError, match="no super-resolution stage"):
        st.jobs.submit(user, "generate", _req(upscale=True).to_dict(), model_version_id=plain.id)
    assert len(st.jobs.list()) == n and job.id == done.id


def _load(path):
    p = OmniPipeline.from_pretrained(path)
    p.set_progress_bar_config(disable=True)
    return p


def test_the_sr_benchmark_runs_end_to_end_with_snapping_columns(tmp_path):
    """benchmarks.sr on a tiny model directory with an SR stage: both sides measured, the full-snap and threshold
    columns present and consistent (a threshold past every distance is the full snap), and --snap sets the stage's own."""
    import json

    from benchmarks import sr as bench

    pipe = tiny_pipeline(sr=True)
    pipe.save_pretrained(tmp_path / "m")
    out = tmp_path / "sr.json"
    assert bench.main(["--model", str(tmp_path / "m"), "--families", "t2v", "--cases", "1", "--repeat", "1",
                       "--no-nabla", "--snap", "16", "--snap-thresholds", "8,1e9", "--json", str(out)]) == 0
    rep = json.loads(out.read_text())
    assert rep["sr_config"]["snap"] == 16
    for side in ("truth_base", "generated"):
        s = rep[side]
        assert s["cases"] == 1 and np.isfinite(s["sr_psnr"]) and np.isfinite(s["full_snap_psnr"])
        assert s["snap1e+09_psnr"] == s["full_snap_psnr"] and s["snap1e+09_lost"] == s["full_snap_lost"]
        assert 0 <= s["snap8_lost"] <= s["attributes"]
    with pytest.raises(SystemExit, match="each threshold above 0"):
        bench.main(["--model", str(tmp_path / "m"), "--snap-thresholds", "0", "--families", "t2v", "--cases", "1"])
