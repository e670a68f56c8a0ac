"""Release and autograde the course's assignments with nbgrader, safely.

Instructor commands (run from the course folder)::

    python -m utils.grading release [NAME ...]          # regenerate assignments/ from solutions/
    python -m utils.grading release --check [NAME ...]  # exit 1 if assignments/ differs from the source
    python -m utils.grading grade NAME FOLDER [--out DIR] [--timeout S]

``grade`` turns a folder of submitted notebooks into grades and feedback:

1. it recognises whose file each is (``alice_lstm.ipynb``, ``lstm-bob.ipynb``, ``carol/Copy of
   lstm.ipynb``, ``dave/lstm (1).ipynb``: a per-student folder, or the student's name around the
   assignment's name), and works on copies: the submitted files are never modified (checked by hash);
2. it repairs what can be repaired in the copy (a Colab save in nbformat 4.0, Colab's metadata,
   duplicated cells, stripped nbgrader metadata matched back to the release's cells), and gives a clear
   reason for what cannot (an empty file, a file that is not JSON, a notebook of another assignment);
3. nbgrader's own ``zip_collect`` moves the copies into the ``submitted/`` layout (its file collector
   is configured in ``nbgrader_config.py``); each student is then autograded by a separate nbgrader
   process, so one broken submission (an endless loop, a kernel that dies) cannot stop the others;
4. answer cells are audited outside the student's kernel: an answer that rebinds library or course
   functions, or calls the PyTorch module the part asks to re-implement, gets the test cells it could
   have fooled set to 0 in the gradebook, with the reason;
5. it writes per-student feedback HTML and ``grades.csv`` and prints a summary table; it exits non-zero
   only if nobody could be graded.

Grading the same folder twice gives the same result: students and grades are updated, not duplicated.
"""

import argparse
import csv
import dataclasses
import filecmp
import hashlib
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parent.parent

# Patterns that an answer cell has no business containing. Matched on code with comments and string
# literals (docstrings included) removed, so prose that names a module is fine.
TAMPERING = [
    (r"^[ \t]*(?:torch|np|numpy|utils|checks|F|nn|math|builtins|sys|os|importlib|warnings)(?:\s*\.\s*\w+)+"
     r"\s*(?:=(?!=)|\+=|-=)", "assigns to an attribute of a library or of the course's helpers"),
    (r"\bsetattr\s*\(", "calls setattr"),
    (r"\bget_ipython\b|\bIPython\b", "reaches into IPython"),
    (r"\bsys\s*\.\s*modules\b", "touches sys.modules"),
    (r"\b__builtins__\b|\bimport\s+builtins\b", "touches builtins"),
    (r"\bimportlib\b", "uses importlib"),
    (r"(?<![\w.])(?:exec|eval|compile)\s*\(", "runs code from strings"),
    (r"\bos\s*\.\s*(?:_exit|kill|system)\b|\bsubprocess\b", "controls processes"),
]

# Per assignment: the PyTorch modules and functions its answers re-implement, as they are reached
# from torch (a student's own function or class of a similar name is not matched).
FORBIDDEN = {
    "lstm": [r"\bnn\s*\.\s*LSTMCell\b", r"\bnn\s*\.\s*LSTM\b", r"\btorch\s*\.\s*(?:_VF\s*\.\s*)?lstm",
             r"\b_VF\b"],
    "multi_head_attention": [r"\b(?:F|functional)\s*\.\s*scaled_dot_product_attention\b",
                             r"\bnn\s*\.\s*MultiheadAttention\b", r"\bmulti_head_attention_forward\b",
                             r"\b_VF\b"],
}


def _code_only(source):
    """``source`` with comments and string literals blanked out (line structure kept)."""
    import io
    import tokenize

    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(source).readline))
    except (tokenize.TokenError, IndentationError, SyntaxError):
        return "\n".join(line.split("#", 1)[0] for line in source.splitlines())
    lines = source.splitlines(keepends=True)
    out = [list(line) for line in lines]
    for tok in tokens:
        if tok.type in (tokenize.COMMENT, tokenize.STRING, getattr(tokenize, "FSTRING_MIDDLE", -1)):
            (r0, c0), (r1, c1) = tok.start, tok.end
            for r in range(r0, r1 + 1):
                row = out[r - 1]
                start = c0 if r == r0 else 0
                end = c1 if r == r1 else len(row)
                for c in range(start, min(end, len(row))):
                    if row[c] != "\n":
                        row[c] = " "
    return "".join("".join(row) for row in out)


@dataclasses.dataclass
class GradeResult:
    """What grading one student's submission gave.

    - student: the student id; file: the submitted file (relative to the submissions folder)
    - score / max_score: all parts; auto_score / auto_max: automatically graded parts only
    - cells: grade_id -> {"score", "max_score", "auto"} for every graded cell
    - status: "graded" or "failed"; reason: why it failed, or what was repaired or flagged
    """

    student: str
    file: str = ""
    score: float = 0.0
    max_score: float = 0.0
    auto_score: float = 0.0
    auto_max: float = 0.0
    cells: dict = dataclasses.field(default_factory=dict)
    status: str = "failed"
    reason: str = ""
    feedback: str = ""

    def note(self, text):
        self.reason = f"{self.reason}; {text}" if self.reason else text


# ------------------------------------------------------------------------------------------ helpers


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
    return hashlib.sha256(pathlib.Path(path).read_bytes()).hexdigest()


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


# ------------------------------------------------------------------------------- submissions in


def _clean_id(text):
    text = re.sub(r"(?i)\bcopy[ _]of[ _]", "", text)
    text = re.sub(r"\s*\(\d+\)$", "", text)
    return re.sub(r"[^A-Za-z0-9.-]+", "_", text).strip("._-")


def identify(rel_path, name):
    """Tell whose submission a file is from its path relative to the submissions folder.

    Returns the student id, or None when the path does not say (e.g. a bare ``lstm.ipynb``).
    """
    parts = pathlib.PurePosixPath(rel_path).parts
    if len(parts) >= 2:
        return _clean_id(parts[0]) or None
    stem = pathlib.PurePosixPath(rel_path).stem
    stem = re.sub(r"(?i)copy[ _]of[ _]", "", stem)
    stem = re.sub(r"\s*\(\d+\)$", "", stem)
    rest = re.sub(rf"(?i)(^|[ _.-]){re.escape(name)}($|[ _.-])", " ", stem).strip(" _.-")
    if rest == stem.strip(" _.-") and name.lower() not in stem.lower():
        rest = stem  # no assignment name in it: the whole stem is the student's
    return _clean_id(rest) or None


def _grade_ids(nb):
    return [c.get("metadata", {}).get("nbgrader", {}).get("grade_id") for c in nb.get("cells", [])]


def _first_line(cell):
    src = cell.get("source", "")
    src = "".join(src) if isinstance(src, list) else src
    for line in src.splitlines():
        if line.strip():
            return line.strip()
    return ""


def prepare(path, release_nb, name):
    """Read a submitted file and return (notebook, notes) ready for nbgrader, or raise ValueError(reason).

    Repairs: nbformat 4.0 and Colab metadata, duplicated graded cells (the first is kept), stripped
    nbgrader metadata (answer cells matched back to the release by their first line or position).
    """
    import nbformat

    raw = pathlib.Path(path).read_bytes()
    if not raw.strip():
        raise ValueError("empty file")
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"not valid JSON ({err})") from None
    if not isinstance(data, dict) or "cells" not in data:
        raise ValueError("not a Jupyter notebook (no cells)")
    try:
        nb = nbformat.reads(json.dumps(data), as_version=4)
    except Exception as err:
        raise ValueError(f"not a readable notebook ({str(err).splitlines()[0][:120]})") from None
    notes = []
    if nb.nbformat_minor < 5:
        notes.append(f"nbformat 4.{nb.nbformat_minor} upgraded")
    nb.nbformat_minor = 5
    nb.metadata.pop("colab", None)
    for cell in nb.cells:
        cell.metadata.pop("colab", None)
        cell.metadata.pop("id", None)
        cell.metadata.pop("outputId", None)
    import uuid

    seen_ids = set()
    for cell in nb.cells:
        if not cell.get("id") or cell.id in seen_ids:
            cell.id = uuid.uuid4().hex[:8]
        seen_ids.add(cell.id)

    ref = nbformat.read(str(release_nb), as_version=4)
    ref_ids = [i for i in _grade_ids(ref) if i]
    ids = _grade_ids(nb)
    known = [i for i in ids if i in ref_ids]
    foreign = [i for i in ids if i and i not in ref_ids]
    if not known and foreign:
        raise ValueError(f"a notebook of another assignment (cells {', '.join(foreign[:3])} are not in {name})")
    if not known:
        matched = _restore_metadata(nb, ref)
        if matched == 0:
            raise ValueError(f"not the {name} assignment: no nbgrader metadata and no cell of {name} found")
        notes.append(f"nbgrader metadata was missing: restored for {matched} answer cells by matching the release")
    # duplicated graded cells: keep the first, make later copies ordinary cells
    seen = set()
    for cell in nb.cells:
        gid = cell.metadata.get("nbgrader", {}).get("grade_id")
        if gid and gid in seen:
            cell.metadata.pop("nbgrader")
            notes.append(f"duplicated cell {gid} ignored")
        elif gid:
            seen.add(gid)
    nbformat.validate(nb)
    return nb, notes


def _restore_metadata(nb, ref):
    """Give the answer cells of a notebook whose nbgrader metadata was stripped their metadata back."""
    answers = [c for c in ref.cells if c.metadata.get("nbgrader", {}).get("solution")]
    matched = 0
    used = set()
    for ans in answers:
        first = _first_line(ans)
        candidates = [i for i, c in enumerate(nb.cells) if i not in used and c.cell_type == ans.cell_type
                      and first and _first_line(c) == first]
        if candidates:
            i = candidates[0]
            nb.cells[i].metadata["nbgrader"] = dict(ans.metadata["nbgrader"])
            used.add(i)
            matched += 1
    return matched


def audit(nb, name):
    """Static audit of the answer cells, outside any kernel.

    Returns a list of (cell_index, grade_id, kind, message) for answer cells that tamper with shared
    state ("tamper") or call what they must re-implement ("forbidden").
    """
    findings = []
    for i, cell in enumerate(nb.cells):
        meta = cell.metadata.get("nbgrader", {})
        if cell.cell_type != "code" or not meta.get("solution"):
            continue
        code = _code_only(cell.source)
        for pattern, message in TAMPERING:
            m = re.search(pattern, code, flags=re.M)
            if m:
                findings.append((i, meta.get("grade_id"), "tamper", f"{message}: `{m.group(0).strip()[:60]}`"))
        for pattern in FORBIDDEN.get(name, []):
            m = re.search(pattern, code)
            if m:
                findings.append((i, meta.get("grade_id"), "forbidden", f"calls `{m.group(0).strip()}`"))
    return findings


def _affected_tests(nb, findings):
    """Test cells each finding could have fooled: after a tampering cell, every later test; after a
    forbidden call, the tests up to the next answer cell."""
    tests = [(i, c.metadata["nbgrader"]["grade_id"]) for i, c in enumerate(nb.cells)
             if c.metadata.get("nbgrader", {}).get("grade") and not c.metadata["nbgrader"].get("solution")]
    answers = [i for i, c in enumerate(nb.cells) if c.metadata.get("nbgrader", {}).get("solution")]
    out = {}
    for idx, _gid, kind, message in findings:
        stop = len(nb.cells)
        if kind == "forbidden":
            later = [a for a in answers if a > idx]
            stop = later[0] if later else stop
        for t, tid in tests:
            if idx < t < stop:
                out.setdefault(tid, message)
    return out


# -------------------------------------------------------------------------------------- grading


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


def write_csv(results, path):
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["student", "file", "score", "max_score", "auto_score", "auto_max", "status", "reason", "feedback"])
        for r in results:
            w.writerow([r.student, r.file, f"{r.score:g}", f"{r.max_score:g}", f"{r.auto_score:g}", f"{r.auto_max:g}",
                        r.status, r.reason, r.feedback])


def summary_table(results):
    rows = [("student", "score", "max", "status", "reason")]
    for r in results:
        rows.append((r.student, f"{r.score:g}", f"{r.max_score:g}", r.status, r.reason or ""))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = []
    for k, row in enumerate(rows):
        lines.append("  ".join(row[i].ljust(widths[i]) for i in range(4)) + "  " + row[4])
        if k == 0:
            lines.append("  ".join("-" * w for w in widths) + "  " + "-" * 6)
    return "\n".join(lines)


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


# ------------------------------------------------------------------------------------------ CLI


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m utils.grading", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("release", help="regenerate assignments/ from solutions/ (or --check)")
    p.add_argument("names", nargs="*")
    p.add_argument("--check", action="store_true")
    p = sub.add_parser("grade", help="grade a folder of submissions")
    p.add_argument("name")
    p.add_argument("folder")
    p.add_argument("--out")
    p.add_argument("--work")
    p.add_argument("--timeout", type=int, help="seconds per cell (default: nbgrader_config.py)")
    args = parser.parse_args(argv)
    if args.cmd == "release":
        differing = release(args.names, check=args.check)
        if args.check:
            for name in differing:
                print(f"assignments/{name} differs from what solutions/{name} generates: "
                      f"run python -m utils.grading release {name}")
            print(f"{len(args.names or assignment_names())} assignments checked, {len(differing)} differ")
            return 1 if differing else 0
        print(f"released: {', '.join(differing) if differing else 'nothing changed'}")
        return 0
    results = grade_folder(args.name, args.folder, out=args.out, work=args.work, timeout=args.timeout)
    print(summary_table(results))
    graded = sum(r.status == "graded" for r in results)
    out = pathlib.Path(args.out) if args.out else ROOT / "grading-work" / args.name / "results"
    print(f"\n{graded} of {len(results)} graded; grades: {out / 'grades.csv'}; feedback: {out / 'feedback'}")
    return 0 if graded else 1


if __name__ == "__main__":
    sys.exit(main())
