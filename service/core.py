"""The service's work, without the web: store a submission, queue it, grade it, count the grades.

A submission is stored (its file, read-only, in DATA/submissions/ID.ipynb, and its database row,
committed) before it is queued and acknowledged. A worker claims a row by moving it from "queued" to
"grading" in one UPDATE, so a submission queued twice is graded once. At start, rows left "grading" (the
server stopped mid-grade) go back to "queued", and every "queued" row that the queue does not hold is
queued again.
"""

import csv
import datetime
import hashlib
import logging
import os
import threading
from collections import Counter

from sqlalchemy import func, select, update

from . import db, grader
from .config import load_policies
from .queue import make_queue, pending_ids, start_workers

log = logging.getLogger("service")


class Refused(Exception):
    """A submission or request the service turns down: HTTP ``status`` with ``reason`` for the student."""

    def __init__(self, status, reason, headers=None):
        super().__init__(reason)
        self.status, self.reason, self.headers = status, reason, headers


class Service:
    """One course's service over ``settings.data``; ``grade`` is ``grader.grade`` unless a test gives another."""

    def __init__(self, settings, grade=None):
        self.settings = settings
        self.grade = grade or grader.grade
        self.data = settings.data
        self.files = self.data / "submissions"
        self.results = self.data / "results"
        for folder in (self.data, self.files, self.results):
            folder.mkdir(parents=True, exist_ok=True)
        self.assignments = grader.assignments()
        self.policies = load_policies(self.assignments, settings.policy)
        self.engine, self.Session = db.connect(settings.database)
        self.queue = make_queue(settings.queue, self.run)
        self.consumer = None
        self._submit_lock = threading.Lock()
        self.new_tokens = self._tokens()

    # ----------------------------------------------------------------------------------- start and stop

    def _tokens(self):
        """Read the roster; write the new students' tokens to DATA/tokens.csv and a first instructor token."""
        issued = {}
        if self.settings.roster:
            with open(self.settings.roster, newline="", encoding="utf-8-sig") as f:
                rows = [{(k or "").strip().lower(): (v or "") for k, v in row.items()} for row in csv.DictReader(f)]
            if rows and "id" not in rows[0]:
                raise ValueError(f"roster {self.settings.roster}: the first line must name the columns id,name,email")
            issued = db.load_roster(self.Session, rows)
        path = self.data / "tokens.csv"
        if issued:
            new = not path.exists()
            with open(path, "a", newline="") as f:
                os.chmod(path, 0o600)
                w = csv.writer(f, lineterminator="\n")
                if new:
                    w.writerow(["id", "token"])
                w.writerows(issued.items())
        token = db.instructor_token(self.Session)
        if token:
            path = self.data / "instructor_token.txt"
            path.write_text(token + "\n")
            os.chmod(path, 0o600)
        return issued

    def start(self):
        """Queue again what a stop left behind, then start the workers (none if jobs is 0)."""
        self.recover()
        if self.settings.jobs and self.consumer is None:
            self.consumer = start_workers(self.queue, self.settings.jobs)

    def stop(self):
        if self.consumer is not None:
            self.consumer.stop()
            self.consumer = None

    def recover(self):
        """Rows left "grading" go back to "queued"; each "queued" row the queue lacks is queued again."""
        with self.Session.begin() as s:
            s.execute(update(db.Submission).where(db.Submission.status == "grading")
                      .values(status="queued", started=None))
            queued = s.scalars(select(db.Submission.id).where(db.Submission.status == "queued")
                               .order_by(db.Submission.id)).all()
        waiting = pending_ids(self.queue)
        missing = [i for i in queued if i not in waiting]
        for sid in missing:
            self.queue.grade(sid)
        if missing:
            log.info("queued again after a restart: %d submissions", len(missing))
        return missing

    # ------------------------------------------------------------------------------------------ submit

    def submit(self, student, assignment, filename, raw):
        """Check, store and queue one upload; return its Submission row. Raises Refused."""
        if assignment not in self.assignments:
            raise Refused(400, f"unknown assignment {assignment!r} (known: {', '.join(self.assignments)})")
        if len(raw) > self.settings.max_bytes:
            raise Refused(413, f"the file is larger than {self.settings.max_bytes / 2**20:.3g} MB: clear the "
                          "notebook's large outputs (Edit > Clear all outputs) and submit again")
        if not raw.strip():
            raise Refused(400, "the file is empty")
        why = grader.check_upload(assignment, raw)
        if why:
            raise Refused(400, why)
        policy = self.policies[assignment]
        when = db.now()
        late = policy.deadline is not None and when > policy.deadline
        if late and policy.late == "refuse":
            raise Refused(403, f"the deadline of {assignment} was {policy.deadline.isoformat(timespec='minutes')}: "
                          "late submissions are not accepted")
        with self._submit_lock, self.Session.begin() as s:  # the checks and the insert, one at a time
            mine = select(db.Submission).where(db.Submission.student_id == student,
                                               db.Submission.assignment == assignment)
            count = s.scalar(select(func.count()).select_from(mine.subquery()))
            if policy.max_submissions and count >= policy.max_submissions:
                raise Refused(403, f"you have used all {policy.max_submissions} submissions of {assignment}")
            last = s.scalars(mine.order_by(db.Submission.id.desc())).first()
            if last is not None and policy.min_interval_s:
                since = (when - aware(last.created)).total_seconds()
                if since < policy.min_interval_s:
                    wait = int(policy.min_interval_s - since) + 1
                    raise Refused(429, f"one submission of {assignment} every {policy.min_interval_s:g} s: "
                                  f"submit again in {wait} s", {"Retry-After": str(wait)})
            row = db.Submission(student_id=student, assignment=assignment, filename=filename[:300],
                                sha256=hashlib.sha256(raw).hexdigest(), size=len(raw), late=late, created=when)
            s.add(row)
            s.flush()  # the id names the file
            path = self.path(row.id)
            tmp = path.with_suffix(".part")
            with open(tmp, "wb") as f:
                f.write(raw)
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, 0o444)
            os.replace(tmp, path)
        try:
            self.queue.grade(row.id)
        except Exception:  # stored and committed: the next start queues it again
            log.exception("could not queue submission %s", row.id)
        return row

    def path(self, sub_id):
        return self.files / f"{int(sub_id)}.ipynb"

    # ------------------------------------------------------------------------------------------- grade

    def run(self, sub_id):
        """Grade submission ``sub_id`` (a worker's task): claim it, grade a copy, store the result."""
        with self.Session.begin() as s:
            claimed = s.execute(update(db.Submission).where(db.Submission.id == sub_id,
                                                            db.Submission.status == "queued")
                                .values(status="grading", started=db.now())).rowcount
            row = s.get(db.Submission, sub_id)
        if not claimed:
            return  # graded already, or being graded: never twice
        values = {"status": "failed", "finished": None}
        try:
            result = self.grade(row.assignment, self.path(sub_id), self.results / str(sub_id), student=row.student_id)
            values.update(status=result["status"], score=result["score"], max_score=result["max_score"],
                          parts=result["parts"], manual_parts=result.get("manual_parts", []),
                          reason=result.get("reason", ""), feedback=result.get("feedback"),
                          sandbox=result.get("sandbox", ""))
        except Exception as err:  # one submission's failure never stops the others
            log.exception("grading submission %s failed", sub_id)
            values["reason"] = f"grading failed: {type(err).__name__}: {err}"
        values["finished"] = db.now()
        with self.Session.begin() as s:
            s.execute(update(db.Submission).where(db.Submission.id == sub_id).values(**values))

    def regrade(self, assignment, student=None):
        """Queue again the submissions of ``assignment`` (of one student, or everyone's); return how many."""
        with self.Session.begin() as s:
            query = select(db.Submission.id).where(db.Submission.assignment == assignment,
                                                   db.Submission.status.in_(("graded", "failed")))
            if student:
                query = query.where(db.Submission.student_id == student)
            ids = s.scalars(query).all()
            if ids:
                s.execute(update(db.Submission).where(db.Submission.id.in_(ids)).values(status="queued"))
        for sid in ids:
            self.queue.grade(sid)
        return len(ids)

    # ------------------------------------------------------------------------------------------- read

    def get(self, sub_id, student=None):
        """The submission ``sub_id`` (only if it is ``student``'s, when given), or None."""
        with self.Session() as s:
            row = s.get(db.Submission, sub_id)
        if row is None or (student is not None and row.student_id != student):
            return None
        return row

    def position(self, row):
        """1 for the next submission to be graded; None unless ``row`` is queued."""
        if row.status != "queued":
            return None
        with self.Session() as s:
            return 1 + s.scalar(select(func.count()).where(db.Submission.status == "queued",
                                                           db.Submission.id < row.id))

    def mine(self, student):
        with self.Session() as s:
            return s.scalars(select(db.Submission).where(db.Submission.student_id == student)
                             .order_by(db.Submission.id.desc())).all()

    def gradebook(self, assignment):
        """Per student: the counted submission and score (policy best or last), and per-part fail counts."""
        counts = self.policies[assignment].counts
        with self.Session() as s:
            students = s.scalars(select(db.Student).order_by(db.Student.id)).all()
            rows = s.scalars(select(db.Submission).where(db.Submission.assignment == assignment)
                             .order_by(db.Submission.id)).all()
        by_student = {}
        for row in rows:
            by_student.setdefault(row.student_id, []).append(row)
        table, fails, reasons = [], Counter(), {}
        for student in students:
            subs = by_student.get(student.id, [])
            done = [r for r in subs if r.status in ("graded", "failed")]
            counted = None
            if counts == "last" and done:
                counted = done[-1]
            elif done:
                counted = max(done, key=lambda r: (r.score or 0.0, r.id))
            table.append({"student": student, "submissions": len(subs), "counted": counted,
                          "score": (counted.score or 0.0) if counted else None,
                          "max_score": counted.max_score if counted else None,
                          "pending": sum(r.status in ("queued", "grading") for r in subs)})
            for part in (counted.parts or []) if counted else []:
                if part["score"] < part["max_score"]:
                    fails[part["name"]] += 1
                    reasons.setdefault(part["name"], Counter())[part["reason"]] += 1
        parts = [{"name": name, "fails": n, "reasons": reasons[name].most_common(3)} for name, n in fails.most_common()]
        return table, parts

    def grades_csv(self, assignment, kind="plain"):
        """The counted grades as CSV rows: ``plain`` (all the service knows), ``canvas`` or ``moodle``.

        Canvas's gradebook import: ``Student,ID,SIS User ID,SIS Login ID,Section,<assignment>`` and a
        "Points Possible" row; the roster's id goes in "SIS User ID" and its email in "SIS Login ID" (Canvas
        matches a row by ID, SIS User ID or SIS Login ID; ID, its own number, is left empty). Moodle's CSV
        grade import: an identifier column ("Email address", and "ID number" with the roster's id: pick one
        to map users at import) and one column per grade item. A student with no graded submission gets an
        empty cell, which both leave unchanged.
        """
        table, _ = self.gradebook(assignment)
        if kind == "plain":
            lines = [["id", "name", "email", "score", "max_score", "submissions", "counted_submission"]]
            for t in table:
                c = t["counted"]
                lines.append([t["student"].id, t["student"].name, t["student"].email,
                              "" if c is None else f"{t['score']:g}", "" if c is None else f"{c.max_score or 0:g}",
                              t["submissions"], "" if c is None else c.id])
            return lines
        scores = [(t["student"], "" if t["counted"] is None else f"{t['score']:g}") for t in table]
        if kind == "canvas":
            top = max((t["max_score"] or 0 for t in table if t["counted"]), default=0)
            lines = [["Student", "ID", "SIS User ID", "SIS Login ID", "Section", assignment],
                     ["Points Possible", "", "", "", "", f"{top:g}" if top else ""]]
            return lines + [[st.name, "", st.id, st.email, "", score] for st, score in scores]
        if kind == "moodle":
            return [["Email address", "ID number", "Full name", assignment]] + [
                [st.email, st.id, st.name, score] for st, score in scores]
        raise ValueError(f"grades: unknown format {kind!r} (plain, canvas or moodle)")


def aware(moment):
    """SQLite returns naive datetimes: they were written in UTC."""
    return moment if moment.tzinfo else moment.replace(tzinfo=datetime.UTC)
