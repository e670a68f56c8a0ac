"""Build the course website: static HTML from the notebooks and their stored outputs.

    python -m utils.site [--out _build/site]

The sources of the pages that are not notebooks (home, glossary, data, Sphinx's ``conf.py``) live in
``docs/``. The build copies them, ``lectures/*.ipynb`` and the student versions
``assignments/*/*.ipynb`` (never ``solutions/``) into ``_build/site-src``, makes two changes to the
copies so that a page needs nothing from the network, and runs Sphinx with myst-nb, which renders the
stored outputs and executes nothing:

- the "Open in Colab" badge image becomes a local copy (its link still points at the notebook in Colab);
- a relative link to a repository file that is not a page of the site (``../utils/training.py``: the
  lectures link the helpers' source) points at that file on GitHub instead;
- the body of a ``<details>`` block is set apart by blank lines, so that its maths and markdown render
  here as they do in Jupyter (MyST, like CommonMark, leaves an HTML block without blank lines raw);
- the tqdm progress bars, stored as Jupyter widgets (which need JavaScript from a CDN), become static
  HTML with the bar's final state, read from the widget state saved in the notebook.

Sphinx runs with warnings as errors, so a broken link or anchor fails the build.
"""

import argparse
import pathlib
import re
import shutil
import sys
import time

import nbformat

from . import course
from .notebooks import BADGE_IMG

ROOT = pathlib.Path(__file__).resolve().parent.parent
OUT = ROOT / "_build" / "site"
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
BADGE_LOCAL = "_static/colab-badge.svg"


def site_notebooks(root=ROOT):
    """The notebooks the site shows: every lecture and the student version of every assignment."""
    root = pathlib.Path(root)
    return sorted(root.glob("lectures/*.ipynb")) + sorted(root.glob("assignments/*/*.ipynb"))


def _progress_html(model_id, state):
    """Static HTML for a stored tqdm widget (label, bar, counts), or None if its state was not saved."""
    box = state.get(model_id, {}).get("state", {})
    parts = []
    for child in box.get("children", []):
        model = state.get(child.removeprefix("IPY_MODEL_"), {})
        values = model.get("state", {})
        if model.get("model_name") == "HTMLModel":
            parts.append(values.get("value", ""))
        elif model.get("model_name") in ("FloatProgressModel", "IntProgressModel"):
            parts.append(f'<progress value="{values.get("value", 0)}" max="{values.get("max", 100)}"></progress>')
    if not parts:
        return None
    return '<div class="course-progress">' + " ".join(parts) + "</div>"


_LINK = re.compile(r"\]\(([^)\s#]+)(#[^)\s]*)?\)")


def _source_links(src, rel):
    """Point relative links to repository files that are not site pages (``*.py``, folders) at GitHub."""
    def repl(m):
        target, anchor = m.group(1), m.group(2) or ""
        if re.match(r"[a-z]+:", target) or target.endswith((".ipynb", ".md", ".html", ".png", ".svg")):
            return m.group(0)
        path = pathlib.PurePosixPath(rel).parent
        for part in pathlib.PurePosixPath(target).parts:
            path = path.parent if part == ".." else path / part
        return f"](https://github.com/{course.REPO}/blob/{course.BRANCH}/{path.as_posix()}{anchor})"
    return _LINK.sub(repl, src)


def prepare_notebook(nb, rel):
    """Make a notebook self-contained for the site (see the module docstring). ``rel``: its path in the repo."""
    badge = "../" * (len(pathlib.PurePosixPath(rel).parts) - 1) + BADGE_LOCAL
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            src = _source_links(cell.source.replace(BADGE_IMG, badge), rel)
            src = re.sub(r"</summary>[ \t]*\n+", "</summary>\n\n", src)
            cell.source = re.sub(r"\n+([ \t]*)</details>", r"\n\n\1</details>", src)
    state = nb.metadata.pop("widgets", {}).get(WIDGET_STATE, {}).get("state", {})
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            if WIDGET_VIEW in data:
                static = _progress_html(data.pop(WIDGET_VIEW).get("model_id", ""), state)
                if static is not None:  # else the widget's text/plain stays
                    data["text/html"] = static
    return nb


def stage(src, root=ROOT):
    """Copy the site sources and the notebooks into ``src`` (emptied first)."""
    src = pathlib.Path(src)
    if src.exists():
        shutil.rmtree(src)
    shutil.copytree(root / "docs", src)
    for path in site_notebooks(root):
        rel = path.relative_to(root).as_posix()
        nb = prepare_notebook(nbformat.read(str(path), as_version=4), rel)
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, str(src / rel))
    return src


def build(out=OUT, root=ROOT, quiet=True):
    """Build the site into ``out``; return the list of HTML pages. Raises RuntimeError if Sphinx fails."""
    from sphinx.cmd.build import build_main

    out = pathlib.Path(out)
    work = out.parent
    src = stage(work / "site-src", root)
    if out.exists():
        shutil.rmtree(out)
    args = ["-b", "html", "-W", "--keep-going", "-E", "-d", str(work / "site-doctrees"), str(src), str(out)]
    if quiet:
        args.insert(0, "-q")
    if build_main(args) != 0:
        raise RuntimeError("the site did not build (Sphinx's warnings and errors are above)")
    return sorted(p for p in out.rglob("*.html") if "_static" not in p.parts)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m utils.site", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(OUT), help="output folder (default: _build/site)")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    try:
        pages = build(args.out)
    except RuntimeError as err:
        print(err, file=sys.stderr)
        return 1
    index = pathlib.Path(args.out).resolve() / "index.html"
    print(f"{len(pages)} pages in {time.perf_counter() - start:.0f} s: open {index}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
