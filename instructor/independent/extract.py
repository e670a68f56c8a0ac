"""The code the check process runs: the student's answer cells and the given cells they need.

Cells are matched by their nbgrader ``grade_id``. The given cells come from the course's own source
notebook (``solutions/NAME``: the locked cells a student could have edited in their copy are taken
from there), the answer cells from the submission; test cells and cells the student added are never
taken. The result keeps the source notebook's order.
"""

import ast
import pathlib

import nbformat

__all__ = ["GIVEN", "extract", "given_constants", "source_notebook"]

ROOT = pathlib.Path(__file__).resolve().parents[2]

# The given (locked) cells each assignment's answers need, by grade_id.
GIVEN = {"lstm": ["imports"], "multi_head_attention": ["imports", "check_mask_helper", "model"]}
# Given cells whose simple constant assignments the check reads (model sizes of the training part).
CONSTANTS = {"lstm": ["adding_setup"], "multi_head_attention": ["train"]}


def _meta(cell):
    return cell.get("metadata", {}).get("nbgrader", {})


def source_notebook(assignment, root=ROOT):
    path = pathlib.Path(root) / "solutions" / assignment / f"{assignment}.ipynb"
    return nbformat.read(str(path), as_version=4)


def extract(submission, assignment, source=None):
    """The cells to run, as a list of {"grade_id", "source", "given"}.

    Inputs:
    - submission: the submitted notebook (nbformat node or path).
    - assignment: "lstm" or "multi_head_attention".
    - source: the course's source notebook (default: read from solutions/).
    An answer cell missing from the submission is included with an empty source (its functions are
    then simply undefined and its parts fail with that reason).
    """
    if not hasattr(submission, "cells"):
        submission = nbformat.read(str(submission), as_version=4)
    source = source if source is not None else source_notebook(assignment)
    answers = {}
    for cell in submission.cells:
        meta = _meta(cell)
        if cell.get("cell_type") == "code" and meta.get("solution") and not meta.get("grade"):
            answers.setdefault(meta.get("grade_id"), cell.get("source", ""))
    given = set(GIVEN[assignment])
    out = []
    for cell in source.cells:
        meta, gid = _meta(cell), _meta(cell).get("grade_id")
        if cell.cell_type != "code":
            continue
        if gid in given:
            out.append({"grade_id": gid, "source": cell.source, "given": True})
        elif meta.get("solution") and not meta.get("grade"):
            src = answers.get(gid, "")
            out.append({"grade_id": gid, "source": "".join(src) if isinstance(src, list) else src, "given": False})
    return out


def _grading_test(node):
    """True for ``in_grading()`` (any spelling that ends in that name)."""
    func = getattr(node, "func", None)
    return isinstance(node, ast.Call) and (getattr(func, "id", None) == "in_grading"
                                           or getattr(func, "attr", None) == "in_grading")


def _literal(node):
    """The value of a constant expression; ``a if in_grading() else b`` gives ``a`` (the graded run's)."""
    if isinstance(node, ast.IfExp) and _grading_test(node.test):
        node = node.body
    return ast.literal_eval(node)


def _assignments(body):
    """Simple constant assignments of a cell's statements, as the graded run makes them: inside
    ``if in_grading():`` only the first branch counts."""
    values = {}
    for node in body:
        if isinstance(node, ast.If) and _grading_test(node.test):
            values.update(_assignments(node.body))
            continue
        if not isinstance(node, ast.Assign) or len(node.targets) != 1:
            continue
        target, value = node.targets[0], node.value
        pairs = []
        if isinstance(target, ast.Tuple) and isinstance(value, ast.Tuple) and len(target.elts) == len(value.elts):
            pairs = list(zip(target.elts, value.elts))
        elif isinstance(target, ast.Name):
            pairs = [(target, value)]
        for t, v in pairs:
            if isinstance(t, ast.Name):
                try:
                    values[t.id] = _literal(v)
                except (ValueError, TypeError, SyntaxError):
                    pass
    return values


def given_constants(assignment, source=None):
    """Simple constant assignments (``a, b = 10, 32``) of the given cells in CONSTANTS, as the graded run
    makes them (``if in_grading():`` branches and ``x if in_grading() else y`` taken), as a dict; with
    ``bar``, the graded bar of the training test (``bar = 0.05 if in_grading() else 0.02``) when the
    source's ``test_training`` cell sets one."""
    source = source if source is not None else source_notebook(assignment)
    wanted = set(CONSTANTS[assignment])
    values = {}
    for cell in source.cells:
        gid = _meta(cell).get("grade_id")
        if cell.cell_type != "code" or (gid not in wanted and gid != "test_training"):
            continue
        try:
            found = _assignments(ast.parse(cell.source).body)
        except SyntaxError:
            continue
        if gid == "test_training":
            if isinstance(found.get("bar"), (int, float)):
                values["bar"] = float(found["bar"])
        else:
            values.update(found)
    return values
