"""Submit this notebook to the course's submission service and print its graded feedback.

The last cell of an assignment::

    from utils.submit import submit
    submit("lstm", "https://grading.example.org")

(the released assignments' cell passes ``utils.course.SUBMIT_URL``, which the instructor sets; with
``None`` the environment variable ``SUBMIT_URL`` is used, and without it the cell says what to do).

It asks for your token (``getpass``: it is never written into the notebook; set the environment
variable ``SUBMIT_TOKEN`` instead to submit from a script), sends the notebook, waits for the grading
and prints each part's score and reason, and the link to the feedback page. In Colab it sends the open
notebook as Colab holds it (nothing to download); in Jupyter it sends the file as last saved (save
first: Ctrl+S), found by its name unless ``notebook_path`` is given. Only the standard library is used,
so nothing needs installing.
"""

import getpass
import json
import os
import pathlib
import sys
import time
import urllib.error
import urllib.request
import uuid


class SubmitError(RuntimeError):
    """Why a submission did not go through (the message says what to do)."""


def _colab_notebook():
    """The open notebook's JSON as Colab holds it (as Otter's export reads it)."""
    from google.colab import _message

    reply = _message.blocking_request("get_ipynb", request="", timeout_sec=120)
    if not reply or "ipynb" not in reply:
        raise SubmitError("Colab did not hand over the notebook: run this cell again")
    return json.dumps(reply["ipynb"]).encode()


def find_notebook(assignment, folder="."):
    """The notebook being run in Jupyter: Jupyter's session name, VS Code's, or ASSIGNMENT.ipynb in ``folder``."""
    candidates = [os.environ.get("JPY_SESSION_NAME", "")]
    try:
        ip = get_ipython()  # noqa: F821 (defined in IPython only)
        candidates.append(ip.user_ns.get("__vsc_ipynb_file__", ""))
    except NameError:
        pass
    for name in candidates:
        if name and name.endswith(".ipynb") and pathlib.Path(name).is_file():
            return pathlib.Path(name)
    folder = pathlib.Path(folder)
    named = sorted(folder.glob(f"*{assignment}*.ipynb"), key=lambda p: p.stat().st_mtime, reverse=True)
    if named:
        return named[0]
    raise SubmitError(f"cannot find the notebook of {assignment} in {folder.resolve()}: "
                      f'give its path, submit("{assignment}", URL, "path/to/{assignment}.ipynb")')


def _request(method, url, token, body=None, content_type=None, timeout=60):
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
    if content_type:
        headers["Content-Type"] = content_type
    req = urllib.request.Request(url, data=body, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as reply:
            return json.loads(reply.read().decode())
    except urllib.error.HTTPError as err:
        try:
            detail = json.loads(err.read().decode()).get("detail", "")
        except (ValueError, AttributeError):
            detail = ""
        if err.code == 401:
            raise SubmitError("the server does not know this token: check it (copy it again, without spaces)") from None
        raise SubmitError(f"the server refused ({err.code}): {detail or err.reason}") from None
    except (urllib.error.URLError, OSError) as err:
        reason = getattr(err, "reason", err)
        raise SubmitError(f"cannot reach the server at {url}: {reason}") from None


def _multipart(fields, filename, content):
    boundary = uuid.uuid4().hex
    lines = []
    for key, value in fields.items():
        lines.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{key}"\r\n\r\n{value}\r\n'.encode())
    lines.append(f'--{boundary}\r\nContent-Disposition: form-data; name="notebook"; filename="{filename}"\r\n'
                 "Content-Type: application/x-ipynb+json\r\n\r\n".encode() + content + b"\r\n")
    lines.append(f"--{boundary}--\r\n".encode())
    return b"".join(lines), f"multipart/form-data; boundary={boundary}"


def table(status):
    """The parts of a graded submission as a text table."""
    rows = [("part", "score", "max", "reason")]
    for p in status.get("parts", []):
        rows.append((p["name"], f"{p['score']:g}", f"{p['max_score']:g}", p.get("reason") or ""))
    total = (f"{status['score']:g}" if status.get("score") is not None else "-",
             f"{status['max_score']:g}" if status.get("max_score") is not None else "-")
    rows.append(("total (automatic)", *total, ""))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = [f"{r[0]:<{widths[0]}}  {r[1]:>{widths[1]}}  {r[2]:>{widths[2]}}  {r[3]}".rstrip() for r in rows]
    lines.insert(1, "-" * (sum(widths) + 10))
    lines.insert(len(lines) - 1, "-" * (sum(widths) + 10))
    return "\n".join(lines)


def submit(assignment, server_url, notebook_path=None, *, token=None, wait=True, timeout=900, poll_s=3,
           out=print):
    """Send the notebook of ``assignment`` to ``server_url``; wait for its grading and print the parts.

    Returns the submission's status (a dict: status, score, max_score, parts, feedback_url, ...).
    Raises SubmitError with what to do when it cannot submit.
    """
    server_url = server_url or os.environ.get("SUBMIT_URL")
    if not server_url:
        raise SubmitError("no server address: your instructor gives it (or sets SUBMIT_URL in utils/course.py); "
                          f'write it in this cell, submit("{assignment}", "https://...")')
    server = server_url.rstrip("/")
    if notebook_path is None and "google.colab" in sys.modules:
        content, filename = _colab_notebook(), f"{assignment}.ipynb"
    else:
        path = pathlib.Path(notebook_path) if notebook_path else find_notebook(assignment)
        if not path.is_file():
            raise SubmitError(f"no notebook at {path}")
        content, filename = path.read_bytes(), path.name
        saved = time.strftime("%H:%M:%S", time.localtime(path.stat().st_mtime))
        out(f"sending {path} as saved at {saved} (save first, Ctrl+S, to send your latest changes)")
    token = token or os.environ.get("SUBMIT_TOKEN") or getpass.getpass(f"Your token for {server}: ")
    token = token.strip()
    if not token:
        raise SubmitError("no token given")
    body, content_type = _multipart({"assignment": assignment}, filename, content)
    reply = _request("POST", f"{server}/api/submissions", token, body, content_type)
    out(f"submitted: number {reply['id']}, {reply['url']}")
    if not wait:
        return reply
    deadline, said = time.monotonic() + timeout, None
    while True:
        status = _request("GET", f"{server}/api/submissions/{reply['id']}", token)
        if status["status"] in ("graded", "failed"):
            break
        now = (status["status"], status.get("position"))
        if now != said:
            out(f"{status['status']}" + (f": number {now[1]} in the queue" if now[1] else ""))
            said = now
        if time.monotonic() > deadline:
            out(f"still {status['status']} after {timeout} s: see {reply['url']}")
            return status
        time.sleep(poll_s)
    out(table(status))
    if status["status"] == "failed" and status.get("reason"):
        out(f"grading failed: {status['reason']}")
    if status.get("manual_parts"):
        out("graded by hand later: " + ", ".join(p["name"] for p in status["manual_parts"]))
    if status.get("feedback_url"):
        out(f"feedback: {status['feedback_url']}")
    return status
