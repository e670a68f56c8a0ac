"""Sphinx configuration of the course website. Build it with ``python -m utils.site``.

The build copies these sources, the lectures and the student versions of the assignments into a staging
folder (``_build/site-src``) and renders the notebooks with their stored outputs (myst-nb, no execution).
Everything the pages load is local: MathJax 3 comes from the ``sphinx-mathjax-offline`` package.
"""

from utils import course
from utils.notebooks import badge_target
from utils.site import site_notebooks

project = "Sequence models"
author = "the course authors"
language = "en"

extensions = ["myst_nb", "sphinx-mathjax-offline"]
myst_enable_extensions = ["dollarmath", "amsmath", "substitution"]
myst_heading_anchors = 3
# {{ repo }} and {{ colab_<notebook stem> }} (a badge, for index.md) follow utils/course.py, and so a fork.
myst_substitutions = {"repo": f"[{course.REPO}](https://github.com/{course.REPO})"} | {
    f"colab_{path.stem}": f"[![Open in Colab](_static/colab-badge.svg)]({badge_target(path)})"
    for path in site_notebooks()}

# Render the outputs stored in the notebooks; never run them (CI re-executes every notebook already).
nb_execution_mode = "off"
# No widget JavaScript from a CDN: utils.site turns the stored progress-bar widgets into static HTML.
nb_ipywidgets_js = {}

exclude_patterns = ["_build", "**.ipynb_checkpoints"]
# A notebook may go from "#" to "###" (the assignment's note on masks); that is not worth failing the build.
suppress_warnings = ["myst.header"]

html_theme = "furo"
html_title = "Sequence models"
html_static_path = ["_static"]
html_css_files = ["course.css"]
html_show_sourcelink = False
html_copy_source = False
