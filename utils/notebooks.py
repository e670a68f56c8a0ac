"""The notebook conventions of the course, their checker, and commands that apply them.

Every notebook in ``lectures/``, ``solutions/`` and ``assignments/``:

1. is valid nbformat 4 with kernelspec ``python3``;
2. opens with a markdown cell: a ``# Title`` line and an "Open in Colab" badge that points at the
   notebook's own path in the course repository (a solution notebook's badge points at its student
   version, which is what students open; nbgrader's release keeps the badge as it is);
3. has the setup cell below as its first code cell, character for character;
4. names no absolute path;
5. lectures also say which part of the study notes they cover, by the notes' own headings;
6. student versions (``assignments/``) carry no outputs;
7. lectures end with a short Korean summary for the notes' readers: a markdown cell whose first line is
   ``## 요약`` (``summary_problems``; nothing but empty cells may follow it).

Commands::

    python -m utils.notebooks check [PATH ...]       # report every broken convention, exit 1 if any
    python -m utils.notebooks new PATH --title T     # a new notebook with title, badge and setup cell
    python -m utils.notebooks fix PATH ...           # (re)write the badge and the setup cell
    python -m utils.notebooks repoint OWNER/NAME [--branch B]   # point the course at a fork
"""

import argparse
import pathlib
import re
import sys

import nbformat

from . import course

ROOT = pathlib.Path(__file__).resolve().parent.parent
NOTEBOOK_DIRS = ("lectures", "solutions", "assignments")
NOTES_HEADINGS = ("RNN 첫 걸음", "LSTM", "Transformer", "transformer", "피어세션")
BADGE_IMG = "https://colab.research.google.com/assets/colab-badge.svg"

SETUP_TEMPLATE = '''\
# Course setup (the same cell in every notebook): make the course's `utils` package importable.
# Locally it finds the course folder above this notebook and changes nothing. In Colab it clones
# the course once; torch, numpy and matplotlib come with Colab, so nothing is reinstalled.
import pathlib
import subprocess
import sys

COURSE_REPO = "{repo}"
COURSE_DIR = pathlib.Path("{clone_dir}")
if "google.colab" in sys.modules and not COURSE_DIR.exists():
    subprocess.run(["git", "clone", "--depth", "1", "--branch", "{branch}",
                    f"https://github.com/{{COURSE_REPO}}", str(COURSE_DIR)], check=True)
for _root in [pathlib.Path.cwd(), *pathlib.Path.cwd().parents, COURSE_DIR.resolve()]:
    if (_root / "utils" / "course.py").is_file():
        if str(_root) not in sys.path:
            sys.path.insert(0, str(_root))
        break'''

SUMMARY_HEADING = "## 요약"
_ABS_PATH = re.compile(r"""["'](?:/(?:[\w.-]+/)+|[A-Za-z]:\\|~/)""")
_BADGE = re.compile(r"\[!\[Open In Colab\]\([^)]*\)\]\(([^)]*)\)")


def setup_source(repo=None, branch=None, clone_dir=None):
    """The source of the setup cell for the given repository (default: ``utils.course``)."""
    return SETUP_TEMPLATE.format(repo=repo or course.REPO, branch=branch or course.BRANCH,
                                 clone_dir=clone_dir or course.CLONE_DIR)


def badge_target(path, repo=None, branch=None, root=ROOT):
    """The Colab address a notebook's badge must point at. ``path``: the notebook file."""
    rel = pathlib.Path(path).resolve().relative_to(pathlib.Path(root).resolve()).as_posix()
    if rel.startswith("solutions/"):
        rel = "assignments/" + rel[len("solutions/"):]
    return f"https://colab.research.google.com/github/{repo or course.REPO}/blob/{branch or course.BRANCH}/{rel}"


def badge_markdown(path, repo=None, branch=None, root=ROOT):
    return f"[![Open In Colab]({BADGE_IMG})]({badge_target(path, repo, branch, root)})"


def _kind(path, root):
    rel = pathlib.Path(path).resolve().relative_to(pathlib.Path(root).resolve())
    return rel.parts[0] if len(rel.parts) > 1 else ""


def check_notebook(path, root=ROOT):
    """Return the list of conventions that the notebook at ``path`` breaks (empty when it keeps all)."""
    path = pathlib.Path(path)
    problems = []
    try:
        nb = nbformat.read(str(path), as_version=nbformat.NO_CONVERT)
    except Exception as err:  # not JSON, not a notebook
        return [f"not a readable notebook: {err}"]
    if nb.get("nbformat") != 4:
        problems.append(f"nbformat 4 expected, got {nb.get('nbformat')}")
    try:
        nbformat.validate(nb)
    except nbformat.ValidationError as err:
        problems.append(f"invalid nbformat: {err.message}")
    kernel = nb.get("metadata", {}).get("kernelspec", {}).get("name")
    if kernel != "python3":
        problems.append(f"kernelspec 'python3' expected, got {kernel!r}")
    cells = nb.get("cells", [])
    first = cells[0] if cells else None
    if first is None or first.get("cell_type") != "markdown":
        problems.append("the first cell must be markdown with the title and the Colab badge")
    else:
        src = first.source
        if not re.match(r"#\s+\S", src.lstrip()):
            problems.append("the first cell must start with a '# Title' line")
        m = _BADGE.search(src)
        want = badge_target(path, root=root)
        if not m:
            problems.append("no 'Open In Colab' badge in the first cell")
        elif m.group(1) != want:
            problems.append(f"the Colab badge points at {m.group(1)}, expected {want}")
        if _kind(path, root) == "lectures" and not any(h in src for h in NOTES_HEADINGS):
            problems.append("a lecture's first cell must name the part of the notes it covers, "
                            f"one of {NOTES_HEADINGS}")
    code = [c for c in cells if c.get("cell_type") == "code"]
    setup = setup_source()
    if not code or code[0].source.strip() != setup.strip():
        problems.append("the first code cell must be the course setup cell (python -m utils.notebooks fix)")
    if sum(c.source.strip() == setup.strip() for c in code) > 1:
        problems.append("the setup cell appears more than once")
    for i, c in enumerate(cells):
        for line in c.get("source", "").splitlines():
            if _ABS_PATH.search(line) and "http" not in line:
                problems.append(f"cell {i} names an absolute path: {line.strip()[:80]}")
    if _kind(path, root) == "assignments" and any(c.get("outputs") for c in code):
        problems.append("a student version must carry no outputs (regenerate it from solutions/)")
    return problems


def summary_problems(path, root=ROOT):
    """Convention 7: a lecture must end with a markdown cell whose first line is ``## 요약``.

    Returns the list of problems (empty when it keeps it, or when ``path`` is not a lecture). Kept apart
    from :func:`check_notebook` so that its test shows on its own; ``check`` on the command line runs both.
    """
    if _kind(path, root) != "lectures":
        return []
    try:
        nb = nbformat.read(str(path), as_version=nbformat.NO_CONVERT)
    except Exception as err:
        return [f"not a readable notebook: {err}"]
    cells = [c for c in nb.get("cells", []) if c.get("source", "").strip()]
    last = cells[-1] if cells else None
    if last is None or last.get("cell_type") != "markdown" \
            or last.source.strip().splitlines()[0].strip() != SUMMARY_HEADING:
        if any(c.get("source", "").strip().startswith(SUMMARY_HEADING) for c in cells):
            return [f"the '{SUMMARY_HEADING}' cell must be the lecture's last cell (a markdown cell)"]
        return [f"a lecture must end with a Korean summary: a markdown cell whose first line is '{SUMMARY_HEADING}'"]
    return []


def all_notebooks(root=ROOT):
    """Every course notebook under lectures/, solutions/ and assignments/, sorted."""
    root = pathlib.Path(root)
    found = []
    for d in NOTEBOOK_DIRS:
        found += [p for p in (root / d).rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts]
    return sorted(found)


def fix_notebook(path, repo=None, branch=None, root=ROOT):
    """Rewrite the badge in the first cell and the setup cell (inserting either if missing)."""
    path = pathlib.Path(path)
    nb = nbformat.read(str(path), as_version=4)
    badge = badge_markdown(path, repo, branch, root)
    first = nb.cells[0] if nb.cells else None
    if first is not None and first.cell_type == "markdown":
        if _BADGE.search(first.source):
            first.source = _BADGE.sub(lambda _m: badge, first.source)
        else:
            lines = first.source.split("\n")
            first.source = "\n".join(lines[:1] + ["", badge] + lines[1:])
    else:
        nb.cells.insert(0, nbformat.v4.new_markdown_cell(f"# {path.stem}\n\n{badge}"))
    setup = setup_source(repo, branch)
    old = setup_source()
    code = [c for c in nb.cells if c.cell_type == "code"]
    is_setup = [c for c in code if c.source.strip() in (old.strip(), setup.strip())
                or c.source.startswith("# Course setup")]
    if is_setup:
        is_setup[0].source = setup
    else:
        cell = nbformat.v4.new_code_cell(setup)
        nb.cells.insert(1, cell)
    nb.metadata["kernelspec"] = {"display_name": "Python 3", "language": "python", "name": "python3"}
    nbformat.write(nb, str(path))


def new_notebook(path, title):
    """Create ``path`` with the title, the badge and the setup cell."""
    path = pathlib.Path(path)
    if path.exists():
        raise FileExistsError(f"path: {path} exists already")
    path.parent.mkdir(parents=True, exist_ok=True)
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"display_name": "Python 3", "language": "python", "name": "python3"}
    nb.metadata["language_info"] = {"name": "python"}
    nb.cells = [nbformat.v4.new_markdown_cell(f"# {title}"), nbformat.v4.new_code_cell(setup_source())]
    nbformat.write(nb, str(path))
    fix_notebook(path)


def repoint(repo, branch=None, root=ROOT):
    """Point the course at another repository: utils/course.py, every badge and every setup cell."""
    if not re.fullmatch(r"[\w.-]+/[\w.-]+", repo):
        raise ValueError(f"repo: expected OWNER/NAME, got {repo!r}")
    branch = branch or course.BRANCH
    course_file = pathlib.Path(root) / "utils" / "course.py"
    text = course_file.read_text()
    text = re.sub(r'^REPO = ".*"$', f'REPO = "{repo}"', text, flags=re.M)
    text = re.sub(r'^BRANCH = ".*"$', f'BRANCH = "{branch}"', text, flags=re.M)
    course_file.write_text(text)
    for nb in all_notebooks(root):
        fix_notebook(nb, repo, branch, root)
    course.REPO, course.BRANCH = repo, branch


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m utils.notebooks", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("check")
    p.add_argument("paths", nargs="*")
    p = sub.add_parser("new")
    p.add_argument("path")
    p.add_argument("--title", required=True)
    p = sub.add_parser("fix")
    p.add_argument("paths", nargs="+")
    p = sub.add_parser("repoint")
    p.add_argument("repo")
    p.add_argument("--branch")
    args = parser.parse_args(argv)
    if args.cmd == "check":
        paths = [pathlib.Path(p) for p in args.paths] or all_notebooks()
        bad = 0
        for path in paths:
            for problem in check_notebook(path) + summary_problems(path):
                bad += 1
                print(f"{path}: {problem}")
        print(f"{len(paths)} notebooks checked, {bad} problems")
        return 1 if bad else 0
    if args.cmd == "new":
        new_notebook(args.path, args.title)
    elif args.cmd == "fix":
        for path in args.paths:
            fix_notebook(path)
    elif args.cmd == "repoint":
        repoint(args.repo, args.branch)
        print(f"course now points at {args.repo} ({course.BRANCH}); {len(all_notebooks())} notebooks rewritten")
    return 0


if __name__ == "__main__":
    sys.exit(main())
