"""Benchmark the grading command: grade a folder of N submissions of an assignment with -j 1 and -j 2.

    python benchmarks/grading.py lstm --n 20
    python benchmarks/grading.py multi_head_attention --n 20 --jobs 1 2

The folder mixes full solutions, untouched student versions and partly solved ones (answer cells of
the first k parts filled from the source), named the ways students name files. Each run grades the
folder in a fresh work folder, in the sandbox (bubblewrap; --no-sandbox to compare without). Prints
the summary table of the last run, the seconds per submission for each -j, the per-submission time
per core (target: at most 15 s on 2 cores, the sandbox included) and the speed-up of the largest -j
over -j 1 (target: at least 1.6x on 2 cores), with the load average before and after each run (other
work on the machine inflates wall time: a loaded machine reports an upper bound). The -j runs
interleave (1, 2, 1, 2, ... with --repeat) so that both see the same load.
"""

import argparse
import os
import pathlib
import shutil
import statistics
import sys
import tempfile
import time

import nbformat

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from instructor import grading  # noqa: E402


def partial(student, source, k):
    """The student version with the first k answer cells taken from the source."""
    answers = [c.metadata["nbgrader"]["grade_id"] for c in source.cells
               if c.metadata.get("nbgrader", {}).get("solution") and c.cell_type == "code"]
    return grading.make_submission(student, source, answers[:k])


def _children_cpu():
    """CPU seconds (user + system) of the finished child processes that were waited for (nbgrader; bwrap's
    PID namespace does not pass its kernel's usage on)."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("name")
    parser.add_argument("--n", type=int, default=20)
    parser.add_argument("--jobs", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--no-sandbox", action="store_true")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each -j, interleaved")
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
    seconds, scores, cores = {j: [] for j in args.jobs}, {}, os.cpu_count() or 1
    for rep in range(args.repeat):
        for jobs in args.jobs:
            load = os.getloadavg()[0]
            cpu = _children_cpu()
            start = time.perf_counter()
            work = tmp / f"course-j{jobs}-{rep}"
            results = grading.grade_folder(args.name, sub, out=tmp / f"out-j{jobs}-{rep}", work=work, jobs=jobs,
                                           sandbox="none" if args.no_sandbox else None, log=None, progress=True)
            took = time.perf_counter() - start
            cpu = _children_cpu() - cpu
            seconds[jobs].append(took)
            scores.setdefault(jobs, {r.student: (r.score, r.status) for r in results})
            n = len(results)
            print(f"-j {jobs} (run {rep + 1}): {n} submissions in {took:.0f} s = {took / n:.1f} s per submission, "
                  f"{took * min(jobs, cores) / n:.1f} core-seconds per submission (includes releasing the "
                  f"assignment once); {cpu / n:.1f} CPU seconds per submission of nbgrader (a sandboxed "
                  f"kernel's CPU is not reported back to rusage); load average {load:.1f} before, "
                  f"{os.getloadavg()[0]:.1f} after", flush=True)
            shutil.rmtree(work, ignore_errors=True)
    print(grading.summary_table(results))
    print(f"\nsandbox: {results[0].sandbox}; {cores} cores")
    for jobs in args.jobs:
        xs = seconds[jobs]
        spread = f" +- {statistics.stdev(xs) / n:.2f}" if len(xs) > 1 else ""
        print(f"-j {jobs}: {statistics.mean(xs) / n:.2f}{spread} s per submission over {len(xs)} run(s)")
    first, last = args.jobs[0], args.jobs[-1]
    if len(args.jobs) > 1:
        ratios = [a / b for a, b in zip(seconds[first], seconds[last])]
        print(f"speed-up -j {last} over -j {first}: {statistics.mean(ratios):.2f}x "
              f"({', '.join(f'{r:.2f}' for r in ratios)}); results identical: "
              f"{all(scores[j] == scores[first] for j in args.jobs)}")
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
