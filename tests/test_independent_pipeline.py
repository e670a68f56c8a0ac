"""The independent check inside grading (``python -m instructor.grading grade``), end to end, in the sandbox.

One submission per assignment, each fooling the test of one part in its notebook:
- LSTM: gates in the wrong order hidden by rebinding the course's comparison through a module alias
  (part 1), and an honest LSTM module that registers its parameters with ``setattr`` (which the
  static audit flags, zeroing every later test);
- multi-head attention: ``F.scaled_dot_product_attention`` reached through ``getattr`` with a built
  name (part 1), everything else honest.

Each loses exactly the part it fooled, with a reason in the student's feedback and the summary;
the audit's finding is reported, not applied, where the independent check passed; the feedback shows
neither the hidden tests nor the independent check's source.
"""

import pathlib

import nbformat
import pytest
from test_independent import CHEATS, _source

from instructor import grading
from instructor.grading.report import summary_table
from instructor.independent.grading_check import DISAGREES

ROOT = pathlib.Path(__file__).resolve().parent.parent
SETATTR = [("lstm_module", 'self.register_parameter(f"weight_ih_l{k}",', 'setattr(self, f"weight_ih_l{k}",')]
SUBMISSIONS = {
    "lstm": ("comparison rebound through an alias (gates in the wrong order)", SETATTR),
    "multi_head_attention": ("getattr with a built string (F.scaled_dot_product_attention)", []),
}


def _points(nb):
    return {c.metadata["nbgrader"]["grade_id"]: float(c.metadata["nbgrader"]["points"]) for c in nb.cells
            if c.cell_type == "code" and c.metadata.get("nbgrader", {}).get("grade")}


def _saves_trained_model(nb):
    return any("trained_model.pt" in c.source for c in nb.cells if c.cell_type == "code")


@pytest.fixture(scope="module", params=list(SUBMISSIONS))
def graded(request, tmp_path_factory):
    name = request.param
    cheat, extra = SUBMISSIONS[name]
    source = _source(name)
    nb = grading.make_submission(source, source, edits=CHEATS[cheat][2] + extra)
    tmp = tmp_path_factory.mktemp(f"pipeline-{name}")
    (tmp / "in" / "mallory").mkdir(parents=True)
    nbformat.write(nb, str(tmp / "in" / "mallory" / f"{name}.ipynb"))
    [result] = grading.grade_folder(name, tmp / "in", out=tmp / "out", work=tmp / "course", log=None, jobs=1)
    return name, cheat, source, result, tmp / "out"


def test_the_fooled_part_scores_zero_with_the_reason_and_honest_parts_keep_theirs(graded):
    name, cheat, source, result, _ = graded
    part = CHEATS[cheat][1]
    assert result.status == "graded", result.reason
    scores = {gid: c["score"] for gid, c in result.cells.items() if gid in _points(source)}
    expected = dict(_points(source), **{part: 0.0})
    if name == "lstm" and not _saves_trained_model(source):
        # the audit's finding (setattr) stands where the independent check cannot judge: no trained model
        expected["test_training"] = 0.0
    assert scores == expected, result.reason
    assert f"{part} set to 0: {DISAGREES}" in result.reason
    if name == "lstm":
        assert "reported, not applied" in result.reason and "setattr" in result.reason
    assert "independent check: 1 part(s) of 1 submission(s)" in summary_table([result])


def test_the_feedback_gives_the_reason_but_no_hidden_test_or_check_source(graded):
    name, cheat, source, result, out = graded
    page = (out / result.feedback).read_text()
    assert DISAGREES in page
    hidden = [c.source.split("### BEGIN HIDDEN TESTS")[1].split("### END HIDDEN TESTS")[0].strip().splitlines()[0]
              for c in source.cells if "### BEGIN HIDDEN TESTS" in c.source]
    assert hidden and not any(line in page for line in hidden)
    notebook = "\n".join(c.source for c in source.cells)
    for module in ("inputs", "student_run", "compare", "reference"):  # lines of the check's own code
        code = (ROOT / "instructor" / "independent" / f"{module}.py").read_text()
        lines = {line.strip() for line in code.splitlines()}
        leaked = [line for line in lines if len(line) > 30 and line not in notebook and line in page]
        assert leaked == [], module


def test_the_trained_model_the_notebook_saves_in_its_sandbox_is_kept_and_nothing_else(tmp_path):
    """The kernel's /submission is a tmpfs lost with its sandbox: only the files in sandbox.KEPT (the
    trained model the given training cell saves under grading) reach the host."""
    import subprocess

    from instructor.grading import sandbox as sb

    if not sb.available("bwrap"):
        pytest.skip("no bubblewrap here")
    (tmp_path / "sub").mkdir()
    host = tmp_path / "trained_model.pt"
    host.write_bytes(b"")
    argv = sb.base_argv(tmp_path / "sub", None, files=[(host, "trained_model.pt")]) + sb.COPY_IN + [
        "/bin/sh", "-c", "echo weights > trained_model.pt && echo other > other.pt && ls"]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert host.read_text() == "weights\n"
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["sub", "trained_model.pt"]  # other.pt is gone
    assert sb.KEPT == ["trained_model.pt"]
