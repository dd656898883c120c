"""Profile one app on one path with pyinstrument: ``python -m bench.profile memory read``.

Prints the call tree of many in-process requests (the same calls the
benchmark times), so a slow row can be explained rather than guessed at.
"""

import argparse
import os
import tempfile

from pyinstrument import Profiler

from .apps import KINDS, PATHS, REMOTE_KINDS, build, middleware
from .inprocess import environ_for, session_cookie, time_chunk


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=[kind for kind in KINDS if kind not in REMOTE_KINDS])
    parser.add_argument("path", choices=PATHS)
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--interval", type=float, default=0.0001, help="sampling interval, seconds")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        app = build(args.kind, middleware(args.kind, sqlite_path=os.path.join(tmp, "s.db")))
        environ = environ_for(args.path, session_cookie(app))
        time_chunk(app, environ, 1000)
        profiler = Profiler(interval=args.interval)
        with profiler:
            seconds = time_chunk(app, environ, args.requests)
        print(f"{args.kind} /{args.path}: {seconds / args.requests * 1e6:.1f} µs per request (profiled)")
        print(profiler.output_text(unicode=True, color=False, show_all=False))


if __name__ == "__main__":
    main()
