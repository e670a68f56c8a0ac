"""Whose is each submitted file, and which files are refused before anything reads them.

A student id is a folder name in the grading folders (``WORK/runs/ID``, ``WORK/submitted/ID``,
``OUT/feedback/ID``) and nbgrader's student id, so it is made from the name in the file's path by rules
that cannot produce a name anything else uses:

- an ASCII name of letters, digits, ``.``, ``-`` and ``_`` (after "Copy of" and " (1)" are removed)
  is its own id (``alice``, ``lstm-bob`` -> ``bob``);
- any other name (Hangul ``kim-철수``, a Hangul-only ``철수``, spaces, another script, a Windows device
  name such as ``CON``, more than 40 characters) keeps its ASCII letters and digits and gets a stable
  suffix: the first 8 hex digits of the SHA-256 of the name (NFC): ``kim-철수`` -> ``kim-5b8b7fd1``,
  ``철수`` -> ``student-0a3e5c4c``;
- two different names whose ids would still be equal, or equal but for case, both get the suffix
  (``_collect`` in the pipeline; the reason says which name each id stands for).

Every id starts with a letter or digit and holds only ``[A-Za-z0-9._-]``; the grading folders' shared
entries start with ``_`` (``WORK/runs/_shared``), so no id can reach them.
"""

import hashlib
import os
import pathlib
import re
import stat
import unicodedata

WINDOWS_DEVICES = {"con", "prn", "aux", "nul", *(f"com{i}" for i in range(10)), *(f"lpt{i}" for i in range(10))}
MAX_ID = 40


def _strip_copies(text):
    text = re.sub(r"(?i)\bcopy[ _]of[ _]", "", text)
    return re.sub(r"\s*\(\d+\)$", "", text)


def name_hash(name):
    return hashlib.sha256(unicodedata.normalize("NFC", name).encode("utf-8", "surrogatepass")).hexdigest()[:8]


def student_id(name, *, suffix=False):
    """The id of the student called ``name`` (see the module's docstring); ``suffix`` forces the hash."""
    name = unicodedata.normalize("NFC", name).strip()
    base = re.sub(r"[^A-Za-z0-9.-]+", "_", name).strip("._-")
    base = re.sub(r"\.{2,}", ".", base)[:MAX_ID].strip("._-")
    own = base == name and base.split(".")[0].lower() not in WINDOWS_DEVICES
    if own and not suffix:
        return base
    return f"{base or 'student'}-{name_hash(name)}"


def student_name(rel_path, name):
    """The student's name as the path gives it (before it is made an id), or None when it gives none."""
    parts = pathlib.PurePosixPath(rel_path).parts
    if len(parts) >= 2:
        raw = _strip_copies(parts[0]).strip()
    else:
        stem = _strip_copies(pathlib.PurePosixPath(rel_path).stem)
        rest = re.sub(rf"(?i)(^|[ _.-]){re.escape(name)}($|[ _.-])", " ", stem).strip(" _.-")
        if rest == stem.strip(" _.-") and name.lower() not in stem.lower():
            rest = stem  # no assignment name in it: the whole stem is the student's
        raw = rest.strip()
    return raw if raw.strip(" ._-") else None


def identify(rel_path, name):
    """Tell whose submission a file is from its path relative to the submissions folder.

    Returns the student id, or None when the path does not say (e.g. a bare ``lstm.ipynb``).
    """
    raw = student_name(rel_path, name)
    return None if raw is None else student_id(raw)


def walk(folder):
    """(path, relative path, problem) for each entry of a submissions folder, never following a link.

    problem is "" for a regular file; otherwise why the entry is refused (a symbolic link, a named
    pipe or other special file). Hidden entries and ``__MACOSX`` are skipped.
    """
    folder = pathlib.Path(folder)
    for dirpath, dirs, files in os.walk(folder, followlinks=False):
        base = pathlib.Path(dirpath)
        keep = []
        for d in sorted(dirs):
            if d.startswith(".") or d == "__MACOSX":
                continue
            if os.path.islink(base / d):
                files.append(d)  # reported below as a link
            else:
                keep.append(d)
        dirs[:] = keep
        for f in sorted(files):
            if f.startswith("."):
                continue
            path = base / f
            rel = path.relative_to(folder).as_posix()
            try:
                mode = os.lstat(path).st_mode
            except OSError as err:
                yield path, rel, f"cannot be read ({err.strerror})"
                continue
            if stat.S_ISLNK(mode):
                try:
                    target = os.readlink(path)
                except OSError:
                    target = "?"
                yield path, rel, (f"a symbolic link (to {target[:80]}): links are refused, submit the file itself")
            elif not stat.S_ISREG(mode):
                yield path, rel, "not a regular file (a pipe, socket or device): refused"
            else:
                yield path, rel, ""


def regular_files(folder):
    """The regular files of a folder (no link followed): what grading must leave unchanged."""
    return [path for path, _rel, problem in walk(folder) if not problem]
