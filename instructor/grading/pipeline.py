"""Grade a folder of submissions: collect, prepare, execute (sandboxed, N at once), check, report."""

import concurrent.futures
import contextlib
import os
import pathlib
import shutil
import tempfile
import time

from . import cgroup
from . import sandbox as sb
from .audit import _affected_tests, audit
from .collect import name_hash, regular_files, student_id, student_name, walk
from .course import ROOT, _sha, make_course
from .execute import Context, check_workspace, cleanup, copy_utils, execute, make_template
from .prepare import prepare
from .report import Adjustment, GradeResult, adjusted_scores, feedback_html, fill, record, write_csv


def defaults(root=ROOT):
    """The grading defaults of ``nbgrader_config.py`` (section ``GradingSandbox``), then GRADING_SANDBOX."""
    values = {"kind": "auto", "memory_mb": 4096, "processes": 128, "wall_s": 900, "disk_mb": 512, "jobs": 0,
              "max_file_mb": 25, "output_cell_kb": 1024, "output_notebook_kb": 8192}
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


def _collect(folder, name, nb_name, released, results, max_file_mb=25):
    """(result, notebook) for each student with a readable submission; failures go into ``results``.

    Nothing here may stop the others: a link, a special file, a file over ``max_file_mb`` MB (refused
    before it is read) or any exception while reading or preparing one file is that student's
    ``failed`` row with the reason.
    """
    by_name = {}
    for path, rel, problem in walk(folder):
        raw = student_name(rel, name)
        if raw is None:
            results.append(GradeResult(student="?", file=rel, reason=problem or "cannot tell whose file this is: "
                                       f"name it <student>_{nb_name} or put it in a folder named for the student"))
            continue
        by_name.setdefault(raw, []).append((path, rel, problem))
    ids = _student_ids(by_name)
    pending = []
    for raw, files in sorted(by_name.items(), key=lambda kv: ids[kv[0]][0]):
        student, how = ids[raw]
        result = GradeResult(student=student)
        if how:
            result.note(how)
        refused = [(p, rel, problem) for p, rel, problem in files if problem]
        files = [f for f in files if not f[2]]
        notebooks = [f for f in files if f[0].suffix == ".ipynb"]
        if not notebooks:
            result.file = (refused or files)[0][1]
            result.note(refused[0][2] if refused else
                        f"no .ipynb file submitted ({', '.join(f[1] for f in files)[:80]})")
            results.append(result)
            continue
        for _p, rel, problem in refused:
            result.note(f"{rel}: {problem}")
        if len(notebooks) > 1:
            named = [f for f in notebooks if name.lower() in f[1].lower()] or notebooks
            chosen = max(named, key=lambda f: f[0].lstat().st_mtime)
            result.note(f"{len(notebooks)} notebooks submitted, graded {chosen[1]}")
        else:
            chosen = notebooks[0]
        result.file = chosen[1]
        try:
            size = chosen[0].lstat().st_size
            if size > max_file_mb * 2**20:
                raise ValueError(f"the file is {size / 2**20:.0f} MB, over the cap of {max_file_mb} MB: "
                                 "clear the notebook's outputs and submit it again")
            nb, notes = prepare(chosen[0], released, name)
        except ValueError as err:
            result.reason = str(err) if not result.reason else f"{err}; {result.reason}"
            results.append(result)
            continue
        except RecursionError:
            result.reason = f"the notebook could not be read: nested too deeply (RecursionError){_sep(result.reason)}"
            results.append(result)
            continue
        except Exception as err:  # anything else one file can do: its row, never the others'
            msg = str(err).splitlines()[0][:160] if str(err) else ""
            result.reason = f"the notebook could not be read: {type(err).__name__}: {msg}{_sep(result.reason)}"
            results.append(result)
            continue
        for n in notes:
            result.note(n)
        pending.append((result, nb))
    return pending


def _sep(reason):
    return f"; {reason}" if reason else ""


def _student_ids(by_name):
    """name -> (student id, note): distinct ids, also when case is ignored; the note says how a name that
    is not its own id became one (empty when it is)."""
    ids = {raw: student_id(raw) for raw in by_name}
    groups = {}
    for raw, sid in ids.items():
        groups.setdefault(sid.lower(), []).append(raw)
    out = {}
    for raw, sid in ids.items():
        clash = [r for r in groups[sid.lower()] if r != raw]
        if clash:
            sid = f"{sid}-{name_hash(raw)}"  # distinct: the names differ, so do their hashes
            others = ", ".join(repr(r) for r in sorted(clash))
            out[raw] = (sid, f"student id {sid} stands for the name {raw!r} (told apart from {others}, whose id would "
                             "be the same, by a hash of the name)")
        elif sid != raw:
            out[raw] = (sid, f"student id {sid} stands for the name {raw!r}")
        else:
            out[raw] = (sid, "")
    return out


def grade_folder(name, folder, *, out=None, work=None, timeout=None, root=ROOT, log=print, sandbox=None, jobs=None,
                 memory_mb=None, processes=None, wall_s=None, disk_mb=None, checks=None, progress=False, keep=False,
                 max_file_mb=None, wait=0):
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
    - max_file_mb: a submitted file over this size is refused before it is read (default 25, nbgrader_config.py)
    - wait: seconds to wait for another ``grade`` on the same ``work`` folder to finish; raises ``Busy``
      (with who holds it) when it has not (default 0: at once)
    """
    root, folder = pathlib.Path(root), pathlib.Path(folder)
    if not folder.is_dir():
        raise ValueError(f"folder: {folder} is not a folder of submissions")
    conf = defaults(root)
    kind = sb.find(sandbox or conf["kind"])  # raises Unavailable with what to install
    limits = sb.Limits(memory_mb=memory_mb or conf["memory_mb"], processes=processes or conf["processes"],
                       wall_s=wall_s or conf["wall_s"], disk_mb=disk_mb or conf["disk_mb"],
                       output_cell_kb=conf["output_cell_kb"], output_notebook_kb=conf["output_notebook_kb"])
    jobs = jobs or conf["jobs"] or os.cpu_count() or 1
    # each submission's cgroup gets an equal share of the cores (at least one): a spinner cannot take more
    limits.cpus = max(1.0, float((os.cpu_count() or 1) // max(1, int(jobs)))) if kind != "none" else 0.0
    label = "none (--no-sandbox)" if kind == "none" else (
        f"{kind} (memory {limits.memory_mb} MB, {limits.processes} processes, {limits.wall_s} s, "
        f"disk {limits.disk_mb} MB); "
        + cgroup.describe(limits.cpus, limits.memory_mb + 1024, limits.processes + 128)
        + ("" if os.geteuid() == 0 and shutil.which("unshare") else
           "; the kernel's socket folder is on the disk (a tmpfs needs root and unshare)"))
    work = pathlib.Path(work) if work else root / "grading-work" / name / "course"
    out = pathlib.Path(out) if out else root / "grading-work" / name / "results"
    work.mkdir(parents=True, exist_ok=True)
    with work_lock(work, wait=wait):
        before = {p: _sha(p) for p in regular_files(folder)}
        released = make_course(name, work, root)
        nb_name = released.name
        import nbformat

        release_nb = nbformat.read(str(released), as_version=4)
        template = make_template(work, name)
        copy_utils(work, root)

        results = []
        pending = _collect(folder, name, nb_name, released, results, max_file_mb=max_file_mb or conf["max_file_mb"])
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
                    try:
                        _finish(result, run, work=work, out=out, name=name, nb_name=nb_name, release_nb=release_nb,
                                timeout=timeout)
                    except Exception as err:  # its row says why; the others go on
                        result.status = "failed"
                        result.note(f"grading failed: {type(err).__name__}: {str(err)[:160]}")
                counts[result.status] = counts.get(result.status, 0) + 1
                results.append(result)
                if log and not bar:
                    log(f"{result.student}: {result.status}")
                if bar:
                    bar.set_postfix(counts)
                    bar.update(1)
        if bar:
            bar.close()

        after = {p: _sha(p) for p in regular_files(folder)}
        if after != before:
            changed = sorted(str(p) for p in set(before) | set(after) if before.get(p) != after.get(p))
            raise RuntimeError(f"submitted files changed during grading (this is a bug): {changed[:5]}")
        results.sort(key=lambda r: (r.student, r.file))
        for r in results:
            r.sandbox = label
        write_csv(results, out / "grades.csv")
        return results


def _finish(result, run, *, work, out, name, nb_name, release_nb, timeout):
    """A run that executed: apply the checks, write the course gradebook and the feedback."""
    per_cell = timeout or 60
    for gid in run.timed_out:
        result.note(f"{gid} timed out (over {per_cell} s) and scores 0")
    for note in run.notes:
        result.note(note)
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
        result.note(f"feedback not generated: {type(err).__name__}: {str(err)[:160]}")


class Busy(RuntimeError):
    """Another ``grade`` holds the work folder; the message says who and what to do."""


@contextlib.contextmanager
def work_lock(work, wait=0):
    """Hold ``WORK/.grading.lock`` (an exclusive ``flock``) while grading into ``work``.

    A second ``grade`` on the same work folder waits up to ``wait`` seconds, then raises Busy. The lock
    is the kernel's: it goes with the process that holds it, SIGKILL included (no stale lock file).
    """
    import fcntl

    path = pathlib.Path(work) / ".grading.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + max(0, wait or 0)
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
                    raise Busy(f"{work} is being graded by {holder}: wait for it to finish (or pass --wait SECONDS), "
                               "or grade into another --work folder") from None
                time.sleep(0.5)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} since {time.strftime('%Y-%m-%d %H:%M:%S')}".encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock


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
