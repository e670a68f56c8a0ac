"""The course website: it builds from the notebooks, and every page works in a real browser.

The browser part opens every page in the system's headless Chromium (``/usr/bin/chromium``, driven by
Playwright, which never downloads a browser of its own) and checks: no console error and no failed
request, every image loaded, every formula typeset by MathJax (no raw ``$...$`` left), every internal
link and anchor resolves to a built file, and every Colab link points at its notebook's own path.
Screenshots of the home page and of lecture 5 go to ``_build/artefacts/``. It skips, saying why, where
Chromium or Playwright is missing.
"""

import pathlib
import re
import shutil
import subprocess
import sys
import tempfile
import urllib.parse

import nbformat
import pytest

from utils import course, site
from utils.notebooks import badge_target

ROOT = pathlib.Path(__file__).resolve().parent.parent
ARTEFACTS = ROOT / "_build" / "artefacts"
CHROMIUM = pathlib.Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
NOTEBOOKS = {p.relative_to(ROOT).with_suffix(".html").as_posix(): p for p in site.site_notebooks()}
PAGES = ["index.html", "glossary.html", "data.html", "genindex.html", "search.html", *NOTEBOOKS]
COLAB = "https://colab.research.google.com/github/"


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """The site, built by the README's command (into a temporary folder)."""
    out = tmp_path_factory.mktemp("site") / "site"
    run = subprocess.run([sys.executable, "-m", "utils.site", "--out", str(out)], cwd=ROOT,
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr
    return out


def test_the_site_has_one_page_per_notebook_and_no_solutions(built):
    pages = sorted(p.relative_to(built).as_posix() for p in built.rglob("*.html") if "_static" not in p.parts)
    assert pages == sorted(PAGES)
    assert len(NOTEBOOKS) == len(list(ROOT.glob("lectures/*.ipynb"))) + len(list(ROOT.glob("assignments/*/*.ipynb")))
    assert not (built / "solutions").exists()
    # The student versions, not the solutions: an assignment page shows the blanks.
    for rel in NOTEBOOKS:
        if rel.startswith("assignments/"):
            assert "YOUR CODE HERE" in (built / rel).read_text(), rel


def test_the_pages_load_nothing_from_the_network(built):
    for rel in PAGES:
        text = (built / rel).read_text()
        remote = re.findall(r'<(?:script|img|link|iframe)\b[^>]*?(?:src|href)="((?:https?:)?//[^"]+)"', text)
        assert not remote, (rel, remote)
    assert (built / "_static" / "mathjax" / "tex-chtml.js").is_file()


def test_the_notebooks_are_prepared_for_the_site():
    nb = nbformat.read(str(ROOT / "lectures" / "02_rnn_and_bptt.ipynb"), as_version=4)
    site.prepare_notebook(nb, "lectures/02_rnn_and_bptt.ipynb")
    bars = [o["data"]["text/html"] for c in nb.cells for o in c.get("outputs", [])
            if "text/html" in o.get("data", {}) and "course-progress" in o["data"]["text/html"]]
    assert bars and all(site.WIDGET_VIEW not in o.get("data", {}) for c in nb.cells for o in c.get("outputs", []))
    done = re.compile(r'<progress value="(\d+(?:\.\d+)?)" max="(\d+(?:\.\d+)?)">')
    states = [(float(m.group(1)), float(m.group(2))) for m in map(done.search, bars)]
    # each bar keeps its final state: full, except where the lecture interrupts a run on purpose (checkpoints)
    assert all(0 <= v <= m for v, m in states) and sum(v == m for v, m in states) >= len(states) - 1, bars[:2]
    assert "widgets" not in nb.metadata
    assert "../_static/colab-badge.svg" in nb.cells[0].source
    details = [c.source for c in nb.cells if "<details>" in c.source]
    assert details and all(re.search(r"</summary>\n\n", s) and re.search(r"\n\n\s*</details>", s) for s in details)


# ---- in the browser ------------------------------------------------------------------------------------------

def _browser_or_skip():
    if not CHROMIUM.is_file():
        pytest.skip(f"no Chromium at {CHROMIUM}: `apt-get install chromium` (.ci/run does it where it can)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("Playwright for Python is not installed: `python -m pip install -r requirements.txt`")
    return sync_playwright


@pytest.fixture(scope="module")
def browser_page(built):
    sync_playwright = _browser_or_skip()
    with tempfile.TemporaryDirectory() as profile, sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            profile, executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS,
            viewport={"width": 1280, "height": 900}, offline=True)
        page = context.new_page()
        page.errors = []
        page.on("console", lambda m: m.type == "error" and page.errors.append(f"console: {m.text}"))
        page.on("pageerror", lambda e: page.errors.append(f"page error: {e}"))
        page.on("requestfailed", lambda r: page.errors.append(f"request failed: {r.url} ({r.failure})"))
        yield page
        context.close()


# Everything below runs in the page once it has loaded: make lazy images load, wait for them and for MathJax.
SETTLE = """async () => {
  const imgs = [...document.images];
  imgs.forEach(i => i.loading = "eager");
  await Promise.all(imgs.map(i => i.decode().catch(() => null)));
  if (window.MathJax && MathJax.startup) await MathJax.startup.promise;
}"""

INSPECT = r"""() => {
  const skip = "pre, code, .highlight, mjx-container, script, style, .cell_output";
  const walker = document.createTreeWalker(document.querySelector("article") || document.body,
                                           NodeFilter.SHOW_TEXT);
  const texts = [];
  while (walker.nextNode()) {
    const n = walker.currentNode;
    if (!n.parentElement.closest(skip)) texts.push(n.textContent);
  }
  return {
    brokenImages: [...document.images].filter(i => !i.complete || i.naturalWidth === 0).map(i => i.src),
    mathElements: document.querySelectorAll(".math").length,
    untypeset: [...document.querySelectorAll(".math")].filter(e => !e.querySelector("mjx-container"))
                 .map(e => e.textContent.slice(0, 60)),
    typeset: document.querySelectorAll("mjx-container").length,
    text: texts.join(" "),
    links: [...document.querySelectorAll("a[href]")].map(a => a.href),
  };
}"""


def _target_exists(url, built):
    parsed = urllib.parse.urlparse(url)
    path = pathlib.Path(urllib.parse.unquote(parsed.path))
    if path.is_dir():
        path = path / "index.html"
    if not path.is_file() or built.resolve() not in path.resolve().parents:
        return f"{url}: no such file in the site"
    if parsed.fragment and path.suffix == ".html":
        ids = set(re.findall(r'\bid="([^"]+)"', path.read_text()))
        if urllib.parse.unquote(parsed.fragment) not in ids:
            return f"{url}: no element with id {parsed.fragment!r}"
    return None


def _page_problems(page, built, rel):
    """Open ``built/rel`` in the browser and return what is wrong with it (an empty list when nothing is)."""
    page.errors.clear()
    page.goto((built / rel).as_uri(), wait_until="load")
    page.evaluate(SETTLE)
    seen = page.evaluate(INSPECT)
    problems = list(page.errors)
    problems += [f"image did not load: {src}" for src in seen["brokenImages"]]
    problems += [f"formula not typeset: {t!r}" for t in seen["untypeset"]]
    raw = re.findall(r"\$[^$\s][^$]*\$|\\\(|\\\[", seen["text"])
    problems += [f"raw maths left in the text: {t[:60]!r}" for t in raw]
    if (rel in NOTEBOOKS or rel in ("glossary.html", "index.html")) and not seen["typeset"]:
        problems.append("no formula typeset by MathJax on a page that has maths")
    problems += [_target_exists(url, built) for url in seen["links"] if url.startswith("file:")]
    colab = [u for u in seen["links"] if u.startswith(COLAB)]
    if rel in NOTEBOOKS:
        want = badge_target(NOTEBOOKS[rel])
        problems += [f"Colab link {u} should be {want}" for u in colab if u != want]
        if not colab:
            problems.append("no Open in Colab link")
    for url in colab:
        nb = url.removeprefix(f"{COLAB}{course.REPO}/blob/{course.BRANCH}/")
        if nb == url or (ROOT / nb) not in NOTEBOOKS.values():
            problems.append(f"Colab link {url} does not point at a notebook of the site in {course.REPO}")
    return [p for p in problems if p]


@pytest.mark.parametrize("rel", PAGES)
def test_every_page_works_in_chromium(browser_page, built, rel):
    problems = _page_problems(browser_page, built, rel)
    if rel in ("index.html", "lectures/05_transformer.html"):
        ARTEFACTS.mkdir(parents=True, exist_ok=True)
        browser_page.screenshot(path=str(ARTEFACTS / ("home.png" if rel == "index.html" else "lecture05.png")))
    assert not problems, f"{rel}:\n  " + "\n  ".join(problems)


def test_the_browser_check_catches_a_broken_page(browser_page, built, tmp_path):
    """Each check above fails when a page is wrong: a lecture page with its Colab link pointing at another
    notebook, MathJax missing, an anchor that does not exist, a missing and a remote image, raw maths and a
    script error."""
    broken = tmp_path / "site"
    shutil.copytree(built, broken)
    rel = "lectures/01_sequence_data.html"
    page = broken / rel
    text = page.read_text()
    text = text.replace("/lectures/01_sequence_data.ipynb", "/lectures/02_rnn_and_bptt.ipynb")
    text = text.replace("_static/mathjax/tex-chtml.js", "_static/mathjax/gone.js")
    text = text.replace("</article>", '<a href="02_rnn_and_bptt.html#no-such-section">x</a>'
                        '<p>Raw $x_t$ here.</p><img src="missing.png"><img src="https://example.org/remote.png">'
                        "<script>undefinedFunction()</script></article>")
    page.write_text(text)
    problems = "\n".join(_page_problems(browser_page, broken, rel))
    for expected in ("should be " + badge_target(ROOT / "lectures" / "01_sequence_data.ipynb"), "gone.js",
                     "formula not typeset", "no formula typeset", "no element with id 'no-such-section'",
                     "missing.png", "image did not load", "example.org", "raw maths left in the text: '$x_t$'",
                     "undefinedFunction"):
        assert expected in problems, (expected, problems)
    assert _target_exists((broken / "nowhere.html").as_uri(), broken) is not None


def test_links_to_the_helpers_source_point_at_github():
    from utils import course
    from utils.site import _source_links
    src = ("[train](../utils/training.py), [data](../utils/data.py#L10), [lecture 2](02_rnn_and_bptt.ipynb#bptt), "
           "[web](https://pytorch.org), [here](#top)")
    out = _source_links(src, "lectures/01_sequence_data.ipynb")
    base = f"https://github.com/{course.REPO}/blob/{course.BRANCH}/"
    assert f"[train]({base}utils/training.py)" in out
    assert f"[data]({base}utils/data.py#L10)" in out
    assert "[lecture 2](02_rnn_and_bptt.ipynb#bptt)" in out and "[web](https://pytorch.org)" in out
    assert "[here](#top)" in out
