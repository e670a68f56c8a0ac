"""Everything a kernel or a student wrote is hostile: what of it may be shown, and in what form.

- ``sanitize_notebook(nb)``: the notebook that formgrader renders (``WORK/autograded/...``) and the
  submitted copy (``WORK/submitted/...``) hold no HTML or JavaScript: outputs keep ``text/plain`` and
  images that are what their MIME type says (``image/png``, ``image/jpeg``: base64 of a real PNG or JPEG),
  nothing else (``text/html``, ``application/javascript``, ``image/svg+xml``, widgets, markdown
  outputs are replaced by a line saying what was removed); markdown cells have their raw HTML escaped
  and ``javascript:``/``vbscript:``/``data:`` links broken; raw cells lose their HTML format; the
  notebook's widget state is dropped.
- ``image_data(mime, value)``: the base64 text of an image output, re-encoded from its decoded bytes, or
  None when it is not a PNG/JPEG (so nothing but ``[A-Za-z0-9+/=]`` can reach an ``<img src>``).
- ``redact(text, hidden)``: any line of the hidden tests that appears in a text is replaced.
- ``CUT``: the line that marks outputs cut by the output caps (``outputs.CappedExecute``).
"""

import base64
import binascii
import re

SAFE_MIME = ("text/plain", "image/png", "image/jpeg")
SIGNATURES = {"image/png": b"\x89PNG\r\n\x1a\n", "image/jpeg": b"\xff\xd8\xff"}
MAX_IMAGE = 5 * 2**20  # bytes of one image, decoded
CUT = "[grading: output cut]"


def image_data(mime, value):
    """The base64 text of a PNG or JPEG output (clean, re-encoded), or None if it is not one."""
    if mime not in SIGNATURES:
        return None
    text = "".join(value) if isinstance(value, list) else value
    if not isinstance(text, str) or len(text) > MAX_IMAGE * 4 // 3 + 16:
        return None
    try:
        raw = base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        return None
    if not raw.startswith(SIGNATURES[mime]):
        return None
    return base64.b64encode(raw).decode("ascii")


_TAG = re.compile(r"<")
_SCHEME = re.compile(r"(?i)\b(java\s*script|vb\s*script|data)(\s*):")


def sanitize_markdown(text):
    """Markdown with no raw HTML (``<`` escaped) and no script links (``javascript:`` broken)."""
    text = "".join(text) if isinstance(text, list) else (text or "")
    text = _TAG.sub("&lt;", text)
    return _SCHEME.sub(lambda m: f"{m.group(1)}-removed{m.group(2)}:", text)


def sanitize_output(out):
    """One output with nothing a browser would run: see the module's docstring. Returns the new output."""
    kind = out.get("output_type")
    if kind not in ("execute_result", "display_data"):
        return out
    data = out.get("data", {}) or {}
    kept, removed = {}, []
    for mime, value in data.items():
        if mime == "text/plain":
            kept[mime] = value if isinstance(value, str) else "".join(map(str, value))
        elif mime in SIGNATURES and image_data(mime, value) is not None:
            kept[mime] = image_data(mime, value)
        else:
            removed.append(mime)
    if removed:
        note = f"[grading: output of type {', '.join(sorted(removed))[:200]} removed]"
        kept["text/plain"] = f"{kept['text/plain']}\n{note}" if "text/plain" in kept else note
    out["data"] = kept
    out["metadata"] = {}
    return out


def sanitize_notebook(nb):
    """Make a notebook (nbformat node) safe to render as HTML, in place; returns it."""
    nb.metadata.pop("widgets", None)
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            cell.source = sanitize_markdown(cell.source)
            attachments = cell.get("attachments") or {}
            for name in list(attachments):
                safe = {m: image_data(m, v) for m, v in attachments[name].items()}
                safe = {m: v for m, v in safe.items() if v}
                if safe:
                    attachments[name] = safe
                else:
                    del attachments[name]
        elif cell.cell_type == "raw":
            cell.metadata.pop("format", None)
            cell.metadata.pop("raw_mimetype", None)
        elif cell.cell_type == "code":
            cell.outputs = [sanitize_output(o) for o in cell.get("outputs", [])]
    return nb


def hidden_lines(source):
    """The lines (stripped, 8 characters or more) between ``### BEGIN HIDDEN TESTS`` and its end, both
    included."""
    lines, inside = [], False
    for line in (source or "").splitlines():
        s = line.strip()
        if s.startswith("### BEGIN HIDDEN TESTS"):
            inside = True
            lines.append(s)
        elif s.startswith("### END HIDDEN TESTS"):
            inside = False
            lines.append(s)
        elif inside and len(s) >= 8:
            lines.append(s)
    return lines


def redact(text, hidden):
    """``text`` with every occurrence of a hidden line replaced by ``(hidden test)``."""
    for line in sorted(hidden, key=len, reverse=True):
        if line in text:
            text = text.replace(line, "(hidden test)")
    return text
