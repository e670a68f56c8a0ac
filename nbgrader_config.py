"""nbgrader course configuration. The course root is this folder.

- source (``solutions/``): the instructor's notebooks with solutions and hidden tests;
- release (``assignments/``): the student versions, made by ``nbgrader generate_assignment``;
- submitted/, autograded/, feedback/ and gradebook.db are grading work folders, ignored by git.
- GradingSandbox: the defaults of the grading sandbox (instructor/grading/sandbox.py).

``python -m instructor.grading`` (see the README) drives nbgrader with this configuration.
"""

import os

c = get_config()  # noqa: F821  (provided by traitlets when nbgrader loads this file)

c.CourseDirectory.course_id = "sequence-models"
c.CourseDirectory.root = os.path.dirname(os.path.abspath(__file__))
c.CourseDirectory.source_directory = "solutions"
c.CourseDirectory.release_directory = "assignments"
c.CourseDirectory.submitted_directory = "submitted"
c.CourseDirectory.autograded_directory = "autograded"
c.CourseDirectory.feedback_directory = "feedback"
# Only notebooks travel into a release: no side files that could carry solutions or hidden tests.
c.CourseDirectory.ignore = [".ipynb_checkpoints", "*.pyc", "__pycache__", "feedback", "*.py", "*.db"]

# Student versions: a blank is fenced by these lines and replaced by a stub that raises.
c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\nraise NotImplementedError()"}
c.ClearSolutions.text_stub = "YOUR ANSWER HERE"

# Untrusted, messy submissions.
c.Execute.timeout = 60  # seconds per cell; a cell that loops forever scores 0 and grading goes on
c.Execute.interrupt_on_timeout = True
c.Execute.raise_on_iopub_timeout = False
c.IgnorePattern.enabled = True  # warnings on stderr must not zero a passing test cell
c.IgnorePattern.pattern = r"Warning|warnings\.warn"
c.OverwriteCells.add_missing_cells = True  # deleted test cells come back from the source
c.ExecutePreprocessor.timeout = 60
c.ClearMetadataPreprocessor.enabled = False

# Grading (`python -m instructor.grading grade`, see instructor/grading/): every submission is executed in a
# workspace of its own, its kernel in an OS sandbox (bubblewrap) with these caps; `grade` flags override them.
# nbgrader itself does not read this section.
c.GradingSandbox.kind = "auto"  # "auto"/"bwrap": refuse to grade without a sandbox; "none" = --no-sandbox
c.GradingSandbox.memory_mb = 4096  # address space of the student's kernel (RLIMIT_AS)
c.GradingSandbox.processes = 128  # processes and threads of the sandbox's own uid (RLIMIT_NPROC)
c.GradingSandbox.wall_s = 900  # seconds for one whole submission, nbgrader and sandbox included
c.GradingSandbox.disk_mb = 512  # size of the sandbox's /submission and /tmp (tmpfs) and of any file it writes
c.GradingSandbox.jobs = 0  # submissions graded at once; 0 = the number of cores
c.GradingSandbox.max_file_mb = 25  # a submitted file over this size is refused before it is read
c.GradingSandbox.output_cell_kb = 1024  # kernel output nbgrader keeps per cell (the rest is cut, with a line)
c.GradingSandbox.output_notebook_kb = 8192  # ... and per notebook
