"""What grading gave: per-student results, grades.csv and the summary table."""

import csv
import dataclasses
import pathlib


@dataclasses.dataclass
class GradeResult:
    """What grading one student's submission gave.

    - student: the student id; file: the submitted file (relative to the submissions folder)
    - score / max_score: all parts; auto_score / auto_max: automatically graded parts only
    - cells: grade_id -> {"score", "max_score", "auto"} for every graded cell
    - status: "graded" or "failed"; reason: why it failed, or what was repaired or flagged
    """

    student: str
    file: str = ""
    score: float = 0.0
    max_score: float = 0.0
    auto_score: float = 0.0
    auto_max: float = 0.0
    cells: dict = dataclasses.field(default_factory=dict)
    status: str = "failed"
    reason: str = ""
    feedback: str = ""

    def note(self, text):
        self.reason = f"{self.reason}; {text}" if self.reason else text


def write_csv(results, path):
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["student", "file", "score", "max_score", "auto_score", "auto_max", "status", "reason", "feedback"])
        for r in results:
            w.writerow([r.student, r.file, f"{r.score:g}", f"{r.max_score:g}", f"{r.auto_score:g}", f"{r.auto_max:g}",
                        r.status, r.reason, r.feedback])


def summary_table(results):
    rows = [("student", "score", "max", "status", "reason")]
    for r in results:
        rows.append((r.student, f"{r.score:g}", f"{r.max_score:g}", r.status, r.reason or ""))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = []
    for k, row in enumerate(rows):
        lines.append("  ".join(row[i].ljust(widths[i]) for i in range(4)) + "  " + row[4])
        if k == 0:
            lines.append("  ".join("-" * w for w in widths) + "  " + "-" * 6)
    return "\n".join(lines)
