"""The grading pipeline on the toy assignment: the same results for every -j, feedback that shows no
hidden test, re-grading that replaces old penalties and keeps the instructor's manual grades."""

import html
import re

import nbformat
import pytest
from test_grading import _answer, _toy_source, _write

from instructor import grading
from instructor.grading import sandbox
from instructor.grading.report import Adjustment

KIND = "auto" if sandbox.available() else "none"
GOOD_ADD = "def add(a, b):\n    return a + b"
GOOD_MUL = "def mul(a, b):\n    return a * b"
TAMPER_MUL = "def mul(a, b):\n    return 0\nmath.isclose = lambda *a, **k: True"


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pipeline")
    root = tmp / "course"
    _write(root / "solutions" / "toy" / "toy.ipynb", _toy_source())
    student = nbformat.read(str(grading.release_notebook("toy", root)), as_version=4)
    return tmp, root, student


def _grade(course, folder, work, out, **kw):
    tmp, root, _ = course
    kw.setdefault("jobs", 2)
    return {r.student: r for r in grading.grade_folder("toy", folder, out=out, work=work, timeout=10, root=root,
                                                       log=None, sandbox=KIND, **kw)}


@pytest.fixture(scope="module")
def graded(course):
    tmp, root, student = course
    subs = {"correct": _answer(_answer(student, "add", GOOD_ADD), "mul", GOOD_MUL),
            "wrongadd": _answer(_answer(student, "add", "def add(a, b):\n    return a - b"), "mul", GOOD_MUL),
            "untouched": student,
            "tamper": _answer(_answer(student, "add", GOOD_ADD), "mul", TAMPER_MUL)}
    for who, nb in subs.items():
        _write(tmp / "in" / f"{who}_toy.ipynb", nb)
    one = _grade(course, tmp / "in", tmp / "w1", tmp / "o1", jobs=1)
    two = _grade(course, tmp / "in", tmp / "w2", tmp / "o2", jobs=2)
    return {"one": one, "two": two, "out": tmp / "o2"}


def test_results_are_the_same_for_every_number_of_jobs(graded):
    def key(results):
        return {s: (r.score, r.max_score, r.status, r.reason, {g: c["score"] for g, c in r.cells.items()})
                for s, r in results.items()}

    assert key(graded["one"]) == key(graded["two"])
    assert graded["two"]["correct"].auto_score == 3 and graded["two"]["wrongadd"].auto_score == 2


def test_feedback_shows_scores_and_messages_but_no_hidden_test(graded):
    page = (graded["out"] / graded["two"]["wrongadd"].feedback).read_text()
    text = html.unescape(re.sub(r"<[^>]+>", " ", page))
    assert "Test test_add: 0 / 1" in text and "Test test_mul: 2 / 2" in text
    assert "add(1, 2) should be 3" in text  # the visible test's message
    assert "assert add(1, 2) == 3" in text  # the visible test's source
    for hidden in ("assert add(-1, 1) == 0", "assert mul(-2, 3) == -6", "BEGIN HIDDEN TESTS", "END HIDDEN TESTS"):
        assert hidden not in page, hidden
    assert "return a - b" in text  # the student's own answer
    tamper = html.unescape(re.sub(r"<[^>]+>", " ", (graded["out"] / graded["two"]["tamper"].feedback).read_text()))
    assert "Test test_mul: 0 / 2" in tamper and "an answer cell assigns to an attribute" in tamper


def test_a_clean_resubmission_gets_its_clean_score_and_manual_grades_survive(course):
    from nbgrader.api import Gradebook

    tmp, root, student = course
    folder, work, out = tmp / "regrade-in", tmp / "regrade-w", tmp / "regrade-o"
    _write(folder / "flagged_toy.ipynb", _answer(_answer(student, "add", GOOD_ADD), "mul", TAMPER_MUL))
    written = _answer(_answer(_answer(student, "add", GOOD_ADD), "mul", GOOD_MUL), "why", "Because a + b adds.")
    _write(folder / "writer_toy.ipynb", written)
    first = _grade(course, folder, work, out)
    assert first["flagged"].cells["test_mul"]["score"] == 0 and "test_mul set to 0" in first["flagged"].reason
    assert first["writer"].cells["why"]["needs_manual"]
    with Gradebook(f"sqlite:///{work / 'gradebook.db'}") as gb:  # the instructor grades the written answer
        gb.find_grade("why", "toy", "toy", "writer").manual_score = 1.0
        gb.db.commit()
    _write(folder / "flagged_toy.ipynb", _answer(_answer(student, "add", GOOD_ADD), "mul", GOOD_MUL))
    second = _grade(course, folder, work, out)
    assert second["flagged"].auto_score == 3 and "set to 0" not in second["flagged"].reason, second["flagged"]
    assert second["writer"].cells["why"]["score"] == 1.0 and second["writer"].score == 4
    with Gradebook(f"sqlite:///{work / 'gradebook.db'}") as gb:
        assert gb.find_grade("test_mul", "toy", "toy", "flagged").score == 2
        assert gb.find_grade("why", "toy", "toy", "writer").manual_score == 1.0


def test_a_check_adjusts_a_part_with_its_reason_everywhere(course, tmp_path):
    tmp, root, student = course
    _write(tmp_path / "in" / "alice_toy.ipynb", _answer(_answer(student, "add", GOOD_ADD), "mul", GOOD_MUL))
    seen = {}

    def independent(ctx):  # what a further check does: run something in the same sandbox, adjust a part
        proc = ctx.run(["python", "-c", "import os; print(sorted(os.listdir('.')))"])
        seen["listing"] = proc.stdout
        return [Adjustment("test_mul", 0, "mul differs from the reference on new inputs")]

    r = _grade(course, tmp_path / "in", tmp_path / "w", tmp_path / "o", checks=[independent])["alice"]
    assert "submission.ipynb" in seen["listing"]
    assert r.cells["test_mul"]["score"] == 0 and r.auto_score == 1
    assert "test_mul set to 0: mul differs from the reference on new inputs" in r.reason
    assert "mul differs from the reference" in (tmp_path / "o" / "grades.csv").read_text()
    assert "mul differs from the reference" in (tmp_path / "o" / r.feedback).read_text()


def test_grading_refuses_without_a_sandbox_and_says_what_to_install(monkeypatch, course, tmp_path):
    tmp, root, _ = course
    (tmp_path / "in").mkdir()
    monkeypatch.setattr(sandbox.shutil, "which", lambda name: None)
    sandbox.find.cache_clear()
    try:
        with pytest.raises(sandbox.Unavailable, match="bubblewrap"):
            grading.grade_folder("toy", tmp_path / "in", out=tmp_path / "o", work=tmp_path / "w", root=root,
                                 sandbox="auto")
        assert grading.main(["grade", "toy", str(tmp_path / "in"), "--work", str(tmp_path / "w")]) == 2
    finally:
        sandbox.find.cache_clear()


@pytest.mark.skipif(KIND == "none", reason="no sandbox can be made here")
def test_run_sandboxed_sees_its_copy_of_the_workspace_and_nothing_else(tmp_path):
    ws = tmp_path / "runs" / "alice" / "check"
    ws.mkdir(parents=True)
    (ws / "submission.ipynb").write_text("{}")
    probe = """
import json, os, socket
out = {"cwd": os.getcwd(), "files": sorted(os.listdir(".")), "root": sorted(os.listdir("/")), "uid": os.getuid(),
       "home": os.path.exists(os.path.expanduser("~root/.bashrc")), "utils": os.path.isdir("/course/utils")}
try:
    socket.create_connection(("127.0.0.1", 22), timeout=2)
    out["net"] = "connected"
except OSError as err:
    out["net"] = type(err).__name__
open("written.txt", "w").write("x")
try:
    with open("/tmp/big", "wb") as f:
        f.write(b"x" * 2**23)
    out["big"] = "written"
except OSError as err:
    out["big"] = type(err).__name__
print(json.dumps(out))
"""
    limits = sandbox.Limits(memory_mb=1024, processes=32, wall_s=60, disk_mb=4)
    proc = sandbox.run_sandboxed(["python", "-c", probe], ws, limits)
    assert proc.returncode == 0, proc.stderr
    import json

    seen = json.loads(proc.stdout.strip().splitlines()[-1])
    assert seen["cwd"] == "/submission" and "submission.ipynb" in seen["files"], seen
    allowed = {"bin", "sbin", "lib", "lib32", "lib64", "usr", "etc", "dev", "proc", "tmp", "course", "submission",
               ".submission-in"} | {d.split("/")[1] for d in sandbox._python_dirs()}
    assert set(seen["root"]) <= allowed and seen["utils"] and not seen["home"], seen
    assert seen["net"] != "connected" and seen["big"] != "written", seen  # no network; a file over disk_mb fails
    assert seen["uid"] != 0 or __import__("os").geteuid() != 0, seen
    assert sorted(p.name for p in ws.iterdir()) == ["submission.ipynb"]  # the host folder is never written
    slow = sandbox.run_sandboxed(["python", "-c", "import time; time.sleep(30)"], ws, limits, timeout=2)
    assert slow.returncode == 124
