"""The student edition (instructor/edition.py), built into a temporary folder and checked by content.

- no line of any solution cell, of any hidden test, or of the instructors' reference process appears in
  any file of the edition (whitespace-normalised; the trivial lines of TRIVIAL excepted);
- nothing of the instructors' code imports there (``utils.reference``, ``instructor``), and the lectures
  import only what the edition holds (a static check: nbval already runs the lectures from the main tree);
- the released assignments, run from the edition alone, pass their visible tests with the solutions
  filled in (this run replaces nbval's run of solutions/) and fail them when blank.
"""

import ast
import json
import os
import pathlib
import re
import subprocess
import sys

import nbformat
import pytest
from nbclient import NotebookClient

from instructor import edition

ROOT = pathlib.Path(__file__).resolve().parent.parent
ASSIGNMENTS = ("lstm", "multi_head_attention")
STUDENT_REPO = "seqmodels-course/sequence-models-student"

# Lines of solutions and hidden tests that may appear in the edition because they say nothing of an
# answer (reviewed: a closing bracket, a bare return of a name, a loop header over the layers, ...).
TRIVIAL = {
    "", ")", "]", "}", "pass", "else:", "try:", "return x", "return out", "return output", "return None",
    "outputs = []", "h_n.append(h)", "c_n.append(c)", "outputs.append(h)", "for t in range(T):",
    "for k in range(self.num_layers):", "for k in range(num_layers):", "N, L, E = x.shape", "N, T, _ = x.shape",
    "torch.manual_seed(0)", "torch.manual_seed(1)", "torch.manual_seed(2)", "f64 = dict(dtype=torch.float64)",
    "### BEGIN SOLUTION", "### END SOLUTION", "### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS",
    # generic control flow and shapes, also in the lectures and the given code
    "if mask is not None:", "if key_padding_mask is not None:", "if attn_mask is not None:", "if grads:",
    "head_dim = d_model // num_heads", "N, L, D = x.shape", "with torch.no_grad():", "return cell",
    "torch.set_num_threads(1)", "with torch.set_grad_enabled(grads):", "atol=1e-12, rtol=1e-10)",
    "with torch.no_grad(), forbid(*FORBIDDEN):", "h_r, c_r = cell(leaves[0], (leaves[1], leaves[2]))",
    # hidden tests' set-up lines that repeat the visible tests' (utils/*_checks.py): inputs, not answers
    "q, k, v = torch.randn(2, 2, 3, 4), torch.randn(2, 2, 6, 4), torch.randn(2, 2, 6, 4)",
    "pad = torch.ones(2, 1, 1, 6, dtype=torch.bool)", "N, H, L, S = 2, 3, 4, 5", "kpm = torch.rand(N, S) > 0.6",
    "attn3 = torch.rand(N * H, L, S) > 0.5", "N, L, E, H = 2, 5, 16, 4", "kpm = torch.zeros(N, L, dtype=torch.bool)",
    "kpm[0, 3:] = True", "kpm[1, 4] = True", "attn3 = torch.rand(N * H, 4, 6) > 0.5",
    "attn3[..., 0] = False # every query keeps key 0", "kpm6 = torch.zeros(N, 6, dtype=torch.bool)",
    "future = torch.triu(torch.ones(L, L, dtype=torch.bool), diagonal=1) # True = may NOT attend",
    'check_allowed(mha_allowed_mask, None, attn3, N, H, L, S, "attn_mask (N * H, L, S)")',
    'check_allowed(mha_allowed_mask, kpm, attn3, N, H, L, S, "key_padding_mask and attn_mask (N * H, L, S)")',
    'attn_mask=future, case="float64, both masks")',
}


def _norm(line):
    return " ".join(line.split())


def _fenced(source, begin, end):
    out, inside = [], False
    for line in source.splitlines():
        if line.strip() == begin:
            inside = True
        elif line.strip() == end:
            inside = False
        elif inside:
            out.append(line)
    return out


def secret_lines():
    """{normalised line: where it comes from}: solution cells, written answers, hidden tests, reference bodies."""
    lines = {}
    for path in sorted((ROOT / "solutions").glob("*/*.ipynb")):
        for cell in nbformat.read(str(path), as_version=4).cells:
            meta = cell.metadata.get("nbgrader", {})
            found = _fenced(cell.source, "### BEGIN SOLUTION", "### END SOLUTION")
            found += _fenced(cell.source, "### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS")
            if cell.cell_type == "markdown" and meta.get("solution"):
                found += cell.source.splitlines()  # a written answer's model answer
            for line in found:
                lines.setdefault(_norm(line), f"{path.relative_to(ROOT)} ({meta.get('grade_id')})")
    ref = ROOT / "instructor" / "independent" / "reference.py"
    tree = ast.parse(ref.read_text())
    text = ref.read_text().splitlines()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef):
            body = node.body[1:] if ast.get_docstring(node) else node.body
            for stmt in body:
                for line in text[stmt.lineno - 1:stmt.end_lineno]:
                    lines.setdefault(_norm(line), f"instructor/independent/reference.py ({node.name})")
    return lines


def edition_text(dest):
    """{file: its text as normalised lines}: notebooks as their cells' sources and text outputs."""
    out = {}
    for path in sorted(p for p in pathlib.Path(dest).rglob("*") if p.is_file() and ".git" not in p.parts):
        if path.suffix == ".ipynb":
            nb = json.loads(path.read_text())
            chunks = []
            for cell in nb["cells"]:
                chunks.append("".join(cell["source"]))
                for o in cell.get("outputs", []):
                    chunks.append("".join(o.get("text", "")))
                    chunks.append("".join(o.get("data", {}).get("text/plain", "")))
            text = "\n".join(chunks)
        else:
            try:
                text = path.read_text()
            except UnicodeDecodeError:
                continue  # images: no code in them
        out[path] = "\n".join(_norm(line) for line in text.splitlines())
    return out


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    return edition.build(tmp_path_factory.mktemp("edition") / "student", STUDENT_REPO)


def test_the_edition_is_a_selection_of_folders(built):
    assert sorted(p.name for p in built.iterdir()) == sorted(
        [*edition.FOLDERS, *edition.FILES, "README.md"]), sorted(p.name for p in built.iterdir())
    sizes = edition.sizes(built)
    assert sizes["lectures"] > 0 and sizes["assignments"] > 0 and sizes["utils"] > 0
    course = (built / "utils" / "course.py").read_text()
    assert f'REPO = "{STUDENT_REPO}"' in course
    for path in built.rglob("*.ipynb"):
        text = path.read_text()
        assert "github.com/seqmodels-course/sequence-models/" not in text, path  # every link re-pointed
        assert f"colab.research.google.com/github/{STUDENT_REPO}/blob/main/{path.relative_to(built)}" in text, path


def test_no_solution_hidden_test_or_reference_line_is_in_the_edition(built):
    secrets = secret_lines()
    corpus = edition_text(built)
    searched = {line: where for line, where in secrets.items() if line not in TRIVIAL}
    excepted = len(secrets) - len(searched)
    found = []
    for line, where in searched.items():
        for path, text in corpus.items():
            if line in text:
                found.append(f"{where}: {line!r} in {path.relative_to(built)}")
                break
    assert len(searched) > 200, f"only {len(searched)} lines searched: are the markers still found?"
    assert not found, (f"{len(secrets)} distinct secret lines, {excepted} excepted as trivial, {len(searched)} "
                       f"searched in {len(corpus)} files, {len(found)} found:\n" + "\n".join(found[:40]))
    print(f"edition content check: {len(secrets)} lines, {excepted} excepted, {len(searched)} searched in "
          f"{len(corpus)} files, 0 found")


def _python(built, code):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH",)}
    env["PYTHONPATH"] = str(built)
    return subprocess.run([sys.executable, "-c", code], cwd=built, env=env, capture_output=True, text=True)


def test_the_instructors_code_does_not_import_in_the_edition(built):
    for code in ("from utils.reference import lstm_cell_forward", "import utils.reference",
                 "import instructor.grading", "import instructor.independent", "import utils.grading",
                 "import utils.independent"):
        run = _python(built, code)
        assert run.returncode != 0 and "ModuleNotFoundError" in run.stderr, (code, run.stderr[-300:])
    run = _python(built, "import utils, utils.lstm_checks, utils.mha_checks, utils.torch_parts, utils.training; "
                         "print(utils.__file__)")
    assert run.returncode == 0, run.stderr[-500:]
    assert run.stdout.strip().startswith(str(built)), run.stdout


def test_the_lectures_import_only_what_the_edition_holds(built):
    modules = {p.stem for p in (built / "utils").glob("*.py")} | {p.name for p in (built / "utils").iterdir()
                                                                   if p.is_dir() and (p / "__init__.py").exists()}
    for path in sorted((built / "lectures").glob("*.ipynb")):
        for cell in nbformat.read(str(path), as_version=4).cells:
            if cell.cell_type != "code":
                continue
            for name in re.findall(r"^\s*(?:from|import) utils\.(\w+)", cell.source, flags=re.M):
                assert name in modules, f"{path.name} imports utils.{name}, which the edition does not hold"
            for name in re.findall(r"^\s*from utils import ([\w, ]+)", cell.source, flags=re.M):
                for mod in (n.strip() for n in name.split(",")):
                    assert mod in modules, f"{path.name} imports utils.{mod}, which the edition does not hold"
            assert not re.search(r"^\s*(?:from|import) (?:instructor|solutions)\b", cell.source, flags=re.M), path


def _filled(built, name):
    """The edition's released notebook with the solutions' answer cells put in (by grade_id)."""
    released = nbformat.read(str(built / "assignments" / name / f"{name}.ipynb"), as_version=4)
    source = nbformat.read(str(ROOT / "solutions" / name / f"{name}.ipynb"), as_version=4)
    answers = {c.metadata["nbgrader"]["grade_id"]: c.source for c in source.cells
               if c.metadata.get("nbgrader", {}).get("solution")}
    for cell in released.cells:
        gid = cell.metadata.get("nbgrader", {}).get("grade_id")
        if gid in answers:
            cell.source = answers[gid]
    return released


def _run(built, name, nb):
    env_keep = dict(os.environ)
    os.environ.pop("PYTHONPATH", None)  # the kernel finds utils through the setup cell: the edition's only
    try:
        client = NotebookClient(nb, timeout=300, kernel_name="python3", allow_errors=True,
                                resources={"metadata": {"path": str(built / "assignments" / name)}})
        client.execute()
    finally:
        os.environ.clear()
        os.environ.update(env_keep)
    return nb


def _tests(nb):
    """{grade_id: error name or None} of the graded test cells."""
    out = {}
    for cell in nb.cells:
        meta = cell.metadata.get("nbgrader", {})
        if cell.cell_type == "code" and meta.get("grade") and not meta.get("solution"):
            errors = [o.get("ename") for o in cell.get("outputs", []) if o.get("output_type") == "error"]
            out[meta["grade_id"]] = errors[0] if errors else None
    return out


@pytest.mark.parametrize("name", ASSIGNMENTS)
def test_the_released_assignment_passes_filled_and_fails_blank_from_the_edition(built, name):
    filled = _run(built, name, _filled(built, name))
    where = [o.get("text", "") for c in filled.cells if c.cell_type == "code" for o in c.get("outputs", [])
             if "utils" in o.get("text", "") and "from" in o.get("text", "")]
    errors = {c.metadata.get("nbgrader", {}).get("grade_id", i): o.get("ename") + ": " + o.get("evalue", "")[:300]
              for i, c in enumerate(filled.cells) if c.cell_type == "code" for o in c.get("outputs", [])
              if o.get("output_type") == "error"}
    assert not errors, f"{name} with the solutions filled in, run from the edition: {errors}"
    assert _tests(filled) and not any(_tests(filled).values()), where
    blank = _run(built, name, nbformat.read(str(built / "assignments" / name / f"{name}.ipynb"), as_version=4))
    failed = _tests(blank)
    assert failed and all(failed.values()), f"{name} blank: test cells that passed: " \
        f"{[g for g, e in failed.items() if e is None]}"
