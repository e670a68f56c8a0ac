"""The nbgrader course: release the assignments from solutions/, make course folders, build test
submissions."""

import filecmp
import hashlib
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parent.parent.parent


def _env(root):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(root), str(ROOT)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    bindir = os.path.dirname(sys.executable)  # nbgrader runs `alembic`: it must be on PATH
    env["PATH"] = bindir + os.pathsep + env.get("PATH", "")
    env.pop("NBGRADER_EXECUTION", None)
    env.setdefault("PYTHONWARNINGS", "ignore")
    env.setdefault("OMP_NUM_THREADS", "1")  # one torch thread per kernel: grading shares the cores
    return env


def _nbgrader(args, course, *, timeout=None, root=ROOT):
    """Run ``nbgrader ARGS`` in the course folder; return the CompletedProcess (never raises)."""
    try:
        return subprocess.run([sys.executable, "-m", "nbgrader", *args], cwd=course, env=_env(root),
                              capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as err:
        return subprocess.CompletedProcess(err.cmd, 124, err.stdout or "", f"timed out after {timeout} s")


def _last_error(proc):
    lines = [ln for ln in (proc.stderr or "").splitlines() if ln.strip()]
    errors = [ln for ln in lines if "[ERROR]" in ln or "Error" in ln or "error" in ln]
    return (errors or lines or ["(no output)"])[-1].strip()[:200]


def _sha(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(2**20), b""):
            h.update(block)
    return h.hexdigest()


def _source_notebooks(name, root):
    folder = pathlib.Path(root) / "solutions" / name
    if not folder.is_dir():
        available = sorted(p.name for p in (pathlib.Path(root) / "solutions").iterdir() if p.is_dir())
        raise ValueError(f"name: no assignment {name!r} in {folder.parent} (available: {available})")
    notebooks = sorted(folder.glob("*.ipynb"))
    if len(notebooks) != 1:
        raise ValueError(f"name: assignment {name!r} must hold exactly one notebook, found {len(notebooks)}")
    return notebooks[0]


def make_course(name, course, root=ROOT, *, timeout=None):
    """Set up (or refresh) an nbgrader course folder for assignment ``name`` and release it there.

    ``course`` receives a copy of ``nbgrader_config.py`` and ``solutions/NAME``; nbgrader's
    ``generate_assignment`` then writes ``course/assignments/NAME`` and the gradebook.
    Returns the path of the released notebook.
    """
    root, course = pathlib.Path(root), pathlib.Path(course)
    source = _source_notebooks(name, root)
    course.mkdir(parents=True, exist_ok=True)
    shutil.copy(ROOT / "nbgrader_config.py", course / "nbgrader_config.py")
    dest = course / "solutions" / name
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    shutil.copy(source, dest / source.name)
    args = ["generate_assignment", name, "--force"]
    if timeout:
        args.append(f"--Execute.timeout={timeout}")
    proc = _nbgrader(args, course, root=root)
    released = course / "assignments" / name / source.name
    if proc.returncode != 0 or not released.exists():
        raise RuntimeError(f"nbgrader generate_assignment {name} failed: {_last_error(proc)}")
    return released


def release_notebook(name, root=ROOT):
    """The student version of assignment ``name`` generated from ``solutions/`` in a temporary folder."""
    return make_course(name, tempfile.mkdtemp(prefix=f"release-{name}-"), root)


def make_submission(student, source, answered=(), edits=()):
    """A submission for tests and benchmarks: the student version with some answers filled in.

    Inputs:
    - student: the released notebook (nbformat node); it is not modified.
    - source: the source notebook with the solutions.
    - answered: grade_ids of the answer cells whose source is taken from ``source``.
    - edits: (grade_id, old, new) text replacements applied afterwards (typical wrong answers).

    Returns a new notebook node.
    """
    import copy

    def by_id(nb):
        return {c.metadata.get("nbgrader", {}).get("grade_id"): c for c in nb.cells}

    nb = copy.deepcopy(student)
    cells, solved = by_id(nb), by_id(source)
    for gid in answered:
        if gid not in solved or gid not in cells:
            raise KeyError(f"answered: no answer cell {gid!r} in both notebooks")
        cells[gid].source = solved[gid].source
    for gid, old, new in edits:
        if gid not in cells or old not in cells[gid].source:
            raise KeyError(f"edits: {old!r} is not in cell {gid!r}; update the edit")
        cells[gid].source = cells[gid].source.replace(old, new)
    return nb


def assignment_names(root=ROOT):
    return sorted(p.name for p in (pathlib.Path(root) / "solutions").iterdir()
                  if p.is_dir() and list(p.glob("*.ipynb")))


def release(names=None, *, check=False, root=ROOT):
    """Regenerate ``assignments/NAME`` from ``solutions/NAME``; with ``check``, only compare.

    Returns the list of assignment names whose committed student version differs (check mode) or
    was rewritten.
    """
    root = pathlib.Path(root)
    differing = []
    for name in names or assignment_names(root):
        fresh = release_notebook(name, root)
        committed_dir = root / "assignments" / name
        committed = committed_dir / fresh.name
        fresh_files = sorted(p.name for p in fresh.parent.iterdir())
        committed_files = sorted(p.name for p in committed_dir.iterdir()) if committed_dir.exists() else []
        same = fresh_files == committed_files and committed.exists() and filecmp.cmp(fresh, committed, shallow=False)
        if not same:
            differing.append(name)
            if not check:
                if committed_dir.exists():
                    shutil.rmtree(committed_dir)
                shutil.copytree(fresh.parent, committed_dir)
        shutil.rmtree(fresh.parent.parent.parent, ignore_errors=True)
    return differing
