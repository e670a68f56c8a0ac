"""Read a submitted file and repair what can be repaired in a copy."""

import json
import pathlib

from .sanitize import sanitize_notebook


def _grade_ids(nb):
    return [c.get("metadata", {}).get("nbgrader", {}).get("grade_id") for c in nb.get("cells", [])]


def _first_line(cell):
    src = cell.get("source", "")
    src = "".join(src) if isinstance(src, list) else src
    for line in src.splitlines():
        if line.strip():
            return line.strip()
    return ""


def prepare(path, release_nb, name):
    """Read a submitted file and return (notebook, notes) ready for nbgrader, or raise ValueError(reason).

    Repairs: nbformat 4.0 and Colab metadata, duplicated graded cells (the first is kept), stripped
    nbgrader metadata (answer cells matched back to the release by their first line or position).
    """
    import nbformat

    raw = pathlib.Path(path).read_bytes()
    if not raw.strip():
        raise ValueError("empty file")
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"not valid JSON ({err})") from None
    if not isinstance(data, dict) or "cells" not in data:
        raise ValueError("not a Jupyter notebook (no cells)")
    try:
        nb = nbformat.reads(json.dumps(data), as_version=4)
    except Exception as err:
        raise ValueError(f"not a readable notebook ({str(err).splitlines()[0][:120]})") from None
    notes = []
    if nb.nbformat_minor < 5:
        notes.append(f"nbformat 4.{nb.nbformat_minor} upgraded")
    nb.nbformat_minor = 5
    nb.metadata.pop("colab", None)
    for cell in nb.cells:
        cell.metadata.pop("colab", None)
        cell.metadata.pop("id", None)
        cell.metadata.pop("outputId", None)
    import uuid

    seen_ids = set()
    for cell in nb.cells:
        if not cell.get("id") or cell.id in seen_ids:
            cell.id = uuid.uuid4().hex[:8]
        seen_ids.add(cell.id)

    ref = nbformat.read(str(release_nb), as_version=4)
    ref_ids = [i for i in _grade_ids(ref) if i]
    ids = _grade_ids(nb)
    known = [i for i in ids if i in ref_ids]
    foreign = [i for i in ids if i and i not in ref_ids]
    if not known and foreign:
        raise ValueError(f"a notebook of another assignment (cells {', '.join(foreign[:3])} are not in {name})")
    if not known:
        matched = _restore_metadata(nb, ref)
        if matched == 0:
            raise ValueError(f"not the {name} assignment: no nbgrader metadata and no cell of {name} found")
        notes.append(f"nbgrader metadata was missing: restored for {matched} answer cells by matching the release")
    # duplicated graded cells: keep the first, make later copies ordinary cells
    seen = set()
    for cell in nb.cells:
        gid = cell.metadata.get("nbgrader", {}).get("grade_id")
        if gid and gid in seen:
            cell.metadata.pop("nbgrader")
            notes.append(f"duplicated cell {gid} ignored")
        elif gid:
            seen.add(gid)
    # the student's own outputs are not graded (nbgrader clears them) and may hold HTML or JavaScript;
    # markdown answers keep their text with raw HTML escaped (sanitize.sanitize_notebook)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
    sanitize_notebook(nb)
    nbformat.validate(nb)
    return nb, notes


def _restore_metadata(nb, ref):
    """Give the answer cells of a notebook whose nbgrader metadata was stripped their metadata back."""
    answers = [c for c in ref.cells if c.metadata.get("nbgrader", {}).get("solution")]
    matched = 0
    used = set()
    for ans in answers:
        first = _first_line(ans)
        candidates = [i for i, c in enumerate(nb.cells) if i not in used and c.cell_type == ans.cell_type
                      and first and _first_line(c) == first]
        if candidates:
            i = candidates[0]
            nb.cells[i].metadata["nbgrader"] = dict(ans.metadata["nbgrader"])
            used.add(i)
            matched += 1
    return matched
