"""A hosted studio attacked over raw HTTP (issue 19): a real `python app.py` on a real SQLite home,
driven through /gradio_api with plain httpx (benchmarks/http_client.py) the way a hostile visitor
or a crowd of annotators would reach it."""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from benchmarks.http_client import GradioError, Session, file_url
from studio_backend.studio import Studio
from tests.launched import ROOT, accounts_cli, running_app, start_app, stop_app
from tests.test_model import tiny_pipeline

PASSWORDS = {"boss": "boss-password-1", "cleo": "cleo-password-1", "dora": "dora-password-1",
             "ann": "ann-password-1", "ann2": "ann2-password-1"}
ROLES = {"cleo": "creator", "dora": "creator", "ann": "annotator", "ann2": "annotator"}
GENERATE = ("A red circle moves left on a meadow.", [], [], None, 16, 3, 3.0, 7)

QUARTERS = ("S",) * 4  # the Arena's optional verdicts by quarter, left at Same (raw calls send every input)


def make_accounts(home: Path) -> None:
    accounts_cli(home, "create-admin", "boss", password=PASSWORDS["boss"])
    for name, role in ROLES.items():
        accounts_cli(home, "add", name, "--role", role, password=PASSWORDS[name])


def add_pairs(home: Path, n: int = 4, tag: str = "") -> list[str]:
    """Evaluation pairs between two registered versions, written into the app's database."""
    st = Studio.open(home)
    vs = st.registry.list()
    b = st.registry.register(f"secret-model-b{tag}-{time.time_ns()}", "/elsewhere")
    ids = []
    for k in range(n):
        a = st.media.put_video_array(np.full((16, 32, 32, 3), (10 + 23 * k) % 256, np.uint8))
        c = st.media.put_video_array(np.full((16, 32, 32, 3), (250 - 23 * k) % 256, np.uint8))
        st.arena.add_comparison("eval", {"prompt": f"a blue square, case {k}{tag}"}, a, c, family="t2v",
                                version_a=vs[0].id, version_b=b.id, seed_a=424242, seed_b=535353)
        ids += [a.id, c.id]
    return ids


@pytest.fixture(scope="module")
def hosted(tmp_path_factory):
    base = tmp_path_factory.mktemp("hosted")
    tiny_pipeline().save_pretrained(base / "secret-model-a")
    home = base / "home"
    make_accounts(home)
    # what a home holds besides the media store
    for rel, data in {"runs/job-1/checkpoint.pt": b"weights", "models/job-1/model_index.json": b"{}",
                      "exports/preferences.jsonl": b'{"winner": 1}\n'}.items():
        (home / rel).parent.mkdir(parents=True, exist_ok=True)
        (home / rel).write_bytes(data)
    app = start_app(home, base / "secret-model-a")
    try:
        yield {"app": app, "url": app.url, "home": home, "base": base}
    finally:
        stop_app(app)


def stored_media(media: Path) -> list[str]:
    """The media store's own files (served links left out)."""
    return sorted(p.name for p in media.rglob("*") if p.is_file() and "served" not in p.parts)


def upload_file(session: Session, url: str, path: Path) -> dict:
    """A file uploaded over HTTP as the page does, as the FileData an event takes."""
    up = session.http.post(url + "gradio_api/upload", files={"files": (path.name, path.read_bytes())}).json()[0]
    return {"path": up, "meta": {"_type": "gradio.FileData"}, "orig_name": path.name}


def signed_in(url: str, name: str) -> Session:
    s = Session(url)
    s.call("sign_in", name, PASSWORDS[name])
    return s


def _db_descriptors(pid: int, home: Path) -> dict[str, str]:
    out = {}
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith(str(home / "studio.db")) and not target.endswith(".writers.lock"):
            out[fd] = target
    return out


def test_nothing_of_the_home_but_served_media_links_is_served(hosted):
    home, url = hosted["home"], hosted["url"]
    creator = signed_in(url, "cleo")
    video = creator.call("generate", *GENERATE)[0]
    link = creator.get(file_url(video))
    assert link.status_code == 200 and link.content[4:8] == b"ftyp"  # the creator's own clip plays
    st = Studio.open(home)
    stored = next(p for p in (home / "media").rglob("*.mp4") if "served" not in p.parts)
    served = next((home / "media" / "served").iterdir())
    assert served.is_file()
    wal = home / "studio.db-wal"
    assert wal.exists() and (home / "secret.key").exists()
    pid = hosted["app"].proc.pid
    before = _db_descriptors(pid, home)
    assert before, "the app holds the database open"
    targets = [home / "studio.db", wal, home / "studio.db-shm", home / "secret.key", home / "studio.db.writers.lock",
               home / "runs/job-1/checkpoint.pt", home / "models/job-1/model_index.json",
               home / "exports/preferences.jsonl", stored, stored.with_suffix(".npy")]
    tricks = [f"{served.parent}/../../studio.db", f"{served.parent}/../../secret.key", f"/{home}/studio.db",
              f"//{home}/studio.db", f"{home}/./studio.db", f"{home}/media/../studio.db", f"{home}/media/./../secret.key",
              f"{served.parent}/%2e%2e/%2e%2e/studio.db", f"{served.parent}/..%2f..%2fstudio.db",
              "media/../studio.db", "./studio.db", str(home), str(home / "media"), str(served.parent)]
    anonymous = Session(url)
    for who in (anonymous, creator):
        for path in [str(p) for p in targets] + tricks:
            r = who.get(f"gradio_api/file={path}")
            assert r.status_code in (403, 404), (path, r.status_code)
            assert b"SQLite format" not in r.content and st.arena.secret not in r.content
    # the descriptors on the database file are still the engine's own: none opened, none closed
    assert _db_descriptors(pid, home) == before


def test_the_database_file_is_opened_by_sqlite_alone(tmp_path):
    """The app's guard: any Python-level open of studio.db (or its WAL) in the app's process is
    refused, so no descriptor can be closed under SQLite's locks; SQLite itself works on."""
    script = f"""
import shutil, sqlite3
from pathlib import Path
from studio_backend.db import guard_database_files
from studio_backend.studio import Studio
st = Studio.open({str(tmp_path / 'h')!r})
st.users.ensure("before", "creator")
paths = guard_database_files(st.db)
refused = 0
for attempt in (lambda: open(paths[0], "rb"), lambda: Path(paths[1]).read_bytes(),
                lambda: shutil.copy(paths[0], {str(tmp_path / 'copy.db')!r}), lambda: sqlite3.connect("file:" + paths[0] + "?mode=ro", uri=True).execute("select 1") and open(paths[0]),
                lambda: open(paths[0].replace("studio.db", "./studio.db"), "rb")):
    try:
        attempt()
    except PermissionError as e:
        assert "only its engine may open it" in str(e)
        refused += 1
st.users.ensure("after", "creator")  # the engine still reads and writes
print(refused, sorted(u.name for u in [st.users.get("before"), st.users.get("after")]))
"""
    r = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120,
                       env=dict(os.environ, OMNI_DATABASE_URL=""))
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.split()[0] == "5" and "['after', 'before']" in r.stdout, r.stdout


def test_guessing_passwords_is_slowed_per_name_and_case_twins_are_refused(tmp_path):
    """After MAX_FAILED_SIGN_INS wrong passwords for one name within FAILED_WINDOW_S, that name's sign-in is refused
    (the right password too) until the window has passed; other names are not affected; a success clears the
    count. An account name differing from another only in case is refused ('Admin' beside 'admin')."""
    from studio_backend import accounts as A

    st = Studio.open(tmp_path / "h")
    acc = st.accounts
    now = [1000.0]
    acc.clock = lambda: now[0]
    root = acc.create_admin("root", "root-password-1")
    acc.create(root, "cleo", "cleo-password-1", "creator")
    for _ in range(A.MAX_FAILED_SIGN_INS - 1):
        with pytest.raises(A.ServiceError, match="wrong name or password"):
            acc.sign_in("root", "guess-guess")
    acc.sign_in("root", "root-password-1")  # a success clears the count
    for _ in range(A.MAX_FAILED_SIGN_INS):
        with pytest.raises(A.ServiceError, match="wrong name or password"):
            acc.sign_in("ROOT ", "guess-guess")  # counted per name, whatever its case
    with pytest.raises(A.ServiceError, match=r"too many wrong passwords for this name: try again in \d+ s"):
        acc.sign_in("root", "root-password-1")
    assert acc.sign_in("cleo", "cleo-password-1")[0].name == "cleo"  # another name signs in
    now[0] += A.FAILED_WINDOW_S + 1
    assert acc.sign_in("root", "root-password-1")[0].name == "root"
    with pytest.raises(A.ServiceError, match="'root' exists already: names that differ only in case"):
        acc.create(root, "Root", "root-password-2", "admin")
    assert sorted(u["name"] for u in acc.list(root)) == ["cleo", "root"]
    # a person changes their own password with the current one only (a session alone cannot lock its owner out)
    cleo, _ = acc.sign_in("cleo", "cleo-password-1")
    with pytest.raises(A.ServiceError, match="current password is not right"):
        acc.set_password(cleo, "cleo", "cleo-password-2")
    with pytest.raises(A.ServiceError, match="current password is not right"):
        acc.set_password(cleo, "cleo", "cleo-password-2", current="cleo-guess-1")
    acc.set_password(cleo, "cleo", "cleo-password-2", current="cleo-password-1")
    assert acc.sign_in("cleo", "cleo-password-2")[0].name == "cleo"
    acc.set_password(root, "cleo", "cleo-password-3")  # an admin resets someone else's without it
    assert acc.sign_in("cleo", "cleo-password-3")[0].name == "cleo"
    with pytest.raises(A.PermissionDenied):
        acc.set_password(cleo, "root", "root-password-9", current="cleo-password-3")


def test_a_visitor_without_a_session_reads_no_version_names_counts_or_leaderboard(hosted):
    """The Training tab's refresh and the Leaderboard called over the API with no session: refused, and no version
    name or server path in any response (an annotator in a private window would otherwise unblind the arena)."""
    url, home = hosted["url"], hosted["home"]
    add_pairs(home, 1, tag="-visitor")
    names = [v.name for v in Studio.open(home).registry.list()]
    s = Session(url)
    for api, args in [("refresh_training", (False, False)), ("leaderboard", ())]:
        with pytest.raises(GradioError, match="sign in|admin"):
            s.call(api, *args)
    ann = signed_in(url, "ann")
    for api, args in [("refresh_training", (False, False)), ("leaderboard", ())]:
        with pytest.raises(GradioError, match="admin|annotators rate blind"):
            ann.call(api, *args)
    text = "\n".join(s.responses + ann.responses)
    assert names and not any(n in text for n in names) and "secret-model" not in text
    # refused events are the visitor's mistake, not the server's: no traceback in the server log for them
    log = hosted["app"].output()
    assert "the training tab is the admin's" in text and "Traceback" not in log, log[-2000:]
    boss = signed_in(url, "boss")
    rows = boss.call("refresh_training", False, False)[0]
    assert any("secret-model" in str(r) for r in rows["data"])  # the admin still reads them


def test_an_upload_over_the_largest_slot_limit_is_refused_and_every_response_has_security_headers(hosted):
    """Anyone may POST to gradio's upload route (the page's slots send no session), so the app caps it at the
    largest file a slot takes (MAX_VIDEO_BYTES): one byte more is refused and nothing of it stays in the cache."""
    from studio_backend.media import MAX_VIDEO_BYTES

    url = hosted["url"]
    s = Session(url)
    assert s.get("config").json()["max_file_size"] == MAX_VIDEO_BYTES
    for path in ("", "config", "studio-api/health", "gradio_api/file=/etc/passwd"):  # pages, JSON and refusals alike
        h = s.get(path).headers
        assert h["x-content-type-options"] == "nosniff" and h["referrer-policy"] == "same-origin", path
        assert h["content-security-policy"].startswith("frame-ancestors 'self' https://huggingface.co"), path
    chunk = b"\0" * 2**20
    marker = f"oversized-{time.time_ns()}.bin"

    def body():
        head = (b"--B\r\nContent-Disposition: form-data; name=\"files\"; filename=\"" + marker.encode()
                + b"\"\r\nContent-Type: application/octet-stream\r\n\r\n")
        yield head
        for _ in range(MAX_VIDEO_BYTES // len(chunk)):
            yield chunk
        yield b"\0\r\n--B--\r\n"  # one byte over

    r = s.http.post(url + "gradio_api/upload", content=body(),
                    headers={"Content-Type": "multipart/form-data; boundary=B"})
    assert r.status_code == 413, (r.status_code, r.text[:200])
    cache = Path(os.environ.get("GRADIO_TEMP_DIR") or "/tmp/gradio")
    assert not list(cache.rglob(marker)) if cache.is_dir() else True


def test_votes_survive_hostile_downloads_and_another_process_opening_the_database(tmp_path):
    """The lost-writes attack of issue 19: file= requests for studio.db, then a read-write open by
    another process (as a CLI DPO run or sqlite3 does), then votes, then a restart: every vote is there."""
    tiny_pipeline().save_pretrained(tmp_path / "m")
    home = tmp_path / "home"
    make_accounts(home)
    with running_app(home, tmp_path / "m") as app:
        add_pairs(home, 10)
        ann = signed_in(app.url, "ann")
        for path in ("studio.db", "studio.db-wal", "studio.db-shm"):
            assert ann.get(f"gradio_api/file={home / path}").status_code in (403, 404)
        other = sqlite3.connect(home / "studio.db")  # another process: read-write open, a write, a close
        other.execute("pragma journal_mode=wal")
        other.execute("create table if not exists scratch (x)")
        other.commit()
        other.close()
        out = ann.call("arena_next")
        for _ in range(10):
            out = ann.call("arena_vote", out[1], "G", "S", "G", "S", "S", "G", *QUARTERS)
        assert Studio.open(home).arena.annotator_count(Studio.open(home).users.get("ann")) == 10
    with running_app(home, tmp_path / "m"):  # a restart
        st = Studio.open(home)
        assert len([v for v in st.arena.votes() if v["annotator_id"] == st.users.get("ann").id]) == 10


def test_visitors_who_are_not_signed_in_cannot_write_media_generate_or_vote(hosted):
    from training.video_io import write_mp4

    url, media = hosted["url"], hosted["home"] / "media"
    add_pairs(hosted["home"], 1, tag="-anon")
    stored = lambda: stored_media(media)  # noqa: E731
    before = stored()
    s = Session(url)
    mp4 = write_mp4(np.full((8, 32, 32, 3), 99, np.uint8), hosted["base"] / "visitor.mp4")
    clip = s.http.post(url + "gradio_api/upload", files={"files": ("c.mp4", mp4.read_bytes(), "video/mp4")}).json()[0]
    video = {"path": clip, "meta": {"_type": "gradio.FileData"}}
    from PIL import Image

    Image.fromarray(np.full((32, 32, 3), 77, np.uint8)).save(hosted["base"] / "visitor.png")
    png = s.http.post(url + "gradio_api/upload", files={"files": ("v.png", (hosted["base"] / "visitor.png").read_bytes(),
                                                                  "image/png")}).json()[0]
    image = {"path": png, "meta": {"_type": "gradio.FileData"}}
    for api, args in [("generate", GENERATE), ("on_example", ()), ("on_video", (video,)),
                      ("edit", (video, "Make it snow", "weather", None, None, 0.0, "the model's choice")),
                      ("arena_next", ()), ("arena_vote", ("", "G", "S", "S", "S", "S", "S", *QUARTERS)),
                      ("create_subject", ("Tigo", [image])), ("jobs", ())]:
        try:
            out = s.call(api, *args)
        except GradioError as e:
            assert "sign in" in str(e) or "load a pair first" in str(e), (api, e)
        else:  # a tab may answer with its message instead of an error
            assert (api == "jobs" and out[0]["data"] == []) or "sign in first" in repr(out), (api, out)
    assert stored() == before  # nothing written to the media store
    st = Studio.open(hosted["home"])
    assert not [j for j in st.jobs.list(limit=500) if j.request.get("prompt") == GENERATE[0] and j.user_id is None]


def test_passwords_roles_and_grants(hosted):
    url = hosted["url"]
    with pytest.raises(GradioError, match="wrong name or password"):
        Session(url).call("sign_in", "ann", "not-the-password")
    with pytest.raises(GradioError, match="wrong name or password"):
        Session(url).call("sign_in", "nobody", "whatever-password")
    info = Session(url).get("gradio_api/info").json()["named_endpoints"]["/sign_in"]
    assert [p["label"] for p in info["parameters"]] == ["Name", "Password"]  # no role to choose
    try:  # a third value is not taken for one
        out = Session(url).call("sign_in", "ann", PASSWORDS["ann"], "admin")
        assert "(annotator)" in repr(out) and "(admin)" not in repr(out)
    except GradioError:
        pass
    st = Studio.open(hosted["home"])
    stored = {u.name: u for u in []}
    from studio_backend.models import User

    with st.db.session(write=False) as s:
        stored = {u.name: u.password_hash for u in s.query(User)}
    assert all(h.startswith("scrypt$16384$8$1$") and PASSWORDS[n] not in h for n, h in stored.items() if n in PASSWORDS)
    assert len({h.split("$")[4] for n, h in stored.items() if n in PASSWORDS}) == len(PASSWORDS)  # salted
    add_pairs(hosted["home"], 2, tag="-grant")
    ann2 = signed_in(url, "ann2")
    ann2.call("arena_next")
    boss, cleo = signed_in(url, "boss"), signed_in(url, "cleo")
    with pytest.raises(GradioError, match="admin"):
        cleo.call("account_grant", "cleo", "admin")  # a creator cannot grant
    assert "is now creator" in boss.call("account_grant", "ann2", "creator")[0]
    with pytest.raises(GradioError, match="needs the annotator role"):
        ann2.call("arena_next")  # the next request of the same session
    assert "is now annotator" in boss.call("account_grant", "ann2", "annotator")[0]
    ann2.call("arena_next")
    assert "made with the annotator role" in boss.call("account_create", "erin", "erin-password-1", "annotator")[0]
    erin = signed_in_with(url, "erin", "erin-password-1")
    erin.call("arena_next")
    with pytest.raises(GradioError, match="needs the creator role|creator"):
        erin.call("generate", *GENERATE)


def signed_in_with(url, name, password) -> Session:
    s = Session(url)
    s.call("sign_in", name, password)
    return s


def test_a_session_survives_a_new_page_and_a_restart_until_sign_out(tmp_path):
    from studio_backend.accounts import AccountService

    st = Studio.open(tmp_path / "h")
    acc: AccountService = st.accounts
    acc.create_admin("root", "root-password-1")
    with pytest.raises(Exception, match="at least 8"):
        acc.create(acc.sign_in("root", "root-password-1")[0], "short", "abc")
    user, token = acc.sign_in("root", "root-password-1")
    assert Studio.open(tmp_path / "h").accounts.user_for(token).name == "root"  # another process, a restart
    acc.grant(user, "root", "creator")
    assert acc.user_for(token).role == "creator"  # the role now, not at sign-in
    acc.sign_out(token)
    assert acc.user_for(token) is None and acc.user_for("forged") is None


def test_an_annotators_responses_name_no_version_seed_job_prompt_or_stable_file(hosted):
    home, url = hosted["home"], hosted["url"]
    dora = signed_in(url, "dora")  # another creator's prompt, job and clip
    dora.call("generate", "Dora's private prompt: a green triangle spins in the snow.", [], [], None, 16, 3, 3.0, 5)
    ids = add_pairs(home, 3, tag="-blind")
    st = Studio.open(home)
    versions = [v.name for v in st.registry.list()]
    jobs = [j.id for j in st.jobs.list(limit=500)]
    sessions, seen = {}, {}
    for name in ("ann", "ann2"):
        s = signed_in(url, name)
        out = s.call("arena_next")
        names = []
        for _ in range(3):
            names += [Path(file_url(out[3])).name, Path(file_url(out[4])).name]
            assert s.get(file_url(out[3])).status_code == 200
            out = s.call("arena_vote", out[1], "G", "S", "G", "S", "S", "B", *QUARTERS)
        s.call("jobs")
        sessions[name], seen[name] = s, names
    for name, s in sessions.items():
        text = "\n".join(s.responses)
        for v in versions:
            assert v not in text, (name, v)
        assert "secret-model" not in text and "424242" not in text and "535353" not in text
        leak = re.search(r".{0,60}(seed[ =:-]?\d|\bjob[ #-]?\d|version \d).{0,60}", text, re.I)
        assert leak is None, leak.group(0)  # (column headers and help texts may say the words, with no values)
        assert "Dora's private prompt" not in text and "green triangle" not in text
        for asset in ids:
            assert asset not in text and asset[:16] not in text  # no content hash: nothing stable
        assert not any(f'"job", {j},' in text for j in jobs)
    assert not set(seen["ann"]) & set(seen["ann2"])  # the same clips, under different names per annotator
    # a creator who regenerates the evaluation prompt gets yet another name
    again = signed_in(url, "cleo").call("generate", "a blue square, case 0-blind", [], [], None, 16, 3, 3.0, 0)[0]
    assert Path(file_url(again)).name not in seen["ann"] + seen["ann2"]


def test_a_resubmitted_vote_is_stored_once_on_the_pair_it_was_cast_on(hosted):
    add_pairs(hosted["home"], 3, tag="-resubmit")
    ann = signed_in(hosted["url"], "ann")
    first = ann.call("arena_next")
    handle, prompt = first[1], first[2]
    second = ann.call("arena_vote", handle, "G", "S", "G", "S", "S", "G", *QUARTERS)
    assert second[1] != handle
    again = ann.call("arena_vote", handle, "B", "B", "B", "B", "B", "B", *QUARTERS)  # the same submit, replayed
    st = Studio.open(hosted["home"])
    mine = [v for v in st.arena.votes() if v["annotator_id"] == st.users.get("ann").id]
    on_first = [v for v in mine if v["request"]["prompt"] == prompt.removeprefix("**Request:** ")]
    assert len(on_first) == 1  # stored once, with the first submit's verdict
    assert on_first[0]["overall"] in ("G", "B") and len(mine) == len({v["comparison_id"] for v in mine})
    pair_after = [v for v in mine if v["request"]["prompt"] == second[2].removeprefix("**Request:** ")]
    assert pair_after == []  # the pair loaded after it got no vote the annotator never cast
    assert again[1] not in (handle,)
    with pytest.raises(GradioError, match="no longer on this page"):
        ann.call("arena_vote", "0" * 32, "G", "S", "G", "S", "S", "G", *QUARTERS)


def _rss_mb(pid: int) -> float:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def test_a_video_bomb_and_a_gif_in_a_video_slot_are_refused_at_once(hosted):
    """20 KB of H.264 declaring 1024x1024 x 600 frames (1.9 GB decoded) and a GIF sent to the Edit
    tab's video preview: refused in under a second, with the app's memory flat and nothing stored."""
    import imageio_ffmpeg
    from PIL import Image

    base, url, pid = hosted["base"], hosted["url"], hosted["app"].proc.pid
    bomb = base / "bomb.mp4"
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-loglevel", "error", "-y", "-f", "lavfi", "-i",
                    "color=black:s=1024x1024:r=30", "-frames:v", "600", "-c:v", "libx264", "-preset", "ultrafast",
                    "-crf", "51", "-pix_fmt", "yuv420p", str(bomb)], check=True, timeout=120)
    assert bomb.stat().st_size < 100_000
    gif = base / "clip.gif"
    frames = [Image.fromarray(np.full((256, 256, 3), 40 * k, np.uint8)) for k in range(6)]
    frames[0].save(gif, save_all=True, append_images=frames[1:], duration=100, loop=0)
    media = hosted["home"] / "media"
    stored = lambda: stored_media(media)  # noqa: E731
    cleo = signed_in(url, "cleo")
    for f, words in ((bomb, "million pixels to decode"), (gif, "a GIF goes in an image slot")):
        up = cleo.http.post(url + "gradio_api/upload", files={"files": (f.name, f.read_bytes())}).json()[0]
        before, rss = stored(), _rss_mb(pid)
        t0 = time.perf_counter()
        try:
            out = cleo.call("on_video", {"path": up, "meta": {"_type": "gradio.FileData"}})
            message = repr(out)
        except GradioError as e:
            message = str(e)
        took = time.perf_counter() - t0
        assert words in message, message
        print(f"{f.name}: refused in {took * 1000:.0f} ms")
        assert took < 1.0, f"{f.name} refused after {took:.2f} s"
        assert _rss_mb(pid) - rss < 50, "memory grew"
        assert stored() == before


def _refuses_oversized_and_malformed_bodies(base: str) -> None:
    """A body over 16 KB, declared or streamed without a length, is refused (413) before the server holds it;
    a body that is not a JSON object gets 422; neither is a vote."""
    import httpx

    with httpx.Client(base_url=base, timeout=60) as c:
        for path in ("studio-api/sign-in", "studio-api/arena/vote"):
            assert c.post(path, content=b"{" + b" " * 1_000_000 + b"}",
                          headers={"Content-Type": "application/json"}).status_code == 413, path
            streamed = c.post(path, content=(b" " * 65536 for _ in range(16)),  # chunked: no declared length
                              headers={"Content-Type": "application/json"})
            assert streamed.status_code == 413, (path, streamed.status_code)
            assert c.post(path, content=b"[1, 2]", headers={"Content-Type": "application/json"}).status_code == 422
            assert c.post(path, content=b"\xff\xfe", headers={"Content-Type": "application/json"}).status_code == 422


def test_the_json_arena_api_needs_a_session_and_stores_a_resubmitted_vote_once(hosted):
    import httpx

    _refuses_oversized_and_malformed_bodies(hosted["url"])
    add_pairs(hosted["home"], 2, tag="-api")
    c = httpx.Client(base_url=hosted["url"], timeout=60)
    assert c.post("studio-api/arena/next").status_code == 401
    assert c.post("studio-api/arena/vote", json={"pair": "x", "overall": "G"},
                  headers={"Authorization": "Bearer forged"}).status_code == 401
    assert c.post("studio-api/sign-in", json={"name": "ann2", "password": "wrong-password"}).status_code == 401
    tok = c.post("studio-api/sign-in", json={"name": "ann2", "password": PASSWORDS["ann2"]}).json()["token"]
    h = {"Authorization": f"Bearer {tok}"}
    nxt = c.post("studio-api/arena/next", headers=h).json()["next"]
    assert c.get(nxt["left"]).status_code == 200 and "secret-model" not in repr(nxt)
    first = c.post("studio-api/arena/vote", headers=h, json={"pair": nxt["pair"], "overall": "G"}).json()
    again = c.post("studio-api/arena/vote", headers=h, json={"pair": nxt["pair"], "overall": "B"}).json()
    assert first["stored"] is True and again["stored"] is False
    st = Studio.open(hosted["home"])
    mine = [v for v in st.arena.votes() if v["annotator_id"] == st.users.get("ann2").id]
    assert len(mine) == len({v["comparison_id"] for v in mine})
    ctok = c.post("studio-api/sign-in", json={"name": "cleo", "password": PASSWORDS["cleo"]}).json()["token"]
    assert c.post("studio-api/arena/next", headers={"Authorization": f"Bearer {ctok}"}).status_code == 403


def test_the_arena_api_in_processes_of_its_own_keeps_the_rules(hosted):
    """`python -m app.api_server --workers 2` on the studio's home: the same sign-in, roles and blind pairs
    as the studio's own routes, its pairs' clips served by the studio, a vote resubmitted through other
    connections (either process) stored once, and nothing else answered (no docs, no files)."""
    import httpx

    from tests.launched import free_port

    add_pairs(hosted["home"], 3, tag="-apiserver")
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "app.api_server", "--home", str(hosted["home"]), "--port", str(port),
                             "--workers", "2"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    api = f"http://127.0.0.1:{port}/"
    try:
        t0 = time.time()
        while True:
            try:
                if httpx.get(api + "studio-api/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None and time.time() - t0 < 60, proc.stdout.read() if proc.poll() is not None else ""
            time.sleep(0.3)
        _refuses_oversized_and_malformed_bodies(api)
        c = httpx.Client(base_url=api, timeout=60)
        assert c.post("studio-api/arena/next").status_code == 401
        for path in ("docs", "openapi.json", "gradio_api/info", "config"):
            assert c.get(path).status_code == 404, path
        assert c.post("studio-api/sign-in", json={"name": "ann", "password": "wrong-password"}).status_code == 401
        tok = c.post("studio-api/sign-in", json={"name": "ann", "password": PASSWORDS["ann"]}).json()["token"]
        h = {"Authorization": f"Bearer {tok}"}
        nxt = c.post("studio-api/arena/next", headers=h).json()["next"]
        assert "secret-model" not in repr(nxt)
        assert httpx.get(hosted["url"].rstrip("/") + nxt["left"], timeout=60).status_code == 200  # the studio serves it
        assert c.get(nxt["left"]).status_code == 404  # the API process serves no files
        first = c.post("studio-api/arena/vote", headers=h, json={"pair": nxt["pair"], "overall": "G"}).json()
        assert first["stored"] is True
        for _ in range(4):  # fresh connections: the kernel hands them to either worker process
            with httpx.Client(base_url=api, timeout=60) as other:
                again = other.post("studio-api/arena/vote", headers=h, json={"pair": nxt["pair"], "overall": "B"})
                assert again.status_code == 200 and again.json()["stored"] is False
        # a token the studio's own route issued works here and the other way round (one database, one secret)
        tok2 = httpx.post(hosted["url"] + "studio-api/sign-in", json={"name": "ann", "password": PASSWORDS["ann"]},
                          timeout=60).json()["token"]
        assert c.post("studio-api/arena/next", headers={"Authorization": f"Bearer {tok2}"}).status_code == 200
        st = Studio.open(hosted["home"])
        ann = st.users.get("ann").id
        mine = [v for v in st.arena.votes() if v["annotator_id"] == ann]
        assert len(mine) == len({v["comparison_id"] for v in mine})
        assert sum(1 for v in mine if v["overall"] in ("G", "B")) == len(mine)
        ctok = c.post("studio-api/sign-in", json={"name": "cleo", "password": PASSWORDS["cleo"]}).json()["token"]
        assert c.post("studio-api/arena/next", headers={"Authorization": f"Bearer {ctok}"}).status_code == 403
    finally:
        proc.terminate()
        proc.wait(30)


def test_two_trainers_never_run_one_job(tmp_path):
    """A job's lease is renewed by its live holder; a second trainer (the studio's worker starting up,
    a CLI `studio_backend.train_jobs --resume`) takes it back only once the lease ran out or its process is gone."""
    from datetime import datetime, timedelta, timezone

    from studio_backend.models import Job

    st = Studio.open(tmp_path / "h")
    admin = st.users.ensure("root", "admin")
    job = st.jobs.submit(admin, "train", {"algorithm": "dpo", "config": {}})
    holder = subprocess.Popen([sys.executable, "-c", f"""
import sys, time
from studio_backend.studio import Studio
s = Studio.open({str(tmp_path / 'h')!r})
j = s.jobs.claim("trainer-1", ("train",), lease_s=2)
with s.jobs.keep_lease(j, lease_s=2):
    print("holding", flush=True)
    time.sleep(120)
"""], cwd=ROOT, stdout=subprocess.PIPE, text=True, env=dict(os.environ, OMNI_DATABASE_URL=""))
    try:
        assert holder.stdout.readline().strip() == "holding"
        for _ in range(3):  # three times the lease: still renewed, never taken
            time.sleep(2.0)
            assert st.jobs.requeue_interrupted() == 0
            assert st.jobs.claim("trainer-2", ("train",), job_id=job.id) is None
        cli = subprocess.run([sys.executable, "-m", "studio_backend.train_jobs", "--home", str(tmp_path / "h"), "--resume"],
                             cwd=ROOT, capture_output=True, text=True, timeout=300, env=dict(os.environ, OMNI_DATABASE_URL=""))
        assert cli.returncode != 0 and "being run by a live trainer" in cli.stderr, cli.stderr[-2000:]
        assert st.jobs.get(job.id).status == "running"
    finally:
        holder.kill()  # SIGKILL: no clean-up, the lease is left as it was
        holder.wait()
    assert st.jobs.requeue_interrupted() == 1  # its process is gone: taken back at once
    mine = st.jobs.claim("trainer-2", ("train",), job_id=job.id)
    assert mine is not None and mine.lease_owner.split(":")[2] == "trainer-2"
    # a holder on another host that stops renewing: taken back only after its lease ran out
    with st.db.session() as s:
        j = s.get(Job, job.id)
        j.lease_owner, j.lease_expires_at = "elsewhere:1:trainer-9:x", datetime.now(timezone.utc) + timedelta(seconds=30)
    assert st.jobs.requeue_interrupted() == 0 and st.jobs.claim("t3", ("train",), job_id=job.id) is None
    with st.db.session() as s:
        s.get(Job, job.id).lease_expires_at = datetime.now(timezone.utc) - timedelta(seconds=1)
    assert st.jobs.claim("t3", ("train",), job_id=job.id).lease_owner.split(":")[2] == "t3"
    assert not st.jobs.heartbeat(job.id, mine.lease_owner)  # the old holder learns it lost the job


def test_a_page_shows_its_jobs_again_after_a_restart(tmp_path):
    tiny_pipeline().save_pretrained(tmp_path / "m")
    home = tmp_path / "home"
    make_accounts(home)
    with running_app(home, tmp_path / "m") as app:
        s = signed_in(app.url, "cleo")
        s.call("generate", *GENERATE)
        rows = s.call("jobs")[0]["data"]
        assert rows and rows[0][2] == "succeeded"
    with running_app(home, tmp_path / "m") as app:  # a restart; the person signs in again (or reloads)
        after = signed_in(app.url, "cleo").call("jobs")[0]["data"]
        assert [r[0] for r in after] == [r[0] for r in rows] and after[0][2] == "succeeded"
        assert signed_in(app.url, "dora").call("jobs")[0]["data"] == []  # another creator sees none of them


def test_bad_references_and_control_characters_get_the_studios_own_words(hosted):
    from PIL import Image

    url, base, media = hosted["url"], hosted["base"], hosted["home"] / "media"
    stored = lambda: stored_media(media)  # noqa: E731
    cleo = signed_in(url, "cleo")

    upload = lambda path: upload_file(cleo, url, path)  # noqa: E731

    Image.fromarray(np.full((1, 1, 3), 200, np.uint8)).save(base / "dot.png")
    Image.fromarray(np.full((1, 1, 3), 200, np.uint8)).save(base / "dot.gif")
    (base / "noise.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    before = stored()
    for files, words in (([base / "dot.png"], "images must be 8..4096 pixels a side"),
                         ([base / "noise.png"], "damaged or truncated")):
        with pytest.raises(GradioError) as e:
            cleo.call("create_subject", "Dot", [upload(f) for f in files])
        assert words in str(e.value) and "/tmp/" not in str(e.value)
    # a 1x1 GIF as an edit's reference image, and a NUL in a prompt: refused in the studio's words
    clip = upload(__import__("training.video_io", fromlist=["write_mp4"]).write_mp4(
        np.full((8, 32, 32, 3), 60, np.uint8), base / "edit.mp4"))
    ref = upload(base / "dot.gif")
    try:
        out = repr(cleo.call("edit", clip, "Make it snow", "weather", ref, None, 0.0, "the model's choice"))
    except GradioError as e:
        out = str(e)
    assert "8..4096 pixels a side" in out, out
    with pytest.raises(GradioError, match="control character"):
        cleo.call("generate", "A red circle\x00 moves left.", [], [], None, 16, 3, 3.0, 1)
    assert not [p for p in stored() if p not in before and p.endswith(".png")]  # no refused image was kept


def test_a_refused_request_leaves_none_of_its_uploads_in_the_media_store(hosted):
    """A valid image and a valid video sent with a prompt the studio refuses: nothing of them is kept."""
    from PIL import Image

    from training.video_io import write_mp4

    url, base, media = hosted["url"], hosted["base"], hosted["home"] / "media"
    stored = lambda: stored_media(media)  # noqa: E731
    cleo = signed_in(url, "cleo")

    upload = lambda path: upload_file(cleo, url, path)  # noqa: E731

    Image.fromarray(np.random.default_rng(5).integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(base / "fresh.png")
    clip = write_mp4(np.random.default_rng(6).integers(0, 256, (8, 32, 32, 3), dtype=np.uint8), base / "fresh.mp4")
    before = stored()
    with pytest.raises(GradioError, match="@Image_3"):
        cleo.call("generate", "@Image_3 jumps in @Video.", [upload(base / "fresh.png")], [], upload(clip), 16, 3, 3.0, 1)
    assert stored() == before
    # the same uploads in a request the studio takes are kept (and the job runs)
    cleo.call("generate", "@Image_1 jumps in @Video.", [upload(base / "fresh.png")], [], upload(clip), 16, 2, 3.0, 1)
    new = [p for p in stored() if p not in before]
    assert any(p.endswith(".png") for p in new) and any(p.endswith(".mp4") for p in new)


def test_damaged_files_in_image_and_video_slots_get_the_studios_own_words(hosted):
    """Forged files (random bytes under an image's or a video's name) in every image and video slot of
    Edit, Storyboard and Create: the studio's message names the file, no temporary path, nothing stored."""
    url, base, media = hosted["url"], hosted["base"], hosted["home"] / "media"
    stored = lambda: stored_media(media)  # noqa: E731
    cleo = signed_in(url, "cleo")

    upload = lambda path: upload_file(cleo, url, path)  # noqa: E731

    junk = np.random.default_rng(9).integers(0, 256, 3000, dtype=np.uint8).tobytes()
    (base / "forged.png").write_bytes(junk)
    (base / "forged.mp4").write_bytes(junk)
    good = upload(__import__("training.video_io", fromlist=["write_mp4"]).write_mp4(
        np.full((8, 32, 32, 3), 90, np.uint8), base / "good.mp4"))
    before = stored()

    def said(api: str, *args) -> str:
        try:
            return repr(cleo.call(api, *args))
        except GradioError as e:
            return str(e)

    outs = {
        "edit reference": said("edit", good, "Make it snow", "weather", upload(base / "forged.png"), None, 0.0,
                               "the model's choice"),
        "storyboard grid": said("storyboard_add_grid", upload(base / "forged.png"), 2, 2),
        "edit video": said("edit", upload(base / "forged.mp4"), "Make it snow", "weather", None, None, 0.0,
                           "the model's choice"),
        "create video": said("generate", "A red circle moves left in @Video.", [], [], upload(base / "forged.mp4"),
                             16, 2, 3.0, 1),
    }
    for slot, out in outs.items():
        assert "forged" in out, (slot, out)  # the file is named
        assert "/tmp/" not in out and "Traceback" not in out, (slot, out)
    assert stored() == before  # the good video sent with the forged reference was not kept either
