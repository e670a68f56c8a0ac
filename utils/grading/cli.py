"""``python -m utils.grading release|grade``."""

import argparse
import pathlib

from . import __doc__ as DOC
from .course import ROOT, assignment_names, release
from .pipeline import grade_folder
from .report import summary_table


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m utils.grading", description=DOC,
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
    args = parser.parse_args(argv)
    if args.cmd == "release":
        differing = release(args.names, check=args.check)
        if args.check:
            for name in differing:
                print(f"assignments/{name} differs from what solutions/{name} generates: "
                      f"run python -m utils.grading release {name}")
            print(f"{len(args.names or assignment_names())} assignments checked, {len(differing)} differ")
            return 1 if differing else 0
        print(f"released: {', '.join(differing) if differing else 'nothing changed'}")
        return 0
    results = grade_folder(args.name, args.folder, out=args.out, work=args.work, timeout=args.timeout)
    print(summary_table(results))
    graded = sum(r.status == "graded" for r in results)
    out = pathlib.Path(args.out) if args.out else ROOT / "grading-work" / args.name / "results"
    print(f"\n{graded} of {len(results)} graded; grades: {out / 'grades.csv'}; feedback: {out / 'feedback'}")
    return 0 if graded else 1
