"""What grading gave: per-student results, the course gradebook, feedback HTML, grades.csv, the summary.

Everything here runs in the grading process, on values it read itself: the automatic scores of a run
(from the run's gradebook, written by nbgrader outside the sandbox) and the adjustments of the checks.

Adjustments are where a check changes a part's score: ``Adjustment(grade_id, score, reason)`` sets that
test cell's automatic score to ``score`` (clipped to [0, max]); the reason goes into ``grades.csv``, the
summary and the student's feedback, next to the part. The static audit is one such check; further
checks (``instructor.independent``) plug in the same way (see ``pipeline.grade_folder(checks=...)``).
"""

import csv
import dataclasses
import html
import pathlib
import re
import warnings

import nbformat

from .sanitize import CUT, hidden_lines, image_data, redact


@dataclasses.dataclass
class Adjustment:
    """A check's verdict on one part: its test cell ``grade_id`` scores ``score``, because ``reason``."""

    grade_id: str
    score: float
    reason: str


@dataclasses.dataclass
class GradeResult:
    """What grading one student's submission gave.

    - student: the student id; file: the submitted file (relative to the submissions folder)
    - score / max_score: all parts; auto_score / auto_max: automatically graded parts only
    - cells: grade_id -> {"score", "max_score", "auto"} for every graded cell
    - status: "graded" or "failed"; reason: why it failed, or what was repaired or flagged
    - sandbox: what the student's code ran in ("bwrap", or "none (--no-sandbox)")
    - adjustments: the checks' changes, grade_id -> reason
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
    sandbox: str = ""
    adjustments: dict = dataclasses.field(default_factory=dict)

    def note(self, text):
        self.reason = f"{self.reason}; {text}" if self.reason else text


def adjusted_scores(grades, adjustments, result):
    """Automatic scores after the checks' adjustments: grade_id -> score (code cells only)."""
    scores = {gid: (g["auto_score"] or 0.0) for gid, g in grades.items() if g["code"]}
    for adj in adjustments:
        if adj.grade_id not in scores:
            continue
        new = min(max(float(adj.score), 0.0), grades[adj.grade_id]["max_score"])
        scores[adj.grade_id] = new  # noted even when the tests gave that score already: the reason counts
        result.note(f"{adj.grade_id} set to {new:g}: {adj.reason}")
        result.adjustments[adj.grade_id] = f"set to {new:g}: {adj.reason}"
    return scores


def record(db, name, nb_name, student, grades, scores):
    """Write one run's results into the course gradebook; return the cells (grade_id -> score info).

    Automatic parts (code cells) take the new scores and lose any manual override (a re-grade replaces
    them, so an old penalty does not stick); written answers keep the manual grade the instructor gave
    in formgrader, and only need grading again if they have none.
    """
    from nbgrader.api import Gradebook, MissingEntry

    nb_id = pathlib.Path(nb_name).stem
    with warnings.catch_warnings(), Gradebook(f"sqlite:///{db}") as gb:
        warnings.simplefilter("ignore")  # nbgrader's own SQLAlchemy warnings on a new submission
        gb.update_or_create_student(student)
        try:
            gb.find_submission(name, student)
        except MissingEntry:
            gb.add_submission(name, student)
        sub = gb.find_submission_notebook(nb_id, name, student)
        cells = {}
        for g in sub.grades:
            run = grades.get(g.name)
            if g.cell_type == "code":
                g.auto_score = scores.get(g.name, 0.0)
                g.manual_score = None
                g.needs_manual_grade = False
            elif run is not None:
                g.auto_score = run["auto_score"]
                if g.manual_score is None:
                    g.needs_manual_grade = run["needs_manual"]
            score = g.manual_score if g.manual_score is not None else (g.auto_score or 0.0)
            cells[g.name] = {"score": float(score), "max_score": float(g.max_score or 0.0),
                             "auto": g.cell_type == "code", "needs_manual": bool(g.needs_manual_grade)}
        gb.db.commit()
    return cells


def fill(result, cells):
    result.cells = cells
    result.score = sum(c["score"] for c in cells.values())
    result.max_score = sum(c["max_score"] for c in cells.values())
    result.auto_score = sum(c["score"] for c in cells.values() if c["auto"])
    result.auto_max = sum(c["max_score"] for c in cells.values() if c["auto"])


# ------------------------------------------------------------------------------------------ feedback

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_HIDDEN = re.compile(r"### BEGIN HIDDEN TESTS.*?### END HIDDEN TESTS\n?", re.S)
CSS = """body{font-family:sans-serif;max-width:960px;margin:auto}pre{background:#f6f6f6;padding:6px;
white-space:pre-wrap}.test{border-left:4px solid #999;padding-left:8px;margin:12px 0}.ok{border-color:#2a2}
.bad{border-color:#c22}.score{font-weight:bold}.out{background:#fff;border:1px solid #ddd}"""


def _text(x):
    return "".join(x) if isinstance(x, list) else str(x or "")


MAX_SHOWN = 100_000  # characters of one output shown in the feedback
_ENAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.]{0,79}")


def _shown(text, hidden):
    """An output's text as the feedback shows it: no ANSI codes, no hidden line, at most MAX_SHOWN
    characters (with a line saying so), escaped."""
    text = redact(_ANSI.sub("", text), hidden)
    cut = ""
    if len(text) > MAX_SHOWN:
        cut = f"\n[output cut: {len(text) - MAX_SHOWN} more characters not shown]"
        text = text[:MAX_SHOWN]
    return f"<pre class='out'>{html.escape(text + cut)}</pre>"


def _hidden(nb):
    """Every hidden line of every test (the autograded notebook holds them): never shown, wherever printed."""
    return [line for c in nb.cells for line in hidden_lines(c.source if c.cell_type == "code" else "")]


def shown_messages(cell, hidden):
    """Plain text a test cell may show: the error's type and the check's message for each error it raised
    (never its streams, displays or traceback: the student's code ran inside it and could print the
    hidden tests); a message that quotes a hidden line is withheld."""
    messages = []
    for o in cell.get("outputs", []):
        if o.get("output_type") == "error":
            ename = str(o.get("ename", ""))
            ename = ename if _ENAME.fullmatch(ename) else "Error"
            evalue = _ANSI.sub("", str(o.get("evalue", "")))
            if redact(evalue, hidden) != evalue:
                evalue = "(message not shown: it quotes the hidden tests)"
            if len(evalue) > 1000:
                evalue = evalue[:1000] + " [...]"
            messages.append(f"{ename}: {evalue}".rstrip(": "))
    return messages


def failure_reasons(autograded):
    """grade_id -> what each failing test cell of the autograded notebook may show (see shown_messages),
    for every test cell that raised. The hidden lines are read from the same notebook."""
    nb = nbformat.read(str(autograded), as_version=4)
    hidden = _hidden(nb)
    reasons = {}
    for cell in nb.cells:
        gid = cell.metadata.get("nbgrader", {}).get("grade_id")
        messages = shown_messages(cell, hidden) if cell.cell_type == "code" else []
        if gid and messages:
            reasons[gid] = "; ".join(messages)
    return reasons


def _verdict(cell, hidden):
    """A test cell's outputs as the feedback shows them (shown_messages, escaped)."""
    parts = [f"<pre class='out'>{html.escape(m)}</pre>" for m in shown_messages(cell, hidden)]
    if any(CUT in _text(o.get("text", "")) for o in cell.get("outputs", [])):
        parts.append(f"<p>{html.escape(CUT_LINE)}</p>")
    return "".join(parts)


# no script, frame, form or request of any kind, should anything ever get past the escaping
CSP = ("<meta http-equiv='Content-Security-Policy' content=\"default-src 'none'; img-src data:; "
       "style-src 'unsafe-inline'; form-action 'none'; base-uri 'none'\">")
CUT_LINE = "This cell's output went over the grading cap and was cut (the rest was not kept)."


def _outputs(cell, *, test, hidden=()):
    if test:
        return _verdict(cell, hidden)
    parts = []
    for o in cell.get("outputs", []):
        kind = o.get("output_type")
        if kind == "stream":
            parts.append(_shown(_text(o.get("text")), hidden))
        elif kind in ("execute_result", "display_data"):
            data = o.get("data", {})
            image = next(((m, image_data(m, data[m])) for m in ("image/png", "image/jpeg")
                          if m in data and image_data(m, data[m])), None)
            if image:
                parts.append(f"<img alt='output' src='data:{image[0]};base64,{html.escape(image[1])}'>")
            elif "text/plain" in data:
                parts.append(_shown(_text(data["text/plain"]), hidden))
        elif kind == "error":
            msg = f"{o.get('ename', 'Error')}: {o.get('evalue', '')}".rstrip(": ")
            parts.append(_shown("\n".join(map(str, o.get("traceback", []))) or msg, hidden))
    return "".join(parts)


def feedback_html(autograded, release, result, title):
    """The student's feedback: their cells with outputs, and for each test its score and message, with
    the test's visible source from the student version (never the hidden tests' source or traceback)."""
    nb = nbformat.read(str(autograded), as_version=4)
    hidden = _hidden(nb)
    visible = {c.metadata.get("nbgrader", {}).get("grade_id"): c.source for c in release.cells}
    body = [f"<h1>{html.escape(title)}: {html.escape(result.student)}</h1>",
            f"<p class='score'>Score: {result.score:g} / {result.max_score:g} "
            f"(automatic parts {result.auto_score:g} / {result.auto_max:g})</p>"]
    for cell in nb.cells:
        meta = cell.metadata.get("nbgrader", {})
        gid = meta.get("grade_id")
        is_test = bool(meta.get("grade")) and not meta.get("solution") and cell.cell_type == "code"
        if cell.cell_type == "markdown":
            body.append(f"<pre>{html.escape(redact(cell.source, hidden))}</pre>")
            if meta.get("grade") and gid in result.cells:
                c = result.cells[gid]
                body.append(f"<p class='score'>{html.escape(gid)}: {c['score']:g} / {c['max_score']:g}"
                            f"{' (to be graded by hand)' if c.get('needs_manual') else ''}</p>")
            continue
        if cell.cell_type != "code":
            continue
        if is_test:
            c = result.cells.get(gid, {"score": 0.0, "max_score": float(meta.get("points", 0))})
            source = _HIDDEN.sub("# (hidden tests)\n", visible.get(gid, "# (test)"))
            ok = c["score"] >= c["max_score"] > 0
            why = result.adjustments.get(gid, "")
            body.append(f"<div class='test {'ok' if ok else 'bad'}'><p class='score'>Test {html.escape(gid)}: "
                        f"{c['score']:g} / {c['max_score']:g}</p>"
                        + (f"<p>{html.escape(why)}</p>" if why else "")
                        + f"<pre>{html.escape(source)}</pre>{_outputs(cell, test=True, hidden=hidden)}</div>")
        else:
            body.append(f"<pre>{html.escape(redact(cell.source, hidden))}</pre>"
                        f"{_outputs(cell, test=False, hidden=hidden)}")
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'>{CSP}<title>{html.escape(title)}</title>"
            f"<style>{CSS}</style></head><body>{''.join(body)}</body></html>")


# --------------------------------------------------------------------------------- csv and summary


def write_csv(results, path):
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["student", "file", "score", "max_score", "auto_score", "auto_max", "status", "reason", "feedback",
                    "sandbox"])
        for r in results:
            w.writerow([r.student, r.file, f"{r.score:g}", f"{r.max_score:g}", f"{r.auto_score:g}", f"{r.auto_max:g}",
                        r.status, r.reason, r.feedback, r.sandbox])


def summary_table(results, sandbox=None):
    rows = [("student", "score", "max", "status", "reason")]
    for r in results:
        rows.append((r.student, f"{r.score:g}", f"{r.max_score:g}", r.status, r.reason or ""))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = []
    for k, row in enumerate(rows):
        lines.append("  ".join(row[i].ljust(widths[i]) for i in range(4)) + "  " + row[4])
        if k == 0:
            lines.append("  ".join("-" * w for w in widths) + "  " + "-" * 6)
    from ..independent.grading_check import disagreements, summary_line

    counts = [(r.student, disagreements(r.adjustments.values())) for r in results]
    if any(n for _, n in counts):  # parts whose notebook test passed but not the independent check
        lines += ["", summary_line(counts)]
    sandbox = sandbox or next((r.sandbox for r in results if r.sandbox), "")
    if sandbox:
        lines.append("")
        if sandbox.startswith("none"):
            lines.append("NO SANDBOX (--no-sandbox): the submitted code ran as the grading user and could read and "
                         "write what that user can; do not trust these grades for hostile submissions")
        else:
            lines.append(f"sandbox: {sandbox}")
    return "\n".join(lines)
