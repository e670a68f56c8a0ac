"""Where the course lives. The one place that names the repository.

``python -m utils.notebooks repoint OWNER/NAME [--branch BRANCH]`` rewrites this file and every
notebook's Colab badge and setup cell, so that a fork points at itself.
"""

REPO = "seqmodels-course/sequence-models"
BRANCH = "main"
# Folder name the Colab setup cell clones the course into (relative to Colab's working folder).
CLONE_DIR = "sequence-models"
