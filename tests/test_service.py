"""The submission service (``service/``) and the students' helper (``utils/submit.py``).

Real SQLite database, real Huey queue on SQLite: the fast tests either run no worker (``jobs=0``: the
queue only fills) or Huey's real consumer with one worker thread and a stand-in grader (no notebook is
executed). ``test_end_to_end_grading`` (slow, ~65 s of CPU, run by default) runs a released assignment with
the solutions filled in under nbclient, whose last cell submits it to a live server and prints full marks,
and grades the blank released one (sent over HTTP) through the queue with the course's real grading
pipeline.
"""

import ast
import contextlib
import csv
import hashlib
import json
import os
import pathlib
import re
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time

import httpx
import nbformat
import pytest
import uvicorn
from fastapi.testclient import TestClient
from nbclient import NotebookClient
from sqlalchemy import create_engine, text

from instructor.grading.course import make_submission
from service import grader
from service.app import create_app
from service.config import Settings
from service.queue import pending_ids
from utils import submit as helper

ROOT = pathlib.Path(__file__).resolve().parent.parent
SOLUTION = ROOT / "solutions" / "lstm" / "lstm.ipynb"
BLANK = ROOT / "assignments" / "lstm" / "lstm.ipynb"
OTHER = ROOT / "assignments" / "multi_head_attention" / "multi_head_attention.ipynb"
NOTEBOOK_PATH = "multi_head_attention"  # the assignment of the notebook-path test (its full run is the shorter)
BLANK_PATH = OTHER
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
        canvas = list(csv.reader(client.get("/instructor/lstm/canvas.csv", headers=instructor).text.splitlines()))
        assert canvas == [["Student", "ID", "SIS User ID", "SIS Login ID", "Section", "lstm"],
                          ["Points Possible", "", "", "", "", "7"],
                          ["Alice A", "", "alice", "alice@example.org", "", "3"],
                          ["Bob B", "", "bob", "bob@example.org", "", ""]]
        moodle = list(csv.reader(client.get("/instructor/lstm/moodle.csv", headers=instructor).text.splitlines()))
        assert moodle == [["Email address", "ID number", "Full name", "lstm"],
                          ["alice@example.org", "alice", "Alice A", "3"], ["bob@example.org", "bob", "Bob B", ""]]
        assert client.get("/instructor/lstm/other.csv", headers=instructor).status_code == 404
        assert client.get("/instructor/lstm/canvas.csv", headers=auth(tok["alice"]),
                          follow_redirects=False).status_code == 303  # not for students
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


def test_submit_helper_prints_the_parts_and_clear_errors(tmp_path, monkeypatch):
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
    monkeypatch.delenv("SUBMIT_URL", raising=False)  # the cell's SERVER_URL is None until the instructor sets it
    with pytest.raises(helper.SubmitError, match="no server address"):
        helper.submit("lstm", None, BLANK, token=tok, out=lines.append)
    # the student edition's helper imports the standard library only (nothing of service/ or of grading)
    tree = ast.parse((ROOT / "utils" / "submit.py").read_text())
    imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert imported - {"google"} <= sys.stdlib_module_names, imported  # google.colab: only inside Colab


def released_and_solved(name=NOTEBOOK_PATH):
    """The released assignment with the solutions' answer cells put in (by grade_id), as a student fills it."""
    released = nbformat.read(str(ROOT / "assignments" / name / f"{name}.ipynb"), as_version=4)
    source = nbformat.read(str(ROOT / "solutions" / name / f"{name}.ipynb"), as_version=4)
    answered = [c.metadata["nbgrader"]["grade_id"] for c in source.cells
                if c.metadata.get("nbgrader", {}).get("solution")]
    return make_submission(released, source, answered), source


@pytest.mark.slow
def test_end_to_end_grading(tmp_path, monkeypatch):
    """Slow but run (~65 s of CPU; 3 min of wall time on a loaded 2-core machine): the notebook path for
    real. The released multi-head-attention assignment with the solutions filled in is executed by nbclient
    (Restart and run all) with its submit cell opted in as a student does (``SUBMIT = True``; the token in
    ``SUBMIT_TOKEN``, the address in ``SUBMIT_URL``): the cell sends the saved file, waits and prints full
    automatic marks. The blank one is sent as curl does (HTTP) meanwhile and scores zero. Both are graded
    by the real pipeline through the queue."""
    for key, value in no_sandbox_if_none().items():
        monkeypatch.setenv(key, value)
    nb, source = released_and_solved()
    assert "SUBMIT = False" in nb.cells[-1].source and "in_grading()" in nb.cells[-1].source
    nb.cells[-1].source = nb.cells[-1].source.replace("SUBMIT = False", "SUBMIT = True")  # the student opts in
    shown = nbformat.v4.new_code_cell(f"print({SCRIPT!r})")  # a student's output with a script in it
    nb.cells.insert(len(nb.cells) - 2, shown)
    saved = tmp_path / "student" / f"{NOTEBOOK_PATH}.ipynb"
    saved.parent.mkdir()
    nbformat.write(nb, str(saved))  # saved before running, as the cell asks (Ctrl+S)
    points = sum(c.metadata["nbgrader"]["points"] for c in source.cells if c.cell_type == "code"
                 and c.metadata.get("nbgrader", {}).get("grade"))
    s = settings(tmp_path, jobs=2)
    with live(create_app(s)) as url:
        tok = tokens(s.data)
        start = time.monotonic()
        with httpx.Client(base_url=url, timeout=30) as client:  # the blank one with curl's request
            blank = upload(client, tok["bob"], path=BLANK_PATH, assignment=NOTEBOOK_PATH).json()
            monkeypatch.setenv("SUBMIT_URL", url)  # the kernel inherits them; nothing is written in the file
            monkeypatch.setenv("SUBMIT_TOKEN", tok["alice"])
            monkeypatch.setenv("PYTHONPATH", str(ROOT))  # the setup cell finds utils above the notebook; here: not
            NotebookClient(nb, timeout=300, kernel_name="python3", allow_errors=False,
                           resources={"metadata": {"path": str(saved.parent)}}).execute()
            printed = "".join(o.get("text", "") for o in nb.cells[-1].outputs)
            ran = time.monotonic() - start
            zero = wait_done(client, tok["bob"], blank["id"], timeout=300)
            seconds = time.monotonic() - start
            sub_id = int(re.search(r"submitted: number (\d+)", printed).group(1))
            full = client.get(f"/api/submissions/{sub_id}", headers=auth(tok["alice"])).json()
            assert (full["status"], full["score"], full["max_score"]) == ("graded", points, points), full
            total = re.search(r"^total \(automatic\)\s+(\S+)\s+(\S+)\s*$", printed, flags=re.M)
            assert total and total.groups() == (f"{points:g}", f"{points:g}"), printed
            assert all(f"{p['name']}" in printed for p in full["parts"]) and "feedback: http" in printed, printed
            assert tok["alice"] not in json.dumps(nb)  # the token never reaches the notebook
            assert (zero["status"], zero["score"], zero["max_score"]) == ("graded", 0.0, points), zero
            assert all(p["reason"] != "passed" for p in zero["parts"])
            feedback = client.get(full["feedback_url"], headers=auth(tok["alice"])).text
            assert "BEGIN HIDDEN TESTS" not in feedback and SCRIPT not in feedback and "&lt;script&gt;" in feedback
            assert client.get(full["feedback_url"], headers=auth(tok["bob"])).status_code == 404
    stored = s.data / "submissions"
    assert (stored / f"{blank['id']}.ipynb").read_bytes() == BLANK_PATH.read_bytes()  # the grader never modifies it
    assert (stored / f"{sub_id}.ipynb").read_bytes() == saved.read_bytes()  # the cell sent the file as saved
    print(f"notebook executed and submitted in {ran:.0f} s; both graded through the queue in {seconds:.0f} s")


# ---- in the browser ------------------------------------------------------------------------------------------
PWN = "<script>window.__pwned = 1; console.log('pwned')</script><img src=x onerror=\"window.__pwned = 2\">"


def _chromium_or_skip():
    chromium = pathlib.Path("/usr/bin/chromium")
    if not chromium.is_file():
        pytest.skip(f"no Chromium at {chromium}: `apt-get install chromium` (.ci/run does it where it can)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("Playwright for Python is not installed: `python -m pip install -r requirements.txt`")
    return chromium, sync_playwright


def gated_grade(gate):
    """The stand-in grader with PWN in a reason and in the feedback page, waiting for ``gate`` first."""
    inner = fake_grade(reason=PWN)

    def grade(name, path, out, *, student="s"):
        assert gate.wait(60), "the test never opened the gate"
        result = inner(name, path, out, student=student)
        (out / "feedback.html").write_text(f"<!DOCTYPE html><p>feedback</p>{PWN}")  # as if not escaped
        return result

    return grade


def test_pages_in_headless_chromium(tmp_path):
    """A student signs in with a token, uploads on the page, sees the queue place then the score (the status
    page reloads itself); the instructor's page shows it; a script in a reason or in the feedback never runs."""
    chromium, sync_playwright = _chromium_or_skip()
    gate = threading.Event()
    s = settings(tmp_path, jobs=1)
    with live(create_app(s, grade=gated_grade(gate))) as url, sync_playwright() as p:
        tok = tokens(s.data)
        instructor = (s.data / "instructor_token.txt").read_text().strip()
        first = httpx.post(f"{url}/api/submissions", headers=auth(tok["bob"]), data={"assignment": "lstm"},
                           files={"notebook": ("lstm.ipynb", BLANK.read_bytes())}).json()  # holds the one worker
        browser = p.chromium.launch(executable_path=str(chromium), headless=True,
                                    args=["--no-sandbox", "--disable-gpu", "--no-first-run"])
        try:
            page = browser.new_page()
            console, requests = [], []
            page.on("console", lambda m: console.append(m.text))
            page.on("pageerror", lambda e: console.append(f"page error: {e}"))
            page.on("request", lambda r: requests.append(r.url))
            page.goto(f"{url}/login?next=/")
            page.fill("input[name=token]", tok["alice"])
            page.click("button[type=submit]")
            page.wait_for_url(f"{url}/")
            page.select_option("select[name=assignment]", "lstm")
            page.set_input_files("input[name=notebook]", str(BLANK))
            page.click("button[type=submit]")
            page.wait_for_url(re.compile(r"/submissions/\d+$"))
            sub = int(page.url.rsplit("/", 1)[1])
            assert sub == first["id"] + 1
            assert page.text_content("#status") == "queued" and "number 1 in the queue" in page.text_content("body")
            gate.set()
            page.wait_for_selector("#score", timeout=20_000)  # the page reloads itself every 5 s
            assert "3 / 7" in page.text_content("#score")
            reason = page.text_content("#parts tr:nth-child(3) td:nth-child(4)")
            assert reason == PWN  # shown as text
            feedback_link = page.get_attribute("text=Feedback", "href")
            assert page.evaluate("document.scripts.length") == 0 and page.evaluate("window.__pwned") is None
            page.goto(feedback_link)  # a page with a raw script in it: the CSP runs none
            assert "feedback" in page.text_content("body") and page.evaluate("window.__pwned") is None
            page.goto(f"{url}/submissions/{first['id']}")  # bob's: not alice's
            assert "no such submission" in page.text_content("body")
            # the instructor signs in on another browser context and sees alice's counted score
            other = browser.new_page()
            other.on("console", lambda m: console.append(m.text))
            other.goto(f"{url}/instructor/lstm")
            other.wait_for_url(re.compile(r"/login"))
            other.fill("input[name=token]", instructor)
            other.click("button[type=submit]")
            other.wait_for_url(f"{url}/instructor/lstm")
            row = other.text_content("#students tr:has(td:text-is('alice'))")
            assert "Alice A" in row and "3 / 7" in row and str(sub) in row, row
            assert PWN in other.text_content("#fails") and other.evaluate("window.__pwned") is None
            assert other.evaluate("document.scripts.length") == 0
        finally:
            browser.close()
    assert not any("pwned" in line for line in console), console
    assert not any(token in req for req in requests for token in tok.values())  # tokens never in a URL


def test_part_reasons_never_quote_a_hidden_test(tmp_path):
    """The API's per-part reason follows the feedback's rule: the error's type and message, withheld when
    the student's code put a hidden test's line into it (here: an answer that raises with its caller's source)."""
    secret = "assert_close(lstm_cell_forward(x_hidden, h, c, *weights)[0], expected_hidden)"
    test_cell = nbformat.v4.new_code_cell(
        f"### BEGIN HIDDEN TESTS\n{secret}\n### END HIDDEN TESTS",
        metadata={"nbgrader": {"grade": True, "grade_id": "test_leak", "points": 1}})
    test_cell.outputs = [nbformat.v4.new_output("error", ename="ValueError", evalue=f"caller: {secret}",
                                                traceback=[secret])]
    honest = nbformat.v4.new_code_cell("check()", metadata={"nbgrader": {"grade": True, "grade_id": "test_ok",
                                                                            "points": 1}})
    honest.outputs = [nbformat.v4.new_output("error", ename="CheckError", evalue="h_next differs at [batch 0]",
                                             traceback=["..."])]
    path = tmp_path / "lstm.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=[test_cell, honest]), str(path))
    reasons = grader._errors(path)
    assert reasons == {"test_leak": "ValueError: (message not shown: it quotes the hidden tests)",
                       "test_ok": "CheckError: h_next differs at [batch 0]"}
