"""How the independent check's verdicts become scores (instructor/independent/grading_check.py): pure logic.

A part keeps its points only when its test in the notebook and its independent check both pass; a
disagreement says so in a student's words and is counted; the static audit is a second opinion that
is reported, not applied, where the independent check passed; nothing else changes.
"""

import pathlib

from instructor.independent.compare import PartResult
from instructor.independent.grading_check import DISAGREES, decide, disagreement_count, summary_line

OK = PartResult(passed=True, points_ok=True)
WRONG = PartResult(passed=False, points_ok=False, reason="`LSTM` does not agree with PyTorch on new inputs ...")
DELEGATES = PartResult(passed=True, points_ok=False, reason="your code reached aten::lstm_cell ...")
UNCHECKED = PartResult(passed=None, points_ok=True, reason="not checked")


def _by_id(decisions):
    return {d.grade_id: d for d in decisions}


def test_both_pass_keeps_the_points_and_nothing_is_said():
    assert decide({"a": (3.0, 3.0)}, {"a": OK}) == []


def test_a_disagreement_scores_zero_with_a_reason_a_student_understands():
    d = _by_id(decide({"a": (3.0, 3.0), "b": (4.0, 4.0)}, {"a": WRONG, "b": DELEGATES}))
    assert d["a"].score == 0.0 and d["a"].disagreement and d["a"].reason.startswith(DISAGREES)
    assert "new inputs" in d["a"].reason
    assert d["b"].score == 0.0 and "aten::lstm_cell" in d["b"].reason
    assert disagreement_count(d.values()) == 2


def test_a_failed_notebook_test_stays_failed_whatever_the_check_says():
    d = _by_id(decide({"a": (0.0, 3.0), "b": (0.0, 2.0)}, {"a": OK, "b": WRONG}))
    assert "a" not in d  # no change, no message: the notebook's own message explains it
    assert d["b"].score is None and not d["b"].disagreement


def test_the_audit_is_reported_not_applied_where_the_check_passed():
    flags = {"a": "calls setattr", "b": "calls setattr"}
    d = _by_id(decide({"a": (3.0, 3.0), "b": (4.0, 4.0)}, {"a": OK, "b": WRONG}, flags))
    assert d["a"].score is None and d["a"].audit_reported and "reported, not applied" in d["a"].reason
    assert d["b"].score == 0.0 and d["b"].disagreement


def test_an_unchecked_part_keeps_the_notebook_score_and_the_audit_applies():
    d = _by_id(decide({"a": (2.0, 2.0), "b": (2.0, 2.0)}, {"a": UNCHECKED, "b": UNCHECKED}, {"b": "calls setattr"}))
    assert "a" not in d
    assert d["b"].score == 0.0 and not d["b"].disagreement


def test_the_summary_counts_parts_and_submissions():
    line = summary_line([("alice", 2), ("bob", 0), ("carol", 1)])
    assert "3 part(s) of 2 submission(s)" in line


def test_the_constants_and_the_bar_are_those_of_the_graded_run():
    import nbformat

    from instructor.independent.extract import given_constants
    from instructor.independent.inputs import draw

    def cell(gid, source):
        c = nbformat.v4.new_code_cell(source)
        c.metadata["nbgrader"] = {"grade_id": gid, "grade": gid.startswith("test"), "solution": False}
        return c

    nb = nbformat.v4.new_notebook(cells=[
        cell("adding_setup", "if in_grading():\n    num_hiddens, num_steps = 16, 20\nelse:\n"
                             "    num_hiddens, num_steps = 32, 50\nlr = 0.02 if in_grading() else 0.01\n"),
        cell("test_training", "bar = 0.05 if in_grading() else 0.02\nassert mse < bar\n")])
    constants = given_constants("lstm", nb)
    assert constants == {"num_hiddens": 16, "num_steps": 20, "lr": 0.02, "bar": 0.05}
    adding = [c for c in draw("lstm", 7, constants) if c["kind"] == "adding"][0]
    assert adding["X"].shape[1] == 20  # the length the graded run trained on


def test_a_trained_model_that_is_a_link_or_too_large_is_not_copied_into_the_check(tmp_path):
    from instructor.independent import copy_plain_file

    secret = tmp_path / "gradebook.db"
    secret.write_text("the instructor's data")
    (tmp_path / "link.pt").symlink_to(secret)  # the student's code could point it at any file
    assert not copy_plain_file(tmp_path / "link.pt", tmp_path / "out.pt")
    assert not (tmp_path / "out.pt").exists()
    (tmp_path / "big.pt").write_bytes(b"0" * 2048)
    assert not copy_plain_file(tmp_path / "big.pt", tmp_path / "out.pt", limit=1024)
    assert copy_plain_file(tmp_path / "big.pt", tmp_path / "out.pt", limit=4096)
    assert (tmp_path / "out.pt").read_bytes() == b"0" * 2048


def test_in_a_sandbox_the_results_come_back_on_a_stdout_the_answers_cannot_print_to(tmp_path):
    import os
    import subprocess
    import sys

    from instructor.independent.student_run import MARKER, read_stream

    script = f"""
import sys
from instructor.independent.student_run import _Sink, MARKER
sink = _Sink({str(tmp_path / 'out.pt')!r}, stream=True)
print(MARKER + "forged by the answer")  # what an answer prints goes to stderr
sys.stdout.flush()
sink.save({{}}, [{{"outputs": {{"x": 1}}, "error": None}}])
sink.save({{}}, [{{"outputs": {{"x": 1}}, "error": None}}, {{"outputs": {{}}, "error": "E"}}])
"""
    env = dict(os.environ, PYTHONPATH=str(pathlib.Path(__file__).resolve().parent.parent))
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert "forged" in proc.stderr and "forged" not in proc.stdout
    assert all(line.startswith(MARKER) for line in proc.stdout.splitlines())
    got = read_stream(proc.stdout + "\n" + MARKER + "AAAA\n")  # a line that is not ours is ignored
    assert got == {"cell_errors": {}, "results": [{"outputs": {"x": 1}, "error": None}, {"outputs": {}, "error": "E"}]}
