"""The course's submission service (instructor side; not part of the student edition).

Start it (one command; SQLite database and queue in DATA, grading workers in the same process)::

    python -m service serve --roster roster.csv --port 8000 --data service-data [-j N] [--host H] [--policy FILE]

Students submit from their notebook's last cell (``utils.submit.submit``), from the upload page (``/``)
or with curl (``POST /api/submissions``); each submission is graded by the course's grading pipeline
(sandbox and independent check) through a Huey queue. Modules: ``config`` (settings, per-assignment
policy), ``db`` (SQLAlchemy models), ``queue`` (the Huey queue and its workers), ``grader`` (the one door
to the grading pipeline), ``core`` (store, queue, grade, count), ``app`` (FastAPI: API and pages).
"""
