"""The task queue: Huey, built in this one place from a URL (SQLite today; Redis is the next step).

``make_queue(url, handler)`` returns a Huey instance whose task ``grade`` calls ``handler(submission_id)``.
``sqlite:///PATH`` keeps the queue in a SQLite file (it survives a restart). ``start_workers`` runs
Huey's own consumer with N worker threads inside the serving process: grading itself runs in
subprocesses (nbgrader and the sandboxed kernel), so threads share the cores as processes would.
"""

import logging

from huey import SqliteHuey
from huey.consumer import Consumer

log = logging.getLogger("service.queue")


def make_queue(url, handler):
    """A Huey queue for ``url`` with the task ``grade(submission_id)`` that calls ``handler``."""
    if url.startswith("sqlite:///"):
        huey = SqliteHuey("grading", filename=url.removeprefix("sqlite:///"), results=False)
    else:
        raise ValueError(f"queue: {url!r} is not supported yet (sqlite:///PATH)")

    @huey.task(name="grade")
    def grade(submission_id):
        handler(submission_id)

    huey.grade = grade
    return huey


def pending_ids(huey):
    """The submission ids waiting in the queue."""
    return {task.args[0] for task in huey.pending() if task.args}


class _Consumer(Consumer):
    def _set_signal_handlers(self):  # the server (uvicorn) owns the signals; it stops the consumer
        pass


def start_workers(huey, jobs):
    """Start Huey's consumer with ``jobs`` worker threads in this process; return it (``.stop()``)."""
    consumer = _Consumer(huey, workers=jobs, worker_type="thread", periodic=False, initial_delay=0.1, backoff=1.15,
                         max_delay=1.0, check_worker_health=False)
    consumer.start()
    return consumer
