"""The grading command on messy, broken and hostile submissions of a small toy assignment.

Each case ends with the other submissions graded, the submitted files unchanged, and each student
given a score or a clear reason. The toy assignment keeps this fast; the real assignments' round
trips are in tests/test_assignment_*.py.
"""

import copy
import hashlib
import json
import shutil

import nbformat
import pytest

from instructor import grading
from instructor.grading import sandbox

# These inputs are messy, not hostile: graded in the sandbox where one can be made, without elsewhere.
KIND = "auto" if sandbox.available() else "none"


def _meta(gid, **kw):
    d = {"grade": False, "solution": False, "locked": True, "grade_id": gid, "schema_version": 3}
    d.update(kw)
    return {"nbgrader": d}


def _toy_source():
    cells = [
        nbformat.v4.new_markdown_cell("# Toy assignment", metadata=_meta("intro")),
        nbformat.v4.new_code_cell("import math", metadata=_meta("imports")),
        nbformat.v4.new_code_cell("def add(a, b):\n    ### BEGIN SOLUTION\n    return a + b\n    ### END SOLUTION",
                                  metadata=_meta("add", solution=True, locked=False)),
        nbformat.v4.new_code_cell("assert add(1, 2) == 3, 'add(1, 2) should be 3'\n### BEGIN HIDDEN TESTS\n"
                                  "assert add(-1, 1) == 0\n### END HIDDEN TESTS\nprint('add ok')",
                                  metadata=_meta("test_add", grade=True, points=1)),
        nbformat.v4.new_code_cell("def mul(a, b):\n    ### BEGIN SOLUTION\n    return a * b\n    ### END SOLUTION",
                                  metadata=_meta("mul", solution=True, locked=False)),
        nbformat.v4.new_code_cell("assert math.isclose(mul(2, 3), 6)\n### BEGIN HIDDEN TESTS\n"
                                  "assert mul(-2, 3) == -6\n### END HIDDEN TESTS\nprint('mul ok')",
                                  metadata=_meta("test_mul", grade=True, points=2)),
        nbformat.v4.new_markdown_cell("Why does it work?", metadata=_meta("q")),
        nbformat.v4.new_markdown_cell("Because.", metadata=_meta("why", grade=True, solution=True, locked=False,
                                                                 points=1)),
    ]
    nb = nbformat.v4.new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"display_name": "Python 3", "language": "python", "name": "python3"}
    return nb


def _answer(nb, gid, source):
    nb = copy.deepcopy(nb)
    for cell in nb.cells:
        if cell.metadata.get("nbgrader", {}).get("grade_id") == gid:
            cell.source = source
    return nb


def _write(path, nb):
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, str(path))


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    root = tmp_path_factory.mktemp("toycourse")
    source = _toy_source()
    _write(root / "solutions" / "toy" / "toy.ipynb", source)
    release_path = grading.release_notebook("toy", root)
    student = nbformat.read(str(release_path), as_version=4)
    solved = nbformat.read(str(root / "solutions" / "toy" / "toy.ipynb"), as_version=4)
    good_add = "def add(a, b):\n    return a + b"
    good_mul = "def mul(a, b):\n    return a * b"
    sub = root / "submissions"
    _write(sub / "correct_toy.ipynb", solved)
    _write(sub / "untouched" / "toy.ipynb", student)
    _write(sub / "looper_toy.ipynb", _answer(_answer(student, "add", "def add(a, b):\n    while True:\n        pass"),
                                              "mul", good_mul))
    _write(sub / "killer_toy.ipynb", _answer(_answer(student, "add", "import os\nos._exit(1)"), "mul", good_mul))
    cheat = _answer(_answer(student, "add", "def add(a, b):\n    return 0"), "mul", good_mul)
    cheat = _answer(cheat, "test_add", "print('add ok')")  # an edited locked test cell
    _write(sub / "toy-editor.ipynb", cheat)
    deleted = _answer(_answer(student, "add", good_add), "mul", good_mul)
    deleted.cells = [c for c in deleted.cells if c.metadata.get("nbgrader", {}).get("grade_id") != "test_mul"]
    _write(sub / "deleter" / "toy.ipynb", deleted)
    dup = _answer(_answer(student, "add", good_add), "mul", good_mul)
    dup.cells.insert(3, copy.deepcopy(dup.cells[2]))
    dup.cells[3].id = "dupcell1"
    _write(sub / "dup_toy.ipynb", dup)
    stripped = _answer(_answer(student, "add", good_add), "mul", good_mul)
    for cell in stripped.cells:
        cell.metadata = {}
    _write(sub / "stripped_toy.ipynb", stripped)
    (sub / "badjson_toy.ipynb").write_text('{"cells": [')
    (sub / "empty_toy.ipynb").write_text("")
    other = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = 1", metadata=_meta("other_answer",
                                                                                              solution=True))])
    _write(sub / "wrongnb_toy.ipynb", other)
    colab = json.loads(nbformat.writes(_answer(_answer(student, "add", good_add), "mul", good_mul)))
    colab["nbformat_minor"] = 0
    colab["metadata"]["colab"] = {"name": "Copy of toy.ipynb", "provenance": []}
    for i, cell in enumerate(colab["cells"]):
        cell.pop("id", None)
        cell["metadata"]["id"] = f"colabid{i}"
    (sub / "colab").mkdir()
    (sub / "colab" / "Copy of toy.ipynb").write_text(json.dumps(colab))
    _write(sub / "tamper_toy.ipynb", _answer(_answer(student, "add", good_add), "mul",
                                             "def mul(a, b):\n    return 0\nmath.isclose = lambda *a, **k: True"))
    hashes = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in sub.rglob("*") if p.is_file()}
    work, out = root / "work", root / "out"
    first = grading.grade_folder("toy", sub, out=out, work=work, timeout=10, root=root, log=lambda *_: None,
                                 sandbox=KIND)
    print(grading.summary_table(first))
    second = grading.grade_folder("toy", sub, out=out, work=work, timeout=10, root=root, log=lambda *_: None,
                                  sandbox=KIND)
    return {"first": {r.student: r for r in first}, "second": {r.student: r for r in second}, "root": root,
            "sub": sub, "hashes": hashes, "work": work, "out": out}


def test_correct_solution_gets_full_automatic_marks(graded):
    r = graded["first"]["correct"]
    assert r.status == "graded" and r.auto_score == r.auto_max == 3, r


def test_untouched_student_version_scores_zero(graded):
    r = graded["first"]["untouched"]
    assert r.status == "graded" and r.score == 0 and r.auto_max == 3, r


def test_infinite_loop_times_out_and_the_rest_is_graded(graded):
    r = graded["first"]["looper"]
    assert r.status == "graded" and r.cells["test_add"]["score"] == 0 and r.cells["test_mul"]["score"] == 2, r
    assert "test_add timed out" in r.reason


def test_a_kernel_killer_gets_a_reason(graded):
    r = graded["first"]["killer"]
    assert r.status == "failed" and "kernel died" in r.reason, r


def test_edited_and_deleted_test_cells_are_restored(graded):
    editor = graded["first"]["editor"]
    assert editor.status == "graded" and editor.cells["test_add"]["score"] == 0
    assert editor.cells["test_mul"]["score"] == 2
    deleter = graded["first"]["deleter"]
    assert deleter.status == "graded" and deleter.auto_score == 3 and "test_mul" in deleter.cells, deleter


def test_duplicated_cell_and_stripped_metadata_are_repaired(graded):
    dup = graded["first"]["dup"]
    assert dup.status == "graded" and dup.auto_score == 3 and "duplicated cell add" in dup.reason, dup
    stripped = graded["first"]["stripped"]
    assert stripped.status == "graded" and stripped.auto_score == 3 and "metadata was missing" in stripped.reason


def test_unreadable_files_get_clear_reasons(graded):
    assert graded["first"]["badjson"].reason.startswith("not valid JSON")
    assert graded["first"]["empty"].reason == "empty file"
    assert "another assignment" in graded["first"]["wrongnb"].reason
    for s in ("badjson", "empty", "wrongnb"):
        assert graded["first"][s].status == "failed"


def test_a_colab_save_is_graded(graded):
    r = graded["first"]["colab"]
    assert r.status == "graded" and r.auto_score == 3 and "nbformat 4.0 upgraded" in r.reason, r


def test_tampering_answer_loses_the_tests_it_could_fool(graded):
    r = graded["first"]["tamper"]
    assert r.status == "graded" and r.cells["test_add"]["score"] == 1 and r.cells["test_mul"]["score"] == 0, r
    assert "test_mul set to 0" in r.reason


def test_submitted_files_are_unchanged(graded):
    now = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in graded["sub"].rglob("*") if p.is_file()}
    assert now == graded["hashes"]


def test_grading_twice_gives_the_same_result_and_no_duplicates(graded):
    from nbgrader.api import Gradebook

    def key(results):
        return {s: (r.score, r.max_score, r.status) for s, r in results.items()}

    assert key(graded["first"]) == key(graded["second"])
    with Gradebook(f"sqlite:///{graded['work'] / 'gradebook.db'}") as gb:
        students = [s.id for s in gb.students]
        assert len(students) == len(set(students))
        assert len(gb.find_assignment("toy").submissions) == len(set(students))


def test_feedback_and_csv_are_written(graded):
    out = graded["out"]
    rows = (out / "grades.csv").read_text().splitlines()
    assert rows[0].startswith("student,file,score") and len(rows) == 1 + len(graded["first"])
    assert (out / "feedback" / "correct" / "toy.html").exists()


def test_file_names_students_produce(tmp_path):
    assert grading.identify("alice_lstm.ipynb", "lstm") == "alice"
    assert grading.identify("lstm-bob.ipynb", "lstm") == "bob"
    assert grading.identify("carol/Copy of lstm.ipynb", "lstm") == "carol"
    assert grading.identify("dave/lstm (1).ipynb", "lstm") == "dave"
    assert grading.identify("Copy of lstm.ipynb", "lstm") is None
    assert grading.identify("erin.ipynb", "lstm") == "erin"


def test_cli_exits_nonzero_when_nobody_could_be_graded(tmp_path):
    root = tmp_path / "course"
    _write(root / "solutions" / "toy" / "toy.ipynb", _toy_source())
    sub = tmp_path / "sub"
    sub.mkdir()
    (sub / "a_toy.ipynb").write_text("")
    results = grading.grade_folder("toy", sub, out=tmp_path / "o", work=tmp_path / "w", root=root,
                                   log=lambda *_: None, sandbox=KIND)
    assert [r.status for r in results] == ["failed"]
    with pytest.raises(ValueError, match="folder"):
        grading.grade_folder("toy", tmp_path / "missing", root=root)
    with pytest.raises(ValueError, match="no assignment"):
        grading.make_course("nope", tmp_path / "w2", root)
    shutil.rmtree(tmp_path / "w", ignore_errors=True)


@pytest.mark.parametrize("source,name,expected", [
    ('def scaled_dot_product_attention(q, k, v):\n    """Unlike nn.MultiheadAttention."""\n    return q',
     "multi_head_attention", []),
    ("def f(mask: torch.Tensor = None):\n    return mask", "multi_head_attention", []),
    ("x = F.scaled_dot_product_attention(q, k, v)", "multi_head_attention", ["forbidden"]),
    ("m = nn.MultiheadAttention(4, 2)", "multi_head_attention", ["forbidden"]),
    ("cell = nn.LSTMCell(3, 4)", "lstm", ["forbidden"]),
    ("def lstm_cell_forward(x):\n    return x  # not nn.LSTMCell", "lstm", []),
    ("torch.allclose = lambda *a, **k: True", "lstm", ["tamper"]),
    ("    utils.checks.assert_close = print", "lstm", ["tamper"]),
    ('setattr(torch, "allclose", f)', "lstm", ["tamper"]),
    ('y = eval("1+1")', "lstm", ["tamper"]),
    ("h = self.evaluate(x)", "lstm", []),
    ('x = "torch.x = 1"', "lstm", []),
])
def test_audit_flags_tampering_and_forbidden_calls_only(source, name, expected):
    cell = nbformat.v4.new_code_cell(source, metadata={"nbgrader": {"solution": True, "grade_id": "a"}})
    kinds = sorted({kind for _, _, kind, _ in grading.audit(nbformat.v4.new_notebook(cells=[cell]), name)})
    assert kinds == expected


def test_make_submission_fills_answers_and_rejects_stale_edits():
    source = _toy_source()
    student = _answer(_answer(source, "add", "raise NotImplementedError()"), "mul", "raise NotImplementedError()")
    nb = grading.make_submission(student, source, ["add"], [("mul", "raise", "# raise")])
    cells = {c.metadata["nbgrader"]["grade_id"]: c.source for c in nb.cells}
    assert "return a + b" in cells["add"] and cells["mul"] == "# raise NotImplementedError()"
    assert "raise NotImplementedError()" == {c.metadata["nbgrader"]["grade_id"]: c.source
                                             for c in student.cells}["add"]  # the input is not modified
    with pytest.raises(KeyError, match="edits"):
        grading.make_submission(student, source, edits=[("mul", "not there", "x")])
    with pytest.raises(KeyError, match="answered"):
        grading.make_submission(student, source, ["nope"])
