"""Flow-DPO, LoRA, simulated annotators and the whole preference loop on a tiny model."""

import math
import uuid

import numpy as np
import pytest
import torch

from studio_backend.rounds import collection_round, evaluation_round, promotion_decision
from studio_backend.studio import Studio
from tests.test_model import tiny_pipeline
from studio_backend.preference import pairs_from_studio, simulate
from studio_backend.train_jobs import run_dpo_here
from training.dpo import DPOConfig, add_lora, flow_dpo_loss, lora_state, merge_lora, train
from training.world import sample


def test_flow_dpo_loss_by_hand():
    t_w, t_l = torch.zeros(1, 2), torch.zeros(1, 2)
    v_w, v_l = torch.tensor([[1.0, 1.0]]), torch.tensor([[2.0, 0.0]])  # errors 1.0 and 2.0
    r_w, r_l = torch.tensor([[2.0, 0.0]]), torch.tensor([[1.0, 1.0]])  # reference errors 2.0 and 1.0
    loss, margin = flow_dpo_loss(v_w, v_l, r_w, r_l, t_w, t_l, beta=0.5)
    d = (1.0 - 2.0) - (2.0 - 1.0)  # -2: the policy prefers the winner more than the reference does
    assert margin.item() == pytest.approx(-0.5 * d)
    assert loss.item() == pytest.approx(-math.log(1 / (1 + math.exp(0.5 * d))))
    w_loss, _ = flow_dpo_loss(v_w.repeat(2, 1), v_l.repeat(2, 1), r_w.repeat(2, 1), r_l.repeat(2, 1),
                              t_w.repeat(2, 1), t_l.repeat(2, 1), 0.5, weights=torch.tensor([1.0, 0.0]))
    assert w_loss.item() == pytest.approx(loss.item())
    anchored, same = flow_dpo_loss(v_w, v_l, r_w, r_l, t_w, t_l, beta=0.5, sft_weight=3.0)
    assert anchored.item() == pytest.approx(loss.item() + 3.0 * 1.0) and same.item() == margin.item()  # + 3 x err_w


def test_segment_level_dpo_loss_by_hand():
    """DenseDPO: one term per labelled quarter on that quarter's frames; the sign of a label says which clip it
    prefers; unlabelled quarters change nothing; a row of zeros keeps the whole-clip term."""
    B, T = 2, 8
    g = torch.Generator().manual_seed(0)
    t_w, t_l = torch.zeros(B, 1, T, 1, 1), torch.zeros(B, 1, T, 1, 1)
    v_w, v_l, r_w, r_l = (torch.rand(B, 1, T, 1, 1, generator=g) for _ in range(4))
    whole, wm = flow_dpo_loss(v_w, v_l, r_w, r_l, t_w, t_l, beta=2.0)
    zeros, zm = flow_dpo_loss(v_w, v_l, r_w, r_l, t_w, t_l, beta=2.0, segments=torch.zeros(B, 4))
    assert zeros.item() == pytest.approx(whole.item()) and torch.allclose(zm, wm)
    lab = torch.tensor([[1.0, 0.0, -1.0, 0.0], [0.0, 0.0, 0.0, 0.0]])  # pair 0: quarters 1 and 3; pair 1: whole clip
    v_w.requires_grad_(True)
    loss, margin = flow_dpo_loss(v_w, v_l, r_w, r_l, t_w, t_l, beta=2.0, segments=lab, sft_weight=0.5)
    e = lambda v, a, b: v[0, 0, a:b, 0, 0].pow(2).mean().item()  # noqa: E731 (pair 0's error on frames a..b)
    m1 = -2.0 * ((e(v_w, 0, 2) - e(r_w, 0, 2)) - (e(v_l, 0, 2) - e(r_l, 0, 2)))
    m3 = 2.0 * ((e(v_w, 4, 6) - e(r_w, 4, 6)) - (e(v_l, 4, 6) - e(r_l, 4, 6)))  # the loser preferred there
    seg0 = (-math.log(1 / (1 + math.exp(-m1))) + 0.5 * e(v_w, 0, 2) - math.log(1 / (1 + math.exp(-m3)))
            + 0.5 * e(v_l, 4, 6)) / 2
    anchored_whole, _ = flow_dpo_loss(v_w[1:], v_l[1:], r_w[1:], r_l[1:], t_w[1:], t_l[1:], beta=2.0, sft_weight=0.5)
    assert loss.item() == pytest.approx((seg0 + anchored_whole.item()) / 2, rel=1e-5)
    assert margin[0].item() == pytest.approx((m1 + m3) / 2, rel=1e-5) and margin[1].item() == pytest.approx(wm[1].item())
    loss.backward()
    assert v_w.grad[0, 0, 2:4].abs().sum() == 0 and v_w.grad[0, 0, 6:].abs().sum() == 0  # unlabelled quarters
    assert v_w.grad[0, 0, :2].abs().sum() > 0 and v_w.grad[1].abs().sum() > 0


def _fixed_pairs(n=4):
    pairs = []
    for k in range(n):
        s = sample("t2v", k)
        rng = np.random.default_rng(k)
        pairs.append({"request": s.request, "winner": s.target,
                      "loser": rng.integers(0, 256, s.target.shape, dtype=np.uint8), "weight": 1.0})
    return pairs


@pytest.mark.parametrize("rank", [0, 4])
def test_margin_grows_and_policy_moves_toward_winners(rank):
    pipe = tiny_pipeline()
    cfg = DPOConfig(steps=25, batch=4, lr=1e-3 if rank else 3e-4, beta=2000.0, lora_rank=rank, seed=0)
    new, log = train(pipe, _fixed_pairs(), cfg)
    first = np.mean([r["margin"] for r in log[:5]])
    last = np.mean([r["margin"] for r in log[-5:]])
    assert last > first and last > 0
    assert log[-1]["loss"] < log[0]["loss"]
    assert any(not torch.equal(a, b) for a, b in zip(new.generator.parameters(), pipe.generator.parameters()))


def test_lora_weights_save_load_and_merge(tmp_path):
    from safetensors.torch import load_file, save_file

    pipe = tiny_pipeline()
    model = add_lora(__import__("copy").deepcopy(pipe.generator), rank=4)
    for n, p in model.named_parameters():
        if "lora_B" in n:
            torch.nn.init.normal_(p, std=0.1)  # a trained adapter
    state = lora_state(model)
    assert state and all("lora_" in k for k in state)
    save_file({k: v.contiguous() for k, v in state.items()}, str(tmp_path / "lora.safetensors"))
    back = load_file(str(tmp_path / "lora.safetensors"))
    assert back.keys() == state.keys()
    merged = merge_lora(model, pipe.generator.config)
    x = torch.randn(1, 4, 8, 8, 8)
    t = torch.tensor([300.0])
    from model.conditioning import build_conditions

    s = sample("t2v", 1)
    pieces = build_conditions([s.request], [s.request.prompt], pipe.vae, pipe.text_encoder)
    with torch.no_grad():
        a = model(x, t, model.embed_conditions(pieces))
        b = merged(x, t, merged.embed_conditions(pieces))
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_the_whole_loop_on_a_tiny_model(tmp_path):
    base = tmp_path / "base"
    tiny_pipeline().save_pretrained(base)
    studio = Studio.open(tmp_path / "home")
    admin = studio.users.ensure("root", "admin")
    parent = studio.registry.register("tiny-base", str(base))
    studio.registry.promote(admin, parent.id)
    from training.simulate_votes import pipeline_generator

    gen = pipeline_generator()
    ids = collection_round(studio, gen, 4, seed=0, families=("t2v", "weather"))
    assert len(ids) == 4
    # a random tiny model's two seeds often look alike to the judge; noisy annotators still split them
    res = simulate(studio, 8, noise=0.6, position_bias=0.0, annotators=2, seed=0)
    assert res["votes"] == 8 and len(studio.arena.votes()) == 8
    pairs = pairs_from_studio(studio)
    assert all(p["winner"].shape == (16, 32, 32, 3) for p in pairs)
    assert pairs, "seeded noisy votes give at least one non-Same pair"
    from studio_backend.pair_quality import pair_quality

    q = pair_quality(studio)  # every pair scored against its world case
    assert q["votes"] == 8 and q["scored_pairs"] == q["pairs"] == len(pairs)
    assert sum(q["pairs_per_family"].values()) == len(pairs) and q["dimensions"]["overall"]["pairs"] == len(pairs)
    done = run_dpo_here(studio, admin, steps=3, batch=2)
    assert done.status == "succeeded", done.message
    cand = studio.registry.get(done.model_version_id)
    assert cand.parent_id == parent.id and cand.status == "candidate"
    eval_ids = evaluation_round(studio, gen, cand.id, parent.id, n_requests=3)
    assert len(eval_ids) == 3
    simulate(studio, 6, noise=0.0, annotators=2, seed=1)
    decision = promotion_decision(studio, cand.id, parent.id)
    assert decision["votes"] == 6 and isinstance(decision["promote"], bool)


def test_collection_keeps_the_two_most_different_of_several_seeds(tmp_path):
    from studio_backend.rounds import most_distinct_pair

    flat = [np.full((2, 4, 4, 3), v, np.uint8) for v in (100, 110, 30, 105)]
    assert most_distinct_pair(flat) == (1, 2)  # 110 vs 30
    studio = Studio.open(tmp_path / "home")
    v = studio.registry.register("fake", "/fake")
    studio.registry.promote(studio.users.ensure("root", "admin"), v.id)

    def gen(path, request, seed):  # seed 4k+1 and 4k+3 are the extremes
        return np.full((16, 32, 32, 3), {0: 120, 1: 250, 2: 128, 3: 5}[seed % 4], np.uint8)

    ids = collection_round(studio, gen, 2, seed=0, families=("t2v",), seeds_per_request=4)
    from sqlalchemy import select

    from studio_backend.models import Comparison

    with studio.db.session(write=False) as s:
        seeds = s.execute(select(Comparison.seed_a, Comparison.seed_b).where(Comparison.id.in_(ids))
                          .order_by(Comparison.id)).all()
    assert [tuple(x) for x in seeds] == [(1, 3), (5, 7)]  # the stored seeds regenerate the compared clips
    with pytest.raises(ValueError, match="at least 2 seeds"):
        collection_round(studio, gen, 1, seeds_per_request=1)


def test_guided_collection_starts_each_seed_from_the_requests_truth(tmp_path):
    """--guide-levels (DenseDPO's pairs from one source): seed j of a request starts from its world truth noised to
    level j; level 1 is the model's own sample (no guide); the levels are kept with the comparison's request."""
    studio = Studio.open(tmp_path / "home")
    v = studio.registry.register("fake", "/fake")
    studio.registry.promote(studio.users.ensure("root", "admin"), v.id)
    calls = []

    def gen(path, request, seed, guide=None, strength=None):
        calls.append((seed, None if guide is None else guide.copy(), strength))
        return np.full((16, 32, 32, 3), 10 if guide is None else 200, np.uint8)

    ids = collection_round(studio, gen, 2, seed=0, families=("weather",), guide_levels=(0.5, 1.0))
    assert len(ids) == 2 and [c[0] for c in calls] == [0, 1, 2, 3] and [c[2] for c in calls] == [0.5, None, 0.5, None]
    for k in range(2):  # the guide is that request's own truth clip, from the train split
        assert np.array_equal(calls[2 * k][1], sample("weather", k, "train").target) and calls[2 * k + 1][1] is None
    from sqlalchemy import select

    from studio_backend.models import Comparison

    with studio.db.session(write=False) as s:
        stored = s.scalars(select(Comparison.request).where(Comparison.id.in_(ids)).order_by(Comparison.id)).all()
    assert [r["_world"]["guide_levels"] for r in stored] == [[0.5, 1.0]] * 2
    for bad in ((0.0, 1.0), (1.5,)):
        with pytest.raises(ValueError, match="guide_levels"):
            collection_round(studio, gen, 1, guide_levels=bad)


def test_segment_votes_from_the_judge_to_the_dpo_pairs(tmp_path):
    """Segment verdicts (DenseDPO): the simulated annotator's judge finds the quarter where two clips of one source
    differ; the arena stores segment verdicts for A against B whatever side A was on and refuses malformed ones; the
    export labels each segment for the pair's winner and keeps a pair only its segments prefer (segments mode only)."""
    from studio_backend.export import preference_pairs
    from studio_backend.services import VOTE_SEGMENTS, ServiceError
    from training.simulate_votes import judge_segments

    case = sample("t2v", 3, "train")
    truth = case.target
    broken = truth.copy()
    broken[4:8] = 0  # the second quarter blacked out
    world = {"family": "t2v", "seed": 3, "split": "train"}
    assert judge_segments(world, truth, broken, 4) == ["S", "G", "S", "S"]
    assert judge_segments(world, broken, truth, 4) == ["S", "B", "S", "S"]
    assert judge_segments(world, truth, truth, 4) == ["S"] * 4

    studio = Studio.open(tmp_path / "home")
    v = studio.registry.register("fake", "/fake")
    studio.registry.promote(studio.users.ensure("root", "admin"), v.id)
    a, b = studio.media.put_video_array(truth), studio.media.put_video_array(broken)
    cids = [studio.arena.add_comparison("dpo", {"prompt": "x", "_world": world}, a, b, family="t2v",
                                        version_a=v.id, version_b=v.id) for _ in range(2)]
    people = [studio.users.ensure(f"ann{i}", "annotator") for i in range(2)]
    for ann in people:
        for _ in range(2):
            pair = studio.arena.next_pair(ann)
            left_is_a = pair.left_asset == a.id
            seg = ["S", "G" if left_is_a else "B", "S", "S"]  # A (the truth) better in the second quarter
            overall = ("G" if left_is_a else "B") if pair.comparison_id == cids[0] else "S"
            studio.arena.vote(ann, pair.left_is_a_token, {}, overall, uuid.uuid4().hex, segments=seg)
    votes = studio.arena.votes()
    assert all(x["segments"] == ["S", "G", "S", "S"] for x in votes)  # for A against B
    plain = preference_pairs(votes)
    assert [r["comparison_id"] for r in plain] == [cids[0]] and "segments" not in plain[0]
    rows = preference_pairs(votes, segments=True)
    assert [(r["comparison_id"], r["segments"], r["overall_preferred"]) for r in rows] == [
        (cids[0], [0, 1, 0, 0], True), (cids[1], [0, 1, 0, 0], False)]
    pair = studio.arena.next_pair(studio.users.ensure("late", "annotator"))
    for bad in (["G"] * (VOTE_SEGMENTS - 1), ["G", "S", "X", "S"], "GSSS"):
        with pytest.raises(ServiceError, match="segment verdicts"):
            studio.arena.vote(studio.users.ensure("late", "annotator"), pair.left_is_a_token, {}, "G",
                              uuid.uuid4().hex, segments=bad)


def _studio_with_preferences(tmp_path):
    import uuid

    tiny_pipeline().save_pretrained(tmp_path / "m")
    st = Studio.open(tmp_path / "home")
    admin = st.users.ensure("root", "admin")
    base = st.registry.register("base", str(tmp_path / "m"))
    st.registry.promote(admin, base.id)
    ann = st.users.ensure("ann", "annotator")
    for k in range(3):
        s = sample("t2v", k)
        a = st.media.put_video_array(s.target)
        b = st.media.put_video_array(np.zeros_like(s.target))
        st.arena.add_comparison("dpo", s.request.to_dict(), a, b, family="t2v", version_a=base.id, version_b=base.id)
    for _ in range(3):
        pair = st.arena.next_pair(ann)
        a_left = st.arena._unseal(pair.left_is_a_token)[1]
        st.arena.vote(ann, pair.left_is_a_token, {}, "G" if a_left else "B", uuid.uuid4().hex)
    return st, admin, base


def test_dpo_train_job_resumes_after_a_crash_to_the_same_weights_and_cancels(tmp_path):
    from model.pipeline import OmniPipeline
    from studio_backend.services import ServiceError
    from studio_backend.train_jobs import read_log, run_train_job, submit_dpo

    st, admin, base = _studio_with_preferences(tmp_path)

    def loader(path):
        p = OmniPipeline.from_pretrained(path)
        p.set_progress_bar_config(disable=True)
        return p

    with pytest.raises(ServiceError, match="beta"):
        submit_dpo(st, admin, steps=6, beta="lots")
    with pytest.raises(ServiceError, match="unknown DPO setting"):
        submit_dpo(st, admin, steps=6, gamma=1)
    settings = dict(steps=6, beta=500.0, lr=1e-3, batch=2)
    # straight through
    submit_dpo(st, admin, **settings)
    straight = run_train_job(st, st.jobs.claim("t", ("train",)), loader, save_every=3)
    assert straight.status == "succeeded", straight.message
    v_straight = st.registry.get(straight.model_version_id)
    assert v_straight.parent_id == base.id and v_straight.status == "candidate"
    # the same run, killed at step 4 (after the checkpoint of step 3), then taken back after a restart
    job = submit_dpo(st, admin, **settings)
    real_progress = st.jobs.progress

    def power_cut(job_id, fraction, message=""):
        if message.startswith("step 4/"):
            raise KeyboardInterrupt("power cut")
        return real_progress(job_id, fraction, message)

    st.jobs.progress = power_cut
    with pytest.raises(KeyboardInterrupt):
        run_train_job(st, st.jobs.claim("t", ("train",)), loader, save_every=3)
    st.jobs.progress = real_progress
    assert st.jobs.get(job.id).status == "running"
    restarted = Studio.open(st.home)
    assert restarted.jobs.requeue_interrupted() == 1
    again = restarted.jobs.claim("t2", ("train",))
    assert again.id == job.id
    resumed = run_train_job(restarted, again, loader, save_every=3)
    assert resumed.status == "succeeded", resumed.message
    assert [r["step"] for r in read_log(restarted, job.id)] == [1, 2, 3, 4, 5, 6]
    a = loader(v_straight.path).generator.state_dict()
    b = loader(restarted.registry.get(resumed.model_version_id).path).generator.state_dict()
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    moved = loader(base.path).generator.state_dict()
    assert any(not torch.allclose(a[k], moved[k]) for k in a)  # DPO did change the weights
    # cancel: asked while running, honoured at the next step; no version is registered
    n_versions = len(restarted.registry.list())
    job = submit_dpo(restarted, admin, **settings)
    claimed = restarted.jobs.claim("t", ("train",))
    restarted.jobs.cancel(admin, job.id)
    done = run_train_job(restarted, claimed, loader)
    assert done.status == "canceled" and "step 1/6" in done.message
    assert len(restarted.registry.list()) == n_versions


def test_dpo_command_line_runs_a_job_and_resumes_it_after_a_kill(tmp_path):
    import json
    import subprocess
    import sys
    from pathlib import Path

    from studio_backend.train_jobs import read_log

    root = str(Path(__file__).resolve().parents[1])
    st, admin, base = _studio_with_preferences(tmp_path)
    home = str(st.home)
    cmd = [sys.executable, "-m", "studio_backend.train_jobs", "--home", home, "--batch", "2", "--lr", "1e-3"]
    nothing = subprocess.run(cmd + ["--resume"], cwd=root, capture_output=True, text=True)
    assert nothing.returncode != 0 and "no interrupted DPO job" in nothing.stderr
    proc = subprocess.Popen(cmd + ["--steps", "40"], cwd=root, stdout=subprocess.PIPE, text=True)
    for line in proc.stdout:  # kill it (SIGKILL, no clean-up) once it is past its step-10 checkpoint
        if "step 13/40" in line:
            proc.kill()
            break
    proc.wait()
    job = [j for j in st.jobs.list() if j.kind == "train"][0]
    assert job.status == "running"
    out = subprocess.run(cmd + ["--resume", "--steps", "40"], cwd=root, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "resumed" in out.stdout and "step 11/40" in out.stdout and "step 10/40" not in out.stdout
    res = json.loads(out.stdout.strip().splitlines()[-1])
    assert res["status"] == "succeeded" and res["job"] == job.id
    v = st.registry.get(res["version_id"])
    assert v.parent_id == base.id and v.metrics["resumed"] is True
    with st.db.session(write=False) as s:  # the version names the run that made it
        from studio_backend.models import ModelVersion

        assert s.get(ModelVersion, v.id).run_job_id == job.id
    assert [r["step"] for r in read_log(st, job.id)] == list(range(1, 41))


def test_consistent_pairs_leave_out_winners_voted_worse_on_a_dimension(tmp_path):
    import json
    import uuid

    from model.pipeline import OmniPipeline
    from studio_backend.export import consistent_pairs, preference_pairs
    from studio_backend.services import ServiceError
    from studio_backend.train_jobs import run_dir, run_train_job, submit_dpo

    rows = [{"dimensions": {"prompt_following": {"winner": 2, "same": 0, "loser": 0}}},
            {"dimensions": {"prompt_following": {"winner": 2, "same": 0, "loser": 0},
                            "identity_consistency": {"winner": 0, "same": 1, "loser": 1}}},
            {"dimensions": {}}]
    assert consistent_pairs(rows) == [rows[0], rows[2]]
    # in a studio: three comparisons preferred overall, one of them with identity voted the other way
    st, admin, base = _studio_with_preferences(tmp_path)
    ann = st.users.ensure("ann2", "annotator")
    for k in range(3):
        pair = st.arena.next_pair(ann)
        a_left = st.arena._unseal(pair.left_is_a_token)[1]
        win = "G" if a_left else "B"
        dims = {"identity_consistency": "B" if a_left else "G"} if k == 0 else {"prompt_following": win}
        st.arena.vote(ann, pair.left_is_a_token, dims, win, uuid.uuid4().hex)
    all_rows = preference_pairs(st.arena.votes())
    kept = consistent_pairs(all_rows)
    assert len(all_rows) == 3 and len(kept) == 2
    job = submit_dpo(st, admin, steps=2, batch=2, consistent=1)
    assert job.request["config"]["consistent"] == 1
    loader = lambda p: OmniPipeline.from_pretrained(p)  # noqa: E731
    done = run_train_job(st, st.jobs.claim("t", ("train",)), loader)
    assert done.status == "succeeded", done.message
    frozen = json.loads((run_dir(st, job.id) / "pairs.json").read_text())
    assert [r["comparison_id"] for r in frozen] == [r["comparison_id"] for r in kept]
    assert st.registry.get(done.model_version_id).metrics["dpo_pairs"] == 2
    with pytest.raises(ServiceError, match="consistent"):
        submit_dpo(st, admin, consistent=2)
    # every pair contradicted on some dimension: the error says so and how to train anyway
    for r in kept:
        pair_ann = st.users.ensure(f"contra-{r['comparison_id']}", "annotator")
        while (p := st.arena.next_pair(pair_ann)) is not None:
            cid, a_left = st.arena._unseal(p.left_is_a_token)
            st.arena.vote(pair_ann, p.left_is_a_token, {"visual_quality": "B" if a_left else "G"},
                          "S", uuid.uuid4().hex)
    assert preference_pairs(st.arena.votes()) and not consistent_pairs(preference_pairs(st.arena.votes()))
    with pytest.raises(ServiceError, match="no consistent preference pairs.*consistent=0"):
        submit_dpo(st, admin, consistent=1)


def test_dpo_round_command_runs_a_round_and_reuses_its_votes(tmp_path):
    import json

    from studio_backend import dpo_round

    tiny_pipeline().save_pretrained(tmp_path / "m")
    home, out = tmp_path / "home", tmp_path / "round.json"
    assert dpo_round.main(["--model", str(tmp_path / "m"), "--votes", "12", "--steps", "2", "--eval-limit", "1",
                           "--eval-requests", "4", "--families", "t2v,boxes,edit_add", "--churn", "0.5", "--guide-levels", "0.5,1",
                           "--home", str(home), "--json", str(out)]) == 0
    first = json.loads(out.read_text())
    assert first["collection_families"] == ["t2v", "boxes", "edit_add"] and first["churn"] == 0.5
    assert first["guide_levels"] == [0.5, 1.0]  # pairs from one source: each request's truth at 0.5, and unguided
    assert all(sorted(v["request"]["_world"]["guide_levels"]) == [0.5, 1.0]
               for v in Studio.open(home).arena.votes() if v["purpose"] == "dpo")
    assert "t2v" in first["families"]  # the judge's per-family report is kept beside them
    collected = {v["family"] for v in Studio.open(home).arena.votes() if v["purpose"] == "dpo"}
    assert collected == {"t2v", "boxes", "edit_add"}
    assert first["votes"]["votes"] == 12 and set(first["times"]) >= {"collection_s", "votes_s", "training_s"}
    assert len(first["curves"]["loss"]) == 2 and "overall" in first["gsb"]
    assert first["promotion"]["requests"] == 4 and first["promotion"]["votes"] == 8
    st = Studio.open(home)
    n_votes = len([v for v in st.arena.votes() if v["purpose"] == "dpo"])
    # again on the same votes, consistent pairs only: no new collection, no new DPO votes
    again = tmp_path / "again.json"
    assert dpo_round.main(["--reuse", "--home", str(home), "--consistent", "1", "--steps", "2", "--eval-limit", "1",
                           "--eval-requests", "2", "--judge-seeds", "3", "--json", str(again)]) == 0
    second = json.loads(again.read_text())
    assert second["consistent"] == 1 and "collection_s" not in second["times"]
    assert first["judge_seeds"] == first["seeds"] == [0, 1, 2] and second["judge_seeds"] == second["seeds"] == [3]
    assert second["b"] == first["b"]  # trained from the same parent
    assert len([v for v in Studio.open(home).arena.votes() if v["purpose"] == "dpo"]) == n_votes
    # DenseDPO on the same clips and vote budget: a copy of the home voted again, with segment verdicts
    seg_home, seg_out = tmp_path / "seg", tmp_path / "seg.json"
    assert dpo_round.main(["--revote-from", str(home), "--home", str(seg_home), "--segments", "1", "--votes", "12",
                           "--steps", "2", "--eval-limit", "1", "--eval-requests", "2", "--judge-seeds", "3",
                           "--json", str(seg_out)]) == 0
    third = json.loads(seg_out.read_text())
    assert third["segments"] == 1 and third["votes"]["revoted_from"] == str(home) and third["votes"]["votes"] == 12
    assert third["b"] == first["b"] and "collection_s" not in third["times"]
    seg_votes = [v for v in Studio.open(seg_home).arena.votes() if v["purpose"] == "dpo"]
    assert len(seg_votes) == 12 and all(len(v["segments"]) == 4 for v in seg_votes)
    assert len([v for v in Studio.open(home).arena.votes() if v["purpose"] == "dpo"]) == n_votes  # the source's stay
    with pytest.raises(SystemExit, match="no vote in .* judged segments"):
        dpo_round.main(["--reuse", "--home", str(home), "--segments", "1", "--json", str(again)])
    with pytest.raises(SystemExit, match="needs a new --home"):
        dpo_round.main(["--revote-from", str(home), "--home", str(seg_home), "--json", str(again)])
    with pytest.raises(SystemExit, match="no studio there"):
        dpo_round.main(["--revote-from", str(tmp_path / "nowhere"), "--home", str(tmp_path / "h4"), "--json", str(again)])
    with pytest.raises(SystemExit, match="--reuse needs --home"):
        dpo_round.main(["--reuse", "--home", str(tmp_path / "nowhere"), "--json", str(again)])
    with pytest.raises(SystemExit, match="--families t2x: unknown"):
        dpo_round.main(["--families", "t2v,t2x", "--json", str(again)])
    with pytest.raises(SystemExit, match="--judge-seeds '0,x': give integers"):
        dpo_round.main(["--judge-seeds", "0,x", "--json", str(again)])
    with pytest.raises(SystemExit, match="--churn 2.0"):
        dpo_round.main(["--churn", "2", "--home", str(tmp_path / "h2"), "--json", str(again)])
    for bad in ("0.5,x", "0,1"):
        with pytest.raises(SystemExit, match="--guide-levels"):
            dpo_round.main(["--guide-levels", bad, "--home", str(tmp_path / "h3"), "--json", str(again)])


def test_eval_round_command_judges_two_model_directories_in_a_fresh_home(tmp_path):
    import json

    from studio_backend import eval_round

    tiny_pipeline().save_pretrained(tmp_path / "m")
    out, home = tmp_path / "eval.json", tmp_path / "home"
    assert eval_round.main(["--candidate", str(tmp_path / "m"), "--parent", str(tmp_path / "m"), "--requests", "3",
                            "--home", str(home), "--json", str(out)]) == 0
    rep = json.loads(out.read_text())
    # the same weights on both sides render the same clips: every judged verdict is Same, only noise votes differ
    assert rep["requests"] == 3 and rep["votes"] == 6 and rep["promote"] is False
    eval_votes = [v for v in Studio.open(home).arena.votes() if v["purpose"] == "eval"]
    assert len(eval_votes) == 6 and len({v["comparison_id"] for v in eval_votes}) == 3
    with pytest.raises(SystemExit, match="already a studio"):
        eval_round.main(["--candidate", str(tmp_path / "m"), "--parent", str(tmp_path / "m"), "--home", str(home),
                         "--requests", "1"])
    with pytest.raises(SystemExit, match="--parent .*not a model directory"):
        eval_round.main(["--candidate", str(tmp_path / "m"), "--parent", str(tmp_path / "nowhere")])
    assert eval_round.main(["--power", "--good", "0.5", "--bad", "0", "--requests", "20", "--json",
                            str(tmp_path / "p.json")]) == 0
    assert json.loads((tmp_path / "p.json").read_text())["rows"][0]["promotion_chance"] > 0.9


def test_dpo_on_a_layout_model_conditions_on_the_plan_the_clips_were_rendered_from(monkeypatch):
    """v2 models render from the enhancer's layout plan: DPO's conditions carry the same plan (issue 24)."""
    import training.dpo as D
    from model.generator import LAYOUT
    from tests.test_layout import tiny_generator

    pipe = tiny_pipeline()
    pipe.generator = tiny_generator(layout=True)
    seen = []
    real = D.generator_conditions

    def spy(requests, enhanced, *a, **kw):
        out = real(requests, enhanced, *a, **kw)
        seen.append([next((p.data for p in pieces if p.kind == LAYOUT), None) for pieces in out])
        return out

    monkeypatch.setattr(D, "generator_conditions", spy)
    pairs = _fixed_pairs(2)
    cfg = DPOConfig(steps=2, batch=2, lr=1e-3, beta=2000.0, seed=0)
    new, log = train(pipe, pairs, cfg)
    assert seen and all(x is not None for x in seen[0])
    # the plan is the one the pipeline renders from for that request

    plan = pipe.enhancer.enhance(pairs[0]["request"]).layout
    from model.conditioning import build_conditions

    ref = build_conditions([pairs[0]["request"]], ["x"], pipe.vae, pipe.text_encoder, layouts=[plan], frames=16)[0]
    assert torch.equal(next(p.data for p in ref if p.kind == LAYOUT), seen[0][0])
    moved = [n for (n, a), b in zip(new.generator.named_parameters(), pipe.generator.parameters())
             if not torch.equal(a, b)]
    assert any("layout" in n for n in moved)
    # a model without the layout path gets no plan, as before
    seen.clear()
    train(tiny_pipeline(), pairs, cfg)
    assert seen and all(x is None for x in seen[0])


def test_pairs_the_pixel_generator_rendered_train_the_pixel_generator():
    """A model whose pixel generator serves t2v: DPO on t2v pairs moves that generator toward the winners (the
    margin grows) and leaves the latent generator as it was; the new pipeline keeps its pixel generator."""
    from tests.test_pixel_generator import with_pixel

    pipe = with_pixel(tiny_pipeline())
    pairs = _fixed_pairs(4)
    import training.dpo as D

    assert all(D.pixel_served(pipe, p) for p in pairs)
    cfg = DPOConfig(steps=25, batch=4, lr=1e-3, beta=2000.0, seed=0)
    new, log = train(pipe, pairs, cfg)
    assert np.mean([r["margin"] for r in log[-5:]]) > max(0.0, np.mean([r["margin"] for r in log[:5]]))
    assert new.pixel is not None and new.pixel is not pipe.pixel
    assert any(not torch.equal(a, b) for a, b in zip(new.pixel.parameters(), pipe.pixel.parameters()))
    assert all(torch.equal(a, b) for a, b in zip(new.generator.parameters(), pipe.generator.parameters()))
    assert new.config.notes["dpo"]["pixel_pairs"] == 4
    # without a pixel generator the same pairs train the latent one, as before
    plain, _ = train(tiny_pipeline(), pairs, DPOConfig(steps=2, batch=2, lr=1e-3, beta=2000.0, seed=0))
    assert plain.pixel is None


def test_sample_spread_counts_the_pairs_a_vote_can_tell_apart():
    """Seeds that render the truth and noise differ beyond the judge's margin in every pair; identical samples
    in none; a sampler setting that lifts a request over seed 0 counts as lifted."""
    from benchmarks.sample_spread import SPLIT_SEED, format_table, spread
    from training.evaluate import noise, oracle

    cases = {sample("t2v", SPLIT_SEED + k, "train").request.prompt: sample("t2v", SPLIT_SEED + k, "train")
             for k in range(2)}
    differ = spread(lambda req, seed, **kw: (oracle if seed == 1 or kw else noise)(cases[req.prompt]),
                    ("t2v",), 2, 3, {"better": {"guidance": 2.0}})
    r = differ["t2v"]
    # seeds 0 and 2 are noise, seed 1 the truth: 2 of the 3 pairs differ, the best seed gains 2/3 of the gap
    assert r["pairs_beyond_margin"] == pytest.approx(2 / 3, abs=1e-3) and r["best_seed_gain"] > 0.3
    assert r["better"]["lifted"] == 1.0 and r["better"]["mean_utility"] > r["mean_utility"]
    # seed 1 beats seed 0 in both requests: the best-of-seeds ceiling is G 2 / S 0, an infinite ratio
    assert r["best_of_seeds_vs_seed0"] == {"G": 2, "S": 0, "B": 0}
    same = spread(lambda req, seed, **kw: oracle(cases[req.prompt]), ("t2v",), 2, 2)
    assert same["t2v"]["pairs_beyond_margin"] == 0 and same["all"]["families_never_beyond_margin"] == ["t2v"]
    assert "never beyond the margin: t2v" in format_table(same, ())
    assert same["all"]["best_of_seeds_vs_seed0"] == {"G": 0, "S": 2, "B": 0, "gsb": 1.0}
    with pytest.raises(ValueError, match="at least 2 seeds"):
        spread(lambda req, seed: None, ("t2v",), 1, 1)
