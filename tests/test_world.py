import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from model.mvl import TASKS
from training.world import FAMILIES, sample
from training.world import vocab as V
from training.world.perceive import perceive
from training.world.render import Scene, SubjectSpec, render

ROOT = str(Path(__file__).resolve().parents[1])


def test_families_cover_every_task():
    assert FAMILIES == TASKS


def test_vocabulary_is_large_enough():
    assert len(V.COLORS) >= 8 and len(V.SHAPES) >= 5 and len(V.PATTERNS) >= 3
    assert len(V.SCENE_BACKGROUNDS) >= 6 and len(V.MOTIONS) >= 8
    assert {"pan_left", "pan_right", "zoom_in", "zoom_out"} <= set(V.CAMERAS)
    assert set(V.WEATHER) == {"rain", "snow", "fog", "lightning", "sunset"}
    assert set(V.STYLES) == {"grayscale", "sepia", "neon", "pixel", "sketch"}
    assert set(V.MATERIALS) == {"glass", "gold", "ice", "stone"}
    assert set(V.EFFECTS) == {"glow", "fire", "frost", "sparkles"}


@pytest.mark.parametrize("family", FAMILIES)
def test_sampler_is_deterministic_and_valid(family):
    a, b = sample(family, 3), sample(family, 3)
    assert a.request.to_json() == b.request.to_json()
    np.testing.assert_array_equal(a.target, b.target)
    assert a.target.shape == (16, 32, 32, 3) and a.target.dtype == np.uint8
    a.request.validate()
    assert a.request.task == family
    for s in a.truth.subjects:
        assert s.mask.shape == (16, 32, 32) and s.mask.any()
    hr = a.target_hr(4)
    assert hr.shape == (16, 128, 128, 3)
    # the 4x target is the same scene: pooled back down it is close to the base clip
    pooled = hr.reshape(16, 32, 4, 32, 4, 3).mean((2, 4))
    assert np.abs(pooled - a.target).mean() < 20  # textures alias differently; another scene is ~40+


def test_different_seeds_differ():
    assert not np.array_equal(sample("t2v", 1).target, sample("t2v", 2).target)


def _pairs_in(s):
    pairs = {(x.color, x.shape) for x in s.truth.subjects}
    pairs |= {(x.color, x.shape) for x in s.scene.subjects}
    return pairs


@pytest.mark.parametrize("family", FAMILIES)
def test_train_split_never_renders_held_out_pairs_and_bench_always_does(family):
    for seed in range(25):
        train = sample(family, seed, "train")
        assert not (_pairs_in(train) & V.HELD_OUT_PAIRS), (family, seed, _pairs_in(train))
        for name in train.request.subjects:
            assert name not in V.HELD_OUT_SUBJECTS
        bench = sample(family, seed, "bench")
        held = _pairs_in(bench) & V.HELD_OUT_PAIRS
        removed = family == "edit_remove"  # the held-out subject is the one taken out of the clip
        assert held or removed, (family, seed)
        if removed:
            src = bench.truth.source
            assert src is not None and not np.array_equal(src, bench.target)


@pytest.mark.parametrize("size", [9, 12, 15])
@pytest.mark.parametrize("shape", V.SHAPES)
def test_perception_reads_every_shape_pattern_and_view(shape, size):
    for pattern in V.PATTERNS:
        for view in V.VIEWS:
            s = SubjectSpec(shape, "blue", pattern, view, float(size), track=V.motion_track("right", 16, (10.0, 16.0)),
                            motion="right")
            clip = render(Scene("desert", [s])).clip
            p = perceive(clip, ["blue"], [float(size)]).subjects[0]
            assert (p.shape, p.pattern, p.view, p.motion) == (shape, pattern, view, "right")


def test_perception_refuses_noise_and_all_foreground_frames():
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, (16, 32, 32, 3), dtype=np.uint8)
    p = perceive(noise, ["red"], [12.0])
    assert not p.subjects[0].found.any() and not p.frame_ok.any()
    red = (np.float32(V.COLORS["red"]) * 255).astype(np.uint8)
    flood = np.broadcast_to(red, (16, 32, 32, 3)).copy()  # a frame that is all "subject"
    q = perceive(flood, ["red"], [12.0]).subjects[0]
    assert not q.found.any() and q.motion is None


def test_preview_cli_writes_a_contact_sheet(tmp_path):
    out = tmp_path / "sheet.png"
    r = subprocess.run([sys.executable, "-m", "training.world", "preview", "--family", "arrows", "--out", str(out),
                        "--n", "2"], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    im = Image.open(out)
    assert im.width > 600 and im.height > 200
    bad = subprocess.run([sys.executable, "-m", "training.world", "preview", "--family", "nope", "--out", str(out)],
                         capture_output=True, text=True, cwd=ROOT)
    assert bad.returncode != 0 and "unknown family 'nope'" in bad.stderr
