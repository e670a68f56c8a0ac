"""``python -m instructor.grading release|grade``."""

import argparse
import pathlib
import sys

from . import __doc__ as DOC
from .course import ROOT, assignment_names, release
from .pipeline import Busy, grade_folder
from .report import summary_table
from .sandbox import Unavailable


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m instructor.grading", description=DOC,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("release", help="regenerate assignments/ from solutions/ (or --check)")
    p.add_argument("names", nargs="*")
    p.add_argument("--check", action="store_true")
    p = sub.add_parser("grade", help="grade a folder of submissions")
    p.add_argument("name")
    p.add_argument("folder")
    p.add_argument("--out")
    p.add_argument("--work")
    p.add_argument("--timeout", type=int, help="seconds per cell (default: nbgrader_config.py)")
    p.add_argument("-j", "--jobs", type=int, help="submissions graded at once (default: the number of cores)")
    p.add_argument("--sandbox", choices=["auto", "bwrap"], help="the sandbox (default: nbgrader_config.py)")
    p.add_argument("--no-sandbox", action="store_true",
                   help="run the submitted code unsandboxed, as you (written into grades.csv and the summary)")
    p.add_argument("--memory", type=int, metavar="MB", help="memory cap of each sandbox")
    p.add_argument("--processes", type=int, help="process (and thread) cap of each sandbox")
    p.add_argument("--wall", type=int, metavar="S", help="wall-time cap of each submission in seconds")
    p.add_argument("--disk", type=int, metavar="MB", help="size of each sandbox's writable folders (tmpfs) and files")
    p.add_argument("--wait", type=int, default=0, metavar="S",
                   help="wait up to S seconds for another grade on the same --work folder (default: stop at once)")
    p.add_argument("--keep", action="store_true", help="keep each submission's workspace (WORK/runs/STUDENT)")
    args = parser.parse_args(argv)
    if args.cmd == "release":
        differing = release(args.names, check=args.check)
        if args.check:
            for name in differing:
                print(f"assignments/{name} differs from what solutions/{name} generates: "
                      f"run python -m instructor.grading release {name}")
            print(f"{len(args.names or assignment_names())} assignments checked, {len(differing)} differ")
            return 1 if differing else 0
        print(f"released: {', '.join(differing) if differing else 'nothing changed'}")
        return 0
    try:
        results = grade_folder(args.name, args.folder, out=args.out, work=args.work, timeout=args.timeout,
                               sandbox="none" if args.no_sandbox else args.sandbox, jobs=args.jobs,
                               memory_mb=args.memory, processes=args.processes, wall_s=args.wall, disk_mb=args.disk,
                               progress=True,
                               log=None, keep=args.keep, wait=args.wait)
    except Unavailable as err:
        print(f"grading refused: {err}", file=sys.stderr)
        return 2
    except Busy as err:
        print(f"grading stopped: {err}", file=sys.stderr)
        return 3
    print(summary_table(results))
    graded = sum(r.status == "graded" for r in results)
    out = pathlib.Path(args.out) if args.out else ROOT / "grading-work" / args.name / "results"
    print(f"\n{graded} of {len(results)} graded; grades: {out / 'grades.csv'}; feedback: {out / 'feedback'}")
    return 0 if graded else 1
