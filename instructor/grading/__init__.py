"""Release and autograde the course's assignments with nbgrader, where submitted code can reach nothing.

Instructor commands (run from the course folder)::

    python -m instructor.grading release [NAME ...]          # regenerate assignments/ from solutions/
    python -m instructor.grading release --check [NAME ...]  # exit 1 if assignments/ differs from the source
    python -m instructor.grading grade NAME FOLDER [--out DIR] [--timeout S] [-j N] [--memory MB]
        [--processes N] [--wall S] [--disk MB] [--no-sandbox] [--keep] [--wait S]

``grade`` turns a folder of submitted notebooks into grades and feedback, in steps that are modules:

1. ``collect``: whose file each is (``alice_lstm.ipynb``, ``lstm-bob.ipynb``, ``carol/Copy of
   lstm.ipynb``, ``dave/lstm (1).ipynb``); it works on copies: submitted files are never modified
   (checked by hash);
2. ``prepare``: repairs what can be repaired in the copy (nbformat 4.0, Colab metadata, duplicated
   cells, stripped nbgrader metadata) and gives a clear reason for what cannot;
3. ``execute``: each submission in a workspace of its own (``WORK/runs/STUDENT``: the notebook,
   nbgrader's config and a gradebook made for the run; no solutions, no course gradebook, no other
   student), where nbgrader's ``autograde`` runs as the grading process and starts the notebook's
   kernel in the sandbox (``sandbox``); N submissions at once (``-j``), each in its own nbgrader process;
4. checks (``audit``, and any ``checks=[...]`` given to ``grade_folder``): a check gets the submission
   and may run commands in the same sandbox over it; it returns per-part adjustments with reasons;
5. ``report``: the grading process reads the run's automatic scores (never a manual score), applies
   the adjustments, writes them into the course gradebook (manual grades of written answers are kept),
   writes feedback HTML (no hidden test's source), ``grades.csv`` and the summary.

Threat model and the design it leads to. The student's code runs as whoever grades (root on the
course's machines), can write any file it can see and can start processes that outlive it. So a
value the student's kernel could reach before the grading process reads it is forgeable: the
gradebook, the executed notebook, the results folder. nbgrader itself is trusted and runs outside the
sandbox; only the kernel is sandboxed (bubblewrap: new mount, PID, network, IPC and UTS namespaces, a
uid of its own without capabilities, ``RLIMIT_AS`` and ``RLIMIT_NPROC``, ``--die-with-parent``). It sees
a copy of the notebook's folder, the Python environment and a copy of ``utils/`` read-only, and the
folder of its unix sockets (``KernelManager.transport = "ipc"``: no network, not even loopback). Its
outputs reach nbgrader only as messages; the gradebook nbgrader writes and the executed notebook are
outside its reach, and every process it started is dead (PID namespace) before the grading process
reads them. Sandboxing the whole nbgrader run instead would have left the run's gradebook writable by
the student's processes until the sandbox is gone. Where no sandbox can be made, ``grade`` refuses
unless ``--no-sandbox`` is given, which the summary and ``grades.csv`` then say.

Around the kernel (issue 22): every output of a kernel is hostile (``sanitize``: the feedback shows a test
cell's verdict, error type and the check's message only, escapes everything, checks every image; the
autograded notebook formgrader renders holds no HTML or JavaScript; ``outputs.CappedExecute`` caps what
nbgrader keeps), every name is hostile (``collect``: distinct, stable, safe ids; links, special files and
oversized files refused; any exception while reading one file is its own ``failed`` row), and every
neighbour is hostile (``cgroup``: nbgrader and its sandbox in a cgroup of their own per submission, CPU
quota, memory, tasks; the socket folder on a 1 MB tmpfs; nbgrader dies with the grading process, SIGKILL
included). ``WORK/.grading.lock`` lets one ``grade`` at a time use a work folder.
"""

from .audit import FORBIDDEN, TAMPERING, audit
from .collect import identify
from .course import ROOT, _source_notebooks, assignment_names, make_course, make_submission, release, release_notebook
from .pipeline import autograde_notebook, grade_folder
from .prepare import prepare
from .report import Adjustment, GradeResult, summary_table, write_csv


def main(argv=None):
    from .cli import main as _main

    return _main(argv)


__all__ = ["FORBIDDEN", "ROOT", "TAMPERING", "Adjustment", "GradeResult", "assignment_names", "audit",
           "autograde_notebook", "grade_folder", "identify", "main", "make_course", "make_submission", "prepare",
           "release", "release_notebook", "summary_table", "write_csv", "_source_notebooks"]
