"""Benchmark the grading command: grade a folder of N submissions of an assignment.

    python benchmarks/grading.py lstm --n 20
    python benchmarks/grading.py multi_head_attention --n 20

The folder mixes full solutions, untouched student versions and partly solved ones (answer cells of
the first k parts filled from the source), named the ways students name files. Prints the summary
table and the seconds per submission (target: at most 15 s on 2 CPU cores).
"""

import argparse
import pathlib
import sys
import tempfile
import time

import nbformat

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from utils import grading  # noqa: E402


def partial(student, source, k):
    """The student version with the first k answer cells taken from the source."""
    answers = [c.metadata["nbgrader"]["grade_id"] for c in source.cells
               if c.metadata.get("nbgrader", {}).get("solution") and c.cell_type == "code"]
    return grading.make_submission(student, source, answers[:k])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("name")
    parser.add_argument("--n", type=int, default=20)
    args = parser.parse_args(argv)
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="grading-bench-"))
    source_path = grading._source_notebooks(args.name, ROOT)
    source = nbformat.read(str(source_path), as_version=4)
    student = nbformat.read(str(grading.release_notebook(args.name)), as_version=4)
    num_answers = sum(1 for c in source.cells if c.metadata.get("nbgrader", {}).get("solution")
                      and c.cell_type == "code")
    sub = tmp / "submissions"
    for i in range(args.n):
        kind = i % 3
        nb = source if kind == 0 else student if kind == 1 else partial(student, source, 1 + i % max(1, num_answers))
        path = (sub / f"student{i:02d}" / f"Copy of {args.name}.ipynb") if i % 2 else (
            sub / f"student{i:02d}_{args.name}.ipynb")
        path.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, str(path))
    start = time.perf_counter()
    results = grading.grade_folder(args.name, sub, out=tmp / "out", work=tmp / "course")
    seconds = time.perf_counter() - start
    print(grading.summary_table(results))
    print(f"\n{args.name}: {len(results)} submissions graded in {seconds:.0f} s = "
          f"{seconds / len(results):.1f} s per submission (includes releasing the assignment once)")


if __name__ == "__main__":
    main()
