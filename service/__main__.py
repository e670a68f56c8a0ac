"""``python -m service serve --roster FILE --port N --data DIR``: start the submission service."""

import argparse
import logging
import pathlib
import sys

from . import __doc__ as DOC


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m service", description=DOC,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("serve", help="start the service (and its grading workers)")
    p.add_argument("--roster", type=pathlib.Path, help="CSV with columns id,name,email (new students get tokens)")
    p.add_argument("--data", type=pathlib.Path, default=pathlib.Path("service-data"),
                   help="folder of the database, queue, submissions and feedback (default: service-data)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: every interface)")
    p.add_argument("-j", "--jobs", type=int, help="submissions graded at once (default: the number of cores)")
    p.add_argument("--policy", type=pathlib.Path, help="per-assignment policy, TOML (default: DATA/policy.toml)")
    p.add_argument("--database", help="SQLAlchemy URL (default: sqlite:///DATA/service.db)")
    p.add_argument("--queue", help="queue URL (default: sqlite:///DATA/queue.db)")
    p.add_argument("--max-mb", type=float, default=5, help="largest upload in MB (default 5)")
    args = parser.parse_args(argv)

    import uvicorn

    from . import grader
    from .app import create_app
    from .config import Settings

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("huey").setLevel(logging.WARNING)
    try:
        sandbox = grader.sandbox()
        settings = Settings(data=args.data, roster=args.roster, host=args.host, port=args.port, jobs=args.jobs,
                            database=args.database, queue=args.queue, policy=args.policy,
                            max_bytes=int(args.max_mb * 1024 * 1024))
        app = create_app(settings)
    except (RuntimeError, ValueError, OSError) as err:
        print(f"service: {err}", file=sys.stderr)
        return 2
    service = app.state.service
    if service.new_tokens:
        print(f"{len(service.new_tokens)} new students: their tokens are in {settings.data / 'tokens.csv'} "
              "(hand each its own; only their hashes are kept)")
    print(f"instructor token: {settings.data / 'instructor_token.txt'}")
    print(f"grading: {settings.jobs} workers, sandbox {sandbox}")
    print(f"serving on http://{args.host}:{args.port}/", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="info")
    return 0


if __name__ == "__main__":
    sys.exit(main())
