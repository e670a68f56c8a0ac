"""Grade a folder of submissions: collect, prepare, execute (sandboxed, N at once), check, report."""

import concurrent.futures
import os
import pathlib
import shutil
import tempfile

from . import sandbox as sb
from .audit import _affected_tests, audit
from .collect import identify
from .course import ROOT, _sha, make_course
from .execute import Context, check_workspace, cleanup, copy_utils, execute, make_template
from .prepare import prepare
from .report import Adjustment, GradeResult, adjusted_scores, feedback_html, fill, record, write_csv


def defaults(root=ROOT):
    """The grading defaults of ``nbgrader_config.py`` (section ``GradingSandbox``), then GRADING_SANDBOX."""
    values = {"kind": "auto", "memory_mb": 4096, "processes": 128, "wall_s": 900, "disk_mb": 512, "jobs": 0}
    path = pathlib.Path(root) / "nbgrader_config.py"
    path = path if path.exists() else ROOT / "nbgrader_config.py"
    try:
        from traitlets.config.loader import PyFileConfigLoader

        cfg = PyFileConfigLoader(path.name, path=str(path.parent)).load_config()
        values.update({k: v for k, v in cfg.get("GradingSandbox", {}).items() if k in values})
    except Exception:  # a broken config file: the built-in defaults
        pass
    if os.environ.get("GRADING_SANDBOX"):
        values["kind"] = os.environ["GRADING_SANDBOX"]
    return values


def audit_check(ctx):
    """The static audit as a check: an answer cell that tampers or delegates loses the tests it could fool."""
    findings = audit(ctx.notebook, ctx.name)
    return [Adjustment(gid, 0.0, f"an answer cell {message}")
            for gid, message in _affected_tests(ctx.notebook, findings).items()]


# Per-submission checks: the hook where further checks plug in. Each is called once per submission,
# after its notebook was executed (only if that succeeded), in the grading process, with an
# ``execute.Context`` (ctx.workspace holds the submission as ``submission.ipynb``; ctx.notebook is the
# prepared notebook; ctx.grades the run's automatic scores; ctx.run(argv) runs a command in the same
# sandbox over a copy of the workspace) and returns a list of ``report.Adjustment(grade_id, score,
# reason)``; the last adjustment of a part wins. ``grade_folder(checks=[...])`` adds checks for one
# call. A module named in PLUGINS that exists and defines ``check(ctx)`` is added to every grading.
CHECKS = [audit_check]
PLUGINS = ["instructor.independent"]


def default_checks():
    """CHECKS, then ``check`` of each module of PLUGINS that exists (a broken one raises)."""
    import importlib
    import importlib.util

    found = list(CHECKS)
    for module in PLUGINS:
        try:
            present = importlib.util.find_spec(module) is not None
        except ModuleNotFoundError:
            present = False
        if present:
            check = getattr(importlib.import_module(module), "check", None)
            if check is not None:
                found.append(check)
    return found


def _collect(folder, name, nb_name, released, results):
    """(result, notebook) for each student with a readable submission; failures go into ``results``."""
    by_student = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        rel = path.relative_to(folder).as_posix()
        if any(part.startswith(".") or part == "__MACOSX" for part in pathlib.PurePosixPath(rel).parts):
            continue
        student = identify(rel, name)
        if student is None:
            results.append(GradeResult(student="?", file=rel, reason="cannot tell whose file this is: name it "
                                       f"<student>_{nb_name} or put it in a folder named for the student"))
            continue
        by_student.setdefault(student, []).append((path, rel))
    pending = []
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
        pending.append((result, nb))
    return pending


def grade_folder(name, folder, *, out=None, work=None, timeout=None, root=ROOT, log=print, sandbox=None, jobs=None,
                 memory_mb=None, processes=None, wall_s=None, disk_mb=None, checks=None, progress=False, keep=False):
    """Grade every submission of assignment ``name`` in ``folder``; return a list of GradeResult.

    - out: where feedback/ and grades.csv go (default: grading-work/NAME/results)
    - work: the nbgrader course folder (default: grading-work/NAME/course); it keeps the course gradebook
      (grading again updates it; manual grades of written answers are kept) and one workspace per
      submission under runs/ while it is graded
    - timeout: per-cell timeout in seconds for the student's code (default: nbgrader_config.py's)
    - sandbox: "auto" or "bwrap" (raises sandbox.Unavailable if none can be made), or "none" (no
      sandbox: the student's code can do anything the grading user can); default from nbgrader_config.py
    - jobs: submissions graded at once (default: the number of cores); results do not depend on it
    - memory_mb, processes, wall_s, disk_mb: the sandbox's limits (defaults in nbgrader_config.py)
    - checks: further checks, each ``f(execute.Context) -> [report.Adjustment]``, run after the
      default ones (``default_checks()``: the audit and any plugin)
    - progress: show a progress bar (tqdm) with the counts of graded and failed submissions
    """
    root, folder = pathlib.Path(root), pathlib.Path(folder)
    if not folder.is_dir():
        raise ValueError(f"folder: {folder} is not a folder of submissions")
    conf = defaults(root)
    kind = sb.find(sandbox or conf["kind"])  # raises Unavailable with what to install
    limits = sb.Limits(memory_mb=memory_mb or conf["memory_mb"], processes=processes or conf["processes"],
                       wall_s=wall_s or conf["wall_s"], disk_mb=disk_mb or conf["disk_mb"])
    jobs = jobs or conf["jobs"] or os.cpu_count() or 1
    label = "none (--no-sandbox)" if kind == "none" else (
        f"{kind} (memory {limits.memory_mb} MB, {limits.processes} processes, {limits.wall_s} s, "
        f"disk {limits.disk_mb} MB)")
    work = pathlib.Path(work) if work else root / "grading-work" / name / "course"
    out = pathlib.Path(out) if out else root / "grading-work" / name / "results"
    before = {p: _sha(p) for p in folder.rglob("*") if p.is_file()}
    released = make_course(name, work, root)
    nb_name = released.name
    import nbformat

    release_nb = nbformat.read(str(released), as_version=4)
    template = make_template(work, name)
    copy_utils(work, root)

    results = []
    pending = _collect(folder, name, nb_name, released, results)
    all_checks = default_checks() + list(checks or [])

    def one(item):
        result, nb = item
        run = execute(name, result.student, nb, nb_name, course=work, template=template, kind=kind, limits=limits,
                      timeout=timeout, root=root)
        if not run.error:
            ctx = Context(name=name, student=result.student, notebook=nb, release=release_nb,
                          workspace=check_workspace(run, nb), grades=run.grades, limits=limits, kind=kind)
            for check in all_checks:
                try:
                    run.adjustments += list(check(ctx) or [])
                except Exception as err:  # a broken check must not stop the others: say so
                    run.error = f"check {getattr(check, '__name__', check)} failed: {err}"
        cleanup(run, keep)
        return run

    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(pending), unit="submission", desc=f"grading {name}")
    counts = {"graded": 0, "failed": 0}
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, int(jobs))) as pool:
        futures = {pool.submit(one, item): item for item in pending}
        for future in concurrent.futures.as_completed(futures):
            result, nb = futures[future]
            result.sandbox = label
            try:
                run = future.result()
            except Exception as err:  # one broken submission never stops the others
                run = None
                result.note(f"grading failed: {type(err).__name__}: {err}")
            if run is not None and run.error:
                result.note(f"autograde failed: {run.error}")
            if run is not None and not run.error:
                per_cell = timeout or 60
                for gid in run.timed_out:
                    result.note(f"{gid} timed out (over {per_cell} s) and scores 0")
                scores = adjusted_scores(run.grades, run.adjustments, result)
                fill(result, record(work / "gradebook.db", name, nb_name, result.student, run.grades, scores))
                result.status = "graded"
                try:
                    page = feedback_html(run.autograded, release_nb, result, name)
                    dest = out / "feedback" / result.student / (pathlib.Path(nb_name).stem + ".html")
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    dest.write_text(page)
                    result.feedback = dest.relative_to(out).as_posix()
                except Exception as err:
                    result.note(f"feedback not generated: {err}")
            counts[result.status] = counts.get(result.status, 0) + 1
            results.append(result)
            if log and not bar:
                log(f"{result.student}: {result.status}")
            if bar:
                bar.set_postfix(counts)
                bar.update(1)
    if bar:
        bar.close()

    after = {p: _sha(p) for p in folder.rglob("*") if p.is_file()}
    if after != before:
        changed = sorted(str(p) for p in set(before) | set(after) if before.get(p) != after.get(p))
        raise RuntimeError(f"submitted files changed during grading (this is a bug): {changed[:5]}")
    results.sort(key=lambda r: (r.student, r.file))
    for r in results:
        r.sandbox = label
    write_csv(results, out / "grades.csv")
    return results


def autograde_notebook(name, path, *, student="s1", root=ROOT, timeout=None, **kw):
    """Grade one notebook file for assignment ``name`` in a temporary course; return its GradeResult.

    Nothing in the repository changes. Used by the tests of each assignment.
    """
    tmp = pathlib.Path(tempfile.mkdtemp(prefix=f"grade-{name}-"))
    try:
        folder = tmp / "in" / student
        folder.mkdir(parents=True)
        shutil.copy(path, folder / pathlib.Path(path).name)
        results = grade_folder(name, tmp / "in", out=tmp / "out", work=tmp / "course", timeout=timeout, root=root,
                               log=lambda *_: None, **kw)
        return results[0]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
