"""Execute one submission: a fresh workspace, nbgrader's autograde in it, the student's kernel sandboxed.

The workspace (``WORK/runs/<student>/``; what every run shares is in ``WORK/runs/_shared/``) holds only
what executing the notebook needs: nbgrader's
configuration, a gradebook made for this run (the course's assignment, no students) and the prepared
notebook in ``submitted/``. No solution notebook, no course gradebook, no other student's file. nbgrader
runs there as the grading process; the kernel it starts is the sandbox's (see ``sandbox.py``), which
sees a copy of the notebook's folder only. After nbgrader exits (and every process of the sandbox with
it), the grading process reads the automatic scores (``auto_score``, never ``manual_score``) from the
run's gradebook.
"""

import dataclasses
import json
import os
import pathlib
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time

from . import sandbox as sb
from .course import ROOT, _env, _last_error
from .sanitize import sanitize_notebook

KERNEL = "grading-kernel"
# The entry of WORK/runs/ shared by every run (the utils copy, the template gradebook): its name starts
# with "_", which no student id does (collect.student_id), so no workspace WORK/runs/ID can be it.
SHARED = sb.SHARED


@dataclasses.dataclass
class Run:
    """What executing one submission gave (read by the grading process only).

    - grades: grade_id -> {"auto_score": float or None, "max_score", "code": bool, "needs_manual": bool}
    - autograded: the executed notebook (as nbgrader wrote it, outside the sandbox's reach)
    - timed_out: grade_ids (or "cell N") of the cells stopped for running past the per-cell timeout
    - error: why it failed ("" when it ran); adjustments: report.Adjustment list from the checks
    """

    student: str
    grades: dict = dataclasses.field(default_factory=dict)
    autograded: pathlib.Path = None
    timed_out: list = dataclasses.field(default_factory=list)
    error: str = ""
    adjustments: list = dataclasses.field(default_factory=list)
    seconds: float = 0.0
    notes: list = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class Context:
    """What a check of one submission gets (the hook for further checks, e.g. ``instructor.independent``).

    - name, student, notebook (the prepared submission, nbformat node), release (the student version)
    - workspace: a folder holding the submitted notebook (``submission.ipynb``), bound read-write at
      ``/submission`` when ``run`` runs a command; grades: the run's automatic grades (see Run)
    - run(argv, timeout=None, input=None) -> CompletedProcess: ``argv`` in the same kind of sandbox
      (limits included) over a copy of that workspace (``sandbox.run_sandboxed``); without a sandbox
      (--no-sandbox) it runs unsandboxed in the workspace
    A check returns a list of report.Adjustment (grade_id, new score, reason).
    """

    name: str
    student: str
    notebook: object
    release: object
    workspace: pathlib.Path
    grades: dict
    limits: sb.Limits
    kind: str

    def run(self, argv, timeout=None, input=None):
        return sb.run_sandboxed(argv, self.workspace, self.limits, timeout=timeout, input=input, kind=self.kind)


def make_template(course, name):
    """A gradebook with the course's assignment and no students: each run starts from a copy."""
    from nbgrader.api import Gradebook

    course = pathlib.Path(course)
    template = course / "runs" / SHARED / "template-gradebook.db"
    template.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(course / "gradebook.db", template)
    with Gradebook(f"sqlite:///{template}") as gb:
        for student in list(gb.students):
            gb.remove_student(student.id)
        for assignment in list(gb.assignments):
            if assignment.name != name:
                gb.remove_assignment(assignment.name)
    return template


def copy_utils(course, root):
    """The student edition's ``utils`` package (the helpers students import; no answer, no reference, no
    grading code), read-only in the sandbox at /course/utils."""
    src = pathlib.Path(root) / "utils"
    src = src if src.is_dir() else ROOT / "utils"
    dest = pathlib.Path(course) / "runs" / SHARED / "utils"
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(src, dest, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for dirpath, _dirs, files in os.walk(dest):
        os.chmod(dirpath, 0o755)
        for f in files:
            os.chmod(os.path.join(dirpath, f), 0o644)
    return dest


def _write_kernelspec(folder, kind, config, root):
    spec = folder / "jupyter" / "kernels" / KERNEL
    spec.mkdir(parents=True)
    if kind == "none":
        argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
        env = {}
    else:
        argv = [sys.executable, "-m", "instructor.grading.sandbox", "kernel", str(config), "-f", "{connection_file}"]
        env = {"PYTHONPATH": str(ROOT)}  # the wrapper (outside the sandbox) is the instructor's code
    (spec / "kernel.json").write_text(json.dumps({
        "argv": argv, "env": env, "display_name": "Python 3 (grading)", "language": "python",
        # a busy kernel is interrupted by a message it turns into SIGINT inside its own sandbox
        "interrupt_mode": "message" if kind != "none" else "signal"}))


def execute(name, student, nb, nb_name, *, course, template, kind, limits, timeout=None, root=ROOT, keep=False):
    """Autograde one prepared notebook in a fresh workspace; return a Run."""
    import nbformat

    start = time.perf_counter()
    run = Run(student=student)
    ws = pathlib.Path(course) / "runs" / student
    if ws.exists():
        shutil.rmtree(ws)
    ws.mkdir(parents=True)
    nbg = ws / "course"
    (nbg / "submitted" / student / name).mkdir(parents=True)
    nbformat.write(nb, str(nbg / "submitted" / student / name / nb_name))
    shutil.copy(ROOT / "nbgrader_config.py", nbg / "nbgrader_config.py")
    shutil.copy(template, nbg / "gradebook.db")
    runtime = pathlib.Path(tempfile.mkdtemp(prefix="grade-ipc-"))  # short: unix socket paths are limited
    config = ws / "sandbox.json"
    config.write_text(json.dumps({"limits": dataclasses.asdict(limits),
                                  "submission": str(ws / "sandbox" / "submission"), "runtime": str(runtime),
                                  "utils": str(pathlib.Path(course) / "runs" / SHARED / "utils")}))
    _write_kernelspec(ws, kind, config, root)
    # the connection file (and, with ipc, its sockets) in the run's own folder, never in /tmp itself
    extra = [f"\nc.Execute.kernel_name = {KERNEL!r}\n",
             f"c.KernelManager.connection_file = {str(runtime / 'kernel.json')!r}\n"]
    if kind != "none":
        extra.append('c.KernelManager.transport = "ipc"  # no network in the sandbox: unix sockets\n')
    # outputs capped as they arrive (outputs.CappedExecute, in place of nbgrader's Execute)
    extra.append("from instructor.grading.outputs import autograde_preprocessors as _capped\n"
                 "c.Autograde.autograde_preprocessors = _capped()\n"
                 f"c.CappedExecute.cell_bytes = {int(limits.output_cell_kb) * 1024}\n"
                 f"c.CappedExecute.notebook_bytes = {int(limits.output_notebook_kb) * 1024}\n")
    if timeout:
        extra.append(f"c.Execute.timeout = {int(timeout)}\nc.ExecutePreprocessor.timeout = {int(timeout)}\n")
    with open(nbg / "nbgrader_config.py", "a") as f:
        f.write("".join(extra))
    env = _env(root)
    env.update({"JUPYTER_PATH": str(ws / "jupyter"), "JUPYTER_RUNTIME_DIR": str(runtime),
                "JUPYTER_CONFIG_DIR": str(ws / "jupyter-config"), "JUPYTER_DATA_DIR": str(ws / "jupyter-data"),
                "JUPYTER_PLATFORM_DIRS": "1" if os.environ.get("JUPYTER_PLATFORM_DIRS") else "0"})
    cmd = [sys.executable, "-m", "nbgrader", "autograde", name, "--student", student, "--force", "--create"]
    argv, group = _confined(cmd, student, runtime, kind, limits)
    # nbgrader's output goes to files, not pipes: the kernel inherits them, and an unsandboxed process
    # that outlives it (--no-sandbox) would hold a pipe open and make the grading wait for it
    with open(ws / "nbgrader.out", "w+") as fout, open(ws / "nbgrader.err", "w+") as ferr:
        proc = subprocess.Popen(argv, cwd=nbg, env=env, stdin=subprocess.DEVNULL, stdout=fout, stderr=ferr,
                                start_new_session=True)
        note = ""
        try:
            proc.wait(timeout=limits.wall_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # nbgrader, and with it (--die-with-parent) the sandbox
            proc.wait()
            note = f"\n[ERROR] the submission ran past the wall-time cap ({limits.wall_s} s)"
        finally:
            if group is not None:
                oom = group.oom_killed()
                group.remove()  # whatever is left of it, setsid() or not
                if oom:
                    note += f"\n[ERROR] the submission went over its memory cap ({_group_memory(limits)} MB)"
        out, err = (_tail(f) for f in (fout, ferr))
        err += note
    shutil.rmtree(runtime, ignore_errors=True)
    completed = subprocess.CompletedProcess(cmd, proc.returncode, out, err)
    autograded = nbg / "autograded" / student / name / nb_name
    run.grades = _read_grades(nbg / "gradebook.db", name, student, nb_name)
    if proc.returncode != 0 or not run.grades or not autograded.exists():
        reason = _last_error(completed)
        if "Kernel died" in (err or "") or "DeadKernel" in (err or ""):
            reason = ("the notebook's kernel died while it ran: a cell ended or crashed the Python process; "
                      "grade it by hand or ask for a resubmission")
        elif "over its memory cap" in (err or ""):
            reason = (f"nbgrader and the notebook's kernel together went over the memory cap of "
                      f"{_group_memory(limits)} MB")
        elif "wall-time cap" in (err or ""):
            reason = f"the whole notebook ran past the wall-time cap of {limits.wall_s} s"
        run.error = reason
        run.grades = {}
    else:
        # what formgrader renders holds no HTML or JavaScript (sanitize.sanitize_notebook)
        executed = nbformat.read(str(autograded), as_version=4)
        nbformat.write(sanitize_notebook(executed), str(autograded))
        run.timed_out = _timed_out(autograded)
        # keep nbgrader's layout in the course folder (formgrader reads it)
        for sub in ("submitted", "autograded"):
            dest = pathlib.Path(course) / sub / student / name
            if dest.exists():
                shutil.rmtree(dest)
            shutil.copytree(nbg / sub / student / name, dest)
        run.autograded = pathlib.Path(course) / "autograded" / student / name / nb_name
    run.workspace = ws
    run.seconds = time.perf_counter() - start
    return run


def _group_memory(limits):
    return int(limits.memory_mb) + 1024  # the kernel's address space, and nbgrader's own


def _confined(cmd, student, runtime, kind, limits):
    """nbgrader's command line, confined: (argv, cgroup.Group or None).

    - it dies with the grading process, SIGKILL included (``setpriv --pdeathsig KILL``; the sandbox
      dies with nbgrader: ``--die-with-parent``);
    - sandboxed: in a cgroup of its own (``cgroup.Group``: CPU quota, memory, tasks) where the machine
      allows one, and, as root, in a mount namespace of its own where the folder of the kernel's
      connection file and sockets (``runtime``) is a tmpfs of 1 MB and 64 files: what the kernel writes
      there never reaches the disk.
    """
    import shutil as _sh

    from . import cgroup

    argv, group = list(cmd), None
    if kind != "none":
        if os.geteuid() == 0 and _sh.which("unshare"):
            mount = (f"mount -t tmpfs -o size=1m,nr_inodes=64,mode=0700 grade-ipc {shlex.quote(str(runtime))} "
                     '|| exit 125; exec "$@"')
            argv = ["unshare", "--mount", "--propagation", "private", "--", "/bin/sh", "-c", mount, "ipc", *argv]
        if limits.cpus and cgroup.find()[0]:
            # a name of its own per run: two runs of one student (the service) never share or kill a group
            group = cgroup.Group(f"{student}-{os.urandom(4).hex()}", cpus=limits.cpus, memory_mb=_group_memory(limits),
                                 pids=int(limits.processes) + 128)
            argv = group.wrap(argv)
    if _sh.which("setpriv"):
        argv = ["setpriv", "--pdeathsig", "KILL", "--", *argv]
    return argv, group


def check_workspace(run, nb):
    """A folder for further checks of this submission: the prepared notebook as submission.ipynb."""
    import nbformat

    folder = run.workspace / "check"
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    nbformat.write(nb, str(folder / "submission.ipynb"))
    return folder


def cleanup(run, keep=False):
    if not keep and getattr(run, "workspace", None) is not None:
        shutil.rmtree(run.workspace, ignore_errors=True)


def _tail(f, size=200_000):
    """The last ``size`` characters written to the open file ``f``."""
    f.flush()
    end = f.seek(0, os.SEEK_END)
    f.seek(max(0, end - size))
    return f.read()


def _read_grades(db, name, student, nb_name):
    """grade_id -> automatic score etc., from the run's gradebook (written by nbgrader, not the kernel)."""
    from nbgrader.api import Gradebook, MissingEntry

    if not pathlib.Path(db).exists():
        return {}
    try:
        with Gradebook(f"sqlite:///{db}") as gb:
            sub = gb.find_submission_notebook(pathlib.Path(nb_name).stem, name, student)
            return {g.name: {"auto_score": None if g.auto_score is None else float(g.auto_score),
                             "max_score": float(g.max_score or 0.0), "code": g.cell_type == "code",
                             "needs_manual": bool(g.needs_manual_grade)} for g in sub.grades}
    except (MissingEntry, Exception):
        return {}


def _timed_out(autograded):
    """grade_ids (or cell numbers) of the cells that nbgrader stopped for running past the timeout."""
    import nbformat

    out = []
    for i, cell in enumerate(nbformat.read(str(autograded), as_version=4).cells):
        if any(o.get("output_type") == "error" and "Timeout" in o.get("ename", "") for o in cell.get("outputs", [])):
            out.append(cell.metadata.get("nbgrader", {}).get("grade_id") or f"cell {i}")
    return out
