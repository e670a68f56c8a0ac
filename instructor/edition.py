"""The student edition: what students clone (and Colab clones for them), built from this repository.

    python -m instructor.edition build --repo OWNER/NAME [--branch main] DEST

copies into the folder DEST (made or emptied; never this repository) the folders of :data:`FOLDERS`
and the files of :data:`FILES`, writes the students' README (:data:`README`), then re-points every
notebook's Colab badge and setup cell and ``utils/course.py`` at the student repository ``OWNER/NAME``
(``utils.notebooks.repoint``). The edition is a selection of folders, never a list of exceptions:
``solutions/``, ``instructor/`` (grading, the independent check, this builder), ``tests/`` and
``benchmarks/`` are simply not selected. ``tests/test_edition.py`` checks the result by content.

Publish it (no instructors' history): ``cd DEST && git init -b main && git add -A && git commit -m
"..." && git push --force git@github.com:OWNER/NAME.git main``, or keep a clone of the student repository
as DEST and commit there after each build (``build`` keeps DEST's ``.git``).
"""

import argparse
import pathlib
import shutil
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]

# What ships to students: whole folders, then single files (paths relative to the repository root).
FOLDERS = ("lectures", "assignments", "docs", "utils")
FILES = ("requirements.txt", ".gitignore")
IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", ".ipynb_checkpoints", "_build")

README = """# Sequence models, from sequence data to the Transformer (student edition)

An open course of runnable Jupyter notebooks: sequence data and the RNN, backpropagation through time,
the LSTM and the GRU, attention, and the Transformer.

- `lectures/`: the lecture notebooks, with their outputs.
- `assignments/`: the assignments (`lstm/`, `multi_head_attention/`) to fill in and hand in.
- `utils/`: the helpers the notebooks import (training loop, plots, data, and the assignments' visible
  tests in `lstm_checks.py` and `mha_checks.py`).
- `docs/`: the sources of the course website (`python -m utils.site` builds it into `_build/site/`).

## Run it

In Colab: open a notebook with its "Open in Colab" badge; its first code cell clones this repository so
that `utils` imports. In Jupyter, on Python 3.11 (a CPU is enough):

```bash
python -m pip install -r requirements.txt && python -m jupyter lab
```

## Assignments

Open `assignments/<name>/<name>.ipynb`, fill the cells that say `YOUR CODE HERE` / `YOUR ANSWER HERE`,
and run the test cell under each part: it compares your code with PyTorch's own module and says where
your answer differs. The test of a part built on an earlier one runs PyTorch's own version of the
earlier part (`utils/torch_parts.py`), so a mistake costs only its own part; those stand-ins are not an
answer (the check of each part refuses its own stand-in, and so does the grader). Submit from the
notebook's last cell: set `SUBMIT = True` and run it; it asks for the token your instructor gave you
(never stored in the file), sends the notebook (in Colab, the open notebook itself) and prints each
part's score once it is graded. If your course collects files instead, hand in the notebook file
(Colab: File > Download > Download .ipynb). Hidden tests on other shapes and cases are added when it
is graded, and the written answers are graded by hand.
"""


def build(dest, repo, branch="main"):
    """Build the student edition into ``dest`` (a folder outside this repository); return its path.

    ``repo``: the student repository, ``OWNER/NAME``, that badges and setup cells point at.
    A ``.git`` folder already in ``dest`` is kept (a clone of the student repository to commit in).
    """
    from utils import course, notebooks

    dest = pathlib.Path(dest).resolve()
    if dest == ROOT or ROOT in dest.parents or dest in ROOT.parents:
        raise ValueError(f"dest: {dest} is inside (or above) the instructors' repository {ROOT}; pick a folder "
                         "outside it")
    if "/" not in repo or repo.count("/") != 1:
        raise ValueError(f"repo: expected OWNER/NAME, got {repo!r}")
    dest.mkdir(parents=True, exist_ok=True)
    for entry in dest.iterdir():
        if entry.name == ".git":
            continue
        shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()
    for folder in FOLDERS:
        shutil.copytree(ROOT / folder, dest / folder, ignore=IGNORE)
    for name in FILES:
        if (ROOT / name).is_file():
            shutil.copy2(ROOT / name, dest / name)
    (dest / "README.md").write_text(README)
    old = f"github.com/{course.REPO}/"  # links to the instructors' repository in the notebooks' text and docs
    for path in [*dest.rglob("*.ipynb"), *dest.rglob("*.md")]:
        text = path.read_text()
        if old in text:
            path.write_text(text.replace(old, f"github.com/{repo}/"))
    saved = course.REPO, course.BRANCH
    try:
        notebooks.repoint(repo, branch, root=dest)
    finally:  # repoint also re-points this process's utils.course: put the instructors' values back
        course.REPO, course.BRANCH = saved
    return dest


def sizes(dest):
    """{top-level entry: size in bytes} of an edition folder (``.git`` left out)."""
    dest = pathlib.Path(dest)
    out = {}
    for entry in sorted(dest.iterdir()):
        if entry.name == ".git":
            continue
        files = [entry] if entry.is_file() else [p for p in entry.rglob("*") if p.is_file()]
        out[entry.name] = sum(p.stat().st_size for p in files)
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m instructor.edition", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="build the student edition into a folder")
    b.add_argument("--repo", required=True, help="the student repository, OWNER/NAME")
    b.add_argument("--branch", default="main")
    b.add_argument("dest")
    args = parser.parse_args(argv)
    dest = build(args.dest, args.repo, args.branch)
    for name, size in sizes(dest).items():
        print(f"{size / 1024:10.0f} KB  {name}")
    print(f"student edition for {args.repo} in {dest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
