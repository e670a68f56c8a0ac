"""Benchmark the grading command: grade a folder of N submissions of an assignment with -j 1 and -j 2.

    python benchmarks/grading.py lstm --n 20
    python benchmarks/grading.py multi_head_attention --n 20 --jobs 1 2

The folder mixes full solutions, untouched student versions and partly solved ones (answer cells of
the first k parts filled from the source), named the ways students name files. Each run grades the
folder in a fresh work folder, in the sandbox (bubblewrap; --no-sandbox to compare without). Prints
the summary table of the last run, the seconds per submission for each -j, the per-submission time
per core (target: at most 15 s on 2 cores, the sandbox included) and the speed-up of the largest -j
over -j 1 (target: at least 1.6x on 2 cores).
"""

import argparse
import pathlib
import shutil
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
    parser.add_argument("--jobs", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--no-sandbox", action="store_true")
    args = parser.parse_args(argv)
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="grading-bench-"))
    source_path = grading._source_notebooks(args.name, ROOT)
    source = nbformat.read(str(source_path), as_version=4)
    released = grading.release_notebook(args.name)
    student = nbformat.read(str(released), as_version=4)
    shutil.rmtree(released.parents[2], ignore_errors=True)
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
    seconds, scores = {}, {}
    for jobs in args.jobs:
        start = time.perf_counter()
        results = grading.grade_folder(args.name, sub, out=tmp / f"out-j{jobs}", work=tmp / f"course-j{jobs}",
                                       jobs=jobs, sandbox="none" if args.no_sandbox else None, log=None,
                                       progress=True)
        seconds[jobs] = time.perf_counter() - start
        scores[jobs] = {r.student: (r.score, r.status) for r in results}
        n = len(results)
        print(f"-j {jobs}: {n} submissions in {seconds[jobs]:.0f} s = {seconds[jobs] / n:.1f} s per submission "
              f"({seconds[jobs] * min(jobs, 2) / n:.1f} core-seconds; includes releasing the assignment once)",
              flush=True)
    print(grading.summary_table(results))
    first, last = args.jobs[0], args.jobs[-1]
    if len(args.jobs) > 1:
        print(f"\nspeed-up -j {last} over -j {first}: {seconds[first] / seconds[last]:.2f}x; results identical: "
              f"{all(scores[j] == scores[first] for j in args.jobs)}")
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
