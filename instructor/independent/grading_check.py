"""The independent check as a step of grading: per-part scores, reasons, and the audit as a second opinion.

A part keeps its points only when its test cell passed in the notebook **and** its independent check
passed (values agree with PyTorch on new inputs, nothing forbidden reached). What this module decides,
for each automatically graded part, from the notebook's score and the check's :class:`PartResult`:

- both pass: the part keeps its points; a finding of the static audit on it is reported, not applied;
- the notebook's test passed but the check did not (a *disagreement*): the part scores 0, with the
  reason in words a student understands ("the test in your notebook passed, but ...");
- the notebook's test failed: the part keeps 0, whatever the check says (its message is added);
- the check could not judge (``passed`` None): the notebook's score stands.

``decide(grades, results, audit_flags)`` returns a list of :class:`Decision`; the grading pipeline turns
them into score adjustments and notes. It never reads a value the student's code could have written.
"""

import dataclasses

__all__ = ["Decision", "decide", "disagreement_count", "summary_line"]


@dataclasses.dataclass
class Decision:
    """What happens to one part: ``score`` (None: unchanged), ``reason`` for the student and the
    instructor, ``disagreement`` (the notebook's test passed, the independent check did not),
    ``audit_reported`` (an audit finding on this part is reported only, not applied)."""

    grade_id: str
    score: object
    reason: str
    disagreement: bool = False
    audit_reported: bool = False


def decide(grades, results, audit_flags=None):
    """Decisions for every automatically graded part.

    Inputs:
    - grades: grade_id -> (score, max_score) of the notebook's own test cells (as nbgrader scored them);
    - results: grade_id -> PartResult of the independent check;
    - audit_flags: grade_id -> the static audit's message, for the parts it would zero.
    """
    audit_flags = audit_flags or {}
    out = []
    for gid, (score, max_score) in grades.items():
        r = results.get(gid)
        flagged = audit_flags.get(gid)
        notebook_passed = max_score > 0 and score >= max_score
        if r is None or r.passed is None:
            if flagged:
                out.append(Decision(gid, 0.0, f"an answer cell {flagged}"))
            continue
        if r.points_ok:
            if flagged and notebook_passed:
                out.append(Decision(gid, None, f"reported, not applied: the static audit noted that an answer cell "
                                               f"{flagged}, but the independent check passed", audit_reported=True))
            elif r.reason:
                out.append(Decision(gid, None, r.reason))
            continue
        if notebook_passed:
            out.append(Decision(gid, 0.0, f"the test in your notebook passed, but {r.reason}", disagreement=True))
        else:
            out.append(Decision(gid, None, f"the independent check also failed: {r.reason}"))
    return out


def disagreement_count(decisions):
    return sum(d.disagreement for d in decisions)


SUPPORTED = ("lstm", "multi_head_attention")
DISAGREES = "the test in your notebook passed, but"  # how a disagreement's reason starts (counted in summaries)


def sandbox_runner(ctx):
    """A runner for :func:`instructor.independent.check_submission` that runs the student's process through
    ``ctx.run``: the grading pipeline's sandbox over a copy of ``ctx.workspace`` (seen inside as
    /submission), with its limits. What the sandbox writes is lost with it, so the process streams its
    results on stdout (``student_run --stream``); they are decoded here as plain data and written to
    ``student_out.pt`` on the host. Without a sandbox (``--no-sandbox``) a plain subprocess."""
    import pathlib
    import sys

    import torch

    from . import subprocess_runner
    from .student_run import read_stream

    if getattr(ctx, "kind", "none") == "none":
        return subprocess_runner
    workspace = pathlib.Path(ctx.workspace).resolve()

    def inside(arg):
        if not str(arg).startswith("/"):
            return arg
        try:
            rel = pathlib.Path(arg).resolve().relative_to(workspace)
        except (ValueError, OSError):
            return arg
        return str(pathlib.PurePosixPath("/submission") / rel.as_posix())

    def run(cmd, *, cwd, env, timeout):
        proc = ctx.run([sys.executable, *(inside(a) for a in cmd[1:]), "--stream"], timeout=timeout)
        out = pathlib.Path(cmd[-1]) / "student_out.pt"  # cmd[-1]: the student's folder, on the host
        out.unlink(missing_ok=True)  # only what came back from this run counts
        results = read_stream(proc.stdout)
        if results is not None:
            torch.save(results, out)
        proc.stdout = ""
        return proc

    return run


def trained_model_of(ctx):
    """The ``trained_model.pt`` the notebook saved in its working folder during the graded run, if any:
    the host file bound at /submission/trained_model.pt in the kernel's sandbox
    (``instructor.grading.sandbox.KEPT``), or (without a sandbox) the file next to the autograded notebook."""
    import pathlib

    given = getattr(ctx, "trained_model", None)
    if given:
        return pathlib.Path(given)
    run_folder = pathlib.Path(ctx.workspace).parent  # runs/<student>: the check folder's parent
    candidates = [run_folder / "sandbox" / "trained_model.pt",  # the file bound into the kernel's sandbox
                  *sorted(run_folder.glob("course/autograded/*/*/trained_model.pt"))]  # --no-sandbox
    return next((c for c in candidates if c.is_file() and not c.is_symlink() and c.stat().st_size), None)


def pipeline_check(ctx):
    """The independent check as a check of the grading pipeline (``grade_folder(checks=[...])``).

    Returns ``instructor.grading`` Adjustments: a part whose test passed in the notebook but not the
    independent check scores 0 (the reason says why); a part the static audit zeroed is given back
    its notebook score when the independent check passed (the finding is reported, not applied).
    """
    import importlib
    import pathlib
    import shutil
    import tempfile

    from . import check_submission

    if ctx.name not in SUPPORTED:
        return []
    audit = importlib.import_module("instructor.grading.audit")
    Adjustment = importlib.import_module("instructor.grading.report").Adjustment
    grades = {gid: (g.get("auto_score") or 0.0, g.get("max_score") or 0.0) for gid, g in ctx.grades.items()
              if g.get("code") and (g.get("max_score") or 0.0) > 0}
    private = tempfile.mkdtemp(prefix="independent-ref-")  # the reference's folder: outside the sandbox's
    try:
        results = check_submission(pathlib.Path(ctx.workspace) / "submission.ipynb", ctx.name, ctx.workspace,
                                   run=sandbox_runner(ctx), trained_model=trained_model_of(ctx), private=private)
    finally:
        shutil.rmtree(private, ignore_errors=True)
    flags = audit._affected_tests(ctx.notebook, audit.audit(ctx.notebook, ctx.name))
    out = []
    for d in decide(grades, results, flags):
        if d.disagreement:
            out.append(Adjustment(d.grade_id, 0.0, d.reason))
        elif d.audit_reported:
            out.append(Adjustment(d.grade_id, grades[d.grade_id][0], d.reason))
    return out


def disagreements(reasons):
    """How many of ``reasons`` (the adjustments' reasons of one submission) are disagreements."""
    return sum(DISAGREES in (r or "") for r in reasons)


def summary_line(counts):
    """The instructor's summary line: counts is a list of (student, disagreements)."""
    parts = sum(n for _, n in counts)
    students = sum(1 for _, n in counts if n)
    return (f"independent check: {parts} part(s) of {students} submission(s) passed their test in the notebook "
            "but not the independent check (scored 0)")
