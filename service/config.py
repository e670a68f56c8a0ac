"""The service's settings and the per-assignment policy.

The policy file (TOML, ``--policy FILE``; default ``DATA/policy.toml`` where it exists) has one table
per assignment; any key left out takes the default below::

    [lstm]
    deadline = 2026-03-01T23:59:00+01:00   # none: no deadline
    late = "refuse"                        # after the deadline: "refuse" (HTTP 403) or "accept" (marked late)
    max_submissions = 10                   # 0: no cap
    min_interval_s = 60                    # seconds between two submissions of a student; 0: none
    counts = "best"                        # which submission counts: "best" or "last"
"""

import dataclasses
import datetime
import os
import pathlib
import tomllib


@dataclasses.dataclass
class Policy:
    deadline: datetime.datetime | None = None
    late: str = "refuse"
    max_submissions: int = 0
    min_interval_s: float = 0
    counts: str = "best"

    def __post_init__(self):
        if self.late not in ("refuse", "accept"):
            raise ValueError(f"policy: late = {self.late!r}: use \"refuse\" or \"accept\"")
        if self.counts not in ("best", "last"):
            raise ValueError(f"policy: counts = {self.counts!r}: use \"best\" or \"last\"")
        if isinstance(self.deadline, str):
            self.deadline = datetime.datetime.fromisoformat(self.deadline)
        if isinstance(self.deadline, datetime.datetime) and self.deadline.tzinfo is None:
            self.deadline = self.deadline.astimezone()  # a deadline without a zone: the server's local time
        if self.deadline is not None and not isinstance(self.deadline, datetime.datetime):
            raise ValueError(f"policy: deadline = {self.deadline!r} is not a date and time")


def load_policies(names, path=None):
    """{assignment: Policy} for each of ``names``, from the TOML file ``path`` (if any)."""
    tables = {}
    if path is not None and pathlib.Path(path).exists():
        tables = tomllib.loads(pathlib.Path(path).read_text())
    unknown = sorted(set(tables) - set(names))
    if unknown:
        raise ValueError(f"policy: no assignment named {', '.join(unknown)} (known: {', '.join(names)})")
    fields = {f.name for f in dataclasses.fields(Policy)}
    policies = {}
    for name in names:
        table = tables.get(name, {})
        extra = sorted(set(table) - fields)
        if extra:
            raise ValueError(f"policy [{name}]: unknown key {', '.join(extra)} (known: {', '.join(sorted(fields))})")
        policies[name] = Policy(**table)
    return policies


@dataclasses.dataclass
class Settings:
    """Where the service keeps everything (``data``) and how it runs.

    - data: the folder of the database, the queue, the stored submissions and their feedback
    - roster: a CSV (id,name,email) read at start (new students get a token, written to DATA/tokens.csv)
    - jobs: grading worker threads (0: none, the queue only fills: for tests); default the number of cores
    - database / queue: URLs (default SQLite files in ``data``)
    - policy: the policy file (default DATA/policy.toml)
    - max_bytes: the largest upload accepted
    """

    data: pathlib.Path
    roster: pathlib.Path | None = None
    host: str = "127.0.0.1"
    port: int = 8000
    jobs: int | None = None
    database: str | None = None
    queue: str | None = None
    policy: pathlib.Path | None = None
    max_bytes: int = 5 * 1024 * 1024

    def __post_init__(self):
        self.data = pathlib.Path(self.data).resolve()
        if self.jobs is None:
            self.jobs = os.cpu_count() or 1
        self.database = self.database or f"sqlite:///{self.data / 'service.db'}"
        self.queue = self.queue or f"sqlite:///{self.data / 'queue.db'}"
        self.policy = pathlib.Path(self.policy) if self.policy else self.data / "policy.toml"
