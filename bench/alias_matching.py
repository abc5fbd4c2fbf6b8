"""Benchmark: how long does alias matching take as a request grows?

Run on demand (`python bench/alias_matching.py [--out FILE]`); not part of the test suite.
Writes bench/results-alias.json.

What is timed is what `AliasPlanner.plan` does before it validates any arguments:
`clean_text` on the raw request, then every alias's `AliasPattern.match`, in order. The
aliases are the test policy's, plus a few whose shape the old backtracking regex handled
worst (literal text after two or three placeholders). The requests are 100, 1,000, 4,000
and 16,000 words long, in shapes that match no alias and fail late — the old regex's worst
case — plus a plain request and one full of unclosed `<@U…|` mentions (`clean_text`'s old
worst case). Each figure is the median of several runs; the exit status is 1 if the work
per word grows by more than half from 1,000 to 16,000 words (it should be flat).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bot.planner import AliasPattern, clean_text

SIZES = (100, 1_000, 4_000, 16_000)
ALIASES = [
    "restart {service}",
    "scale {service} in {env}",
    "flush {name}",
    "announce {text}",
    "deploy {version} to {env}",
    "page {team} {message}",
    "ticket {project} {priority} {title}",
    # shapes that fail late: literal text after the last placeholder
    "{service} in {env} now",
    "scale {service} in {env} please",
    "{a} {b} {c} now",
    "deploy {version} to {env} at {time} sharp",
]


def _words(n: int, unit: list[str]) -> str:
    return " ".join((unit * (n // len(unit) + 1))[:n])


SHAPES: dict[str, Callable[[int], str]] = {
    # ordinary words: every alias fails at once or reads the text once
    "plain": lambda n: _words(n, ["please", "look", "at", "the", "checkout", "logs"]),
    # "x in x in … later": every "in" is a place the old regex tried
    "in_later": lambda n: _words(n - 1, ["x", "in"]) + " later",
    # "scale x in x in …": the same after a literal prefix
    "scale_in": lambda n: "scale " + _words(n - 1, ["x", "in"]),
    # "deploy to at to at …": four placeholders' separators everywhere
    "deploy_to_at": lambda n: "deploy " + _words(n - 1, ["to", "at"]),
    # "<@U1|x <@U1|x …": mentions that never close (the old `clean_text` scanned each to the end)
    "open_mentions": lambda n: _words(n, ["<@U1|x"]),
}


def _plan_match(raw: str, patterns: list[AliasPattern]) -> int:
    text = clean_text(raw)
    return sum(pattern.match(text) is not None for pattern in patterns)


def _median_ms(fn: Callable[[], object], runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return round(statistics.median(times) * 1000, 4)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(Path(__file__).with_name("results-alias.json")))
    args = parser.parse_args()
    patterns = [AliasPattern.compile(p) for p in ALIASES]
    machine: dict[str, object] = {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        # Other work on the machine inflates every figure: compare with this.
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }
    results: dict[str, object] = {
        "machine": machine,
        "aliases": ALIASES,
        "timed": "clean_text, then every alias's AliasPattern.match (median of runs, ms)",
    }
    sizes: dict[str, object] = {}
    worst_per_word: dict[int, float] = {}
    print(f"{'words':>7} " + " ".join(f"{name:>14}" for name in SHAPES) + "   worst ms")
    for n in SIZES:
        runs = 41 if n <= 1_000 else 15
        medians: dict[str, float] = {}
        row: dict[str, object] = {"runs": runs}
        for name, make in SHAPES.items():
            raw = make(n)
            medians[name] = _median_ms(partial(_plan_match, raw, patterns), runs)
            row[name] = {
                "median_ms": medians[name],
                "chars": len(raw),
                "aliases_matched": _plan_match(raw, patterns),
            }
        worst = max(medians.values())
        worst_per_word[n] = worst * 1000 / n
        row["worst_median_ms"] = worst
        row["worst_us_per_word"] = round(worst_per_word[n], 3)
        sizes[str(n)] = row
        print(
            f"{n:>7} " + " ".join(f"{medians[name]:>14.3f}" for name in SHAPES) + f"   {worst:.3f}"
        )
    results["sizes"] = sizes
    growth = worst_per_word[16_000] / worst_per_word[1_000]
    results["per_word_growth_1k_to_16k"] = round(growth, 2)
    machine["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    print(f"time per word, 16,000 vs 1,000 words: x{growth:.2f} (1.0 is linear)")
    print(f"wrote {args.out}")
    return 0 if growth <= 1.5 else 1


if __name__ == "__main__":
    raise SystemExit(main())
