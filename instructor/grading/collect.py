"""Whose is each submitted file."""

import pathlib
import re


def _clean_id(text):
    text = re.sub(r"(?i)\bcopy[ _]of[ _]", "", text)
    text = re.sub(r"\s*\(\d+\)$", "", text)
    return re.sub(r"[^A-Za-z0-9.-]+", "_", text).strip("._-")


def identify(rel_path, name):
    """Tell whose submission a file is from its path relative to the submissions folder.

    Returns the student id, or None when the path does not say (e.g. a bare ``lstm.ipynb``).
    """
    parts = pathlib.PurePosixPath(rel_path).parts
    if len(parts) >= 2:
        return _clean_id(parts[0]) or None
    stem = pathlib.PurePosixPath(rel_path).stem
    stem = re.sub(r"(?i)copy[ _]of[ _]", "", stem)
    stem = re.sub(r"\s*\(\d+\)$", "", stem)
    rest = re.sub(rf"(?i)(^|[ _.-]){re.escape(name)}($|[ _.-])", " ", stem).strip(" _.-")
    if rest == stem.strip(" _.-") and name.lower() not in stem.lower():
        rest = stem  # no assignment name in it: the whole stem is the student's
    return _clean_id(rest) or None
