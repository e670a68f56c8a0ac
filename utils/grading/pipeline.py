"""Grade a folder of submissions."""

import pathlib
import shutil
import tempfile

from .audit import _affected_tests, audit
from .collect import identify
from .course import ROOT, _last_error, _nbgrader, _sha, make_course
from .prepare import prepare
from .report import GradeResult, write_csv


def _read_scores(course, name, student, nb_name):
    from nbgrader.api import Gradebook, MissingEntry

    with Gradebook(f"sqlite:///{pathlib.Path(course) / 'gradebook.db'}") as gb:
        try:
            sub = gb.find_submission_notebook(pathlib.Path(nb_name).stem, name, student)
        except MissingEntry:
            return None
        cells = {}
        for g in sub.grades:
            cells[g.name] = {"score": float(g.score or 0.0), "max_score": float(g.max_score or 0.0),
                             "auto": g.cell_type == "code",
                             "needs_manual": bool(g.needs_manual_grade)}
        return cells


def _timed_out(autograded):
    """grade_ids (or cell numbers) of the cells that nbgrader stopped for running past the timeout."""
    import nbformat

    out = []
    for i, cell in enumerate(nbformat.read(str(autograded), as_version=4).cells):
        if any(o.get("output_type") == "error" and "Timeout" in o.get("ename", "") for o in cell.get("outputs", [])):
            out.append(cell.metadata.get("nbgrader", {}).get("grade_id") or f"cell {i}")
    return out


def _zero_cells(course, name, student, nb_name, cells):
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{pathlib.Path(course) / 'gradebook.db'}") as gb:
        for gid in cells:
            grade = gb.find_grade(gid, pathlib.Path(nb_name).stem, name, student)
            grade.manual_score = 0.0
        gb.db.commit()


def _collect(course, name, staged):
    """Put prepared copies where nbgrader's zip_collect looks and let it fill ``submitted/``."""
    extracted = pathlib.Path(course) / "downloaded" / name / "extracted"
    if extracted.exists():
        shutil.rmtree(extracted)
    for student, nb, nb_name in staged:
        import nbformat

        target = extracted / student / nb_name
        target.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, str(target))
    proc = _nbgrader(["zip_collect", name, "--force"], course)
    if proc.returncode != 0:
        raise RuntimeError(f"nbgrader zip_collect failed: {_last_error(proc)}")


def grade_folder(name, folder, *, out=None, work=None, timeout=None, root=ROOT, log=print):
    """Grade every submission of assignment ``name`` in ``folder``; return a list of GradeResult.

    - out: where feedback/ and grades.csv go (default: grading-work/NAME/results)
    - work: the nbgrader course folder used for grading (default: grading-work/NAME/course); it keeps
      the gradebook, so grading again updates it
    - timeout: per-cell timeout in seconds for the student's code (default: nbgrader_config.py's)
    """
    root, folder = pathlib.Path(root), pathlib.Path(folder)
    if not folder.is_dir():
        raise ValueError(f"folder: {folder} is not a folder of submissions")
    work = pathlib.Path(work) if work else root / "grading-work" / name / "course"
    out = pathlib.Path(out) if out else root / "grading-work" / name / "results"
    before = {p: _sha(p) for p in folder.rglob("*") if p.is_file()}
    released = make_course(name, work, root)
    nb_name = released.name

    # whose is each file?
    by_student, results = {}, []
    for path in sorted(before):
        rel = path.relative_to(folder).as_posix()
        if any(part.startswith(".") or part == "__MACOSX" for part in pathlib.PurePosixPath(rel).parts):
            continue
        student = identify(rel, name)
        if student is None:
            results.append(GradeResult(student="?", file=rel, reason="cannot tell whose file this is: name it "
                                       f"<student>_{nb_name} or put it in a folder named for the student"))
            continue
        by_student.setdefault(student, []).append((path, rel))

    staged, pending = [], []
    for student, files in sorted(by_student.items()):
        notebooks = [f for f in files if f[0].suffix == ".ipynb"]
        result = GradeResult(student=student)
        if not notebooks:
            result.file = files[0][1]
            result.reason = f"no .ipynb file submitted ({', '.join(f[1] for f in files)[:80]})"
            results.append(result)
            continue
        if len(notebooks) > 1:
            named = [f for f in notebooks if name.lower() in f[1].lower()] or notebooks
            chosen = max(named, key=lambda f: f[0].stat().st_mtime)
            result.note(f"{len(notebooks)} notebooks submitted, graded {chosen[1]}")
        else:
            chosen = notebooks[0]
        result.file = chosen[1]
        try:
            nb, notes = prepare(chosen[0], released, name)
        except ValueError as err:
            result.reason = str(err) if not result.reason else f"{err}; {result.reason}"
            results.append(result)
            continue
        for n in notes:
            result.note(n)
        findings = audit(nb, name)
        staged.append((student, nb, nb_name))
        pending.append((result, nb, findings))

    if staged:
        _collect(work, name, staged)
    cells_n = max(1, len([c for c in pending[0][1].cells if c.cell_type == "code"])) if pending else 1
    per_cell = timeout or 60
    for result, nb, findings in pending:
        log(f"grading {result.student} ...")
        args = ["autograde", name, "--student", result.student, "--force", "--create"]
        if timeout:
            args += [f"--Execute.timeout={timeout}", f"--ExecutePreprocessor.timeout={timeout}"]
        proc = _nbgrader(args, work, timeout=per_cell * cells_n + 120, root=root)
        cells = _read_scores(work, name, result.student, nb_name)
        autograded = work / "autograded" / result.student / name / nb_name
        if proc.returncode != 0 or cells is None or not autograded.exists():
            reason = _last_error(proc)
            if "Kernel died" in (proc.stderr or "") or "DeadKernel" in (proc.stderr or ""):
                reason = ("the notebook's kernel died while it ran: a cell ended or crashed the Python process; "
                          "grade it by hand or ask for a resubmission")
            result.note(f"autograde failed: {reason}")
            result.status = "failed"
            results.append(result)
            continue
        for gid in _timed_out(autograded):
            result.note(f"{gid} timed out (over {per_cell} s) and scores 0")
        affected = _affected_tests(nb, findings)
        if affected:
            _zero_cells(work, name, result.student, nb_name, affected)
            for gid, message in affected.items():
                result.note(f"{gid} set to 0: an answer cell {message}")
            cells = _read_scores(work, name, result.student, nb_name)
        result.cells = cells
        result.score = sum(c["score"] for c in cells.values())
        result.max_score = sum(c["max_score"] for c in cells.values())
        result.auto_score = sum(c["score"] for c in cells.values() if c["auto"])
        result.auto_max = sum(c["max_score"] for c in cells.values() if c["auto"])
        result.status = "graded"
        results.append(result)

    graded = [r for r in results if r.status == "graded"]
    if graded:  # feedback for everyone at once; student by student if that fails
        fb = _nbgrader(["generate_feedback", name, "--force"], work, root=root)
        for r in graded:
            html = work / "feedback" / r.student / name / (pathlib.Path(nb_name).stem + ".html")
            if fb.returncode != 0 or not html.exists():
                one = _nbgrader(["generate_feedback", name, "--student", r.student, "--force"], work, root=root)
                if one.returncode != 0 or not html.exists():
                    r.note(f"feedback not generated: {_last_error(one)}")
                    continue
            dest = out / "feedback" / r.student / html.name
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(html, dest)
            r.feedback = dest.relative_to(out).as_posix()

    after = {p: _sha(p) for p in folder.rglob("*") if p.is_file()}
    if after != before:
        changed = sorted(str(p) for p in set(before) | set(after) if before.get(p) != after.get(p))
        raise RuntimeError(f"submitted files changed during grading (this is a bug): {changed[:5]}")
    results.sort(key=lambda r: (r.student, r.file))
    write_csv(results, out / "grades.csv")
    return results


def autograde_notebook(name, path, *, student="s1", root=ROOT, timeout=None):
    """Grade one notebook file for assignment ``name`` in a temporary course; return its GradeResult.

    Nothing in the repository changes. Used by the tests of each assignment.
    """
    tmp = pathlib.Path(tempfile.mkdtemp(prefix=f"grade-{name}-"))
    try:
        folder = tmp / "in" / student
        folder.mkdir(parents=True)
        shutil.copy(path, folder / pathlib.Path(path).name)
        results = grade_folder(name, tmp / "in", out=tmp / "out", work=tmp / "course", timeout=timeout, root=root,
                               log=lambda *_: None)
        return results[0]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
