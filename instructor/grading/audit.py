"""Static audit of answer cells (regular expressions over the code, outside any kernel): it can flag,
never prove."""

import re

# Patterns that an answer cell has no business containing. Matched on code with comments and string
# literals (docstrings included) removed, so prose that names a module is fine.
TAMPERING = [
    (r"^[ \t]*(?:torch|np|numpy|utils|checks|F|nn|math|builtins|sys|os|importlib|warnings)(?:\s*\.\s*\w+)+"
     r"\s*(?:=(?!=)|\+=|-=)", "assigns to an attribute of a library or of the course's helpers"),
    (r"\bsetattr\s*\(", "calls setattr"),
    (r"\bget_ipython\b|\bIPython\b", "reaches into IPython"),
    (r"\bsys\s*\.\s*modules\b", "touches sys.modules"),
    (r"\b__builtins__\b|\bimport\s+builtins\b", "touches builtins"),
    (r"\bimportlib\b", "uses importlib"),
    (r"(?<![\w.])(?:exec|eval|compile)\s*\(", "runs code from strings"),
    (r"\bos\s*\.\s*(?:_exit|kill|system)\b|\bsubprocess\b", "controls processes"),
]

# Per assignment: the PyTorch modules and functions its answers re-implement, as they are reached
# from torch (a student's own function or class of a similar name is not matched).
FORBIDDEN = {
    "lstm": [r"\bnn\s*\.\s*LSTMCell\b", r"\bnn\s*\.\s*LSTM\b", r"\btorch\s*\.\s*(?:_VF\s*\.\s*)?lstm",
             r"\b_VF\b"],
    "multi_head_attention": [r"\b(?:F|functional)\s*\.\s*scaled_dot_product_attention\b",
                             r"\bnn\s*\.\s*MultiheadAttention\b", r"\bmulti_head_attention_forward\b",
                             r"\b_VF\b"],
}


def _code_only(source):
    """``source`` with comments and string literals blanked out (line structure kept)."""
    import io
    import tokenize

    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(source).readline))
    except (tokenize.TokenError, IndentationError, SyntaxError):
        return "\n".join(line.split("#", 1)[0] for line in source.splitlines())
    lines = source.splitlines(keepends=True)
    out = [list(line) for line in lines]
    for tok in tokens:
        if tok.type in (tokenize.COMMENT, tokenize.STRING, getattr(tokenize, "FSTRING_MIDDLE", -1)):
            (r0, c0), (r1, c1) = tok.start, tok.end
            for r in range(r0, r1 + 1):
                row = out[r - 1]
                start = c0 if r == r0 else 0
                end = c1 if r == r1 else len(row)
                for c in range(start, min(end, len(row))):
                    if row[c] != "\n":
                        row[c] = " "
    return "".join("".join(row) for row in out)


def audit(nb, name):
    """Static audit of the answer cells, outside any kernel.

    Returns a list of (cell_index, grade_id, kind, message) for answer cells that tamper with shared
    state ("tamper") or call what they must re-implement ("forbidden").
    """
    findings = []
    for i, cell in enumerate(nb.cells):
        meta = cell.metadata.get("nbgrader", {})
        if cell.cell_type != "code" or not meta.get("solution"):
            continue
        code = _code_only(cell.source)
        for pattern, message in TAMPERING:
            m = re.search(pattern, code, flags=re.M)
            if m:
                findings.append((i, meta.get("grade_id"), "tamper", f"{message}: `{m.group(0).strip()[:60]}`"))
        for pattern in FORBIDDEN.get(name, []):
            m = re.search(pattern, code)
            if m:
                findings.append((i, meta.get("grade_id"), "forbidden", f"calls `{m.group(0).strip()}`"))
    return findings


def _affected_tests(nb, findings):
    """Test cells each finding could have fooled: after a tampering cell, every later test; after a
    forbidden call, the tests up to the next answer cell."""
    tests = [(i, c.metadata["nbgrader"]["grade_id"]) for i, c in enumerate(nb.cells)
             if c.metadata.get("nbgrader", {}).get("grade") and not c.metadata["nbgrader"].get("solution")]
    answers = [i for i, c in enumerate(nb.cells) if c.metadata.get("nbgrader", {}).get("solution")]
    out = {}
    for idx, _gid, kind, message in findings:
        stop = len(nb.cells)
        if kind == "forbidden":
            later = [a for a in answers if a > idx]
            stop = later[0] if later else stop
        for t, tid in tests:
            if idx < t < stop:
                out.setdefault(tid, message)
    return out
