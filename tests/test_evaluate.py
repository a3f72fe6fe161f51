import json
import os
import subprocess
import sys
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from training import evaluate as E
from training.world import FAMILIES

ROOT = str(Path(__file__).resolve().parents[1])


@contextmanager
def one_thread():
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.fixture(scope="module")
def oracle_report():
    return E.evaluate(E.oracle)


@pytest.fixture(scope="module")
def noise_report():
    return E.evaluate(E.noise)


def test_benchmark_is_large_and_fixed():
    assert len(FAMILIES) * E.CASES_PER_FAMILY >= 500 and E.CASES_PER_FAMILY >= 20
    a = E.bench_cases("t2v")[5]
    E.bench_cases.cache_clear()
    b = E.bench_cases("t2v")[5]
    assert a.request.to_json() == b.request.to_json()


def test_oracle_scores_at_least_098_in_every_family(oracle_report):
    for fam, r in oracle_report["families"].items():
        assert r["success"] >= 0.98, (fam, r)
        assert r["cases"] == E.CASES_PER_FAMILY


def test_noise_scores_at_most_005_in_every_family(noise_report):
    for fam, r in noise_report["families"].items():
        assert r["success"] <= 0.05, (fam, r)


def test_first_frame_baseline_fails_families_that_need_motion(oracle_report):
    still = E.evaluate(E.first_frame, families=("t2v", "i2v", "motion_transfer", "arrows", "storyboard"))
    for fam, r in still["families"].items():
        assert r["success"] <= 0.2, (fam, r["success"])


def test_a_wrong_colour_fails_prompt_following_but_not_motion():
    case = next(c for c in E.bench_cases("t2v") if len(c.truth.subjects) == 1)
    clip = case.target.copy()
    m = case.truth.subjects[0].mask
    clip[m] = 255 - clip[m]  # repaint the subject in another colour
    s = E.score_case(case, clip)
    assert not s.success and not s.metrics["color_acc"].passed


def test_an_edit_that_changes_nothing_fails_and_keeps_the_rest():
    case = E.bench_cases("edit_remove")[0]
    s = E.score_case(case, case.truth.source)
    assert not s.metrics["edit_psnr"].passed
    assert s.metrics["unedited_psnr"].passed


def test_judge_gsb():
    assert E.gsb_ratio({"G": 6, "S": 2, "B": 2}) == 2.0
    assert E.gsb_ratio({"G": 1, "S": 0, "B": 0}) == float("inf")
    r = E.compare(E.oracle, E.noise, families=("t2v", "weather"), limit=4)
    assert r["gsb"]["overall"] == "inf" and r["counts"]["overall"] == {"G": 8, "S": 0, "B": 0}
    back = E.compare(E.noise, E.oracle, families=("t2v",), limit=4)
    assert back["gsb"]["overall"] == 0.0
    same = E.compare(E.oracle, E.oracle, families=("i2v",), limit=3)
    assert same["gsb"]["overall"] == 1.0 and same["counts"]["overall"]["S"] == 3


def test_the_judge_votes_on_the_mean_over_sampler_seeds():
    """Every benchmark request has seed 0: a model that is right only with that one noise draw beats, at one seed,
    a model right with two draws in three; over seeds 0, 1, 2 the judge sees it the other way round."""
    def right_with(good):
        def run(case, seed=None):
            s = case.request.seed if seed is None else seed
            return E.oracle(case) if s in good else E.noise(case)

        run.takes_seed = True
        return run

    lucky, steady = right_with({0}), right_with({1, 2})
    assert E.compare(lucky, steady, families=("t2v",), limit=3)["counts"]["overall"] == {"G": 3, "S": 0, "B": 0}
    over = E.compare(lucky, steady, families=("t2v",), limit=3, seeds=(0, 1, 2))
    assert over["counts"]["overall"] == {"G": 0, "S": 0, "B": 3} and over["seeds"] == [0, 1, 2]
    # a baseline without a sampler is judged as it is, seeds or not
    assert E.compare(E.oracle, E.noise, families=("t2v",), limit=2, seeds=(0, 1))["counts"]["overall"]["G"] == 2
    assert E.parse_seeds(" 0, 1,2") == (0, 1, 2)
    for bad in ("0,x", ","):
        with pytest.raises(ValueError, match="e.g. 0,1,2"):
            E.parse_seeds(bad)
    with pytest.raises(SystemExit):
        E.main(["--compare", "oracle", "noise", "--seeds", "0,x"])


def test_cli_writes_the_json_report(tmp_path):
    out = tmp_path / "r.json"
    r = subprocess.run([sys.executable, "-m", "training.evaluate", "--model", "oracle", "--family", "boxes",
                        "--limit", "3", "--json", str(out)], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    rep = json.loads(out.read_text())
    assert rep["families"]["boxes"]["success"] == 1.0 and rep["families"]["boxes"]["cases"] == 3
    assert "overall" in rep and "boxes" in r.stdout
    cmp_out = tmp_path / "c.json"
    r = subprocess.run([sys.executable, "-m", "training.evaluate", "--compare", "first_frame", "noise", "--family", "t2v",
                        "--limit", "3", "--json", str(cmp_out)], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    c = json.loads(cmp_out.read_text())
    assert set(c["gsb"]) >= {"overall", "prompt_following"} and c["counts"]["overall"]["G"] == 3
    bad = subprocess.run([sys.executable, "-m", "training.evaluate", "--model", "/no/such/model"],
                         capture_output=True, text=True, cwd=ROOT)
    assert bad.returncode != 0 and "not a model directory" in bad.stderr


def test_a_model_directory_runs_through_omnibench(tmp_path):
    from tests.test_model import tiny_pipeline

    tiny_pipeline().save_pretrained(tmp_path / "m")
    gen = E.load_model(str(tmp_path / "m"))
    rep = E.evaluate(gen, families=("t2v", "edit_remove"), limit=2)
    assert rep["families"]["t2v"]["cases"] == 2
    assert rep["families"]["t2v"]["success"] <= 0.5  # random weights do not make the right video
    # the same report from two processes sharing the families
    par = E.evaluate_parallel(str(tmp_path / "m"), families=("t2v", "edit_remove", "i2v"), limit=2, jobs=2)
    with one_thread():  # as in the worker processes: float sums depend on how many threads share them
        one = E.evaluate(gen, families=("t2v", "edit_remove", "i2v"), limit=2)
    assert list(par["families"]) == ["t2v", "edit_remove", "i2v"]
    assert par["families"] == one["families"] and par["overall"] == one["overall"]
    # a sampler study: other steps / guidance change the clips, the same in one process or two, and are recorded
    with one_thread():
        two_steps = E.evaluate(E.load_model(str(tmp_path / "m"), steps=2, guidance=1.0), families=("t2v",), limit=2)
    par2 = E.evaluate_parallel(str(tmp_path / "m"), families=("t2v", "i2v"), limit=2, jobs=2,
                               sampler={"steps": 2, "guidance": 1.0})
    assert par2["families"]["t2v"] == two_steps["families"]["t2v"]
    assert two_steps["families"]["t2v"] != one["families"]["t2v"]
    out = tmp_path / "s.json"
    r = subprocess.run([sys.executable, "-m", "training.evaluate", "--model", str(tmp_path / "m"), "--family", "t2v",
                        "--limit", "1", "--steps", "2", "--split", "train", "--json", str(out)],
                       capture_output=True, text=True, cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr[-2000:]
    assert json.loads(out.read_text())["sampler"] == {"steps": 2}


def test_the_vae_ceiling_scores_the_truth_after_a_vae_round_trip(tmp_path):
    import torch

    from model.vae import to_model_range, to_uint8
    from tests.test_model import tiny_pipeline

    pipe = tiny_pipeline()
    pipe.save_pretrained(tmp_path / "m")
    gen = E.load_model(f"vae:{tmp_path / 'm'}")
    case = E.bench_cases("t2v")[0]
    with torch.no_grad():
        want = to_uint8(pipe.vae.decode(pipe.vae.encode(to_model_range(torch.from_numpy(case.target))[None]), 16))[0]
    got = gen(case)
    assert got.shape == case.target.shape and np.array_equal(got, want.numpy())
    assert not np.array_equal(got, case.target)  # an untrained VAE does not give the truth back
    with pytest.raises(SystemExit, match="no vae/config.json"):
        E.load_model(f"vae:{tmp_path / 'nothing'}")


def test_the_judge_reads_two_evaluation_reports_as_it_reads_the_models(tmp_path):
    """OmniBench is deterministic, so the GSB of two models can come from their saved reports
    without generating again; the votes must be exactly those of judging the models."""
    from tests.test_model import tiny_pipeline

    tiny_pipeline().save_pretrained(tmp_path / "m")
    fams, lim = ("t2v", "edit_remove", "i2v"), 2
    tiny = E.load_model(str(tmp_path / "m"))
    with one_thread():
        direct = E.compare(tiny, E.first_frame, families=fams, limit=lim)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    rep_a, rep_b = tmp_path / "a.json", tmp_path / "b.json"
    for spec, out in ((str(tmp_path / "m"), rep_a), ("first_frame", rep_b)):
        r = subprocess.run([sys.executable, "-m", "training.evaluate", "--model", spec, *sum((["--family", f] for f in fams), []),
                            "--limit", str(lim), "--json", str(out)], capture_output=True, text=True, cwd=ROOT, env=env)
        assert r.returncode == 0, r.stderr
    assert len(json.loads(rep_a.read_text())["families"]["t2v"]["case_utilities"]) == lim
    text = rep_a.read_text()  # the summary first, one line per case
    assert text.index('"overall"') < text.index('"families"')
    assert sum('"overall": ' in line and line.strip().startswith("{") for line in text.splitlines()) == len(fams) * lim
    from_reports = E.compare(E.ReportSource(str(rep_a)), E.ReportSource(str(rep_b)), families=fams, limit=lim)
    for key in ("gsb", "counts", "families", "mean_utility"):
        assert from_reports[key] == direct[key], key
    assert sum(direct["counts"]["overall"].values()) == len(fams) * lim
    # the command line: two reports, no model loaded, the families both hold
    out = tmp_path / "c.json"
    r = subprocess.run([sys.executable, "-m", "training.evaluate", "--compare", str(rep_a), str(rep_b), "--json", str(out)],
                       capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    assert json.loads(out.read_text())["counts"] == direct["counts"]
    # a report that cannot answer: clear errors that say what to do
    old = tmp_path / "old.json"
    rep = json.loads(rep_a.read_text())
    for f in rep["families"].values():
        del f["case_utilities"]
    old.write_text(json.dumps(rep))
    with pytest.raises(SystemExit, match="no case utilities; write it again"):
        E.ReportSource(str(old))
    with pytest.raises(SystemExit, match="holds 2 cases of t2v, case 3 is needed"):
        E.compare(E.ReportSource(str(rep_a)), E.first_frame, families=("t2v",), limit=3)
    with pytest.raises(SystemExit, match="not a readable evaluation report"):
        E.ReportSource(str(tmp_path / "missing.json"))


def test_the_training_split_scores_trained_compositions_and_the_judge_refuses_it(tmp_path):
    """`--split train` asks the same questions on compositions the model was trained on: no case
    of it holds a held-out pair, every bench t2v case does, and the oracle passes both."""
    from training.world import vocab as V

    train, bench = E.bench_cases("t2v", 8, "train"), E.bench_cases("t2v", 8)
    pairs = lambda c: {(s.color, s.shape) for s in c.truth.subjects}  # noqa: E731
    assert all(not (pairs(c) & V.HELD_OUT_PAIRS) for c in train)
    assert all(pairs(c) & V.HELD_OUT_PAIRS for c in bench)
    assert {c.request.to_json() for c in train}.isdisjoint({c.request.to_json() for c in bench})
    rep = E.evaluate(E.oracle, families=("t2v", "edit_remove"), limit=3, split="train")
    assert rep["split"] == "train" and all(f["success"] == 1.0 for f in rep["families"].values())
    with pytest.raises(ValueError, match="split 'val'"):
        E.bench_cases("t2v", 2, "val")
    out = tmp_path / "train.json"
    r = subprocess.run([sys.executable, "-m", "training.evaluate", "--model", "noise", "--split", "train", "--family", "t2v",
                        "--limit", "2", "--json", str(out)], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    assert json.loads(out.read_text())["split"] == "train"
    with pytest.raises(SystemExit, match="'train' split; the judge compares bench-split reports"):
        E.ReportSource(str(out))
    r = subprocess.run([sys.executable, "-m", "training.evaluate", "--compare", "noise", "oracle", "--split", "train"],
                       capture_output=True, text=True, cwd=ROOT)
    assert r.returncode != 0 and "bench split only" in r.stderr


def test_show_cases_draws_each_case_with_and_without_the_truths_layout(tmp_path):
    """python -m training.show_cases: one row per case; a layout model gets five strips (target, its plan, its
    clip, the truth's layout, the clip from it), a model without the layout path three."""
    from PIL import Image

    from model.generator import OmniGenerator
    from model.layout import LAYOUT_CHANNELS
    from tests.test_model import tiny_pipeline
    from training import show_cases

    plain = tiny_pipeline()
    plain.save_pretrained(tmp_path / "plain")
    layout = tiny_pipeline()
    layout.generator = OmniGenerator(replace(layout.generator.config, layout_channels=LAYOUT_CHANNELS)).eval()
    layout.save_pretrained(tmp_path / "layout")
    widths = {}
    for name in ("plain", "layout"):
        out = tmp_path / f"{name}.png"
        assert show_cases.main(["--model", str(tmp_path / name), "--family", "t2v", "--n", "2",
                                "--frames", "0,15", "--out", str(out)]) == 0
        widths[name] = Image.open(out).size
    strip = 2 * (show_cases.CELL + 2) + 3 * show_cases.GAP
    assert widths["plain"][0] == 3 * strip + show_cases.GAP
    assert widths["layout"][0] == 5 * strip + show_cases.GAP
    assert widths["layout"][1] > 2 * show_cases.CELL  # two rows
    with pytest.raises(SystemExit, match="not a model directory"):
        show_cases.main(["--model", str(tmp_path), "--out", str(tmp_path / "x.png")])


def test_sampler_overrides_are_refused_where_there_is_no_sampler():
    """--steps / --guidance set a model directory's sampler: with a baseline, or out of range, a clear error."""
    for args in (["--model", "oracle", "--steps", "4"], ["--model", "oracle", "--guidance", "30"],
                 ["--compare", "oracle", "noise", "--steps", "4"], ["--model", "oracle", "--churn", "0.5"],
                 ["--model", "oracle", "--churn", "2"], ["--model", "oracle", "--seed", "1"]):
        r = subprocess.run([sys.executable, "-m", "training.evaluate", *args], capture_output=True, text=True, cwd=ROOT)
        assert r.returncode == 2 and ("--steps / --guidance" in r.stderr or "--guidance 30" in r.stderr
                                      or "--churn 2" in r.stderr), r.stderr


def test_a_churn_study_runs_the_stochastic_sampler_and_records_it(tmp_path):
    """--churn samples a model directory with fresh noise per step (same seed: other clips than Euler's) and
    the report records the sampler it was run with."""
    import json

    from tests.test_model import tiny_pipeline

    tiny_pipeline().save_pretrained(tmp_path / "m")
    for churn in ("0", "1"):
        assert E.main(["--model", str(tmp_path / "m"), "--family", "t2v", "--limit", "1", "--churn", churn,
                       "--json", str(tmp_path / f"c{churn}.json")]) == 0
    a, b = (json.loads((tmp_path / f"c{c}.json").read_text()) for c in ("0", "1"))
    assert a["sampler"] == {"churn": 0.0} and b["sampler"] == {"churn": 1.0}
    gen = E.load_model(str(tmp_path / "m"), churn=1.0)
    case = E.bench_cases("t2v", 1)[0]
    assert not np.array_equal(gen(case), E.load_model(str(tmp_path / "m"))(case))
    # --seed: one other sampler seed for every case (the benchmark's requests all have seed 0), recorded
    assert case.request.seed == 0
    base, seeded = E.load_model(str(tmp_path / "m")), E.load_model(str(tmp_path / "m"), seed=5)
    assert np.array_equal(seeded(case), base(case, seed=5)) and not np.array_equal(seeded(case), base(case))
    assert np.array_equal(seeded(case, seed=0), base(case))  # a seed given per call wins
    assert E.main(["--model", str(tmp_path / "m"), "--family", "t2v", "--limit", "1", "--seed", "5",
                   "--json", str(tmp_path / "s5.json")]) == 0
    assert json.loads((tmp_path / "s5.json").read_text())["sampler"] == {"seed": 5}


def test_the_race_report_reads_each_arms_logs_and_reports_and_judges_them_case_by_case(tmp_path):
    from training.race_report import main, race_report

    for name, model, losses in (("plain", E.noise, {20: 0.5, 40: 0.4, 60: 0.3}), ("ground", E.oracle, {20: 0.4, 40: 0.2})):
        arm = tmp_path / name
        (arm / "model").mkdir(parents=True)
        (arm / "model" / "model_index.json").write_text(json.dumps({"config": {"notes": {"step": max(losses)}}}))
        (arm / "log.jsonl").write_text("".join(json.dumps({"step": s, "loss": v}) + "\n" for s, v in losses.items()))
        (arm / "train.json").write_text(E.report_json(E.evaluate(model, families=("t2v",), limit=2, split="train")))
    r = race_report(tmp_path, ["plain", "ground"])
    assert r["matched_steps"] == 2  # steps 20 and 40: the losses are compared where both arms logged
    plain, ground = r["arms"]["plain"], r["arms"]["ground"]
    assert (plain["step"], ground["step"]) == (60, 40)
    assert plain["mean_loss_matched"] == 0.45 and ground["mean_loss_matched"] == 0.3
    assert ground["train"]["overall"] == 1.0 and plain["train"]["overall"] == 0.0
    assert ground["train"]["t2v"]["shape_acc"] == 1.0
    assert ground["train"]["judged_against_plain"] == {"counts": {"G": 2, "S": 0, "B": 0}, "gsb": "inf"}
    assert "bench" not in ground  # no bench report written: nothing made up
    out = tmp_path / "r.json"
    assert main([str(tmp_path), "plain", "ground", "--against", "ground", "--json", str(out)]) == 0
    assert json.loads(out.read_text())["arms"]["plain"]["train"]["judged_against_ground"]["counts"]["B"] == 2
    with pytest.raises(SystemExit, match="no arm folder nope"):
        main([str(tmp_path), "plain", "nope"])
