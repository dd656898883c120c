"""Targets, the Markdown report and the chart, from one run's measurements."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from .apps import LABELS, PATHS, REMOTE_KINDS
from .breakdown import STEPS

SESSION_KINDS = ("memory", "sqlite", "redis", "postgres")

#: The issue's in-process targets: (path, store) -> the highest ratio to the floor that passes.
RATIO_TARGETS = {
    ("untouched", "memory"): 1.03,
    ("read", "memory"): 1.15,
    ("write", "memory"): 1.30,
    ("read", "sqlite"): 1.50,
    ("write", "sqlite"): 2.00,
}


@dataclass
class Target:
    name: str
    goal: str
    measured: str
    passed: Optional[bool]  # None: not measured in this run


def _ratio_target(report: dict, path: str, kind: str, limit: float) -> Target:
    results = report["inprocess"]
    ratio = results.ratio(kind, path, "floor")
    measured = f"{ratio:.3f}x (fastest chunks {results.best_ratio(kind, path, 'floor'):.3f}x"
    pair = report.get("pair")
    if pair is not None and (kind, path) in pair.rounds:
        measured += f"; with the floor only {pair.ratio(kind, path, 'floor'):.3f}x"
    bound = _store_bound(report, kind, path)
    if bound is not None:
        measured += f"; store calls alone ≈ {bound:.3f}x"
    return Target(f"{path}, {LABELS[kind]}", f"≤ {limit:.2f}x floor", measured + ")", ratio <= limit)


def _store_bound(report: dict, kind: str, path: str) -> Optional[float]:
    """About the ratio ``kind`` would show on ``path`` if this session layer cost nothing: the
    floor plus the store calls such a request makes (a load; a load and an apply for a write),
    each timed alone. An estimate (in a request a call tends to cost more than alone), None when
    the breakdown did not time this store or the path calls none."""
    timed = report.get("breakdown") or {}
    if path == "untouched" or (kind, "read") not in timed:
        return None
    store_us = timed[kind, "read"]["store"] + (timed[kind, "write"]["store"] if path == "write" else 0.0)
    return 1 + store_us / report["inprocess"].median_us("floor", path)


def targets(report: dict) -> list[Target]:
    """Every target of the performance issue, judged on this run's figures."""
    results = report["inprocess"]
    found = [_ratio_target(report, path, kind, limit) for (path, kind), limit in RATIO_TARGETS.items()]
    versus_hug = {path: results.ratio("memory", path, "hug") for path in PATHS}
    found.append(
        Target(
            "MemoryStore vs hug's built-in, every path",
            "faster (< 1.00x)",
            ", ".join(f"{path} {ratio:.3f}x" for path, ratio in versus_hug.items()),
            all(ratio < 1 for ratio in versus_hug.values()),
        )
    )
    redis = report.get("redis")
    if redis:
        found.append(
            Target(
                "RedisStore round trips",
                "1 per read; a write request: 1 load + 1 write",
                f"read {redis['read']['round_trips']:g}, write {redis['write']['round_trips']:g}",
                redis["read"]["round_trips"] == 1 and redis["write"]["round_trips"] == 2,
            )
        )
        found.append(
            Target(
                "RedisStore write commands on a read",
                "0",
                f"{redis['read']['write_commands']:g} (RDB changes {redis['read']['rdb_changes']:g})",
                redis["read"]["write_commands"] == 0 and redis["read"]["rdb_changes"] == 0,
            )
        )
    else:
        found.append(
            Target("RedisStore round trips and writes", "1 per read/write, 0 writes on read", "absent", None)
        )
    small, large = sorted(report["scale"])
    scale_ratio = report["scale"][large]["read"] / report["scale"][small]["read"]
    load_ratio = report["scale"][large]["load"] / report["scale"][small]["load"]
    found.append(
        Target(
            f"SQLite read with {large:,} sessions",
            f"≤ 1.20x the read with {small:,}",
            f"{scale_ratio:.3f}x (store.load alone {load_ratio:.3f}x)",
            scale_ratio <= 1.2,
        )
    )
    eviction = report["eviction"]
    found.append(
        Target(
            "MemoryStore create and apply at 100 % capacity",
            "≤ 2.00x the cost at 50 %",
            ", ".join(f"{kind} {costs['ratio']:.2f}x" for kind, costs in eviction.items()),
            all(costs["ratio"] <= 2 for costs in eviction.values()),
        )
    )
    shapes = report["memory_bytes"]
    found.append(
        Target(
            "MemoryStore bytes per session",
            "reported",
            ", ".join(f"{shape}: {size:,.0f} B" for shape, size in shapes.items()),
            True,
        )
    )
    return found


def _mark(passed: Optional[bool]) -> str:
    return {True: "pass", False: "**FAIL**", None: "n/a"}[passed]


def render_markdown(report: dict) -> str:
    context, plan, results = report["context"], report["plan"], report["inprocess"]
    kinds = report["kinds"]
    lines = [
        "# Benchmarks",
        "",
        "Written by `make bench` (`python -m bench.run`); do not edit by hand.",
        "",
        "Every app serves the same three endpoints: **untouched** (the handler ignores the session, the",
        'cookie is sent), **read** (`session.get("n")`) and **write** (`session["n"] += 1`), each with',
        "the cookie of an existing session. **bare** is hug without middleware; **floor** is a middleware",
        "that only puts a plain dict into `req.context` (read through `hug.directives.session`), the",
        "cheapest a session layer on hug can be; **hug built-in** is `hug.middleware.SessionMiddleware`",
        "with `hug.store.InMemoryStore`.",
        "",
        "## Targets (in-process, ratio to floor, same run)",
        "",
        "| target | goal | measured | |",
        "|---|---|---|---|",
    ]
    for target in report["targets"]:
        lines.append(f"| {target.name} | {target.goal} | {target.measured} | {_mark(target.passed)} |")
    lines += [
        "",
        '"Store calls alone" estimates the ratio the app would show if this session layer cost '
        "nothing: the floor's time plus the store calls the request makes (`store.load`; for a write, "
        '`store.load` and `store.apply`), each timed on its own ("Where the time goes" below; inside a '
        "request a call tends to cost more). A target below it is out of reach of any session layer "
        'over that store on this machine. "With the floor only" is the ratio measured before any '
        "other app was built or called (see below).",
        "",
        "## In-process (WSGI calls, no sockets)",
        "",
        f"{plan.rounds} rounds; in each, every (app, path) cell ran {plan.chunks_per_round} chunks of "
        f"{plan.chunk} requests, cells in a new random order per chunk. Time per request is the median "
        "over rounds; ratios and differences are per-round paired (same round), with the median shown and "
        "the interquartile range of the ratio. "
        '"Fastest" is the ratio of each cell\'s fastest chunk, the figure least disturbed by other '
        "processes on a shared machine.",
        "",
        "| app | path | µs per request | µs over floor | x floor | IQR | fastest x floor | x bare "
        "| store calls alone x floor |",
        "|---|---|---:|---:|---:|---|---:|---:|---:|",
    ]
    for kind in kinds:
        for path in PATHS:
            low, high = results.spread(kind, path, "floor") if kind != "floor" else (1.0, 1.0)
            bound = _store_bound(report, kind, path)
            lines.append(
                f"| {LABELS[kind]} | {path} | {results.median_us(kind, path):.1f} | "
                f"{results.over_us(kind, path, 'floor'):+.1f} | {results.ratio(kind, path, 'floor'):.3f} | "
                f"{low:.3f} to {high:.3f} | "
                f"{results.best_ratio(kind, path, 'floor'):.3f} | {results.ratio(kind, path, 'bare'):.3f} | "
                + (f"≈ {bound:.3f} |" if bound is not None else "|")
            )
    lines += [
        "",
        '"Store calls alone" is as under Targets, for every store the breakdown below timed. '
        "PostgresStore runs on a database made for this run (`bench_<pid>`, dropped at the end) on "
        "the server of `BENCH_PG_URL` or `PG_URL`, by default this machine's over loopback TCP; "
        "RedisStore on a private `redis-server` when one can be started. Each of their store calls "
        "is a network round trip (PostgresStore: one statement on a pooled autocommit connection).",
    ]
    if report.get("redis_reason"):
        lines += ["", f"RedisStore rows absent: {report['redis_reason']}."]
    if report.get("pg_reason"):
        lines += ["", f"PostgresStore rows absent: {report['pg_reason']}."]
    pair = report.get("pair")
    if pair is not None:
        lines += [
            "",
            "**The floor and MemoryStore apps first.** The apps above share one process, as they must "
            "to be interleaved, and with it Falcon's and hug's code, whose call sites then serve every "
            "app's middleware and session type; a deployed app serves one. So the run starts by "
            "measuring the floor and MemoryStore apps before any other app is built or called "
            f"({len(pair.rounds['floor', 'read'])} rounds, same method): MemoryStore's ratios to the "
            "floor are "
            + ", ".join(f"{path} {pair.ratio('memory', path, 'floor'):.3f}x" for path in PATHS)
            + ".",
        ]
    lines += _breakdown_lines(report["breakdown"], plan)
    lines += ["", "## Over HTTP (gunicorn + wrk on loopback)", ""]
    if report.get("http_reason"):
        lines.append(f"Not run: {report['http_reason']}.")
    else:
        web = report["http"]
        lines += [
            f"One gunicorn per app (1 gthread worker, 4 threads); wrk, 1 thread and 4 connections, "
            f"{plan.http_seconds:g} s per cell, {plan.http_rounds} rounds, cells interleaved. The load "
            "generator shares the two cores with the server: absolute figures are context only and "
            "differences under about 10% are noise.",
            "",
            "| app | " + " | ".join(f"{path} req/s | {path} x floor" for path in PATHS) + " |",
            "|---|" + "---:|---:|" * len(PATHS),
        ]
        for kind in kinds:
            cells = " | ".join(
                f"{web.median_rps(kind, path):,.0f} | {web.ratio(kind, path, 'floor'):.2f}" for path in PATHS
            )
            lines.append(f"| {LABELS[kind]} | {cells} |")
    lines += ["", "## Stores", ""]
    small, large = sorted(report["scale"])
    scale = report["scale"]
    lines += [
        f"**SQLite at {large:,} sessions.** One file with {small:,} and one with {large:,} one-key "
        "sessions (written with `executemany` in one transaction), both opened by `SQLiteStore` in WAL "
        "mode; each call picks one of 1,000 random sessions (the active ones), sizes interleaved per "
        f"round, median over {plan.scale_rounds} rounds.",
        "",
        "| sessions stored | store.load µs | read request µs |",
        "|---:|---:|---:|",
        f"| {small:,} | {scale[small]['load']:.1f} | {scale[small]['read']:.1f} |",
        f"| {large:,} | {scale[large]['load']:.1f} | {scale[large]['read']:.1f} |",
        "",
        f"**SQLite durability.** One-value writes (one commit each) in WAL mode, the settings "
        f"interleaved: `synchronous=OFF` {report['durability']['OFF']:.1f} µs, "
        f"`NORMAL` (the default) {report['durability']['NORMAL']:.1f} µs, "
        f"`FULL` {report['durability']['FULL']:.1f} µs per write. OFF never syncs, NORMAL syncs the log "
        "at checkpoints only: with either the file survives any crash of the app, but a power cut may "
        "lose the last commits (and, with OFF, corrupt the file); FULL syncs every commit.",
        "",
        f"**MemoryStore size.** tracemalloc over {plan.memory_sessions:,} sessions saved through the "
        "middleware (record, its data dict, keys and JSON texts, the store's index entry):",
        "",
    ]
    for shape, size in report["memory_bytes"].items():
        lines.append(f"- {shape}: {size:,.0f} bytes per session")
    lines += [
        "",
        f"**MemoryStore when full.** Stores of {plan.eviction_capacity:,} sessions (one in ten signed "
        "in) filled to 50 % and to 100 %, timed side by side; at 100 % every create evicts an "
        "anonymous session. An apply writes one value of a signed-in session.",
        "",
        "| call | at 50 % µs | at 100 % µs | ratio |",
        "|---|---:|---:|---:|",
    ]
    for kind, costs in report["eviction"].items():
        lines.append(f"| {kind} | {costs['half_us']:.2f} | {costs['full_us']:.2f} | {costs['ratio']:.2f}x |")
    lines += ["", "**RedisStore.**"]
    if report.get("redis"):
        lines += [
            "Round trips counted on the client (each packed command or pipeline sent); commands from "
            "the server's `INFO commandstats` deltas (commands run inside a script count too), "
            "write commands by their `COMMAND INFO` flags; `rdb_changes_since_last_save` as a second "
            "witness.",
            "",
            "| request | round trips | commands | write commands | RDB changes | commands seen |",
            "|---|---:|---:|---:|---:|---|",
        ]
        for path, costs in report["redis"].items():
            lines.append(
                f"| {path} | {costs['round_trips']:g} | {costs['commands']:g} | "
                f"{costs['write_commands']:g} | {costs['rdb_changes']:g} | {costs['command_names']} |"
            )
    else:
        lines.append(f"Absent: {report.get('redis_reason')}.")
    lines += [
        "",
        "## Machine",
        "",
        *(f"- {name}: {value}" for name, value in context.items()),
        "",
        "![ratios to floor](benchmarks.png)",
        "",
    ]
    return "\n".join(lines)


def _breakdown_lines(results: dict, plan) -> list[str]:
    lines = [
        "",
        "## Where the time goes (each step timed alone)",
        "",
        "This middleware's hooks called directly with real Falcon request and response objects, as "
        "Falcon calls them (no hug, no server); a step's cost is the difference between timing the "
        "request up to it and up to the step before (fastest of "
        f"{plan.breakdown_repeats} repeats of {plan.breakdown_requests} requests). **floor** is the "
        "floor middleware's whole work on the same request; the store call is timed alone.",
        "",
        "| store | path | " + " | ".join(STEPS) + " | total µs | floor µs | store call alone µs |",
        "|---|---|" + "---:|" * (len(STEPS) + 3),
    ]
    for (kind, path), result in results.items():
        steps = " | ".join(f"{result['steps'][step]:.2f}" for step in STEPS)
        lines.append(
            f"| {LABELS[kind]} | {path} | {steps} | {result['total']:.2f} | {result['floor']:.2f} | "
            f"{result['store']:.2f} (`{result['store_call']}`) |"
        )
    return lines


def render_chart(report: dict, path: str) -> None:
    """Grouped bars: each app's in-process time per request relative to floor, per path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    results, kinds = report["inprocess"], report["kinds"]
    ratios = {kind: [results.ratio(kind, p, "floor") for p in PATHS] for kind in kinds}
    # Redis's and PostgreSQL's loopback round trips would dwarf every other bar: the axis stops
    # above the tallest of the rest (and their target and bound lines), and a taller bar is cut
    # there, its label marked with an arrow.
    local = [kind for kind in kinds if kind not in REMOTE_KINDS]
    bounds = [_store_bound(report, kind, request) for kind in local for request in PATHS]
    lines = [*RATIO_TARGETS.values(), *(bound for bound in bounds if bound is not None)]
    tallest = max(max(ratios[kind]) for kind in local)
    top = max(1.25 * tallest, 1.1 * max(lines))
    figure, axes = plt.subplots(figsize=(9, 4.5), dpi=110)
    width = 0.8 / len(kinds)
    for index, kind in enumerate(kinds):
        spreads = [results.spread(kind, p, "floor") if kind != "floor" else (1.0, 1.0) for p in PATHS]
        errors = [
            [r - s[0] for r, s in zip(ratios[kind], spreads)],
            [s[1] - r for r, s in zip(ratios[kind], spreads)],
        ]
        positions = [p + (index - (len(kinds) - 1) / 2) * width for p in range(len(PATHS))]
        bars = axes.bar(positions, ratios[kind], width, label=LABELS[kind], yerr=errors, capsize=2)
        for request, bar, ratio in zip(PATHS, bars, ratios[kind]):
            axes.annotate(
                f"{ratio:.2f}" if ratio <= top else f"{ratio:.1f}↑",
                (bar.get_x() + bar.get_width() / 2, min(ratio, top)),
                ha="center",
                va="bottom" if ratio <= top else "top",
                fontsize=7,
                xytext=(0, 2 if ratio <= top else -2),
                textcoords="offset points",
            )
            # Where the targets are, and the ratio the store's calls alone give (stores timed alone).
            for line, style in (
                (RATIO_TARGETS.get((request, kind)), "dashed"),
                (_store_bound(report, kind, request), "dotted"),
            ):
                if line is not None:
                    axes.hlines(
                        line, bar.get_x(), bar.get_x() + bar.get_width(), colors="black", linestyles=style
                    )
    axes.plot([], [], color="black", linestyle="dashed", label="target")
    axes.plot([], [], color="black", linestyle="dotted", label="store calls alone")
    axes.set_ylim(0, top)
    axes.axhline(1.0, color="black", linewidth=0.8)
    axes.set_xticks(range(len(PATHS)), PATHS)
    axes.set_ylabel("time per request ÷ floor (median of paired rounds)")
    axes.set_title(f"In-process cost per request, relative to the floor app ({report['context']['date']})")
    axes.legend(fontsize=8, ncols=3)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
