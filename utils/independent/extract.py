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


def given_constants(assignment, source=None):
    """Simple constant assignments (``a, b = 10, 32``) of the given cells in CONSTANTS, as a dict."""
    source = source if source is not None else source_notebook(assignment)
    wanted = set(CONSTANTS[assignment])
    values = {}
    for cell in source.cells:
        if _meta(cell).get("grade_id") not in wanted:
            continue
        for node in ast.parse(cell.source).body:
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
                        values[t.id] = ast.literal_eval(v)
                    except ValueError:
                        pass
    return values
