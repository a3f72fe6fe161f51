"""The studio backend on real SQLite files in a temporary home."""

import io
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import text

from studio_backend import stats
from studio_backend.media import MediaError
from studio_backend.services import PermissionDenied, ServiceError
from studio_backend.studio import Studio
from studio_backend.worker import Worker
from tests.test_model import tiny_pipeline
from training.world import sample

ROOT = str(Path(__file__).resolve().parents[1])


@pytest.fixture(params=["sqlite", "postgresql"])
def studio(request, tmp_path, monkeypatch):
    """Every backend test runs on a SQLite file and on a real PostgreSQL server (a fresh database
    each); with OMNI_DATABASE_URL set, every Studio.open in the test (and its subprocesses) uses it."""
    if request.param == "postgresql":
        from tests.postgres_server import new_database

        monkeypatch.setenv("OMNI_DATABASE_URL", new_database(request.getfixturevalue("postgres")))
    return Studio.open(tmp_path / "home")


def _png(arr=None) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr if arr is not None else np.full((32, 32, 3), 120, np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def test_migrations_from_empty_and_sqlite_settings(studio):
    from sqlalchemy import inspect

    tables = set(inspect(studio.db.engine).get_table_names())
    assert {"users", "projects", "subjects", "assets", "jobs", "comparisons", "votes", "model_versions",
            "storyboards", "shots", "alembic_version"} <= tables
    with studio.db.engine.connect() as c:
        if studio.db.url.startswith("sqlite"):
            assert c.execute(text("pragma journal_mode")).scalar() == "wal"
            assert c.execute(text("pragma foreign_keys")).scalar() == 1
        else:
            assert studio.db.url.startswith("postgresql")
            assert c.execute(text("select count(*) from alembic_version")).scalar() == 1
    again = Studio.open(studio.home)  # reopening runs the migrations again: nothing to do, nothing lost
    assert again.users.ensure("ann", "annotator").role == "annotator"


def test_sqlite_writers_of_different_processes_queue_on_a_kernel_lock(tmp_path):
    """While one process is in a write transaction, another process cannot take the writers' lock
    (it would wait in the kernel, woken at release, instead of in SQLite's sleeping busy handler);
    reads do not take it."""
    studio = Studio.open(tmp_path / "home")
    lock_file = studio.db._flock_path
    assert lock_file and lock_file.endswith("studio.db.writers.lock")
    probe = ("import fcntl, os, sys; fd = os.open(sys.argv[1], os.O_RDWR)\n"
             "try:\n    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB); print('free')\n"
             "except BlockingIOError:\n    print('held')")

    def other_process_sees() -> str:
        return subprocess.run([sys.executable, "-c", probe, lock_file], capture_output=True, text=True,
                              check=True).stdout.strip()

    with studio.db.session() as s:
        s.execute(text("select 1"))
        assert other_process_sees() == "held"
    assert other_process_sees() == "free"
    with studio.db.session(write=False) as s:
        s.execute(text("select 1"))
        assert other_process_sees() == "free"


def test_roles_are_checked_in_the_services(studio):
    ann = studio.users.ensure("ann", "annotator")
    creator = studio.users.ensure("cleo", "creator")
    with pytest.raises(PermissionDenied, match="needs the creator role"):
        studio.projects.create(ann, "mine")
    p = studio.projects.create(creator, "film")
    v = studio.registry.register("v1", "/models/v1")
    with pytest.raises(PermissionDenied, match="admin"):
        studio.registry.promote(creator, v.id)
    with pytest.raises(ServiceError, match="no project"):
        studio.projects.get(studio.users.ensure("other", "creator"), p.id)


def test_subject_library_rules(studio):
    u = studio.users.ensure("cleo", "creator")
    p = studio.projects.create(u, "film")
    views = [studio.media.put_image_bytes(_png(np.full((32, 32, 3), k * 40, np.uint8)), f"v{k}.png") for k in range(3)]
    tigo = studio.subjects.create(u, p.id, "Tigo", views)
    assert len(tigo.image_ids) == 3
    with pytest.raises(ServiceError, match="already exists"):
        studio.subjects.create(u, p.id, "Tigo", views[:1])
    for bad in ["Image_2", "Video", "9lives", "a b", "../x", ""]:
        with pytest.raises(ServiceError, match="cannot be an @reference"):
            studio.subjects.create(u, p.id, bad, views[:1])
    studio.subjects.create(u, p.id, "Blip", views[:1])
    with pytest.raises(ServiceError, match="already exists"):
        studio.subjects.rename(u, tigo.id, "Blip")
    assert studio.subjects.rename(u, tigo.id, "Tiger").name == "Tiger"
    assert studio.subjects.resolve(u, p.id, ["Tiger"])["Tiger"] == list(tigo.image_ids)
    studio.subjects.delete(u, tigo.id)
    with pytest.raises(ServiceError, match="@Tiger is not in this project's subject library"):
        studio.subjects.resolve(u, p.id, ["Tiger"])


def test_hostile_uploads_are_refused_and_change_nothing(studio, tmp_path):
    media = studio.media
    before = sorted(p for p in media.root.rglob("*") if p.is_file())
    good = _png()
    with pytest.raises(MediaError, match="damaged or truncated"):
        media.put_image_bytes(good[: len(good) // 2], "half.png")
    # a 50k x 50k PNG header: refused from the header, before any pixel is decoded
    import struct
    import zlib

    ihdr = struct.pack(">IIBBBBB", 50000, 50000, 8, 2, 0, 0, 0)
    bomb = b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    with pytest.raises(MediaError, match="50000x50000 is over the 16 megapixel limit"):
        media.put_image_bytes(bomb, "bomb.png")
    with pytest.raises(MediaError, match="not a video"):
        media.put_video_bytes(b"just some text pretending to be a movie\n" * 10, "movie.mp4")
    with pytest.raises(MediaError, match="not an image"):
        media.put_image_bytes(b"GIF? no. <html>", "x.png")
    assert sorted(p for p in media.root.rglob("*") if p.is_file()) == before
    info = media.put_image_bytes(good, "../../etc/passwd")
    assert info.original_name == "passwd" and media.path_of(info.id, "png").is_relative_to(media.root)
    with pytest.raises(MediaError, match="not an asset id"):
        media.path_of("../../secret", "png")


def _register_tiny(studio, tmp_path):
    tiny_pipeline().save_pretrained(tmp_path / "tiny")
    admin = studio.users.ensure("root", "admin")
    v = studio.registry.register("tiny-1", str(tmp_path / "tiny"))
    studio.registry.promote(admin, v.id)
    return v


def _loader(path):
    from model.pipeline import OmniPipeline

    p = OmniPipeline.from_pretrained(path)
    p.set_progress_bar_config(disable=True)
    return p


def test_generation_job_to_asset_and_cancel(studio, tmp_path):
    v = _register_tiny(studio, tmp_path)
    u = studio.users.ensure("cleo", "creator")
    req = sample("i2v", 0).request
    req.steps = 3
    img = studio.media.put_image_array(req.images[0])
    d = req.to_dict()
    d["images"] = [img.id]  # stored requests carry asset ids, not pixels
    job = studio.jobs.submit(u, "generate", d, seed=5)
    w = Worker(studio, _loader)
    done = w.run_one()
    assert done.status == "succeeded" and done.progress == 1.0 and done.model_version_id == v.id
    frames = studio.media.load_video(done.result_asset_id)
    assert frames.shape == (16, 32, 32, 3)
    assert studio.media.path_of(done.result_asset_id, "mp4").is_file()
    # the enhancer's layout plan is stored with the job (DESIGN 3.5.1): the i2v subjects where the image shows them
    from model.layout import LayoutPlan

    assert done.plan == studio.jobs.get(done.id).plan  # read back from the database
    plan = LayoutPlan.from_dict(studio.jobs.get(done.id).plan)
    assert {s.color for s in plan.subjects} == {t.color for t in sample("i2v", 0).truth.subjects}
    assert all(s.source == "image" and s.boxes.shape == (16, 4) for s in plan.subjects)
    # the same request + seed + version gives the same video
    again = studio.jobs.submit(u, "generate", d, seed=5)
    assert w.run_one().result_asset_id == done.result_asset_id
    # cancel while running: the worker stops at the next step
    j = studio.jobs.submit(u, "generate", d, seed=6)
    orig = studio.jobs.progress

    def progress_then_cancel(job_id, frac, msg=""):
        studio.jobs.cancel(u, job_id)
        return orig(job_id, frac, msg)

    studio.jobs.progress = progress_then_cancel
    assert w.run_one().status == "canceled"
    queued = studio.jobs.submit(u, "generate", d, seed=7)
    assert studio.jobs.cancel(u, queued.id).status == "canceled"


def test_a_worker_killed_mid_job_is_resumed_on_restart(studio, tmp_path):
    _register_tiny(studio, tmp_path)
    u = studio.users.ensure("cleo", "creator")
    req = sample("t2v", 0).request
    job = studio.jobs.submit(u, "generate", req.to_dict(), seed=1)
    code = ("import sys, time; sys.path.insert(0, '.'); from studio_backend.studio import Studio; "
            f"s = Studio.open({str(studio.home)!r}); j = s.jobs.claim('doomed'); s.jobs.progress(j.id, 0.4, 'step 4');"
            " print('claimed', flush=True); time.sleep(60)")
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "claimed"
    proc.kill()  # SIGKILL: no clean-up runs
    proc.wait()
    assert studio.jobs.get(job.id).status == "running"
    w = Worker(Studio.open(studio.home), _loader)  # a restarted studio takes the job back
    done = w.run_one()
    assert done.id == job.id and done.status == "succeeded"


def _pair_assets(studio, k):
    a = studio.media.put_image_array(np.full((32, 32, 3), k, np.uint8))
    b = studio.media.put_image_array(np.full((32, 32, 3), 255 - k, np.uint8))
    return a, b


def test_arena_blind_pairs_and_votes_stored_once_under_concurrency(studio):
    v1 = studio.registry.register("m1", "/m1")
    v2 = studio.registry.register("m2", "/m2")
    for k in range(12):
        a, b = _pair_assets(studio, k)
        studio.arena.add_comparison("eval", {"prompt": f"case {k}"}, a, b, family="t2v",
                                    version_a=v1.id, version_b=v2.id)
    annotators = [studio.users.ensure(f"ann{i}", "annotator") for i in range(8)]
    results = []

    def work(ann):
        for _ in range(3):
            pair = studio.arena.next_pair(ann)
            assert "m1" not in repr(pair) and "m2" not in repr(pair)
            key = uuid.uuid4().hex
            for _ in range(2):  # a double-submit with the same key
                results.append(studio.arena.vote(ann, pair.left_is_a_token, {"prompt_following": "G"}, "G", key))

    threads = [threading.Thread(target=work, args=(a,)) for a in annotators]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    votes = studio.arena.votes()
    assert len(votes) == 8 * 3 == sum(r.created for r in results)
    assert len({(v["comparison_id"], v["annotator_id"]) for v in votes}) == len(votes)  # never the same pair twice
    # fewest votes first (sequentially): a new annotator gets a pair nobody has voted on yet
    counts = {}
    for v in votes:
        counts[v["comparison_id"]] = counts.get(v["comparison_id"], 0) + 1
    fresh = studio.users.ensure("late", "annotator")
    pair = studio.arena.next_pair(fresh)
    assert counts.get(pair.comparison_id, 0) == min(counts.get(k, 0) for k in range(1, 13))
    # stored for A against B whatever side A was shown on
    with studio.db.engine.connect() as c:
        rows = c.execute(text("select left_is_a, overall from votes")).all()
    assert all((o == "G") == bool(left) for left, o in rows)
    with pytest.raises(ServiceError, match="not valid"):
        studio.arena.vote(annotators[0], "1.1.abc.forged", {}, "G", uuid.uuid4().hex)


def test_gsb_bradley_terry_and_agreement_on_known_votes():
    assert stats.gsb({"G": 6, "S": 2, "B": 2}) == 2.0
    votes = []
    for i, verdict in enumerate("GGGGGGSSBB"):
        votes.append({"vote_id": i, "comparison_id": i, "annotator_id": 1, "overall": verdict,
                      "verdicts": {"prompt_following": verdict}, "version_a": 1, "version_b": 2, "family": "t2v",
                      "gold": None})
    rows = {(r["dimension"], r["family"]): r for r in stats.gsb_table(votes, reps=300)}
    r = rows[("overall", "all")]
    assert r["gsb"] == 2.0 and r["counts"] == {"G": 6, "S": 2, "B": 2}
    assert r["ci_low"] < 2.0 < r["ci_high"]
    # the same votes seen from the other side
    flipped = [dict(v, version_a=2, version_b=1, overall={"G": "B", "S": "S", "B": "G"}[v["overall"]],
                    verdicts={}) for v in votes]
    assert {(x["a"], x["b"]): x["gsb"] for x in stats.gsb_table(flipped, reps=50) if x["dimension"] == "overall"}[(1, 2)] == 2.0
    # Bradley-Terry with ties: 1 > 2 > 3, consistent margins
    matches = [(1, 2, "G")] * 8 + [(1, 2, "B")] * 2 + [(2, 3, "G")] * 8 + [(2, 3, "B")] * 2 + [(1, 3, "S")] * 2
    bt = stats.bradley_terry_ties(matches)
    assert bt["strength"][1] > bt["strength"][2] > bt["strength"][3] and bt["tie"] > 0
    even = stats.bradley_terry_ties([(1, 2, "G"), (1, 2, "B")] * 5)
    assert even["strength"][1] == pytest.approx(even["strength"][2])
    # Krippendorff's alpha (ordinal)
    assert stats.krippendorff_alpha_ordinal({1: ["G", "G"], 2: ["B", "B"], 3: ["S", "S"]}) == 1.0
    assert stats.krippendorff_alpha_ordinal({1: ["G", "B"], 2: ["B", "G"], 3: ["G", "B"]}) < 0
    gold = stats.gold_accuracy([{"annotator_id": 1, "gold": "G", "overall": "G"},
                                {"annotator_id": 1, "gold": "B", "overall": "G"},
                                {"annotator_id": 2, "gold": None, "overall": "S"}])
    assert gold[1]["accuracy"] == 0.5 and gold[2]["weight"] == 0.5


def test_gsb_intervals_resample_comparisons_not_votes_and_the_eval_round_power():
    """Two annotators agreeing on one pair of clips are one piece of evidence: the interval must not narrow when
    every comparison gets a second, identical vote (it would, by about 1/sqrt(2), if votes were resampled)."""
    verdicts = "GGGGGGSSSSSSSSSSSSSB"
    one = [{"vote_id": i, "comparison_id": i, "annotator_id": 1, "overall": v, "verdicts": {}, "version_a": 1,
            "version_b": 2, "family": None} for i, v in enumerate(verdicts)]
    two = one + [dict(v, vote_id=100 + v["vote_id"], annotator_id=2) for v in one]
    row = lambda votes: next(r for r in stats.gsb_table(votes, reps=400) if r["dimension"] == "overall")  # noqa: E731
    w1, w2 = (row(v)["ci_high"] - row(v)["ci_low"] for v in (one, two))
    assert w2 == pytest.approx(w1, rel=0.05) and row(two)["gsb"] == row(one)["gsb"]
    unclustered = stats.bootstrap_ci([(v["overall"], 1.0) for v in two], 400)
    assert unclustered[1] - unclustered[0] < 0.85 * w2  # what treating votes as independent would have claimed
    # power of the promotion rule: a clear winner is promoted by a small round, an even candidate almost never,
    # and a 106% candidate (the judge's G 12 / S 122 / B 4) needs far more than one request per family
    assert stats.eval_power(0.5, 0.0, 40, trials=40, reps=200) == 1.0
    assert stats.eval_power(0.05, 0.05, 200, trials=40, reps=200) <= 0.1
    small, large = (stats.eval_power(12 / 138, 4 / 138, n, trials=60, reps=200) for n in (23, 414))
    assert small < 0.35 < 0.65 < large


def test_registry_promote_and_roll_back(studio):
    admin = studio.users.ensure("root", "admin")
    v1 = studio.registry.register("v1", "/v1", status="active")
    v2 = studio.registry.register("v2", "/v2", parent_id=v1.id, metrics={"gsb": 1.4})
    assert studio.registry.promote(admin, v2.id).status == "active"
    assert studio.registry.get(v1.id).status == "retired"
    assert studio.registry.roll_back(admin).id == v1.id
    assert studio.registry.active().name == "v1"


def test_storyboard_takes_neighbours_and_assembly(studio, tmp_path):
    from training.video_io import probe, read_video

    _register_tiny(studio, tmp_path)
    u = studio.users.ensure("cleo", "creator")
    p = studio.projects.create(u, "film")
    sb = studio.storyboards.create(u, p.id, "Chase")
    req = sample("t2v", 0).request
    req.steps = 2
    s1 = studio.storyboards.add_shot(u, sb.id, req.to_dict(), duration=2.0)
    with pytest.raises(ServiceError, match="has no finished take"):
        studio.storyboards.neighbour_request(u, s1.id, "next", "the subject turns around")
    w = Worker(studio, _loader)
    takes = []
    for seed in (1, 2):
        j = studio.jobs.submit(u, "generate", req.to_dict(), seed=seed, project_id=p.id)
        w.run_one()
        takes.append(studio.storyboards.add_take(u, s1.id, j.id))
    studio.storyboards.choose_take(u, s1.id, takes[1])
    nxt = studio.storyboards.neighbour_request(u, s1.id, "next", "the subject turns around")
    assert nxt["task"] == "next_shot" and nxt["prompt"].startswith("The next shot after @Video")
    nxt["steps"] = 2
    s2 = studio.storyboards.add_shot(u, sb.id, nxt, duration=1.5)
    j = studio.jobs.submit(u, "generate", nxt, seed=3, project_id=p.id)
    assert w.run_one().status == "succeeded"  # the worker resolves @Video from the media store
    studio.storyboards.add_take(u, s2.id, j.id)
    with pytest.raises(ServiceError, match="exactly once"):
        studio.storyboards.reorder(u, sb.id, [s1.id])
    board = studio.storyboards.reorder(u, sb.id, [s2.id, s1.id])
    assert [x.id for x in sorted(board.shots, key=lambda x: x.position)] == [s2.id, s1.id]
    film = studio.storyboards.assemble(u, sb.id, fps=8, crossfade=0.25)
    path = studio.media.path_of(film.id, "mp4")
    meta = probe(path)
    frames, _ = read_video(path)
    assert meta.container == "mp4" and abs(len(frames) - (3.5 - 0.25) * 8) <= 2
    with pytest.raises(ServiceError, match="request is invalid"):
        studio.storyboards.add_shot(u, sb.id, {"prompt": "@Image_4 dances"})


def test_preference_export_keeps_same_out_and_weights_by_trust(studio, tmp_path):
    import json as _json

    import pyarrow.parquet as pq

    from studio_backend.export import export, push_to_hub

    anns = [studio.users.ensure(f"a{i}", "annotator") for i in range(3)]
    ids = []
    for k in range(3):
        a, b = _pair_assets(studio, k)
        ids.append(studio.arena.add_comparison("dpo", {"prompt": f"p{k}"}, a, b, family="t2v", seed_a=1, seed_b=2))
    # every annotator votes on every pair: pair 0 -> A wins, pair 1 -> Same, pair 2 -> B wins (2 of 3)
    plan = {ids[0]: ["G", "G", "G"], ids[1]: ["S", "S", "G"], ids[2]: ["B", "B", "G"]}
    for i, ann in enumerate(anns):
        for _ in range(3):
            pair = studio.arena.next_pair(ann)
            want = plan[pair.comparison_id][i]
            a_left = studio.arena._unseal(pair.left_is_a_token)[1]
            said = want if a_left else {"G": "B", "S": "S", "B": "G"}[want]
            studio.arena.vote(ann, pair.left_is_a_token, {"prompt_following": said}, said, uuid.uuid4().hex)
    jl, pq_path = export(studio.arena.votes(), tmp_path / "export")
    rows = [_json.loads(x) for x in jl.read_text().splitlines()]
    assert [r["comparison_id"] for r in rows] == [ids[0], ids[2]]  # the "Same" pair is not a DPO pair
    r0, r2 = rows
    assert r0["winner_seed"] == 1 and r2["winner_seed"] == 2
    assert r0["weight"] == 1.0 and 0 < r2["weight"] < 1 and r2["dimensions"]["prompt_following"]["winner"] == 2
    assert pq.read_table(pq_path).num_rows == 2
    with pytest.raises(RuntimeError, match="HF_HUB_OFFLINE"):
        push_to_hub([jl], "someone/votes")


def test_votes_reach_a_hub_dataset_repo_through_huggingface_hub(tmp_path, monkeypatch):
    """The export is pushed by huggingface_hub's own client to a local stand-in of the Hub's upload
    endpoints: one commit with both files, byte for byte; a second export is a second commit to
    the same repo; a refused token leaves the export on disk with the error; the CLI does the same."""
    import os

    import huggingface_hub.constants as hub_constants

    from studio_backend.export import export_studio, push_to_hub
    from tests.fake_hub import fake_hub

    studio = Studio.open(tmp_path / "home")
    a, b = _pair_assets(studio, 3)
    studio.arena.add_comparison("dpo", {"prompt": "p"}, a, b, family="t2v", seed_a=1, seed_b=2)
    ann = studio.users.ensure("ann", "annotator")
    pair = studio.arena.next_pair(ann)
    studio.arena.vote(ann, pair.left_is_a_token, {"prompt_following": "G"}, "G", uuid.uuid4().hex)
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", False)  # the tests run offline; this test has its Hub
    with fake_hub() as (url, hub):
        monkeypatch.setenv("HF_ENDPOINT", url)
        r = export_studio(studio, tmp_path / "exports", push="team/votes", token=hub.token)
        assert r["push_error"] is None and r["pairs"] == 1 and "/commit/" in r["pushed"]
        stored = hub.repos["datasets/team/votes"]
        assert stored["preferences.jsonl"] == Path(r["files"][0]).read_bytes()
        assert stored["preferences.parquet"] == Path(r["files"][1]).read_bytes()
        again = export_studio(studio, tmp_path / "exports", push="team/votes", token=hub.token)
        assert again["files"][0] != r["files"][0] and [c["repo"] for c in hub.commits] == ["datasets/team/votes"] * 2
        bad = export_studio(studio, tmp_path / "exports", push="team/votes", token="hf_wrong")
        assert bad["pushed"] is None and "401" in bad["push_error"]
        assert all(Path(f).is_file() for f in bad["files"]) and len(hub.commits) == 2
        cli = subprocess.run([sys.executable, "-m", "studio_backend.export", "--home", str(tmp_path / "home"),
                              "--push", "team/cli"], capture_output=True, text=True, cwd=str(Path(__file__).parents[1]),
                             env=dict(os.environ, HF_ENDPOINT=url, HF_TOKEN=hub.token, HF_HUB_OFFLINE="0"))
        assert cli.returncode == 0, cli.stderr
        assert b"comparison_id" in hub.repos["datasets/team/cli"]["preferences.jsonl"]
    with pytest.raises(ValueError, match="owner/name"):
        push_to_hub(r["files"], "no-owner")


def _vote_row(comparison_id, annotator_id, key):
    from datetime import datetime, timezone

    return dict(idempotency_key=key, comparison_id=comparison_id, annotator_id=annotator_id, left_is_a=True,
                verdicts={"prompt_following": "G"}, overall="G", seconds=1.0, created_at=datetime.now(timezone.utc))


@pytest.mark.parametrize("race", [False, True])
def test_group_commit_batches_keep_each_vote_once(studio, monkeypatch, race):
    """One batch of the vote writer holding duplicates of each other and of a stored vote: each
    vote is stored once; when another process wins a race between look-up and insert (race=True)
    the batch is written again vote by vote with the same outcome."""
    from sqlalchemy.exc import IntegrityError

    a, b = _pair_assets(studio, 0)
    c1 = studio.arena.add_comparison("eval", {"prompt": "one"}, a, b, family="t2v")
    c2 = studio.arena.add_comparison("eval", {"prompt": "two"}, a, b, family="t2v", gold="G")
    u1, u2 = studio.users.ensure("u1", "annotator"), studio.users.ensure("u2", "annotator")
    writer = studio.arena._writer
    stored = writer.write(_vote_row(c1, u1.id, "stored-key-1"))
    assert stored is not None
    if race:
        def lost_race(batch):
            raise IntegrityError("INSERT", {}, Exception("UNIQUE constraint failed (another process)"))
        monkeypatch.setattr(writer, "_write_fast", lost_race)
    batch = [(_vote_row(c1, u1.id, "stored-key-1"), {}, threading.Event()),  # a retry of the stored vote
             (_vote_row(c1, u1.id, "fresh-key-01"), {}, threading.Event()),  # same annotator, same pair
             (_vote_row(c2, u1.id, "fresh-key-02"), {}, threading.Event()),  # new: stored, and gold
             (_vote_row(c2, u2.id, "fresh-key-02"), {}, threading.Event()),  # key taken within the batch
             (_vote_row(c2, u2.id, "fresh-key-03"), {}, threading.Event())]  # new
    writer.commit(batch)  # as the leading voter does with the votes queued behind it
    assert all(done.is_set() for _, _, done in batch)
    outcome = [box.get("id") for _, box, _ in batch]
    assert outcome[:2] == [None, None] and outcome[3] is None
    assert outcome[2] is not None and outcome[4] is not None and outcome[2] != outcome[4]
    with studio.db.engine.connect() as c:
        rows = c.execute(text("select comparison_id, annotator_id, is_gold from votes order by id")).all()
        counts = dict(c.execute(text("select id, vote_count from comparisons")).all())
    assert [tuple(r) for r in rows] == [(c1, u1.id, 0), (c2, u1.id, 1), (c2, u2.id, 1)]
    assert counts == {c1: 1, c2: 2}


def test_two_studio_processes_voting_the_same_keys_store_each_vote_once(studio):
    """Two studios on one database (as two app processes would be), each with its own vote writer,
    receive the same votes at the same moment (a retry that reached the other process): every vote
    is stored once, and both callers are told about that one vote."""
    other = Studio.open(studio.home)  # same database, own engine, own writer
    a, b = _pair_assets(studio, 1)
    comps = [studio.arena.add_comparison("eval", {"prompt": f"c{k}"}, a, b, family="t2v") for k in range(6)]
    anns = [studio.users.ensure(f"a{i}", "annotator") for i in range(6)]
    jobs = []
    for ann in anns:
        for cid in comps:
            token = studio.arena._seal(cid, True)
            jobs.append((ann, token, uuid.uuid4().hex))
    results = {0: [], 1: []}
    errors = []
    barrier = threading.Barrier(2)

    def run(k, st):
        barrier.wait()
        for ann, token, key in jobs:
            try:
                results[k].append(st.arena.vote(ann, token, {"prompt_following": "G"}, "G", key))
            except Exception as e:  # reported below
                errors.append(repr(e))

    threads = [threading.Thread(target=run, args=(k, st)) for k, st in enumerate((studio, other))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[:3]
    votes = studio.arena.votes()
    assert len(votes) == len(jobs) == 36
    for r0, r1 in zip(results[0], results[1]):
        assert r0.id == r1.id and r0.created != r1.created  # one stored it, the other was told
    with studio.db.engine.connect() as c:
        counts = dict(c.execute(text("select id, vote_count from comparisons")).all())
    assert all(counts[cid] == 6 for cid in comps)


def test_the_migrations_build_exactly_the_models_schema(studio):
    """Alembic's autogenerate finds nothing to add or drop between the migrated database and the
    ORM models, on either database: a model changed without a migration fails here."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from studio_backend.models import Base

    with studio.db.engine.connect() as c:
        diff = compare_metadata(MigrationContext.configure(c), Base.metadata)
    assert diff == [], diff
