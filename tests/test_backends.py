"""The backend interface and the Wan VACE backend on a tiny random-weight WanVACEPipeline
(built in-process, saved with save_pretrained, registered as a version: nothing downloads).
Every generation goes through the studio's real job worker."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from model.backends import UnsupportedRequest, capabilities, check_request, load_backend
from model.backends.vace import FAMILIES, GRAY, REFUSED, vace_inputs
from model.backends.wan import WanBackend, WanSettings, apply_preset
from model.mvl import TASKS, Annotations, Arrow, Box, MVLRequest, Storyboard
from studio_backend.services import ServiceError
from studio_backend.studio import Studio
from studio_backend.worker import Worker
from tests.wan_tiny import save_tiny_wan

SMALL = dict(frames=5, height=16, width=16, steps=2, guidance=1.0)
RNG = np.random.default_rng(0)
IMG = RNG.integers(0, 255, (24, 20, 3), dtype=np.uint8)
IMG2 = RNG.integers(0, 255, (16, 16, 3), dtype=np.uint8)
VID = RNG.integers(0, 255, (7, 16, 16, 3), dtype=np.uint8)
MASK = np.zeros((16, 16, 3), np.uint8)
MASK[4:10, 4:10] = 255


@pytest.fixture(autouse=True)
def one_thread():
    """One torch thread: the tiny model's convolutions are 15x slower on two threads of a shared
    2-core machine (0.67 s against 0.045 s a generation, measured)."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def tiny_wan_dir(tmp_path_factory):
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return str(save_tiny_wan(tmp_path_factory.mktemp("models") / "tiny-wan-vace"))
    finally:
        torch.set_num_threads(n)


_LOADED: dict = {}


def load_tiny(backend, path, adapter):
    """The worker's loader: UMT5 reads 16 tokens (the tiny tokenizer knows a few words)."""
    key = (backend, path, adapter)
    if key not in _LOADED:
        _LOADED[key] = load_backend(backend, path, adapter, settings=WanSettings(max_sequence_length=16))
    return _LOADED[key]


def no_embedded(path):
    raise AssertionError("the embedded loader must not be asked for a wan version")


@pytest.fixture
def wan_studio(tmp_path, tiny_wan_dir):
    studio = Studio.open(tmp_path / "home")
    v = studio.registry.register("tiny-wan", tiny_wan_dir, status="active", backend="wan")
    user = studio.users.ensure("maker", "creator")
    project = studio.projects.create(user, "p").id
    worker = Worker(studio, no_embedded, "gpu-worker-1", kinds=("generate",), load_backend=load_tiny)
    return studio, v, user, project, worker


def stored(studio, req: MVLRequest) -> dict:
    """The request as the studio queues it: media as asset ids of the media store."""
    m = studio.media
    d = req.to_dict()
    d["images"] = [m.put_image_array(x).id for x in req.images]
    d["subjects"] = {k: [m.put_image_array(x).id for x in v] for k, v in req.subjects.items()}
    d["video"] = None if req.video is None else m.put_video_array(req.video).id
    d["mask"] = None if req.mask is None else m.put_image_array(req.mask).id
    if req.storyboard is not None:
        d["storyboard"]["panels"] = [m.put_image_array(x).id for x in req.storyboard.panels]
    return d


def run(wan_studio, req: MVLRequest, seed: int = 0):
    studio, v, user, project, worker = wan_studio
    job = studio.jobs.submit(user, "generate", stored(studio, req), seed=seed, project_id=project)
    done = worker.run_one()
    assert done is not None and done.id == job.id
    return done


# One request per family the Wan backend serves (the task given, or inferred from the request).
SERVED = {
    "t2v": MVLRequest("a red circle moves left", **SMALL),
    "reasoning": MVLRequest("the colour of a ripe banana, a ball", task="reasoning", **SMALL),
    "i2v": MVLRequest("@Image_1: the cat moves right", images=[IMG], **SMALL),
    "image_ref": MVLRequest("the dog of @Image_1 on a beach", images=[IMG], **SMALL),
    "subject_ref": MVLRequest("@Tigo jumps", subjects={"Tigo": [IMG, IMG2]}, **SMALL),
    "novel_view": MVLRequest("@Tigo seen from behind", subjects={"Tigo": [IMG]}, task="novel_view", **SMALL),
    "next_shot": MVLRequest("the next shot after @Video", video=VID, **SMALL),
    "previous_shot": MVLRequest("the shot before @Video", video=VID, **SMALL),
    "edit_remove": MVLRequest("remove the ball from @Video", video=VID, mask=MASK, **SMALL),
    "edit_add": MVLRequest("add a cat to @Video", video=VID, annotations=Annotations(boxes=[Box((0.1, 0.1, 0.5, 0.5))]),
                           task="edit_add", **SMALL),
    "edit_replace": MVLRequest("replace the ball in @Video with @Image_1", images=[IMG], video=VID, mask=MASK,
                               **SMALL),
    "background": MVLRequest("a new background of @Video: a beach", video=VID, mask=MASK, **SMALL),
    "weather": MVLRequest("make it snow in @Video", video=VID, mask=MASK, **SMALL),
    "material": MVLRequest("turn the ball into glass", video=VID, mask=MASK, task="material", **SMALL),
    "effects": MVLRequest("the ball in @Video starts to glow", video=VID, mask=MASK, **SMALL),
    "combined": MVLRequest("make it snow in @Video and add a cat", video=VID, mask=MASK, **SMALL),
    "stylize": MVLRequest("make @Video look like pixel art", video=VID, **SMALL),
    "arrows": MVLRequest("a ball moves", annotations=Annotations(arrows=[Arrow([(0.2, 0.5), (0.8, 0.5)])]), **SMALL),
    "boxes": MVLRequest("a ball in the box", annotations=Annotations(boxes=[Box((0.1, 0.1, 0.5, 0.5))]), **SMALL),
    "sketch": MVLRequest("@Image_1 is a sketch: bring it to life", images=[IMG], **SMALL),
    "storyboard": MVLRequest("a story in three beats", storyboard=Storyboard(panels=[IMG, IMG2, IMG]), **SMALL),
}


def test_every_family_is_served_or_refused_with_a_reason():
    caps = capabilities("wan")
    assert set(SERVED) == set(caps.served) and set(caps.served) | set(caps.refused) == set(TASKS) | {"upscale"}
    assert set(caps.served).isdisjoint(caps.refused)
    emb = capabilities("embedded")
    assert set(emb.served) == set(TASKS) and "upscale" in emb.refused


def test_vace_inputs_follow_the_documented_mapping():
    F, H, W = 5, 16, 16
    t2v = vace_inputs(SERVED["t2v"], "t2v")
    assert t2v.video is None and t2v.mask is None and t2v.reference_images is None
    i2v = vace_inputs(SERVED["i2v"], "i2v")
    assert len(i2v.video) == len(i2v.mask) == F
    assert np.asarray(i2v.mask[0]).max() == 0 and np.asarray(i2v.mask[1]).min() == 255
    assert np.asarray(i2v.video[0]).shape == (H, W, 3) and np.asarray(i2v.video[1]).max() == GRAY
    sub = vace_inputs(SERVED["subject_ref"], "subject_ref")
    assert len(sub.reference_images) == 2 and sub.reference_images[0].size == (20, 24)  # VACE letterboxes them
    nxt = vace_inputs(SERVED["next_shot"], "next_shot", extension_frames=2)
    assert np.array_equal(np.asarray(nxt.video[0]), VID[-2]) and np.array_equal(np.asarray(nxt.video[1]), VID[-1])
    assert [np.asarray(m).max() for m in nxt.mask] == [0, 0, 255, 255, 255]
    prev = vace_inputs(SERVED["previous_shot"], "previous_shot", extension_frames=2)
    assert np.array_equal(np.asarray(prev.video[-2]), VID[0]) and np.array_equal(np.asarray(prev.video[-1]), VID[1])
    assert [np.asarray(m).max() for m in prev.mask] == [255, 255, 255, 0, 0]
    edit = vace_inputs(SERVED["edit_remove"], "edit_remove")
    f0, m0 = np.asarray(edit.video[0]), np.asarray(edit.mask[0])
    assert (f0[4:10, 4:10] == GRAY).all() and np.array_equal(f0[12:], VID[0][12:])  # region grayed, the rest kept
    assert (m0[4:10, 4:10] == 255).all() and m0[:4].max() == 0
    box = vace_inputs(SERVED["edit_add"], "edit_add")
    assert np.asarray(box.mask[0])[2:7, 2:7].min() == 255 and np.asarray(box.mask[0])[10:].max() == 0
    styl = vace_inputs(SERVED["stylize"], "stylize")
    g = np.asarray(styl.video[2])
    assert (g[..., 0] == g[..., 1]).all() and min(np.asarray(m).min() for m in styl.mask) == 255
    arrows = vace_inputs(SERVED["arrows"], "arrows")
    xs = [np.nonzero((np.asarray(f) != 255).any(axis=(0, 2)))[0].mean() for f in arrows.video]
    assert all(b > a for a, b in zip(xs, xs[1:]))  # the box moves right along the arrow, frame by frame
    board = vace_inputs(SERVED["storyboard"], "storyboard")
    assert [np.asarray(m).max() for m in board.mask] == [0, 255, 0, 255, 0]  # panels at frames 0, 2, 4
    sketch = vace_inputs(SERVED["sketch"], "sketch")
    assert min(np.asarray(m).min() for m in sketch.mask) == 255 and np.asarray(sketch.video[1]).max() == GRAY


def test_every_served_family_generates_through_the_worker_deterministically(wan_studio):
    studio = wan_studio[0]
    outs = {}
    for family, req in SERVED.items():
        a = run(wan_studio, req, seed=3)
        b = run(wan_studio, req, seed=3)
        assert a.status == b.status == "succeeded", (family, a.message)
        fa, fb = studio.media.load_video(a.result_asset_id), studio.media.load_video(b.result_asset_id)
        assert fa.shape == (req.frames, req.height, req.width, 3), family
        assert np.array_equal(fa, fb), f"{family}: the same request and seed gave another clip"
        assert a.worker == "gpu-worker-1" and a.model_version_id == wan_studio[1].id
        outs[family] = fa
    other = run(wan_studio, SERVED["t2v"], seed=4)
    assert not np.array_equal(studio.media.load_video(other.result_asset_id), outs["t2v"])  # the seed matters
    for family in ("i2v", "edit_remove", "arrows", "storyboard"):  # and so does the conditioning VACE is given
        assert not np.array_equal(outs[family], outs["t2v"]), family


@pytest.mark.parametrize("req, words", [
    (MVLRequest("x moves like @Video", video=VID, task="motion_transfer", **SMALL), ["motion_transfer", "pose"]),
    (MVLRequest("the camera moves like @Video", video=VID, task="camera_transfer", **SMALL), ["camera_transfer"]),
    (MVLRequest("remove the ball from @Video", video=VID, **SMALL), ["edit_remove", "mask", "box"]),
    (MVLRequest("a new background of @Video", video=VID, **SMALL), ["background", "mask"]),
    (MVLRequest("a cat", upscale=True, **SMALL), ["upscale"]),
    (MVLRequest("a cat", frames=16, height=16, width=16), ["4k+1", "17"]),
    (MVLRequest("a cat", frames=5, height=24, width=16), ["height", "multiple of 16"]),
])
def test_refused_before_anything_is_queued(wan_studio, req, words):
    studio, v, user, project, worker = wan_studio
    with pytest.raises(ServiceError) as e:
        studio.jobs.submit(user, "generate", stored(studio, req), project_id=project)
    assert "wan" in str(e.value) and all(w in str(e.value) for w in words), str(e.value)
    assert studio.jobs.list() == [] and worker.run_one() is None


def test_cancel_stops_at_the_next_step(wan_studio):
    studio, v, user, project, worker = wan_studio
    req = MVLRequest("a red circle", **{**SMALL, "steps": 6})
    backend = load_tiny("wan", v.path, None)
    calls = []
    hook = backend.pipe.transformer.register_forward_hook(lambda *a: calls.append(1))
    real = studio.jobs.progress
    seen = []

    def progress(job_id, fraction, message=""):
        seen.append(fraction)
        if len(seen) == 2:  # the user presses cancel during step 2
            studio.jobs.cancel(user, job_id)
        return real(job_id, fraction, message)

    studio.jobs.progress = progress
    try:
        job = run(wan_studio, req)
    finally:
        hook.remove()
    assert job.status == "canceled" and job.result_asset_id is None
    assert len(seen) == 2 and len(calls) == 2  # 2 of 6 denoising steps ran, none after the cancel


def test_a_version_records_its_backend(tmp_path, tiny_wan_dir):
    studio = Studio.open(tmp_path / "home")
    v = studio.registry.register("w", tiny_wan_dir, backend="wan", adapter="/x/lora")
    assert (v.backend, v.adapter) == ("wan", "/x/lora") and studio.registry.get(v.id).backend == "wan"
    assert studio.registry.register("e", "/m").backend == "embedded"
    with pytest.raises(ServiceError, match="unknown backend 'sora'"):
        studio.registry.register("s", "/m", backend="sora")
    again = Studio.open(tmp_path / "home")  # the columns survive a reopen (migration 0005)
    assert again.registry.get(v.id).adapter == "/x/lora"


def test_wan_settings_and_presets(monkeypatch, tiny_wan_dir):
    monkeypatch.setenv("OMNI_WAN_FLOW_SHIFT", "5.0")
    monkeypatch.setenv("OMNI_WAN_MAX_SEQUENCE_LENGTH", "16")
    s = WanSettings.from_env()
    assert s.flow_shift == 5.0 and s.max_sequence_length == 16 and s.dtype == "auto"
    b = WanBackend.from_pretrained(tiny_wan_dir, settings=s)
    assert b.pipe.scheduler.config.shift == 5.0 and str(b.dtype) == "torch.float32" and b.device == "cpu"
    req = apply_preset(MVLRequest("a cat"), "480p")
    assert (req.height, req.width, req.frames) == (480, 832, 81) and req.frames % 4 == 1
    assert check_request("wan", req.validate()) == "t2v"  # the MVL request takes Wan's sizes
    import torch

    if not torch.cuda.is_available():  # diffusers' offload raises without an accelerator: refused with the fix
        with pytest.raises(ValueError, match="needs an accelerator"):
            WanBackend.from_pretrained(tiny_wan_dir, settings=WanSettings(cpu_offload=True))


def test_the_plan_says_how_the_backend_served_the_request(tiny_wan_dir):
    b = load_tiny("wan", tiny_wan_dir, None)
    out = b(SERVED["subject_ref"], seed=0)
    text = "\n".join(out.enhanced.plan)
    assert out.enhanced.task == "subject_ref" and "@Tigo" not in out.enhanced.prompt and "Tigo" in out.enhanced.prompt
    assert "Backend: wan" in text and "reference_images: 2 subject view(s)" in text
    with pytest.raises(UnsupportedRequest, match="motion_transfer is not served by the wan backend"):
        b(MVLRequest("x moves like @Video", video=VID, task="motion_transfer", **SMALL))


def test_embedded_backend_is_the_omni_pipeline_behind_the_same_interface(tmp_path):
    from model.backends.embedded import EmbeddedBackend
    from tests.test_model import tiny_pipeline

    b = EmbeddedBackend(tiny_pipeline())
    req = MVLRequest("a red circle moves left", frames=4, height=32, width=32, steps=2)
    steps = []
    out = b(req, seed=1, callback_on_step_end=lambda p, i, t, x: steps.append(i) or x)
    assert out.frames.shape == (4, 32, 32, 3) and steps == [0, 1] and out.info["backend"] == "embedded"
    assert np.array_equal(out.frames, b(req, seed=1).frames)
    assert b.capabilities().sizes.startswith("32x32")
    studio = Studio.open(tmp_path / "home")
    studio.registry.register("emb", "/m", status="active")
    user = studio.users.ensure("maker", "creator")
    with pytest.raises(ServiceError, match="upscale is not served by the embedded backend"):
        studio.jobs.submit(user, "generate", MVLRequest("a cat", upscale=True).to_dict())
    assert studio.jobs.list() == []


def test_lora_dpo_on_votes_makes_a_wan_candidate_that_differs_and_survives_reload(wan_studio, monkeypatch):
    import uuid

    from studio_backend.train_jobs import run_dpo_here

    monkeypatch.setenv("OMNI_WAN_MAX_SEQUENCE_LENGTH", "16")  # the trainer's private copy reads as generation does
    studio, v, user, project, worker = wan_studio
    parent = load_tiny("wan", v.path, None)
    for k, r in enumerate([SERVED["t2v"], SERVED["i2v"], SERVED["edit_remove"]]):
        d = stored(studio, r)
        a, b = (studio.media.put_video_array(parent(r, seed=s).frames) for s in (10 + k, 20 + k))
        studio.arena.add_comparison("dpo", d, a, b, family=r.task or "", version_a=v.id, version_b=v.id,
                                    seed_a=10 + k, seed_b=20 + k)
    ann = studio.users.ensure("ann", "annotator")
    while (pair := studio.arena.next_pair(ann)) is not None:  # this annotator always prefers the left clip
        studio.arena.vote(ann, pair.left_is_a_token, {"visual_quality": "G"}, "G", uuid.uuid4().hex)
    before = run(wan_studio, SERVED["t2v"], seed=5)
    admin = studio.users.ensure("boss", "admin")
    job = run_dpo_here(studio, admin, steps=3, lora_rank=4, lr=5e-3, batch=2, beta=1000.0)
    assert job.status == "succeeded", job.message
    cand = studio.registry.get(job.model_version_id)
    assert (cand.backend, cand.path, cand.parent_id, cand.status) == ("wan", v.path, v.id, "candidate")
    assert cand.adapter and (Path(cand.adapter) / "pytorch_lora_weights.safetensors").is_file()
    log = [r for r in (studio.home / "runs" / f"job-{job.id}" / "log.jsonl").read_text().splitlines()]
    assert len(log) == 3
    after = run(wan_studio, SERVED["t2v"], seed=5)  # the parent serves as before: training used its own copy
    assert np.array_equal(studio.media.load_video(before.result_asset_id), studio.media.load_video(after.result_asset_id))
    d = stored(studio, SERVED["t2v"])
    cj = studio.jobs.submit(user, "generate", d, seed=5, project_id=project, model_version_id=cand.id)
    done = worker.run_one()
    assert done.id == cj.id and done.status == "succeeded" and done.model_version_id == cand.id
    lora_clip = studio.media.load_video(done.result_asset_id)
    assert not np.array_equal(lora_clip, studio.media.load_video(before.result_asset_id))  # the adapter changed it
    fresh = load_backend("wan", cand.path, cand.adapter, settings=WanSettings(max_sequence_length=16))
    assert np.array_equal(fresh(SERVED["t2v"], seed=5).frames, lora_clip)  # saved, loaded, the same clip
    from training.dpo_wan import encode_clip  # the clips reach the VAE in its [-1, 1] range, as at generation

    seen, real = [], fresh.pipe.vae.encode
    fresh.pipe.vae.encode = lambda x: seen.append(float(x.abs().max())) or real(x)
    encode_clip(fresh.pipe, np.full((5, 16, 16, 3), 255, np.uint8), "cpu")
    assert seen == [1.0]


def test_app_start_up_registers_a_wan_version_and_loads_it_by_path(tmp_path, tiny_wan_dir):
    from studio_backend.backend_versions import VersionLoader, register_version

    studio = Studio.open(tmp_path / "home")
    studio.registry.register("omni-world:dev", "/models/omni-world", status="active")
    v = register_version(studio, "wan", tiny_wan_dir)  # app.py --backend wan --model DIR
    assert studio.registry.active().id == v.id and v.name == "wan:tiny-wan-vace" and v.backend == "wan"
    assert register_version(studio, "wan", tiny_wan_dir).id == v.id and len(studio.registry.list()) == 2
    hub = register_version(studio, "wan", "Wan-AI/Wan2.1-VACE-1.3B-diffusers", activate=False)
    assert hub.path == "Wan-AI/Wan2.1-VACE-1.3B-diffusers" and studio.registry.active().id == v.id
    loader = VersionLoader(studio, lambda p: ("embedded", p), settings=WanSettings(max_sequence_length=16))
    b = loader(v.path)
    assert isinstance(b, WanBackend) and loader(v.path) is b  # loaded once
    assert loader("/models/omni-world") == ("embedded", "/models/omni-world")
    assert b.enhancer.enhance(MVLRequest("@Image_1: a cat runs", images=[IMG])).task == "i2v"


def test_on_a_zero_gpu_space_the_denoising_runs_under_spaces_gpu(monkeypatch, tiny_wan_dir):
    import sys
    import types

    asked = []
    fake = types.ModuleType("spaces")  # the Space's package (not installed here): records the slice asked for
    fake.GPU = lambda duration: (lambda fn: asked.append(duration) or fn)
    monkeypatch.setitem(sys.modules, "spaces", fake)
    monkeypatch.setenv("SPACE_ID", "someone/omni-studio")
    out = load_tiny("wan", tiny_wan_dir, None)(SERVED["t2v"], seed=0)
    assert asked == [120] and out.frames.shape == (5, 16, 16, 3)
    monkeypatch.delenv("SPACE_ID")
    load_tiny("wan", tiny_wan_dir, None)(SERVED["t2v"], seed=0)
    assert asked == [120]  # not on a Space: called as it is


def test_collection_and_evaluation_rounds_run_on_wan_versions(tmp_path, tiny_wan_dir):
    """The preference loop's rounds draw OmniWorld requests (16 frames at 32x32): on a Wan version they are
    generated at its sizes (17 frames), families it refuses are left out, and a LoRA candidate is told
    from its parent (they share the model path)."""
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    from studio_backend.backend_versions import VersionLoader, version_key
    from studio_backend.rounds import collection_round, evaluation_round

    studio = Studio.open(tmp_path / "home")
    parent = studio.registry.register("wan:tiny", tiny_wan_dir, status="active", backend="wan")
    lora = load_backend("wan", tiny_wan_dir, settings=WanSettings(max_sequence_length=16)).pipe
    lora.transformer.add_adapter(LoraConfig(r=2, lora_alpha=2, target_modules=["to_q", "to_k", "to_v", "to_out.0"],
                                            init_lora_weights=False))  # random weights: a visibly other model
    type(lora).save_lora_weights(tmp_path / "lora", transformer_lora_layers=get_peft_model_state_dict(lora.transformer))
    cand = studio.registry.register("wan:tiny+lora", tiny_wan_dir, parent_id=parent.id, backend="wan",
                                    adapter=str(tmp_path / "lora"))
    assert version_key(cand) != version_key(parent) == tiny_wan_dir
    loader = VersionLoader(studio, no_embedded, settings=WanSettings(max_sequence_length=16))

    def generate(key, req, seed):
        return loader(key)(MVLRequest(**{**req.__dict__, "steps": 2}), seed=seed).frames

    ids = collection_round(studio, generate, 3, families=("t2v", "motion_transfer", "arrows"))
    assert len(ids) == 2  # motion_transfer is refused by the wan backend: left out
    from studio_backend.models import Comparison

    with studio.db.session() as s:
        rows = [s.get(Comparison, i) for i in ids]
        assert [r.family for r in rows] == ["t2v", "arrows"] and all(r.request["frames"] == 17 for r in rows)
        assert all(studio.media.load_video(r.asset_a).shape == (17, 32, 32, 3) for r in rows)
    ev = evaluation_round(studio, generate, cand.id, parent.id, n_requests=2)
    with studio.db.session() as s:
        pairs = [s.get(Comparison, i) for i in ev]
        assert pairs and all((p.version_a_id, p.version_b_id) == (cand.id, parent.id) for p in pairs)
        assert all(not np.array_equal(studio.media.load_video(p.asset_a), studio.media.load_video(p.asset_b))
                   for p in pairs)  # the candidate's adapter was loaded, not its parent's model twice


def test_the_commands_refuse_a_wan_backend_without_a_model(tmp_path):
    import os
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    for cmd in (["app.py", "--home", str(tmp_path / "h")], ["-m", "studio_backend.worker", "--home", str(tmp_path / "h")]):
        r = subprocess.run([sys.executable, *cmd, "--backend", "wan"], cwd=root, capture_output=True, text=True,
                           timeout=120, env={**os.environ, "OMNI_MODEL": ""})
        assert r.returncode == 2 and "--backend wan needs --model" in r.stderr, r.stderr[-500:]
