"""An independent check of every automatically graded part, in processes the student's code never shares.

nbgrader runs a notebook's test cells in the same Python process as the answers, so an answer can
change what a test sees (rebind a comparison, read the expected value from the caller's frame,
recognise the visible shapes, call the PyTorch implementation through a name nobody thought of).
This package checks each graded part a second time:

1. :mod:`.extract` takes the student's answer cells and the given cells they need (never the test
   cells, never cells the student added) by nbgrader ``grade_id``;
2. :mod:`.inputs` draws new inputs from a seed made with :mod:`secrets` at grading time (shapes
   included) and writes them with ``torch.save``;
3. :mod:`.student_run`, in a fresh process (``run``, which the grader can point into the
   submission's sandbox), executes those cells, calls each graded function or module on the inputs
   while :mod:`.ops` records the operators it reaches, and writes plain tensors;
4. :mod:`.reference`, in another fresh process, computes the same with PyTorch's own modules;
5. :mod:`.compare`, in the grading process, reads both with ``torch.load(..., weights_only=True)``
   and decides each part with the visible tests' tolerances.

``check_submission(notebook_path, assignment_name, workdir)`` returns ``{grade_id: PartResult}``.
The training parts evaluate the model the notebook saved to ``trained_model.pt`` next to the
executed notebook (loaded with ``weights_only=True``) on fresh sequences; the metric is computed
here from the predictions and the labels.
"""

import json
import os
import pathlib
import secrets
import shutil
import stat
import subprocess
import sys
import time

from .compare import PartResult, compare_part

__all__ = ["check_submission", "check", "PartResult", "subprocess_runner", "ROOT"]

ROOT = pathlib.Path(__file__).resolve().parents[2]


def _env(root):
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "SYSTEMROOT")}
    env.update(PYTHONPATH=str(root), OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", MPLBACKEND="Agg",
               COURSE_DEVICE="cpu", PYTHONWARNINGS="ignore", PYTHONDONTWRITEBYTECODE="1")
    return env


def copy_runner(dest):
    """Copy the check process's two modules (``student_run.py``, ``ops.py``: no answer, no reference, no
    expected value) into ``dest``, in the folder the sandbox sees; the process runs that copy as a script,
    with the student edition's ``utils`` as its only other course code. Returns ``dest``."""
    dest = pathlib.Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    here = pathlib.Path(__file__).resolve().parent
    for name in ("student_run.py", "ops.py"):
        shutil.copyfile(here / name, dest / name)
    return dest


def subprocess_runner(cmd, *, cwd, env, timeout):
    """Run ``cmd`` (a list) in ``cwd`` with ``env``; return a CompletedProcess (never raises).

    The grader may pass another runner with this signature that runs the command inside the
    submission's sandbox; ``cwd`` (the check's work folder) must be writable there.
    """
    try:
        return subprocess.run(cmd, cwd=cwd, env=env, timeout=timeout, capture_output=True, text=True)
    except subprocess.TimeoutExpired as err:
        return subprocess.CompletedProcess(cmd, 124, err.stdout or "", f"timed out after {timeout} s")


def _load(path):
    import io

    import torch

    try:  # a regular file (not a link) of bounded size, read as plain data only
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_NONBLOCK", 0))
        with os.fdopen(fd, "rb") as f:
            data = f.read(MAX_MODEL_BYTES + 1)
        if len(data) > MAX_MODEL_BYTES:
            return None
        return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception:  # missing, a link, too large, truncated, or not plain data
        return None


MAX_MODEL_BYTES = 64 * 2**20


def copy_plain_file(src, dest, limit=MAX_MODEL_BYTES):
    """Copy ``src`` to ``dest`` if it is a regular file (not a link: the student's code wrote it and could
    point it at a file only the grader may read) of at most ``limit`` bytes; return whether it did."""
    try:
        fd = os.open(src, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_NONBLOCK", 0))
    except OSError:
        return False
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode) or st.st_size > limit:
            return False
        data = f.read(limit + 1)
    if len(data) > limit:
        return False
    pathlib.Path(dest).write_bytes(data)
    return True


def _has_training_save(source):
    return any("trained_model.pt" in c.source for c in source.cells if c.cell_type == "code")


def check_submission(notebook_path, assignment_name, workdir, run=subprocess_runner, *, seed=None,
                     trained_model=None, source=None, timeout=300, root=ROOT, private=None):
    """Check every automatically graded part of a submission; return {grade_id: PartResult}.

    Inputs:
    - notebook_path: the submitted notebook (its folder is where ``trained_model.pt`` is looked for,
      unless ``trained_model`` gives the path);
    - assignment_name: "lstm" or "multi_head_attention";
    - workdir: a folder for the student's process (its files go to ``workdir/student``; with a
      sandbox, the folder the sandbox sees);
    - run: how to run the student's process (see :func:`subprocess_runner`);
    - seed: the inputs' seed (default: a new one from ``secrets``); source: the course's source
      notebook (default: read from solutions/);
    - private: a folder for the reference process that the student's process cannot reach (default:
      ``workdir/reference`` without a sandbox; pass one outside the sandbox's folder otherwise).
    """
    import nbformat
    import torch

    from . import extract, inputs

    t0 = time.perf_counter()
    notebook_path, workdir = pathlib.Path(notebook_path), pathlib.Path(workdir)
    seed = secrets.randbits(62) if seed is None else int(seed)
    source = source if source is not None else extract.source_notebook(assignment_name, root)
    student_dir = workdir / "student"
    ref_dir = pathlib.Path(private) if private else workdir / "reference"
    for d in (student_dir, ref_dir):
        d.mkdir(parents=True, exist_ok=True)
    constants = extract.given_constants(assignment_name, source)
    cases = inputs.draw(assignment_name, seed, constants)
    for case in cases:  # the training parts' bar: the one the notebook's test applies under grading
        if case["kind"] in ("adding", "reverser") and "bar" in constants:
            case["bar"] = constants["bar"]
    torch.save(cases, student_dir / "inputs.pt")
    torch.save(cases, ref_dir / "inputs.pt")
    submission = nbformat.read(str(notebook_path), as_version=4)
    cells = extract.extract(submission, assignment_name, source)
    (student_dir / "cells.json").write_text(json.dumps(cells))
    job = {"assignment": assignment_name, "constants": constants}
    (student_dir / "job.json").write_text(json.dumps(job))
    trained = pathlib.Path(trained_model) if trained_model else notebook_path.parent / "trained_model.pt"
    copy_plain_file(trained, student_dir / "trained_model.pt")

    env = _env(root)
    reference = subprocess.Popen([sys.executable, "-m", "instructor.independent.reference", str(ref_dir)], cwd=ref_dir,
                                 env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    runner = copy_runner(workdir / "runner")
    proc = run([sys.executable, str(runner / "student_run.py"), str(student_dir)], cwd=str(student_dir),
               env=env, timeout=timeout)
    try:
        _, ref_err = reference.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        reference.kill()
        ref_err = b"timed out"
    ref_out = _load(ref_dir / "reference_out.pt")
    if not isinstance(ref_out, list) or len(ref_out) != len(cases):
        raise RuntimeError("the reference process failed (this is a bug in the check, not the student's): "
                           + (ref_err or b"").decode(errors="replace")[-500:])
    student = _load(student_dir / "student_out.pt")
    results = student.get("results") if isinstance(student, dict) else None
    if not isinstance(results, list):
        results = []
    results = (results + [None] * len(cases))[:len(cases)]
    results = [r if isinstance(r, dict) else None for r in results]

    out = {}
    for part in inputs.PARTS[assignment_name]:
        idx = [i for i, c in enumerate(cases) if c["part"] == part]
        if part == "test_training" and not (student_dir / "trained_model.pt").is_file() \
                and not _has_training_save(source):
            out[part] = PartResult(passed=None, points_ok=True, seed=seed,
                                   reason="not checked: this release does not save the trained model")
            continue
        out[part] = compare_part(assignment_name, part, [cases[i] for i in idx], [results[i] for i in idx],
                                 [ref_out[i] for i in idx], seed=seed)
        if all(results[i] is None for i in idx) and proc.returncode != 0:
            tail = [line for line in (proc.stderr or "").strip().splitlines()  # not the profiler's own log
                    if line.strip() and not line.startswith(("USDT:", "INFO:", "WARNING:"))][-1:] or [""]
            out[part].reason += f" ({tail[0][:200]})" if tail[0] else ""
    check_submission.last_seconds = time.perf_counter() - t0
    return out


check_submission.last_seconds = 0.0


def check(ctx):
    """The grading pipeline's hook (``instructor.grading.pipeline.PLUGINS``): the independent check of one
    submission, as a list of Adjustments (see :func:`.grading_check.pipeline_check`)."""
    from .grading_check import pipeline_check

    return pipeline_check(ctx)
