"""The submission service (``service/``) and the students' helper (``utils/submit.py``).

Real SQLite database, real Huey queue on SQLite: the fast tests either run no worker (``jobs=0``: the
queue only fills) or Huey's real consumer with one worker thread and a stand-in grader (no notebook is
executed). ``test_end_to_end_grading`` (slow, ~30-60 s, run by default) grades the solution notebook and
the blank released one through the queue with the course's real grading pipeline, on one live server.
"""

import ast
import contextlib
import copy
import csv
import hashlib
import json
import os
import pathlib
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time

import httpx
import pytest
import uvicorn
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text

from service import grader
from service.app import create_app
from service.config import Settings
from service.queue import pending_ids
from utils import submit as helper

ROOT = pathlib.Path(__file__).resolve().parent.parent
SOLUTION = ROOT / "solutions" / "lstm" / "lstm.ipynb"
BLANK = ROOT / "assignments" / "lstm" / "lstm.ipynb"
OTHER = ROOT / "assignments" / "multi_head_attention" / "multi_head_attention.ipynb"
ROSTER = "id,name,email\nalice,Alice A,alice@example.org\nbob,Bob B,bob@example.org\n"
SCRIPT = "<script>alert('x')</script>"


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def no_sandbox_if_none():
    """GRADING_SANDBOX=none where no sandbox can be made, as .ci/run does (the course's own notebooks)."""
    try:
        grader.sandbox()
        return {}
    except RuntimeError:
        return {"GRADING_SANDBOX": "none"}


def fake_grade(calls=None, reason=SCRIPT):
    """A stand-in for grader.grade: full marks on part one, the given reason on part two; a feedback page."""

    def grade(name, path, out, *, student="s"):
        if calls is not None:
            calls.append((name, pathlib.Path(path).name))
        json.loads(pathlib.Path(path).read_text())  # the stored file is there and is a notebook
        out.mkdir(parents=True, exist_ok=True)
        (out / "feedback.html").write_text("<!DOCTYPE html><p>feedback</p>")
        return {"status": "graded", "score": 3.0, "max_score": 7.0, "reason": "",
                "parts": [{"name": "one", "score": 3.0, "max_score": 3.0, "reason": "passed"},
                          {"name": "two", "score": 0.0, "max_score": 4.0, "reason": reason}],
                "feedback": str(out / "feedback.html"), "sandbox": "fake"}

    return grade


def settings(tmp, *, jobs=0, policy=None):
    (tmp / "roster.csv").write_text(ROSTER)
    if policy:
        (tmp / "policy.toml").write_text(policy)
    return Settings(data=tmp / "data", roster=tmp / "roster.csv", jobs=jobs,
                    policy=tmp / "policy.toml" if policy else None)


def tokens(data):
    with open(data / "tokens.csv", newline="") as f:
        return {row["id"]: row["token"] for row in csv.DictReader(f)}


def auth(token):
    return {"Authorization": f"Bearer {token}"}


def upload(client, token, path=BLANK, assignment="lstm", content=None):
    content = pathlib.Path(path).read_bytes() if content is None else content
    return client.post("/api/submissions", headers=auth(token), data={"assignment": assignment},
                       files={"notebook": ("lstm.ipynb", content, "application/json")})


def wait_done(client, token, sub_id, timeout=30):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        status = client.get(f"/api/submissions/{sub_id}", headers=auth(token)).json()
        if status["status"] in ("graded", "failed"):
            return status
        time.sleep(0.2)
    raise AssertionError(f"submission {sub_id} not graded in {timeout} s: {status}")


@pytest.fixture
def queued(tmp_path):
    """A service without workers (submissions stay queued), its client and the students' tokens."""
    s = settings(tmp_path)
    with TestClient(create_app(s, grade=fake_grade())) as client:
        yield client, tokens(s.data), s


def test_roster_gives_tokens_once_stored_hashed(tmp_path):
    s = settings(tmp_path)
    create_app(s, grade=fake_grade())
    first = (s.data / "tokens.csv").read_text()
    assert first.splitlines()[0] == "id,token" and set(tokens(s.data)) == {"alice", "bob"}
    assert (s.data / "instructor_token.txt").read_text().strip()
    raw = (s.data / "service.db").read_bytes()
    assert all(t.encode() not in raw for t in tokens(s.data).values())  # only hashes in the database
    create_app(s, grade=fake_grade())  # the same roster again: nothing new, nobody's token changes
    assert (s.data / "tokens.csv").read_text() == first
    (tmp_path / "roster.csv").write_text(ROSTER + "carol,Carol C,carol@example.org\n")
    create_app(s, grade=fake_grade())
    assert list(tokens(s.data)) == ["alice", "bob", "carol"] and (s.data / "tokens.csv").read_text().startswith(first)


def test_the_readme_command_starts_the_service(tmp_path):
    """The README's one-line serve command (paths and port replaced): tokens.csv, the address, a page."""
    line = next(ln for ln in (ROOT / "README.md").read_text().splitlines()
                if ln.startswith("python -m service serve"))
    (tmp_path / "roster.csv").write_text(ROSTER)
    port = free_port()
    argv = shlex.split(line)
    for flag, value in (("--roster", tmp_path / "roster.csv"), ("--port", port), ("--data", tmp_path / "data")):
        argv[argv.index(flag) + 1] = str(value)
    env = dict(os.environ, **no_sandbox_if_none())
    proc = subprocess.Popen([sys.executable, *argv[1:]], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        lines = []
        for out in proc.stdout:
            lines.append(out)
            if "serving on" in out or len(lines) > 50:
                break
        assert f"serving on http://127.0.0.1:{port}/" in "".join(lines), "".join(lines)
        assert set(tokens(tmp_path / "data")) == {"alice", "bob"}
        end = time.monotonic() + 20
        while True:
            try:
                page = httpx.get(f"http://127.0.0.1:{port}/")
                break
            except httpx.TransportError:
                assert time.monotonic() < end, "the service did not answer"
                time.sleep(0.2)
        assert page.status_code == 200 and "Submit a notebook" in page.text
    finally:
        proc.send_signal(signal.SIGINT)
        rest = proc.communicate(timeout=30)[0]
    assert proc.returncode == 0, rest
    assert all(t not in "".join(lines) + rest for t in tokens(tmp_path / "data").values())  # never logged


def test_submission_stored_before_ack_and_status(queued):
    client, tok, s = queued
    reply = upload(client, tok["alice"])
    assert reply.status_code == 202, reply.text
    sub = reply.json()
    assert set(sub) >= {"id", "url"} and sub["url"].endswith(f"/submissions/{sub['id']}")
    # when the 202 arrives, the file and the committed row are there (read through a connection of our own)
    stored = s.data / "submissions" / f"{sub['id']}.ipynb"
    assert stored.read_bytes() == BLANK.read_bytes()
    with create_engine(s.database).connect() as conn:
        row = conn.execute(text("select student_id, status, sha256 from submissions where id = :i"),
                           {"i": sub["id"]}).one()
    assert tuple(row) == ("alice", "queued", hashlib.sha256(BLANK.read_bytes()).hexdigest())
    assert sub["id"] in pending_ids(client.app.state.service.queue)
    status = client.get(f"/api/submissions/{sub['id']}", headers=auth(tok["alice"])).json()
    assert {"status", "score", "max_score", "parts", "feedback_url"} <= set(status)
    assert (status["status"], status["position"], status["parts"], status["feedback_url"]) == ("queued", 1, [], None)
    page = client.get(f"/submissions/{sub['id']}", headers=auth(tok["alice"]))
    assert page.status_code == 200 and "number 1 in the queue" in page.text


def test_only_your_own_submissions_and_valid_tokens(queued):
    client, tok, _ = queued
    sub = upload(client, tok["alice"]).json()["id"]
    assert client.get(f"/api/submissions/{sub}", headers=auth(tok["bob"])).status_code == 404
    assert client.get(f"/submissions/{sub}", headers=auth(tok["bob"])).status_code == 404
    assert client.get(f"/submissions/{sub}/feedback", headers=auth(tok["bob"])).status_code == 404
    assert client.get("/api/submissions/999", headers=auth(tok["alice"])).status_code == 404
    assert client.get(f"/api/submissions/{sub}", headers=auth("wrong")).status_code == 401
    assert client.get(f"/api/submissions/{sub}").status_code == 401
    assert upload(client, "wrong").status_code == 401
    instructor = (client.app.state.service.data / "instructor_token.txt").read_text().strip()
    assert client.get(f"/api/submissions/{sub}", headers=auth(instructor)).status_code == 401  # not a student
    assert client.get("/instructor/lstm", headers=auth(tok["alice"]), follow_redirects=False).status_code == 303
    # the upload page: the token in the form signs the browser in (a cookie); the status page follows
    browser = TestClient(client.app)
    form = browser.post("/", data={"token": tok["bob"], "assignment": "lstm"},
                        files={"notebook": ("lstm.ipynb", BLANK.read_bytes())}, follow_redirects=False)
    assert form.status_code == 303 and form.headers["location"] == f"/submissions/{sub + 1}"
    assert browser.get(form.headers["location"]).status_code == 200
    assert browser.get(f"/submissions/{sub}").status_code == 404  # alice's, not bob's
    assert browser.post("/", data={"token": "wrong", "assignment": "lstm"},
                        files={"notebook": ("lstm.ipynb", BLANK.read_bytes())}).status_code == 401


def test_refused_uploads_say_why(tmp_path):
    s = settings(tmp_path, policy='[lstm]\nmax_submissions = 2\nmin_interval_s = 3600\n'
                                  '[multi_head_attention]\ndeadline = 2020-01-01T00:00:00Z\n')
    s.max_bytes = 200_000
    with TestClient(create_app(s, grade=fake_grade())) as client:
        tok = tokens(s.data)["alice"]
        cases = [(dict(content=b"{" + b" " * 200_001 + b"}"), 413, "larger than"),
                 (dict(content=b"print('hello')"), 400, "not a Jupyter notebook"),
                 (dict(content=b'{"a": 1}'), 400, "not a Jupyter notebook"),
                 (dict(assignment="nope"), 400, "unknown assignment"),
                 (dict(path=OTHER), 400, "not the lstm assignment"),
                 (dict(assignment="multi_head_attention", path=OTHER), 403, "deadline")]
        for kw, code, words in cases:
            reply = upload(client, tok, **kw)
            assert (reply.status_code, words in reply.json()["detail"]) == (code, True), (kw.keys(), reply.text)
        assert upload(client, tok).status_code == 202
        again = upload(client, tok)
        assert again.status_code == 429 and "submit again in" in again.json()["detail"], again.text
        with client.app.state.service.Session.begin() as session:  # one hour later
            session.execute(text("update submissions set created = '2000-01-01 00:00:00'"))
        assert upload(client, tok).status_code == 202
        last = upload(client, tok)
        assert last.status_code == 403 and "all 2 submissions" in last.json()["detail"]
        assert len(list((s.data / "submissions").iterdir())) == 2  # nothing refused was stored


def test_graded_by_a_worker_escaped_pages_and_instructor(tmp_path):
    s = settings(tmp_path, jobs=1, policy='[lstm]\ncounts = "last"\n')
    with TestClient(create_app(s, grade=fake_grade())) as client:
        tok = tokens(s.data)
        sub = upload(client, tok["alice"]).json()["id"]
        status = wait_done(client, tok["alice"], sub)
        assert (status["status"], status["score"], status["max_score"]) == ("graded", 3.0, 7.0)
        assert status["parts"][1] == {"name": "two", "score": 0.0, "max_score": 4.0, "reason": SCRIPT}
        assert status["feedback_url"].endswith(f"/submissions/{sub}/feedback")
        page = client.get(f"/submissions/{sub}", headers=auth(tok["alice"])).text
        assert SCRIPT not in page and "&lt;script&gt;" in page  # the student's text stays inert
        feedback = client.get(f"/submissions/{sub}/feedback", headers=auth(tok["alice"]))
        assert feedback.status_code == 200 and "script-src" not in feedback.headers["content-security-policy"]
        assert "default-src 'none'" in feedback.headers["content-security-policy"]
        instructor = auth((s.data / "instructor_token.txt").read_text().strip())
        board = client.get("/instructor/lstm", headers=instructor)
        assert board.status_code == 200 and "3 / 7" in board.text and SCRIPT not in board.text
        rows = list(csv.reader(client.get("/instructor/lstm/grades.csv", headers=instructor).text.splitlines()))
        assert rows[0][:5] == ["id", "name", "email", "score", "max_score"]
        assert rows[1][:6] == ["alice", "Alice A", "alice@example.org", "3", "7", "1"] and rows[2][3] == ""
        # browser: the login form sets a session cookie; the token never appears in a page or a URL
        browser = TestClient(client.app)
        login = browser.post("/login", data={"token": tok["alice"], "next": f"/submissions/{sub}"})
        assert login.status_code == 200 and "two" in login.text and tok["alice"] not in login.text
        assert client.post("/instructor/lstm/regrade", headers=instructor).json() == {"queued": 1}
        assert wait_done(client, tok["alice"], sub)["status"] == "graded"


def test_restart_grades_what_was_left_once(tmp_path):
    s = settings(tmp_path)
    with TestClient(create_app(s, grade=fake_grade())) as client:  # no worker: everything stays queued
        tok = tokens(s.data)
        ids = [upload(client, tok[who]).json()["id"] for who in ("alice", "bob", "alice")]
        service = client.app.state.service
        with service.Session.begin() as session:  # the server died while grading the first one
            session.execute(text("update submissions set status = 'grading' where id = :i"), {"i": ids[0]})
        service.queue.flush()  # and the queue lost its tasks (e.g. its file was replaced)
        service.queue.grade(ids[2])  # but one is still there: it must not be graded twice
    calls = []
    s.jobs = 1
    with TestClient(create_app(s, grade=fake_grade(calls))) as client:
        done = [wait_done(client, tok["alice" if i != ids[1] else "bob"], i)["status"] for i in ids]
        time.sleep(1)  # a duplicate task, if any, would run now
    assert done == ["graded"] * 3
    assert sorted(c[1] for c in calls) == sorted(f"{i}.ipynb" for i in ids)  # each once


@contextlib.contextmanager
def live(app):
    """``app`` served by uvicorn in a thread on a free port; yields its base URL."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    end = time.monotonic() + 20
    while not server.started and time.monotonic() < end:
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


def test_submit_helper_prints_the_parts_and_clear_errors(tmp_path):
    s = settings(tmp_path, jobs=1)
    lines = []
    with live(create_app(s, grade=fake_grade())) as url:
        tok = tokens(s.data)["alice"]
        status = helper.submit("lstm", url, BLANK, token=tok, poll_s=0.2, out=lines.append)
        assert status["status"] == "graded" and status["score"] == 3.0
        with pytest.raises(helper.SubmitError, match="does not know this token"):
            helper.submit("lstm", url, BLANK, token="wrong", out=lines.append)
        with pytest.raises(helper.SubmitError, match="unknown assignment"):
            helper.submit("nope", url, BLANK, token=tok, out=lines.append)
    text_out = "\n".join(lines)
    assert "two" in text_out and "total (automatic)" in text_out and "feedback: http" in text_out
    assert tok not in text_out
    with pytest.raises(helper.SubmitError, match="cannot reach the server"):
        helper.submit("lstm", url, BLANK, token=tok, out=lines.append)
    # the student edition's helper imports the standard library only (nothing of service/ or of grading)
    tree = ast.parse((ROOT / "utils" / "submit.py").read_text())
    imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert imported - {"google"} <= sys.stdlib_module_names, imported  # google.colab: only inside Colab


@pytest.mark.slow
def test_end_to_end_grading(tmp_path, monkeypatch):
    """Slow but run (~30-60 s): the solution and the blank notebook, graded for real through the queue."""
    for key, value in no_sandbox_if_none().items():
        monkeypatch.setenv(key, value)
    solved = json.loads(SOLUTION.read_text())
    cell = copy.deepcopy(next(c for c in solved["cells"] if c["cell_type"] == "code"))
    cell.update(source=f"print({SCRIPT!r})", outputs=[], execution_count=None, metadata={})
    cell["id"] = "student-output"
    solved["cells"].append(cell)  # a student's output with a script in it
    (tmp_path / "lstm.ipynb").write_text(json.dumps(solved))
    s = settings(tmp_path, jobs=2)
    with live(create_app(s)) as url:
        tok = tokens(s.data)
        start = time.monotonic()
        with httpx.Client(base_url=url, timeout=30) as client:  # the blank one with curl's request
            blank = upload(client, tok["bob"]).json()
            lines = []
            full = helper.submit("lstm", url, tmp_path / "lstm.ipynb", token=tok["alice"], poll_s=1, out=lines.append)
            zero = wait_done(client, tok["bob"], blank["id"], timeout=300)
            seconds = time.monotonic() - start
            assert (full["status"], full["score"], full["max_score"]) == ("graded", 13.0, 13.0), full
            assert (zero["status"], zero["score"], zero["max_score"]) == ("graded", 0.0, 13.0), zero
            assert [p["score"] for p in full["parts"]] == [3.0, 4.0, 4.0, 2.0]
            assert all(p["reason"] != "passed" for p in zero["parts"])
            assert "total (automatic)" in "\n".join(lines)
            feedback = client.get(full["feedback_url"], headers=auth(tok["alice"])).text
            assert "BEGIN HIDDEN TESTS" not in feedback and SCRIPT not in feedback and "&lt;script&gt;" in feedback
            assert client.get(full["feedback_url"], headers=auth(tok["bob"])).status_code == 404
    stored = s.data / "submissions"
    assert (stored / f"{blank['id']}.ipynb").read_bytes() == BLANK.read_bytes()  # the grader never modifies it
    print(f"two submissions graded through the queue in {seconds:.0f} s")
