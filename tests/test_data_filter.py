import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.world_clips import build_defect_folder
from training.data_filter import filter_folder, parse_caption
from training.video_io import VideoError, probe, read_video, write_mp4

ROOT = str(Path(__file__).resolve().parents[1])


@pytest.fixture(scope="module")
def crafted(tmp_path_factory):
    root = tmp_path_factory.mktemp("clips")
    return root, build_defect_folder(root)


def test_each_crafted_defect_is_caught_and_good_clips_kept(crafted):
    root, expect = crafted
    verdicts = {v.file: v for v in filter_folder(root)}
    assert set(verdicts) == set(expect)
    for name, tier in expect.items():
        v = verdicts[name]
        if tier is None:
            assert v.keep, (name, v.reason)
        else:
            assert not v.keep and v.tier == tier, (name, v.tier, v.reason)
    assert "near-duplicate of good_0.mp4" in verdicts["zz_duplicate.mp4"].reason
    assert "not a video" in verdicts["corrupt.mp4"].reason
    assert "scene cut" in verdicts["cut.mp4"].reason
    assert "frozen" in verdicts["frozen.mp4"].reason
    assert "blurred" in verdicts["blurred.mp4"].reason
    assert "jitter" in verdicts["jitter.mp4"].reason


def test_cli_writes_a_report(crafted, tmp_path):
    root, expect = crafted
    out = tmp_path / "report.json"
    r = subprocess.run([sys.executable, "-m", "training.data_filter", str(root), "--report", str(out)],
                       capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    rep = json.loads(out.read_text())
    assert rep["kept"] == sum(t is None for t in expect.values())
    assert {c["file"] for c in rep["clips"]} == set(expect)


def test_caption_parser_reads_world_language():
    p = parse_caption("A striped red circle moves left and a blue square jumps up and down on a meadow.")
    assert p["subjects"] == [
        {"color": "red", "shape": "circle", "pattern": "striped", "motion": "left"},
        {"color": "blue", "shape": "square", "pattern": None, "motion": "jump"},
    ]
    assert p["background"] == "meadow"


def test_video_io_refuses_disguised_and_truncated_files(tmp_path):
    fake = tmp_path / "clip.mp4"
    fake.write_text("hello")
    with pytest.raises(VideoError, match="not a video"):
        probe(fake)
    import numpy as np

    good = write_mp4(np.zeros((8, 32, 32, 3), np.uint8), tmp_path / "ok.mp4")
    frames, meta = read_video(good)
    assert frames.shape == (8, 32, 32, 3) and meta.container == "mp4"
    (tmp_path / "cut.mp4").write_bytes(good.read_bytes()[:100])
    with pytest.raises(VideoError):
        read_video(tmp_path / "cut.mp4")
