"""Re-run notebooks as other machines would, and diff the outputs that nbval compares.

    python benchmarks/other_machines.py lectures/05_transformer.ipynb
    python benchmarks/other_machines.py --machines avx2-1 default-2 -j 2   # every lecture and solution

A committed output marked ``# NBVAL_CHECK_OUTPUT`` must read the same on any x86-64 machine, whatever
its CPU's vector instructions and its core count. This script emulates such machines on this one:

- ``ATEN_CPU_CAPABILITY`` picks PyTorch's own CPU kernels (``default``, ``avx2``, ``avx512``);
- ``MKL_ENABLE_INSTRUCTIONS`` and ``ONEDNN_MAX_CPU_ISA`` cap the matrix libraries the same way;
- ``OMP_NUM_THREADS`` sets the thread count.

A machine is named ``<capability>-<threads>`` (``avx2-1``: an AVX2 CPU, one thread; see
``tests/machines.py``). For each notebook and machine it prints every compared cell whose text differs
from the committed output (and every cell that raised), and exits 1 if any does. The test suite runs the
notebooks under one such machine (``NBVAL_MACHINE``); this script is the wider sweep, for a maintainer
changing a lecture. It is a measurement, not a test.
"""

import argparse
import concurrent.futures
import difflib
import os
import pathlib
import sys
import time

import nbformat
from nbclient import NotebookClient

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from tests.machines import machine_env  # noqa: E402

MARK = "NBVAL_CHECK_OUTPUT"


def compared_text(cell):
    """The text nbval compares for a code cell: its stream and plain-text outputs, in order."""
    parts = []
    for out in cell.get("outputs", []):
        if out.get("output_type") == "stream":
            parts.append(out.get("text", ""))
        elif out.get("output_type") in ("execute_result", "display_data"):
            parts.append(out.get("data", {}).get("text/plain", ""))
        elif out.get("output_type") == "error":
            parts.append(f"{out.get('ename')}: {out.get('evalue')}\n")
    return "".join(parts)


def run(path, machine):
    """Execute ``path`` in a fresh kernel as ``machine``; return (seconds, [(cell index, committed, new)])."""
    path = pathlib.Path(path).resolve()
    committed = nbformat.read(str(path), as_version=4)
    nb = nbformat.read(str(path), as_version=4)
    client = NotebookClient(nb, timeout=1200, kernel_name="python3", allow_errors=True,
                            resources={"metadata": {"path": str(path.parent)}})
    start = time.perf_counter()
    client.execute(env={**os.environ, **machine_env(machine), "COURSE_PROGRESS": "0"})  # the kernel's environment
    seconds = time.perf_counter() - start
    diffs = []
    for i, (old, new) in enumerate(zip(committed.cells, nb.cells)):
        if old.cell_type != "code":
            continue
        errored = any(o.get("output_type") == "error" for o in new.get("outputs", []))
        if MARK in old.source or errored:
            a, b = compared_text(old), compared_text(new)
            if a != b:
                diffs.append((i, a, b))
    return seconds, diffs


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("notebooks", nargs="*", help="default: every lecture and solution notebook")
    parser.add_argument("--machines", nargs="+", default=["avx2-1", "default-1", "avx512-2"])
    parser.add_argument("-j", "--jobs", type=int, default=1, help="notebooks run at once")
    args = parser.parse_args(argv)
    for m in args.machines:
        machine_env(m)  # fail early on a bad name
    paths = args.notebooks or sorted(map(str, [*ROOT.glob("lectures/*.ipynb"), *ROOT.glob("solutions/*/*.ipynb")]))
    jobs = [(p, m) for p in paths for m in args.machines]
    failed = 0
    with concurrent.futures.ThreadPoolExecutor(max_workers=args.jobs) as pool:  # each kernel is a process
        futures = {pool.submit(run, p, m): (p, m) for p, m in jobs}
        for fut in concurrent.futures.as_completed(futures):
            p, m = futures[fut]
            seconds, diffs = fut.result()
            print(f"{p} as {m}: {seconds:.1f} s, {len(diffs)} compared cell(s) differ", flush=True)
            for i, a, b in diffs:
                failed += 1
                print(f"  cell {i}:")
                for line in difflib.unified_diff(a.splitlines(), b.splitlines(), "committed", m, lineterm="", n=0):
                    print("    " + line)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
