"""``make bench-compare``: this checkout's session layer against an older commit's, in one process.

Run from the repository root: ``python -m bench.compare [--base 3225229] [--rounds N]
[--quick] [--output docs/benchmarks.md]``. It needs the git history back to the base.

Comparing two runs made at different times measures the machine's mood as much
as the code, so the base commit's package is extracted from git into a temporary
directory under another import name (``hug_cookie_sessions_base``) and the same
apps (``bench.apps``) are built on both packages: the floor app, then MemoryStore
and SQLiteStore apps on each. Every (app, path) cell and each store's own calls,
timed alone on the app's store, run interleaved in the same rounds
(``bench.sidebyside``), base and new of a cell back to back. A session layer's
own cost on a path is, per round, the request's time minus the floor app's and
minus the store calls it makes; new and base are compared per round, so the
drift of a shared machine cancels.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from types import ModuleType
from typing import Callable, Optional

import hug_cookie_sessions

from .apps import PATHS, build, make_store, middleware
from .basecopy import BASE_PACKAGE, PACKAGE, ROOT, extract_base, git, import_base, log
from .inprocess import _noop_start_response, call, environ_for, session_cookie
from .sections import SIDE_BY_SIDE, replace_section
from .sidebyside import Comparison, measure, median_ci

DEFAULT_BASE = "3225229"
STORES = {"memory": "MemoryStore", "sqlite": "SQLiteStore"}
VARIANTS = ("base", "new")
#: cpu: time.process_time, which leaves out the time other processes held the CPU
#: (on a shared two-core machine, most of the noise); wall: time.perf_counter.
CLOCKS = {"cpu": time.process_time, "wall": time.perf_counter}
#: The issue's bound: no path's own session cost may grow by more than this.
LIMIT = 1.05


@dataclass
class Plan:
    rounds: int  # in all, shared out among the processes
    number: int  # requests (or store-call sets) per cell per round
    chunks: int  # each cell's share of a round is split into this many chunks, reshuffled
    processes: int  # fresh interpreters, one after the other, each measuring base and new side by side

    def shares(self) -> list[int]:
        return [
            self.rounds // self.processes + (i < self.rounds % self.processes) for i in range(self.processes)
        ]


# Several processes because one process can favour either copy of identical code by up to
# 0.5 µs per request for its whole life (where objects and code land, which call sites
# specialise first); pooled over fresh processes, that averages out instead of deciding.
FULL = Plan(rounds=40, number=2000, chunks=40, processes=4)
QUICK = Plan(rounds=4, number=200, chunks=4, processes=2)


# -- cells: zero-argument callables, one request or one set of store calls each -------------


def request(app: Callable, environ: dict) -> Callable[[], None]:
    """One request of ``environ`` to ``app``, as ``bench.inprocess.time_chunk`` makes it."""
    copy = environ.copy
    start_response = _noop_start_response

    def one() -> None:
        for _chunk in app(copy(), start_response):
            pass

    return one


def store_calls(store: object, package: ModuleType, path: str) -> Optional[Callable[[], None]]:
    """The store calls a ``path`` request makes, alone, on a session of their own in ``store``.

    read: ``store.load``; write: ``store.load`` then a one-value ``store.apply`` with
    the expiry unchanged (the usual write), a new value each time, as the requests
    write (SQLite skips a value that did not change). untouched: none (None).
    """
    if path == "untouched":
        return None
    sid = secrets.token_urlsafe(32)
    now = time.time()
    store.create(sid, package.Record({"n": "0"}, now, now + 14 * 24 * 3600))
    load, apply = store.load, store.apply
    if path == "read":

        def read() -> None:
            load(sid)

        return read
    counter = iter(range(1, 1 << 62))

    def write() -> None:
        record = load(sid)
        apply(sid, {"n": str(next(counter))}, (), record.expires_at)

    return write


def groups(cells: dict[str, Callable[[], None]]) -> list[list[str]]:
    """Cells that differ only in the package (base, new) run back to back: one group each."""
    paired: dict[str, list[str]] = {}
    for name in cells:
        paired.setdefault(name.replace("-base ", "-* ").replace("-new ", "-* "), []).append(name)
    return list(paired.values())


def app_names() -> list[str]:
    return ["floor"] + [f"{kind}-{variant}" for kind in STORES for variant in VARIANTS]


def build_cells(packages: dict[str, ModuleType], tmp: str) -> dict[str, Callable[[], None]]:
    """Every cell, named ``"<app> <path>"`` and ``"<app> <path> store"``.

    Apps are built in the same order for both packages, base first then new for
    each store, each SQLite app on a fresh file; every request is checked once.
    """
    cells: dict[str, Callable[[], None]] = {}
    for name in app_names():
        if name == "floor":
            store, package = None, None
            app = build("floor", middleware("floor"))
        else:
            kind, variant = name.split("-")
            package = packages[variant]
            store = make_store(kind, package=package, sqlite_path=os.path.join(tmp, f"{name}.db"))
            app = build(kind, middleware(kind, package=package, store=store))
        cookie = session_cookie(app)
        for path in PATHS:
            environ = environ_for(path, cookie)
            status, _, body = call(app, environ)
            if not status.startswith("200"):
                raise RuntimeError(f"{name} /{path}: {status} {body[:200]!r}")
            cells[f"{name} {path}"] = request(app, environ)
            calls = store_calls(store, package, path) if store is not None else None
            if calls is not None:
                calls()
                cells[f"{name} {path} store"] = calls
    return cells


# -- what the rounds say --------------------------------------------------------------------


def own_costs(result: Comparison, kind: str, variant: str, path: str) -> list[float]:
    """Per round, µs: the request minus the floor app's minus the store calls alone."""
    app = f"{kind}-{variant}"
    request_us = result.rounds[f"{app} {path}"]
    floor_us = result.rounds[f"floor {path}"]
    store_us = result.rounds.get(f"{app} {path} store", [0.0] * len(request_us))
    return [r - f - s for r, f, s in zip(request_us, floor_us, store_us)]


@dataclass
class Row:
    kind: str
    path: str
    base_us: float  # median over rounds of the base's own cost
    new_us: float
    diff_us: float  # median over rounds of (new - base), paired
    diff_ci_us: tuple[float, float]

    @property
    def ratio(self) -> float:
        """new/base: 1 + the paired median difference over the base's median cost."""
        return 1 + self.diff_us / self.base_us

    @property
    def ratio_ci(self) -> tuple[float, float]:
        return (1 + self.diff_ci_us[0] / self.base_us, 1 + self.diff_ci_us[1] / self.base_us)

    @property
    def resolved(self) -> bool:
        """Whether the base's cost stands clear of the noise (else a ratio of it means nothing)."""
        return self.base_us > self.diff_ci_us[1] - self.diff_ci_us[0]

    @property
    def within(self) -> bool:
        """new/base <= 1.05; where the base's cost is lost in the noise: no slowdown shown at all."""
        return self.ratio <= LIMIT if self.resolved else self.diff_ci_us[0] <= 0


def rows(result: Comparison) -> list[Row]:
    table = []
    for kind in STORES:
        for path in PATHS:
            base = own_costs(result, kind, "base", path)
            new = own_costs(result, kind, "new", path)
            diffs = [n - b for n, b in zip(new, base)]
            table.append(
                Row(
                    kind,
                    path,
                    statistics.median(base),
                    statistics.median(new),
                    statistics.median(diffs),
                    median_ci(diffs),
                )
            )
    return table


def render_table(table: list[Row]) -> list[str]:
    lines = [
        "| store | path | base µs | new µs | new - base µs (95% CI) | new/base (95% CI) | within 5 % |",
        "|---|---|---:|---:|---:|---:|---|",
    ]
    for row in table:
        low, high = row.ratio_ci
        ratio = f"{row.ratio:.3f} ({low:.2f} to {high:.2f})" if row.resolved else "n/a (base ≈ 0)"
        lines.append(
            f"| {STORES[row.kind]} | {row.path} | {row.base_us:.2f} | {row.new_us:.2f} | "
            f"{row.diff_us:+.2f} ({row.diff_ci_us[0]:+.2f} to {row.diff_ci_us[1]:+.2f}) | "
            f"{ratio} | {'yes' if row.within else '**no**'} |"
        )
    return lines


def render_context_table(result: Comparison) -> list[str]:
    """Medians of the parts the own cost is made from, µs per request."""
    lines = [
        "| app | untouched | read | write | store calls alone: read | write |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name in app_names():
        cells = [f"{result.median_us(f'{name} {path}'):.2f}" for path in PATHS]
        for path in ("read", "write"):
            key = f"{name} {path} store"
            cells.append(f"{result.median_us(key):.2f}" if key in result.rounds else "-")
        lines.append(f"| {name} | {' | '.join(cells)} |")
    return lines


def render_section(base: str, result: Comparison, context: dict[str, str], plan: Plan) -> str:
    same = context.get("same code") == "yes"
    lines = [
        f"{SIDE_BY_SIDE}{base}",
        "",
        "Written by `make bench-compare` (`python -m bench.compare`); do not edit by hand.",
        "",
        f"This checkout's session layer (**new**) against the package at {base} (**base**, from git, "
        "imported under another name), on the same apps, timed side by side: in each of "
        f"{plan.processes} fresh processes both packages' apps ran interleaved, round by round. A path's "
        "**own cost** is, per round, the request's time minus the floor app's and minus the store calls "
        "that request makes, timed alone on the app's store (`store.load` for read, plus `store.apply` "
        "for write, none for untouched); base and new are medians over rounds, **new - base** the median "
        "of per-round paired differences (95% interval by order statistics), and **new/base** is 1 + that "
        "difference over base, **within 5 %** when it is at most 1.05. Where the interval straddles 1.05 "
        "the run cannot tell. Where the base's cost is smaller than that interval's width (untouched: "
        "the session layer costs next to nothing over the floor) a ratio means nothing, and the path "
        "passes when new - base is not above zero beyond doubt (its interval reaches zero or below).",
    ]
    if same:
        lines += [
            "",
            f"New and base are the same code in this run (no change to `{PACKAGE}/` since {base}): the "
            "figures show the harness's own resolution, not a redesign.",
        ]
    lines += [
        "",
        *render_table(rows(result)),
        "",
        "The parts, medians in µs per request (the floor's own untouched/read/write on its row):",
        "",
        *render_context_table(result),
        "",
        *(f"- {name}: {value}" for name, value in context.items()),
        "",
    ]
    return "\n".join(lines)


def write_section(path: str, section: str) -> None:
    """Put ``section`` in ``path``, replacing any earlier side-by-side section only."""
    text = ""
    if os.path.exists(path):
        with open(path, encoding="utf-8") as current:
            text = current.read()
    text = replace_section(text, SIDE_BY_SIDE, section + "\n").rstrip("\n") + "\n"
    with open(path, "w", encoding="utf-8") as out:
        out.write(text)


def run_context(base: str, plan: Plan, clock: str) -> dict[str, str]:
    from .run import checkout, machine

    info = machine()
    try:
        unchanged = subprocess.run(
            ["git", "diff", "--quiet", base, "--", PACKAGE], cwd=ROOT, timeout=60
        ).returncode
    except (OSError, subprocess.SubprocessError):
        unchanged = -1
    return {
        "date": info["date"],
        "base": f"{git('rev-parse', '--short', base)} (git archive, imported as {BASE_PACKAGE})",
        "new": f"{checkout()} ({os.path.relpath(hug_cookie_sessions.__file__, ROOT)})",
        "same code": {0: "yes", 1: "no"}.get(unchanged, "unknown"),
        "cpu": info["cpu"],
        "python": info["python"],
        "packages": info["packages"],
        "rounds": f"{plan.rounds}, in {plan.processes} fresh processes one after the other "
        f"({' + '.join(map(str, plan.shares()))}), each building all the apps and discarding a warm-up "
        f"round; per round {plan.number} requests (or store-call sets) per cell in {plan.chunks} chunks, "
        "cells reshuffled before each chunk, base and new of a cell back to back; a round's figure is "
        "the median of its chunks",
        "clock": {"cpu": "CPU time of the process (time.process_time)", "wall": "wall time"}[clock],
        "load": info["load"],
    }


def _every_tenth(done: int, total: int) -> None:
    if done % 10 == 0 or done == total:
        log(f"round {done}/{total}")


def worker(src: str, rounds: int, number: int, chunks: int, clock: str, seed: int) -> dict:
    """One process's share: both packages' apps built here, timed side by side; plain data."""
    packages = {"base": import_base(src), "new": hug_cookie_sessions}
    with tempfile.TemporaryDirectory(prefix="hcs-compare-") as tmp:
        cells = build_cells(packages, tmp)
        result = measure(
            cells,
            rounds=rounds,
            number=number,
            chunks=chunks,
            seed=seed,
            groups=groups(cells),
            clock=CLOCKS[clock],
            progress=_every_tenth,
        )
    return {"rounds": result.rounds, "overhead_us": result.overhead_us, "names": result.names}


def pooled(plan: Plan, src: str, clock: str) -> Comparison:
    """Every process's rounds, run one process after another, as one :class:`Comparison`."""
    rounds: dict[str, list[float]] = {}
    overheads = []
    names: list[str] = []
    for index, share in enumerate(plan.shares()):
        log(f"process {index + 1}/{plan.processes}: {share} rounds of {plan.number} calls per cell")
        command = [sys.executable, "-m", "bench.compare", "--worker", src, "--rounds", str(share)]
        command += ["--number", str(plan.number), "--chunks", str(plan.chunks), "--clock", clock]
        command += ["--seed", str(index)]
        output = subprocess.run(command, cwd=ROOT, stdout=subprocess.PIPE, text=True, check=True).stdout
        part = json.loads(output)
        names = part["names"]
        overheads.append(part["overhead_us"])
        for name, values in part["rounds"].items():
            rounds.setdefault(name, []).extend(values)
        this = Comparison(names, part["rounds"])
        log(
            "  new - base, this process: "
            + ", ".join(f"{r.kind} {r.path} {r.diff_us:+.2f}" for r in rows(this))
        )
    return Comparison(names, rounds, statistics.median(overheads), plan.number)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--base", default=DEFAULT_BASE, help=f"commit to compare with (default {DEFAULT_BASE})"
    )
    parser.add_argument(
        "--rounds", type=int, help=f"rounds in all (default {FULL.rounds}; at least 30 for the docs)"
    )
    parser.add_argument("--number", type=int, help=f"requests per cell per round (default {FULL.number})")
    parser.add_argument("--processes", type=int, help=f"fresh processes (default {FULL.processes})")
    parser.add_argument(
        "--clock",
        choices=CLOCKS,
        default="cpu",
        help="cpu: this process's CPU time (default; time other processes hold the CPU left out); wall",
    )
    parser.add_argument("--quick", action="store_true", help="a few short rounds: checks that it works")
    parser.add_argument("--output", help="Markdown file whose side-by-side section is written or replaced")
    parser.add_argument("--worker", metavar="SRC", help=argparse.SUPPRESS)  # internal: one process's share
    parser.add_argument("--chunks", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if not os.path.abspath(hug_cookie_sessions.__file__).startswith(ROOT + os.sep):
        raise SystemExit(f"{PACKAGE} comes from {hug_cookie_sessions.__file__}; run from {ROOT}")
    if args.worker:
        result = worker(args.worker, args.rounds, args.number, args.chunks, args.clock, args.seed)
        json.dump(result, sys.stdout)
        return
    plan = QUICK if args.quick else FULL
    plan = Plan(
        args.rounds or plan.rounds,
        args.number or plan.number,
        args.chunks or plan.chunks,
        min(args.processes or plan.processes, args.rounds or plan.rounds),
    )
    if args.output and plan.rounds < 30:
        parser.error("--output needs at least 30 rounds: fewer say little")
    started = time.monotonic()
    context = run_context(args.base, plan, args.clock)
    with tempfile.TemporaryDirectory(prefix="hcs-compare-") as tmp:
        src = os.path.dirname(extract_base(args.base, os.path.join(tmp, "src")))
        log(f"base: {BASE_PACKAGE} in {src}; new: {PACKAGE} from {hug_cookie_sessions.__file__}")
        result = pooled(plan, src, args.clock)
    context["duration"] = f"{time.monotonic() - started:.0f} s" + (" (--quick)" if args.quick else "")
    section = render_section(git("rev-parse", "--short", args.base), result, context, plan)
    print(section)
    if args.output:
        write_section(args.output, section)
        log(f"wrote the side-by-side section of {args.output}")


if __name__ == "__main__":
    main()
