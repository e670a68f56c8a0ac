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

from .audit import FORBIDDEN, TAMPERING, audit
from .collect import identify
from .course import ROOT, _source_notebooks, assignment_names, make_course, make_submission, release, release_notebook
from .pipeline import autograde_notebook, grade_folder
from .prepare import prepare
from .report import GradeResult, summary_table, write_csv


def main(argv=None):
    from .cli import main as _main

    return _main(argv)


__all__ = ["FORBIDDEN", "ROOT", "TAMPERING", "GradeResult", "assignment_names", "audit", "autograde_notebook",
           "grade_folder", "identify", "main", "make_course", "make_submission", "prepare", "release",
           "release_notebook", "summary_table", "write_csv", "_source_notebooks"]
