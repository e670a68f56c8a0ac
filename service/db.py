"""The service's database (SQLAlchemy: a SQLite file by default, any URL, e.g. PostgreSQL).

- students: the roster (id, name, email); revoked students lose their tokens
- tokens: sha256 of each secret (a student's or the instructor's API token, or a browser session);
  the secrets themselves are never stored
- submissions: every version a student sent (the file lives in DATA/submissions/ID.ipynb), its status
  (queued, grading, graded, failed) and its result
"""

import datetime
import hashlib
import json
import secrets

from sqlalchemy import JSON, Boolean, DateTime, Float, ForeignKey, Integer, String, Text, create_engine, event, select
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, sessionmaker

STATUSES = ("queued", "grading", "graded", "failed")


def now():
    return datetime.datetime.now(datetime.UTC)


def digest(secret):
    return hashlib.sha256(secret.encode()).hexdigest()


def new_secret():
    return secrets.token_urlsafe(24)


class Base(DeclarativeBase):
    pass


class Student(Base):
    __tablename__ = "students"
    id: Mapped[str] = mapped_column(String(100), primary_key=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    email: Mapped[str] = mapped_column(String(200), default="")
    revoked: Mapped[bool] = mapped_column(Boolean, default=False)


class Token(Base):
    """A secret's hash: role "student" (subject: the student id) or "instructor"; kind "api" or "session"."""

    __tablename__ = "tokens"
    hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    role: Mapped[str] = mapped_column(String(20))
    subject: Mapped[str | None] = mapped_column(String(100), nullable=True)
    kind: Mapped[str] = mapped_column(String(20), default="api")
    created: Mapped[datetime.datetime] = mapped_column(DateTime(timezone=True), default=now)


class Submission(Base):
    __tablename__ = "submissions"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    student_id: Mapped[str] = mapped_column(ForeignKey("students.id"), index=True)
    assignment: Mapped[str] = mapped_column(String(100), index=True)
    filename: Mapped[str] = mapped_column(String(300), default="")
    sha256: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(Integer)
    late: Mapped[bool] = mapped_column(Boolean, default=False)
    status: Mapped[str] = mapped_column(String(20), default="queued", index=True)
    created: Mapped[datetime.datetime] = mapped_column(DateTime(timezone=True), default=now)
    started: Mapped[datetime.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    finished: Mapped[datetime.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    score: Mapped[float | None] = mapped_column(Float, nullable=True)
    max_score: Mapped[float | None] = mapped_column(Float, nullable=True)
    parts: Mapped[list] = mapped_column(JSON, default=list)
    manual_parts: Mapped[list] = mapped_column(JSON, default=list)
    reason: Mapped[str] = mapped_column(Text, default="")
    feedback: Mapped[str | None] = mapped_column(String(500), nullable=True)
    sandbox: Mapped[str] = mapped_column(String(200), default="")


def connect(url):
    """An engine and a session factory for ``url``; the tables are created if missing."""
    engine = create_engine(url, json_serializer=json.dumps)
    if url.startswith("sqlite"):
        @event.listens_for(engine, "connect")
        def _sqlite(conn, _record):  # several threads write: wait for the lock rather than fail
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA busy_timeout=30000")
    Base.metadata.create_all(engine)
    return engine, sessionmaker(engine, expire_on_commit=False)


def load_roster(Session, rows):
    """Add the roster's new students (rows of dicts id, name, email); return {id: token} for those new ones.

    A student already known keeps their token (name and email are updated); a new one gets a token, of
    which only the hash is stored.
    """
    issued = {}
    with Session.begin() as s:
        for row in rows:
            sid = (row.get("id") or "").strip()
            if not sid:
                continue
            student = s.get(Student, sid)
            if student is None:
                s.add(Student(id=sid, name=row.get("name", "").strip(), email=row.get("email", "").strip()))
                token = new_secret()
                s.add(Token(hash=digest(token), role="student", subject=sid))
                issued[sid] = token
            else:
                student.name, student.email = row.get("name", "").strip(), row.get("email", "").strip()
    return issued


def instructor_token(Session):
    """A new instructor token if none exists yet (else None)."""
    with Session.begin() as s:
        if s.scalars(select(Token).where(Token.role == "instructor", Token.kind == "api")).first():
            return None
        token = new_secret()
        s.add(Token(hash=digest(token), role="instructor"))
    return token


def who(Session, secret):
    """(role, subject) of a secret, or None (unknown, or a revoked student's)."""
    if not secret:
        return None
    with Session() as s:
        token = s.get(Token, digest(secret))
        if token is None:
            return None
        if token.role == "student":
            student = s.get(Student, token.subject)
            if student is None or student.revoked:
                return None
        return token.role, token.subject
