"""The instructors' tools: nothing in here ships to students.

- ``grading``     release (nbgrader) and autograde in a sandbox (``python -m instructor.grading``)
- ``independent`` the grader's independent check of every automatically graded part
- ``edition``     build the student edition (``python -m instructor.edition build``)

The student edition is ``lectures/``, ``assignments/``, ``docs/`` and the ``utils/`` package (the helpers
students import): see ``instructor/edition.py``. The grading sandbox sees the student edition's ``utils/``
only, never this package.
"""
