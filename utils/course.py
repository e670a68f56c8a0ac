"""Where the course lives. The one place that names the repository.

``python -m utils.notebooks repoint OWNER/NAME [--branch BRANCH]`` rewrites this file and every
notebook's Colab badge and setup cell, so that a fork points at itself.
"""

REPO = "seqmodels-course/sequence-models"
BRANCH = "main"
# Folder name the Colab setup cell clones the course into (relative to Colab's working folder).
CLONE_DIR = "sequence-models"
# The address of the course's submission service (``python -m service serve``), e.g.
# "https://grading.example.org": the assignments' last cell submits there. None: not set (the cell says
# so; a student can then give the address in the cell, or the environment variable SUBMIT_URL).
SUBMIT_URL = None
