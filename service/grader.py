"""The one door to the course's grading pipeline: every other module of the service imports this one.

Grading reuses ``grade_folder`` as it is (sandbox, audit, independent check, feedback without hidden
tests): one submission in a temporary nbgrader course of its own, so that workers never share a
gradebook. The stored file is never handed to the pipeline: it grades a copy, and the file's hash is
checked after grading.
"""

import hashlib
import pathlib
import re
import shutil
import tempfile

from instructor import grading  # the only import of the grading code in service/: a rename is one line here


def assignments():
    """The names of the course's assignments (one per folder of solutions/)."""
    return grading.assignment_names()


def _grade_id(cell):
    meta = cell.get("metadata") if isinstance(cell, dict) else None
    meta = meta.get("nbgrader") if isinstance(meta, dict) else None
    if not isinstance(meta, dict) or not (meta.get("grade") or meta.get("solution")):
        return None  # graded and answer cells only: read-only cells (setup, imports) share names across assignments
    gid = meta.get("grade_id")
    return gid if isinstance(gid, str) else None


def check_upload(name, raw):
    """Why ``raw`` (the uploaded bytes) cannot be a submission of assignment ``name``, or None.

    Not JSON, not a notebook, or a notebook of another assignment (most of its graded and answer cells are
    not ``name``'s). A
    notebook whose nbgrader metadata was stripped (e.g. by Colab) passes: grading restores it.
    """
    import json

    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return "the file is not a Jupyter notebook (not JSON): upload the .ipynb file"
    if not isinstance(data, dict) or not isinstance(data.get("cells"), list) or "nbformat" not in data:
        return "the file is JSON but not a Jupyter notebook (no cells, no nbformat)"
    released = sorted((grading.ROOT / "assignments" / name).glob("*.ipynb"))
    if not released:
        return None
    expected = {_grade_id(c) for c in json.loads(released[0].read_text())["cells"]} - {None}
    ids = {_grade_id(c) for c in data["cells"]} - {None}
    if ids and len(ids & expected) * 2 < len(ids):
        return f"this notebook is not the {name} assignment (its graded cells are {', '.join(sorted(ids)[:3])})"
    return None


def _sha(path):
    return hashlib.sha256(pathlib.Path(path).read_bytes()).hexdigest()


def _folder_name(student):
    """A folder name that ``grade_folder`` reads back as the same student id."""
    return re.sub(r"[^A-Za-z0-9-]+", "-", student).strip("-") or "student"


def _errors(autograded):
    """grade_id -> what each failing test cell may show (the feedback's rule: error type and the check's
    message, never streams or traceback, a message quoting a hidden test withheld)."""
    if not autograded or not pathlib.Path(autograded).exists():
        return {}
    return {gid: text[:300] for gid, text in grading.report.failure_reasons(autograded).items()}


def grade(name, path, out, *, student="student", jobs=1):
    """Grade the notebook ``path`` for assignment ``name``; feedback goes under ``out``.

    Returns a dict: status ("graded" or "failed"), score and max_score (automatic parts), parts (a list of
    {"name", "score", "max_score", "reason"} for the automatic parts), manual_parts (the written answers,
    graded by hand later), reason (notes of the pipeline), feedback (path of the feedback page or None),
    sandbox (what the code ran in).
    """
    path, out = pathlib.Path(path), pathlib.Path(out)
    before = _sha(path)
    tmp = pathlib.Path(tempfile.mkdtemp(prefix=f"service-{name}-"))
    try:
        who = _folder_name(student)
        (tmp / "in" / who).mkdir(parents=True)
        shutil.copy(path, tmp / "in" / who / f"{name}.ipynb")
        results = grading.grade_folder(name, tmp / "in", out=tmp / "out", work=tmp / "course", jobs=jobs,
                                       log=None)
        result = results[0]
        errors = _errors(tmp / "course" / "autograded" / result.student / name / f"{name}.ipynb")
        parts, manual = [], []
        for gid, cell in result.cells.items():
            if not cell["auto"]:
                manual.append({"name": gid, "max_score": cell["max_score"], "reason": "graded by hand"})
                continue
            reason = result.adjustments.get(gid) or errors.get(gid) or (
                "passed" if cell["score"] >= cell["max_score"] else "failed")
            parts.append({"name": gid, "score": cell["score"], "max_score": cell["max_score"], "reason": reason})
        feedback = None
        if result.feedback:
            out.mkdir(parents=True, exist_ok=True)
            feedback = out / "feedback.html"
            shutil.copy(tmp / "out" / result.feedback, feedback)
        summary = {"status": result.status, "score": result.auto_score, "max_score": result.auto_max,
                   "parts": parts, "manual_parts": manual, "reason": result.reason,
                   "feedback": str(feedback) if feedback else None, "sandbox": result.sandbox}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if _sha(path) != before:
        raise RuntimeError(f"the stored submission {path} changed during grading (this is a bug)")
    return summary


def sandbox():
    """What the students' code will run in ("bwrap" or "none"); raises RuntimeError with what to install."""
    try:
        return grading.sandbox.find(grading.pipeline.defaults()["kind"])
    except grading.sandbox.Unavailable as err:
        raise RuntimeError(f"grading refused: {err} (GRADING_SANDBOX=none grades unsandboxed)") from err
