"""Execute every notebook in a fresh kernel and report wall time, peak memory and its key result.

    python benchmarks/run_notebooks.py                   # lectures/ and solutions/
    python benchmarks/run_notebooks.py lectures/02_rnn_and_bptt.ipynb
    python benchmarks/run_notebooks.py --update-readme   # also rewrite the table in README.md

Peak memory is the largest summed resident memory of the kernel's process tree, sampled every
0.1 s; kernel CPU s is the CPU time (user + system) of that tree at its last sample, which a busy
machine inflates far less than the wall time. The key result is the last printed line that starts
with "RESULT:" (the course's convention for the one number a notebook exists to show). Budgets: a
lecture 120 s and 2 GB, a solution 90 s.
This is a measurement, not a test: it never fails on time.
"""

import argparse
import os
import pathlib
import platform
import sys
import threading
import time

import nbformat
import psutil
from nbclient import NotebookClient

ROOT = pathlib.Path(__file__).resolve().parent.parent
BUDGET_S = {"lectures": 120, "solutions": 90}
BUDGET_MB = 2048


def _peak_rss(pid_getter, stop, out):
    peak, cpu = 0, 0.0
    while not stop.is_set():
        pid = pid_getter()
        if pid:
            try:
                procs = [psutil.Process(pid)] + psutil.Process(pid).children(recursive=True)
                peak = max(peak, sum(p.memory_info().rss for p in procs))
                cpu = max(cpu, sum(t.user + t.system for t in (p.cpu_times() for p in procs)))
            except psutil.Error:
                pass
        time.sleep(0.1)
    out.extend([peak, cpu])


def run_one(path):
    path = pathlib.Path(path).resolve()
    nb = nbformat.read(str(path), as_version=4)
    client = NotebookClient(nb, timeout=1200, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}})
    stop, out = threading.Event(), []

    def pid():
        km = client.km
        prov = getattr(km, "provisioner", None) if km else None
        proc = getattr(prov, "process", None) if prov else None
        return proc.pid if proc else None

    watcher = threading.Thread(target=_peak_rss, args=(pid, stop, out), daemon=True)
    watcher.start()
    start = time.perf_counter()
    error = ""
    try:
        client.execute()
    except Exception as err:  # report and go on with the other notebooks
        error = type(err).__name__ + ": " + str(err).strip().splitlines()[-1][:120]
    seconds = time.perf_counter() - start
    stop.set()
    watcher.join()
    result = ""
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            text = output.get("text", "") if output.get("output_type") == "stream" else ""
            for line in text.splitlines():
                if line.startswith("RESULT:"):
                    result = line[len("RESULT:"):].strip()
    return {"notebook": path.relative_to(ROOT).as_posix(), "seconds": seconds, "peak_mb": out[0] / 2**20,
            "cpu_s": out[1], "result": error or result}


def table(rows):
    lines = ["| notebook | wall s | kernel CPU s | budget s | peak MB | key result |",
             "|---|---:|---:|---:|---:|---|"]
    for r in rows:
        budget = BUDGET_S.get(r["notebook"].split("/")[0], "")
        lines.append(f"| `{r['notebook']}` | {r['seconds']:.1f} | {r['cpu_s']:.1f} | {budget} | {r['peak_mb']:.0f} | "
                     f"{r['result']} |")
    cpu = f"{os.cpu_count()} CPU cores ({platform.machine()}), Python {platform.python_version()}"
    return "\n".join(lines) + f"\n\nMeasured {time.strftime('%Y-%m-%d')} on {cpu}.\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("paths", nargs="*")
    parser.add_argument("--update-readme", action="store_true")
    args = parser.parse_args(argv)
    paths = [pathlib.Path(p) for p in args.paths]
    if not paths:
        paths = sorted((ROOT / "lectures").glob("*.ipynb")) + sorted((ROOT / "solutions").glob("*/*.ipynb"))
    os.environ.pop("NBGRADER_EXECUTION", None)
    # As in CI (tests/conftest.py): one torch thread per kernel.
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    rows = []
    for p in paths:
        print(f"running {p} ...", file=sys.stderr, flush=True)
        rows.append(run_one(p))
        r = rows[-1]
        print(f"  {r['seconds']:.1f} s, {r['cpu_s']:.1f} CPU s, {r['peak_mb']:.0f} MB, {r['result']}", file=sys.stderr,
              flush=True)
    text = table(rows)
    print(text)
    if args.update_readme:
        readme = ROOT / "README.md"
        body = readme.read_text()
        start, end = "<!-- benchmark:start -->", "<!-- benchmark:end -->"
        if start in body and end in body:
            head, rest = body.split(start, 1)
            _, tail = rest.split(end, 1)
            readme.write_text(head + start + "\n" + text + end + tail)
    return 0


if __name__ == "__main__":
    sys.exit(main())
