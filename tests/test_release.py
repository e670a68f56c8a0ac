"""The committed student versions equal what nbgrader generates from solutions/."""

import pytest

from instructor import grading

NAMES = grading.assignment_names()


@pytest.mark.parametrize("name", NAMES)
def test_student_version_is_generated_from_the_source(name):
    differing = grading.release([name], check=True)
    assert not differing, f"assignments/{name} is stale: run `python -m instructor.grading release {name}`"


@pytest.mark.parametrize("name", NAMES)
def test_student_version_has_no_solution_or_hidden_test(name):
    import nbformat

    student = nbformat.read(str(grading.ROOT / "assignments" / name / f"{name}.ipynb"), as_version=4)
    text = "\n".join(c.source for c in student.cells)
    for marker in ("BEGIN SOLUTION", "END SOLUTION", "BEGIN HIDDEN TESTS", "END HIDDEN TESTS"):
        assert marker not in text, f"assignments/{name} contains '{marker}'"
    assert any("raise NotImplementedError()" in c.source for c in student.cells)
