"""Time two or more zero-argument callables side by side, to settle whether a change pays.

A micro-optimisation stays only when a side-by-side measurement shows it saves
enough (for the request path: at least 0.3 µs per request). Timing each variant
on its own, one after the other, lets the machine's drift (other processes,
frequency changes) pass for a difference, so here the variants run in the same
rounds: each round times ``number`` calls of every variant, split into chunks
in which the variants run back to back in a new random order; a round's figure
is the median of its chunks, a difference is taken per round (paired), and the
median of those over the rounds is the answer. Usage::

    from bench.sidebyside import compare

    result = compare({"old": lambda: old(x), "new": lambda: new(x)})
    print(result)                     # a table: median µs per call, difference to the first
    result.diff_us("new", "old")      # median of per-round (new - old), µs per call
    result.diff_ci_us("new", "old")   # its ~95% confidence interval

Pass callables that do the same work and leave no state that changes their
cost (a growing list, a cache that fills): every call is repeated thousands of
times. The time of the timing loop itself (a call of a no-op lambda) is in every
figure; differences cancel it, and ``overhead_us`` reports it.
"""

from __future__ import annotations

import math
import random
import statistics
import time
from dataclasses import dataclass
from typing import Callable, Optional

#: Below this many rounds a median and its confidence interval mean little.
MIN_ROUNDS = 30


@dataclass
class Comparison:
    """Per-round timings of each callable, in µs per call, and what is read off them."""

    names: list[str]
    rounds: dict[str, list[float]]  # name -> µs per call, one figure per round
    overhead_us: float = 0.0  # one call of a no-op lambda in the same loop (median)
    calls_per_round: int = 0

    def median_us(self, name: str) -> float:
        """Median over rounds of µs per call."""
        return statistics.median(self.rounds[name])

    def diffs_us(self, name: str, baseline: str) -> list[float]:
        """Per-round differences ``name - baseline`` in µs per call (same round: paired)."""
        return [a - b for a, b in zip(self.rounds[name], self.rounds[baseline])]

    def diff_us(self, name: str, baseline: str) -> float:
        """Median of the per-round differences ``name - baseline``, µs per call (negative: faster)."""
        return statistics.median(self.diffs_us(name, baseline))

    def diff_ci_us(self, name: str, baseline: str) -> tuple[float, float]:
        """About 95% confidence interval of :meth:`diff_us` (order statistics; no normality assumed)."""
        return median_ci(self.diffs_us(name, baseline))

    def as_dict(self) -> dict:
        """Plain data: medians, differences to the first name with their intervals, the rounds."""
        first = self.names[0]
        return {
            "median_us": {name: self.median_us(name) for name in self.names},
            "diff_us": {name: self.diff_us(name, first) for name in self.names[1:]},
            "diff_ci_us": {name: self.diff_ci_us(name, first) for name in self.names[1:]},
            "overhead_us": self.overhead_us,
            "rounds": len(self.rounds[first]),
            "calls_per_round": self.calls_per_round,
        }

    def __str__(self) -> str:
        first = self.names[0]
        width = max(len(name) for name in self.names)
        lines = [
            f"{len(self.rounds[first])} rounds of {self.calls_per_round} calls each; "
            f"loop overhead {self.overhead_us:.3f} µs per call (in every figure)",
            f"{'':{width}}  median µs  diff to {first} µs (95% CI)",
        ]
        for name in self.names:
            line = f"{name:{width}}  {self.median_us(name):9.3f}"
            if name != first:
                low, high = self.diff_ci_us(name, first)
                line += f"  {self.diff_us(name, first):+.3f} ({low:+.3f} to {high:+.3f})"
            lines.append(line)
        return "\n".join(lines)


def median_ci(values: list[float], z: float = 1.96) -> tuple[float, float]:
    """Distribution-free ~95% interval of the median: the order statistics a sign test allows."""
    ordered = sorted(values)
    n = len(ordered)
    half_width = z * math.sqrt(n) / 2
    # 1-based ranks n/2 - half_width (down) and 1 + n/2 + half_width (up), as 0-based indices
    low = max(math.floor(n / 2 - half_width) - 1, 0)
    high = min(math.ceil(n / 2 + half_width), n - 1)
    return ordered[low], ordered[high]


def _time_calls(func: Callable[[], object], count: int, clock: Callable[[], float]) -> float:
    """Seconds for ``count`` calls of ``func``, by ``clock``."""
    started = clock()
    for _ in range(count):
        func()
    return clock() - started


def _noop() -> None:
    pass


def time_rounds(
    funcs: dict[str, Callable[[], object]],
    *,
    rounds: int = 40,
    number: int = 2000,
    chunks: int = 20,
    seed: int = 0,
    groups: Optional[list[list[str]]] = None,
    clock: Callable[[], float] = time.perf_counter,
    progress: Optional[Callable[[int, int], None]] = None,
) -> dict[str, list[float]]:
    """Seconds per call of each callable in each round, all of them interleaved.

    Each round gives every callable ``number`` calls in ``chunks`` chunks. Before
    each chunk the ``groups`` (lists of names; by default all callables form one)
    are put in a new random order, and so are the names within each group; a
    group's callables then run back to back, so the variants to be compared meet
    the same moment's machine. A round's figure is the median of its chunks: on a
    shared machine a burst of other work slows a chunk or two, and a median
    ignores them where a sum would not. ``clock`` is wall time by default;
    ``time.process_time`` leaves out the time other processes held the CPU, which
    on a busy machine is most of the noise. One warm-up round is run and discarded;
    ``progress(done, rounds)`` is called after each round.
    """
    if not funcs or rounds < 1 or number < chunks:
        raise ValueError("need at least one callable, one round and number >= chunks")
    order = [list(group) for group in groups] if groups else [list(funcs)]
    grouped = {name for group in order for name in group}
    if not grouped <= set(funcs):
        raise ValueError(f"groups name unknown callables: {sorted(grouped - set(funcs))}")
    order += [[name] for name in funcs if name not in grouped]
    sizes = [number // chunks + (1 if i < number % chunks else 0) for i in range(chunks)]
    shuffle = random.Random(seed).shuffle
    per_round: dict[str, list[float]] = {name: [] for name in funcs}
    for round_no in range(rounds + 1):
        per_chunk: dict[str, list[float]] = {name: [] for name in funcs}
        for size in sizes:
            shuffle(order)
            for group in order:
                shuffle(group)
                for name in group:
                    per_chunk[name].append(_time_calls(funcs[name], size, clock) / size)
        if round_no == 0:
            continue  # warm-up: caches, specialisation, lazy imports
        for name, times in per_chunk.items():
            per_round[name].append(statistics.median(times))
        if progress is not None:
            progress(round_no, rounds)
    return per_round


def measure(
    funcs: dict[str, Callable[[], object]],
    *,
    rounds: int,
    number: int,
    chunks: int = 20,
    seed: int = 0,
    groups: Optional[list[list[str]]] = None,
    clock: Callable[[], float] = time.perf_counter,
    progress: Optional[Callable[[int, int], None]] = None,
) -> Comparison:
    """:func:`time_rounds` plus a no-op probe (a group of its own), as a :class:`Comparison`.

    Any number of rounds: :func:`compare` is the checked entry point.
    """
    if "(no-op)" in funcs:
        raise ValueError("'(no-op)' is the name of the loop-overhead probe")
    timed = time_rounds(
        {**funcs, "(no-op)": _noop},
        rounds=rounds,
        number=number,
        chunks=chunks,
        seed=seed,
        groups=groups or [list(funcs)],
        clock=clock,
        progress=progress,
    )
    overhead = statistics.median(timed.pop("(no-op)")) * 1e6
    return Comparison(
        names=list(funcs),
        rounds={name: [s * 1e6 for s in timed[name]] for name in funcs},
        overhead_us=overhead,
        calls_per_round=number,
    )


def compare(
    funcs: dict[str, Callable[[], object]],
    rounds: int = 40,
    number: int = 2000,
    *,
    chunks: int = 20,
    seed: int = 0,
    clock: Callable[[], float] = time.perf_counter,
) -> Comparison:
    """Time ``funcs`` (name -> zero-argument callable) interleaved; the first is the baseline.

    ``rounds`` (at least 30) rounds, each with ``number`` calls of every callable
    split into ``chunks`` chunks, the callables back to back in a new random order
    each chunk; a round's figure is the median of its chunks. Read the result with
    :meth:`Comparison.diff_us` (median of per-round paired differences, µs per
    call) and :meth:`Comparison.median_us`, or ``as_dict()``; ``str()`` is a table.
    """
    if len(funcs) < 2:
        raise ValueError("compare needs at least two callables")
    if rounds < MIN_ROUNDS:
        raise ValueError(f"rounds must be at least {MIN_ROUNDS} for the medians to mean something")
    return measure(funcs, rounds=rounds, number=number, chunks=chunks, seed=seed, clock=clock)
